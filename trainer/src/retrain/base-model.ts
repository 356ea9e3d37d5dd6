/**
 * The base model of transfer learning: a tfjs model directory (`model.json` + weight shards)
 * whose output at a "bottleneck" feeds the new head. Either a Layers model (a published mlp
 * version, a converted Keras application), cut at a layer, or a Graph model (a TF Hub image
 * feature vector, as `mlp fetch-base` caches them), cut at an output node.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, UsageError, describeError } from "../errors";
import { parseMetadata } from "../metadata";
import { tf, type LayersModel, type Tensor, type Tensor4D } from "../tf";
import type { ImageSpec } from "./decode";
import { BASE_MODEL_FILE, modelFormat, type BaseModelRecord } from "./fetch-base";

type GraphModel = Awaited<ReturnType<typeof tf.loadGraphModel>>;

export interface BaseModel {
  /** Content hash of model.json, the weights and the bottleneck layer name (16 hex digits). */
  readonly id: string;
  readonly dir: string;
  /** The loaded model: a Layers model, or a Graph model. */
  readonly model: { readonly kind: "layers"; readonly model: LayersModel } | { readonly kind: "graph"; readonly model: GraphModel; readonly inputName: string };
  /** Layer (Layers model) or output node (Graph model) whose output is the feature vector. */
  readonly bottleneckLayer: string;
  /** Images `[b, height, width, channels]` → features `[b, ...featureShape]` (inference only). */
  extract(images: Tensor4D): Tensor;
  /** Bottleneck output shape without the batch dimension. */
  readonly featureShape: readonly number[];
  /** How images are prepared for the model. */
  readonly spec: ImageSpec;
  dispose(): void;
}

export interface BaseModelOptions {
  /** Layer (or graph output node) whose output is the feature vector. Default: from `base-model.json`, else the input of the last layer (the graph's only output). */
  readonly bottleneckLayer?: string;
  /** Value range of the input pixels; default from `base-model.json` or `metadata.json`, else [0, 1]. */
  readonly range?: readonly [number, number];
}

/**
 * Sets `trainable = false` on every layer up to and including `lastFrozen`, which must exist.
 * Returns the names of the frozen layers.
 */
export function freezeUpTo(model: LayersModel, lastFrozen: string): string[] {
  const idx = model.layers.findIndex((l) => l.name === lastFrozen);
  if (idx < 0) throw new UsageError(`layer ${JSON.stringify(lastFrozen)} not found in model ${model.name}; layers: ${model.layers.map((l) => l.name).join(", ")}`);
  const frozen = model.layers.slice(0, idx + 1);
  for (const l of frozen) l.trainable = false;
  return frozen.map((l) => l.name);
}

/** Loads `<dir>/model.json`, hashes it with its weights, and builds the feature extractor. */
export async function loadBaseModel(dir: string, opts: BaseModelOptions = {}): Promise<BaseModel> {
  const modelJson = path.join(path.resolve(dir), "model.json");
  const hash = createHash("sha256");
  let format: "layers" | "graph";
  try {
    const json = await fs.readFile(modelJson);
    hash.update(json);
    const parsed = JSON.parse(json.toString("utf8")) as { weightsManifest?: { paths: string[] }[] };
    format = modelFormat(modelJson, parsed);
    for (const group of parsed.weightsManifest ?? []) for (const p of group.paths) hash.update(await fs.readFile(path.join(path.dirname(modelJson), p)));
  } catch (e) {
    throw new DataError(`${modelJson}: cannot load the base model: ${describeError(e)}`, { cause: e });
  }
  // How to feed it: retrain's flags, else what fetch-base recorded, else a published version's metadata.
  const recordRaw = await fs.readFile(path.join(path.dirname(modelJson), BASE_MODEL_FILE), "utf8").catch(() => undefined);
  const record = recordRaw === undefined ? undefined : (JSON.parse(recordRaw) as BaseModelRecord);
  let range: readonly [number, number] = opts.range ?? record?.input?.range ?? [0, 1];
  const metadataFile = path.join(path.dirname(modelJson), "metadata.json");
  const metaRaw = await fs.readFile(metadataFile, "utf8").catch(() => undefined);
  if (metaRaw !== undefined && opts.range === undefined && record?.input?.range === undefined) {
    const meta = parseMetadata(metadataFile, JSON.parse(metaRaw));
    if (meta.preprocessing) range = meta.preprocessing.range;
  }
  const requested = opts.bottleneckLayer ?? record?.bottleneckLayer;
  const base = format === "layers" ? await layersBase(modelJson, requested) : await graphBase(modelJson, requested, record);
  hash.update(`\0bottleneck:${base.bottleneckLayer}`);
  const [height, width, channels] = base.inputShape;
  return {
    ...base,
    id: hash.digest("hex").slice(0, 16),
    dir: path.dirname(modelJson),
    spec: { height, width, channels, range },
  };
}

type Loaded = Omit<BaseModel, "id" | "dir" | "spec"> & { readonly inputShape: readonly [number, number, 1 | 3] };

function checkInput(modelJson: string, shape: readonly (number | null)[], record: BaseModelRecord | undefined): [number, number, 1 | 3] {
  const dim = (d: number | null | undefined) => (d === null || d === undefined || d < 0 ? undefined : d);
  const height = dim(shape[1]) ?? record?.input?.height;
  const width = dim(shape[2]) ?? record?.input?.width;
  if (shape.length !== 4 || (shape[3] !== 1 && shape[3] !== 3) || !height || !width) {
    throw new DataError(
      `${modelJson}: base model input must be [batch, height, width, 1 or 3] with a known height and width; it is [${shape.join(", ")}]` +
        (shape.length === 4 ? " (fetch it with mlp fetch-base --image-size <h>x<w>)" : ""),
    );
  }
  return [height, width, shape[3] as 1 | 3];
}

async function layersBase(modelJson: string, requested: string | undefined): Promise<Loaded> {
  let model: LayersModel;
  try {
    model = await tf.loadLayersModel(`file://${modelJson}`);
  } catch (e) {
    throw new DataError(`${modelJson}: cannot load the base model: ${describeError(e)}`, { cause: e });
  }
  if (model.inputs.length !== 1) throw new DataError(`${modelJson}: base model must have one image input; it has ${model.inputs.length}`);
  const inputShape = checkInput(modelJson, model.inputs[0]!.shape, undefined);
  const last = model.layers[model.layers.length - 1]!;
  const bottleneckLayer = requested ?? last.inboundNodes[0]?.inboundLayers[0]?.name;
  if (!bottleneckLayer) throw new DataError(`${modelJson}: cannot tell the bottleneck layer; name one with --bottleneck-layer`);
  let layer;
  try {
    layer = model.getLayer(bottleneckLayer);
  } catch {
    throw new UsageError(`layer ${JSON.stringify(bottleneckLayer)} not found in ${modelJson}; layers: ${model.layers.map((l) => l.name).join(", ")}`);
  }
  const extractor = tf.model({ inputs: model.inputs, outputs: layer.output as ReturnType<typeof tf.input> });
  return {
    model: { kind: "layers", model },
    bottleneckLayer,
    extract: (images) => extractor.predict(images) as Tensor,
    featureShape: (extractor.outputs[0]!.shape as (number | null)[]).slice(1) as number[],
    inputShape,
    dispose: () => model.dispose(),
  };
}

async function graphBase(modelJson: string, requested: string | undefined, record: BaseModelRecord | undefined): Promise<Loaded> {
  let model: GraphModel;
  try {
    model = await tf.loadGraphModel(`file://${modelJson}`);
  } catch (e) {
    throw new DataError(`${modelJson}: cannot load the base model: ${describeError(e)}`, { cause: e });
  }
  try {
    if (model.inputs.length !== 1)
      throw new DataError(`${modelJson}: base model must have one image input; it has ${model.inputs.length} (${model.inputs.map((i) => i.name).join(", ")})`);
    const input = model.inputs[0]!;
    const inputShape = checkInput(modelJson, input.shape ?? [], record);
    const outputs = model.outputs.map((o) => o.name);
    const bottleneckLayer = requested ?? (outputs.length === 1 ? outputs[0] : undefined);
    if (!bottleneckLayer) throw new UsageError(`${modelJson}: the graph has ${outputs.length} outputs (${outputs.join(", ")}); name the feature vector with --bottleneck-layer`);
    const extract = (images: Tensor4D) => model.execute({ [input.name]: images }, bottleneckLayer) as Tensor;
    // The feature shape as the graph computes it (a hub module's signature may leave it open).
    let featureShape: number[];
    try {
      featureShape = tf.tidy(() => extract(tf.zeros([1, ...inputShape]) as Tensor4D).shape.slice(1));
    } catch (e) {
      throw new UsageError(`${modelJson}: cannot compute ${JSON.stringify(bottleneckLayer)} from input ${input.name}: ${describeError(e)}`, { cause: e });
    }
    if (featureShape.length !== 1) {
      throw new DataError(
        `${modelJson}: the graph's feature output ${bottleneckLayer} is [${featureShape.join(", ")}] per image; retrain on a graph model needs a feature vector (1-D)`,
      );
    }
    return { model: { kind: "graph", model, inputName: input.name }, bottleneckLayer, extract, featureShape, inputShape, dispose: () => model.dispose() };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
