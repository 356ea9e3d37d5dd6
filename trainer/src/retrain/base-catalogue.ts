/**
 * Named base models for `mlp fetch-base` and `mlp retrain --base-model <name>`: published
 * tfjs-format models (model.json + weight shards) trained on ImageNet.
 *
 * None of these entries pins a digest: they were written on a machine without access to the
 * hubs, so their content could not be hashed here. `mlp fetch-base` records the sha256 of the
 * first download (trust on first use) and verifies every later fetch against it; pin one by
 * passing `--sha256` (or by adding it here once measured).
 */

/** How the images are prepared for a base model. */
export interface BaseInputSpec {
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3;
  /** Pixel value range the model was trained on. */
  readonly range: readonly [number, number];
}

export interface CatalogueEntry {
  readonly name: string;
  readonly description: string;
  /** URL of `model.json`; weight shards are fetched relative to it (its query string kept). */
  readonly url: string;
  /** tfjs loader: a Graph model (TF Hub feature vectors) or a Layers model. */
  readonly format: "graph" | "layers";
  readonly input: BaseInputSpec;
  /** Layers models: the layer whose output is the feature vector (retrain's --bottleneck-layer). */
  readonly bottleneckLayer?: string;
  /** sha256 of the model's content (see fetch-base.ts `modelDigest`); undefined = recorded on first fetch. */
  readonly sha256?: string;
}

/** TF Hub serves a tfjs model's files with this query (what tfjs' `fromTFHub` appends). */
const TFHUB_FILE = "model.json?tfjs-format=file";

export const BASE_MODELS: readonly CatalogueEntry[] = [
  {
    name: "inception-v3",
    description: "Inception v3 trained on ImageNet, 2048-dim feature vector (TF Hub tfjs, ~90 MB); the retraining walkthrough's base",
    url: `https://tfhub.dev/google/tfjs-model/imagenet/inception_v3/feature_vector/3/default/1/${TFHUB_FILE}`,
    format: "graph",
    input: { height: 299, width: 299, channels: 3, range: [0, 1] },
  },
  {
    name: "mobilenet-v2",
    description: "MobileNet v2 1.0 224 trained on ImageNet, 1280-dim feature vector (TF Hub tfjs, ~9 MB); several times faster than Inception v3",
    url: `https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1/${TFHUB_FILE}`,
    format: "graph",
    input: { height: 224, width: 224, channels: 3, range: [0, 1] },
  },
  {
    name: "mobilenet-v1-0.25",
    description: "MobileNet v1 0.25 224 trained on ImageNet as a tfjs Layers model (~2 MB), cut at conv_pw_13_relu (7×7×256); the smallest",
    url: "https://storage.googleapis.com/tfjs-models/tfjs/mobilenet_v1_0.25_224/model.json",
    format: "layers",
    input: { height: 224, width: 224, channels: 3, range: [-1, 1] },
    bottleneckLayer: "conv_pw_13_relu",
  },
];

/** The base model `mlp fetch-base` fetches when given no name. */
export const DEFAULT_BASE_MODEL = "inception-v3";

/** The catalogue entry called `name`, or undefined. */
export function catalogueEntry(name: string): CatalogueEntry | undefined {
  return BASE_MODELS.find((m) => m.name === name);
}
