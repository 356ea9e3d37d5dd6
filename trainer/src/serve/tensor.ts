/**
 * Tensors as the server handles them between the wire and TensorFlow.js: plain typed
 * arrays on the host. Requests are decoded and validated into {@link HostTensor}s before
 * any tf.Tensor exists, so a bad request can never leak a tensor, and batching can
 * concatenate on the host.
 */
import type { SignatureSpec, TensorDtype, TensorSpec } from "../metadata";
import { invalidArgument } from "./errors";

export type HostValues = Float32Array | Int32Array | Uint8Array | Uint8Array[];

/**
 * A dense tensor on the host. `values` is row-major with `shape.reduce(*)` elements:
 * Float32Array for float32, Int32Array for int32, Uint8Array (0/1) for bool and an array
 * of byte strings for string.
 */
export interface HostTensor {
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
  readonly values: HostValues;
}

/** Limits that keep one request from taking the server down. */
export interface TensorLimits {
  /** Largest element count of one tensor. Default 64 Mi (256 MiB of float32). */
  readonly maxElements: number;
  /** Largest rank. Default 8. */
  readonly maxRank: number;
  /** Reject NaN and ±Inf in float inputs (INVALID_ARGUMENT). Default true. */
  readonly rejectNonFinite: boolean;
}

export const DEFAULT_TENSOR_LIMITS: TensorLimits = { maxElements: 64 * 1024 * 1024, maxRank: 8, rejectNonFinite: true };

/** TensorFlow DataType names of the dtypes we serve. */
export const DT_NAME: Readonly<Record<TensorDtype, string>> = {
  float32: "DT_FLOAT",
  int32: "DT_INT32",
  bool: "DT_BOOL",
  string: "DT_STRING",
};

const DTYPE_OF: Readonly<Record<string, TensorDtype>> = {
  DT_FLOAT: "float32",
  DT_INT32: "int32",
  DT_BOOL: "bool",
  DT_STRING: "string",
};

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[-1,28,28,1]` → `[?,28,28,1]`, for messages. */
export function shapeString(shape: readonly number[]): string {
  return `[${shape.map((d) => (d < 0 ? "?" : String(d))).join(",")}]`;
}

// ---------------------------------------------------------------------------------------
// TensorProto (gRPC)
// ---------------------------------------------------------------------------------------

/**
 * A decoded `tensorflow.TensorProto` as @grpc/proto-loader gives it with our loader options
 * (`longs: String`, `enums: String`, `defaults: true`, bytes as Buffer). The Predict fast
 * path (`wire.ts`) gives the same shape, with `float_val` as a Float32Array.
 */
export interface TensorProtoObject {
  dtype?: string;
  tensor_shape?: { dim?: { size?: string | number; name?: string }[]; unknown_rank?: boolean } | null;
  version_number?: number;
  tensor_content?: Buffer | Uint8Array;
  float_val?: number[] | Float32Array;
  double_val?: number[];
  int_val?: number[];
  string_val?: (Buffer | Uint8Array)[];
  int64_val?: (string | number)[];
  bool_val?: boolean[];
  half_val?: number[];
  uint32_val?: number[];
  uint64_val?: (string | number)[];
  scomplex_val?: number[];
  dcomplex_val?: number[];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function checkShape(where: string, shape: number[], limits: TensorLimits): number {
  if (shape.length > limits.maxRank) throw invalidArgument(`${where}: rank ${shape.length} exceeds the limit ${limits.maxRank}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw invalidArgument(`${where}: dimension sizes must be integers ≥ 0; got ${d}`);
    n *= d;
    if (n > limits.maxElements) {
      throw invalidArgument(`${where}: tensor of shape ${shapeString(shape)} exceeds the limit of ${limits.maxElements} elements`);
    }
  }
  return n;
}

function checkFinite(where: string, values: Float32Array, limits: TensorLimits): void {
  if (!limits.rejectNonFinite) return;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v - v !== 0) throw invalidArgument(`${where}: value ${v} at flat index ${i} is not finite`);
  }
}

/**
 * Little-endian 4-byte words as a typed array: a view of the bytes when they are aligned
 * (no copy; the request's buffer lives as long as the request), else an aligned copy.
 */
function wordsFrom<T extends Float32Array | Int32Array>(bytes: Uint8Array, make: (b: ArrayBuffer, offset?: number, length?: number) => T): T {
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return make(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / 4);
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  if (!LITTLE_ENDIAN) {
    const dv = new DataView(buf);
    for (let i = 0; i < bytes.byteLength; i += 4) dv.setUint32(i, dv.getUint32(i, true), false);
  }
  return make(buf);
}

/** Fills `n` elements from a typed field holding `n` values, or one value to repeat (TF's rule). */
function fill<T extends { length: number; fill(v: number): T; set(a: ArrayLike<number>): void }>(
  where: string,
  field: string,
  src: ArrayLike<number>,
  n: number,
  make: (n: number) => T,
): T {
  const out = make(n);
  if (src.length === n) out.set(src);
  else if (src.length === 1) out.fill(src[0]!);
  else if (src.length === 0 && n === 0) return out;
  else throw invalidArgument(`${where}: ${field} has ${src.length} values; the shape needs ${n}`);
  return out;
}

/**
 * Decodes and validates one TensorProto. `where` names it in errors (`input "x"`).
 * Throws INVALID_ARGUMENT for anything inconsistent: unknown dtype, negative or huge
 * dimensions, value count not matching the shape, NaN/Inf (when the limits say so).
 */
export function fromTensorProto(where: string, proto: TensorProtoObject, limits: TensorLimits = DEFAULT_TENSOR_LIMITS): HostTensor {
  const dtName = proto.dtype ?? "DT_INVALID";
  const dtype = DTYPE_OF[dtName];
  if (!dtype) {
    throw invalidArgument(`${where}: dtype ${dtName} is not supported; use one of ${Object.keys(DTYPE_OF).join(", ")}`);
  }
  const shapeProto = proto.tensor_shape ?? { dim: [] };
  if (shapeProto.unknown_rank) throw invalidArgument(`${where}: tensor_shape.unknown_rank is set; a dense tensor needs a shape`);
  const shape = (shapeProto.dim ?? []).map((d) => Number(d.size ?? 0));
  const n = checkShape(where, shape, limits);
  const content = proto.tensor_content;
  if (content && content.byteLength > 0) {
    const width = dtype === "bool" ? 1 : 4;
    if (dtype === "string") throw invalidArgument(`${where}: DT_STRING tensors cannot use tensor_content; use string_val`);
    if (content.byteLength !== n * width) {
      throw invalidArgument(`${where}: tensor_content has ${content.byteLength} bytes; shape ${shapeString(shape)} of ${dtName} needs ${n * width}`);
    }
    if (dtype === "float32") {
      const values = wordsFrom(content, (b, o, l) => new Float32Array(b, o, l));
      checkFinite(where, values, limits);
      return { dtype, shape, values };
    }
    if (dtype === "int32") return { dtype, shape, values: wordsFrom(content, (b, o, l) => new Int32Array(b, o, l)) };
    const values = new Uint8Array(n);
    for (let i = 0; i < n; i++) values[i] = content[i] ? 1 : 0;
    return { dtype, shape, values };
  }
  switch (dtype) {
    case "float32": {
      const src = proto.float_val ?? [];
      // Already a Float32Array of the right length (wire.ts): use it as it is.
      const values = src instanceof Float32Array && src.length === n ? src : fill(where, "float_val", src, n, (k) => new Float32Array(k));
      checkFinite(where, values, limits);
      return { dtype, shape, values };
    }
    case "int32":
      return { dtype, shape, values: fill(where, "int_val", proto.int_val ?? [], n, (k) => new Int32Array(k)) };
    case "bool":
      return { dtype, shape, values: fill(where, "bool_val", (proto.bool_val ?? []).map(Number), n, (k) => new Uint8Array(k)) };
    case "string": {
      const src = proto.string_val ?? [];
      if (src.length !== n && !(src.length === 1 && n > 0)) {
        throw invalidArgument(`${where}: string_val has ${src.length} values; the shape needs ${n}`);
      }
      const values: Uint8Array[] = [];
      for (let i = 0; i < n; i++) values.push(new Uint8Array(src.length === n ? src[i]! : src[0]!));
      return { dtype, shape, values };
    }
  }
}

/**
 * Encodes a host tensor the way TF Serving answers: the typed repeated field
 * (`float_val`, `int_val`, ...), which every client reads (`tf.make_ndarray`, or
 * `.float_val` directly as many examples do).
 */
export function toTensorProto(t: HostTensor): TensorProtoObject {
  const proto: TensorProtoObject = {
    dtype: DT_NAME[t.dtype],
    tensor_shape: { dim: t.shape.map((d) => ({ size: String(d), name: "" })), unknown_rank: false },
  };
  switch (t.dtype) {
    case "float32":
      proto.float_val = Array.from(t.values as Float32Array);
      break;
    case "int32":
      proto.int_val = Array.from(t.values as Int32Array);
      break;
    case "bool":
      proto.bool_val = Array.from(t.values as Uint8Array, (v) => v !== 0);
      break;
    case "string":
      proto.string_val = (t.values as Uint8Array[]).map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      break;
  }
  return proto;
}

// ---------------------------------------------------------------------------------------
// Checking requests against a signature
// ---------------------------------------------------------------------------------------

/**
 * Checks a request's inputs against a signature: exactly the signature's input names,
 * each with its dtype and rank and the sizes it fixes, one shared batch size ≥ 1.
 * Returns the batch size (dimension 0), or 1 for signatures whose inputs have rank 0.
 */
export function checkInputs(signatureName: string, sig: SignatureSpec, inputs: Readonly<Record<string, HostTensor>>, maxBatchSize: number): number {
  const wanted = Object.keys(sig.inputs);
  for (const name of Object.keys(inputs)) {
    if (!(name in sig.inputs)) {
      throw invalidArgument(`input "${name}" is not an input of signature "${signatureName}"; inputs are: ${wanted.join(", ")}`);
    }
  }
  let batch: number | undefined;
  for (const name of wanted) {
    const t = inputs[name];
    if (!t) throw invalidArgument(`missing input "${name}" of signature "${signatureName}"`);
    const spec = sig.inputs[name] as TensorSpec;
    if (t.dtype !== spec.dtype) {
      throw invalidArgument(`input "${name}" must be ${DT_NAME[spec.dtype]}; got ${DT_NAME[t.dtype]}`);
    }
    if (t.shape.length !== spec.shape.length || spec.shape.some((d, i) => d >= 0 && d !== t.shape[i])) {
      throw invalidArgument(`input "${name}" must have shape ${shapeString(spec.shape)}; got ${shapeString(t.shape)}`);
    }
    if (t.shape.length > 0) {
      const b = t.shape[0]!;
      if (batch !== undefined && b !== batch) {
        throw invalidArgument(`inputs must share the batch size (dimension 0); "${name}" has ${b}, another input has ${batch}`);
      }
      batch = b;
    }
  }
  const b = batch ?? 1;
  if (b < 1) throw invalidArgument("the batch is empty: dimension 0 of the inputs is 0");
  if (b > maxBatchSize) throw invalidArgument(`batch size ${b} exceeds the server's limit of ${maxBatchSize}`);
  return b;
}
