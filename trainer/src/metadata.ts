/**
 * The contract between the trainer (which exports model versions) and the model server
 * (which loads them): `<modelBase>/<name>/<version>/metadata.json`, written beside the
 * tfjs `model.json` and weight shards.
 *
 * A version directory holds:
 *   model.json, *.bin      the tfjs Layers or Graph model
 *   metadata.json          this document
 *   labels.txt             one label per line, index = class id (optional; also in `labels`)
 */

/** Element types we accept on the wire; the names are TensorFlow's DataType names. */
export type TensorDtype = "float32" | "int32" | "bool" | "string";

/** One named tensor of a signature. `-1` in `shape` stands for an unknown size (the batch). */
export interface TensorSpec {
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
}

/** A TensorFlow-Serving-style signature (`serving_default` is the one clients get by default). */
export interface SignatureSpec {
  /** `tensorflow/serving/predict` or `tensorflow/serving/classify`. */
  readonly methodName: string;
  readonly inputs: Readonly<Record<string, TensorSpec>>;
  readonly outputs: Readonly<Record<string, TensorSpec>>;
}

/** How a client turns an image into the model input. */
export interface ImagePreprocessing {
  readonly kind: "image";
  readonly height: number;
  readonly width: number;
  /** 1 for greyscale, 3 for RGB. */
  readonly channels: 1 | 3;
  /** Pixel value range the model expects after scaling: `[0,1]` or `[-1,1]`. */
  readonly range: readonly [number, number];
}

export interface ModelMetadata {
  /** Always `mlplatform.model/v1`; bumped on an incompatible change. */
  readonly format: "mlplatform.model/v1";
  readonly name: string;
  /** Positive integer, the directory name. */
  readonly version: number;
  /** ISO-8601 time the version was published. */
  readonly createdAt: string;
  /** `layers` or `graph`: which tfjs loader reads `model.json`. */
  readonly modelType: "layers" | "graph";
  readonly signatures: Readonly<Record<string, SignatureSpec>>;
  readonly preprocessing?: ImagePreprocessing;
  /** Class names, index = class id. */
  readonly labels?: readonly string[];
  /** Evaluation results on held-out data, e.g. `{ testAccuracy: 0.985 }`. */
  readonly metrics?: Readonly<Record<string, number>>;
  /** Free-form training parameters (steps, learning rate, …) for provenance. */
  readonly training?: Readonly<Record<string, unknown>>;
}

export const METADATA_FORMAT = "mlplatform.model/v1" as const;
export const DEFAULT_SIGNATURE = "serving_default";

/** Thrown when a metadata document does not follow the contract above. */
export class MetadataError extends Error {
  constructor(where: string, problem: string) {
    super(`${where}: invalid model metadata: ${problem}`);
    this.name = "MetadataError";
  }
}

const DTYPES: readonly string[] = ["float32", "int32", "bool", "string"];

function checkTensorSpec(where: string, path: string, v: unknown): TensorSpec {
  if (typeof v !== "object" || v === null) throw new MetadataError(where, `${path} must be an object`);
  const o = v as Record<string, unknown>;
  if (typeof o.dtype !== "string" || !DTYPES.includes(o.dtype)) {
    throw new MetadataError(where, `${path}.dtype must be one of ${DTYPES.join(", ")}; got ${JSON.stringify(o.dtype)}`);
  }
  if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isInteger(d) && d >= -1)) {
    throw new MetadataError(where, `${path}.shape must be an array of integers ≥ -1; got ${JSON.stringify(o.shape)}`);
  }
  return { dtype: o.dtype as TensorDtype, shape: o.shape as number[] };
}

/**
 * Validates a parsed `metadata.json`. `where` names the file in error messages.
 * Returns the same document typed; throws {@link MetadataError} naming the bad field.
 */
export function parseMetadata(where: string, doc: unknown): ModelMetadata {
  if (typeof doc !== "object" || doc === null) throw new MetadataError(where, "not a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.format !== METADATA_FORMAT) {
    throw new MetadataError(where, `format must be "${METADATA_FORMAT}"; got ${JSON.stringify(o.format)}`);
  }
  if (typeof o.name !== "string" || o.name === "") throw new MetadataError(where, "name must be a non-empty string");
  if (!Number.isInteger(o.version) || (o.version as number) < 1) {
    throw new MetadataError(where, `version must be a positive integer; got ${JSON.stringify(o.version)}`);
  }
  if (o.modelType !== "layers" && o.modelType !== "graph") {
    throw new MetadataError(where, `modelType must be "layers" or "graph"; got ${JSON.stringify(o.modelType)}`);
  }
  if (typeof o.signatures !== "object" || o.signatures === null || Object.keys(o.signatures).length === 0) {
    throw new MetadataError(where, "signatures must name at least one signature");
  }
  for (const [sig, spec] of Object.entries(o.signatures as Record<string, unknown>)) {
    const s = spec as Record<string, unknown> | null;
    if (typeof s !== "object" || s === null) throw new MetadataError(where, `signatures.${sig} must be an object`);
    if (typeof s.methodName !== "string") throw new MetadataError(where, `signatures.${sig}.methodName must be a string`);
    for (const side of ["inputs", "outputs"] as const) {
      const tensors = s[side];
      if (typeof tensors !== "object" || tensors === null || Object.keys(tensors).length === 0) {
        throw new MetadataError(where, `signatures.${sig}.${side} must name at least one tensor`);
      }
      for (const [t, ts] of Object.entries(tensors as Record<string, unknown>)) {
        checkTensorSpec(where, `signatures.${sig}.${side}.${t}`, ts);
      }
    }
  }
  if (o.labels !== undefined && (!Array.isArray(o.labels) || !o.labels.every((l) => typeof l === "string"))) {
    throw new MetadataError(where, "labels must be an array of strings");
  }
  return o as unknown as ModelMetadata;
}
