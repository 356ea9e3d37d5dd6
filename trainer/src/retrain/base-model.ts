/**
 * The base model of transfer learning: a tfjs Layers model directory (`model.json` + weight
 * shards, e.g. a published mlp version or a converted Keras application), cut at a
 * "bottleneck" layer whose output feeds the new head.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, UsageError, describeError } from "../errors";
import { parseMetadata } from "../metadata";
import { tf, type LayersModel } from "../tf";
import type { ImageSpec } from "./decode";

export interface BaseModel {
  /** Content hash of model.json, the weights and the bottleneck layer name (16 hex digits). */
  readonly id: string;
  readonly dir: string;
  readonly model: LayersModel;
  readonly bottleneckLayer: string;
  /** Inputs of `model` → output of the bottleneck layer (inference only). */
  readonly extractor: LayersModel;
  /** Bottleneck output shape without the batch dimension. */
  readonly featureShape: readonly number[];
  /** How images are prepared for the model. */
  readonly spec: ImageSpec;
}

export interface BaseModelOptions {
  /** Layer whose output is the feature vector. Default: the input layer of the last layer. */
  readonly bottleneckLayer?: string;
  /** Value range of the input pixels; default from `metadata.json`, else [0, 1]. */
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
  let model: LayersModel;
  try {
    const json = await fs.readFile(modelJson);
    hash.update(json);
    const manifest = (JSON.parse(json.toString("utf8")) as { weightsManifest?: { paths: string[] }[] }).weightsManifest ?? [];
    for (const group of manifest) for (const p of group.paths) hash.update(await fs.readFile(path.join(path.dirname(modelJson), p)));
    model = await tf.loadLayersModel(`file://${modelJson}`);
  } catch (e) {
    throw new DataError(`${modelJson}: cannot load the base model: ${describeError(e)}`, { cause: e });
  }
  if (model.inputs.length !== 1) throw new DataError(`${modelJson}: base model must have one image input; it has ${model.inputs.length}`);
  const inShape = model.inputs[0]!.shape;
  if (inShape.length !== 4 || (inShape[3] !== 1 && inShape[3] !== 3) || !inShape[1] || !inShape[2]) {
    throw new DataError(`${modelJson}: base model input must be [batch, height, width, 1 or 3]; it is [${inShape.join(", ")}]`);
  }

  const last = model.layers[model.layers.length - 1]!;
  const bottleneckLayer = opts.bottleneckLayer ?? last.inboundNodes[0]?.inboundLayers[0]?.name;
  if (!bottleneckLayer) throw new DataError(`${modelJson}: cannot tell the bottleneck layer; name one with --bottleneck-layer`);
  let layer;
  try {
    layer = model.getLayer(bottleneckLayer);
  } catch {
    throw new UsageError(`layer ${JSON.stringify(bottleneckLayer)} not found in ${modelJson}; layers: ${model.layers.map((l) => l.name).join(", ")}`);
  }
  hash.update(`\0bottleneck:${bottleneckLayer}`);
  const extractor = tf.model({ inputs: model.inputs, outputs: layer.output as ReturnType<typeof tf.input> });
  const featureShape = (extractor.outputs[0]!.shape as (number | null)[]).slice(1) as number[];

  let range: readonly [number, number] = opts.range ?? [0, 1];
  const metadataFile = path.join(path.dirname(modelJson), "metadata.json");
  const metaRaw = await fs.readFile(metadataFile, "utf8").catch(() => undefined);
  if (metaRaw !== undefined && opts.range === undefined) {
    const meta = parseMetadata(metadataFile, JSON.parse(metaRaw));
    if (meta.preprocessing) range = meta.preprocessing.range;
  }
  return {
    id: hash.digest("hex").slice(0, 16),
    dir: path.dirname(modelJson),
    model,
    bottleneckLayer,
    extractor,
    featureShape,
    spec: { height: inShape[1]!, width: inShape[2]!, channels: inShape[3] as 1 | 3, range },
  };
}
