/**
 * Predict's request and response on the wire, without the generic proto-loader path.
 *
 * Predict is the hot path, and its tensors are where the bytes are. The generic path
 * decodes a packed `float_val` into a JS array element by element, copies that array again
 * in `toObject`, and copies it a third time into a Float32Array; on the way out it turns
 * a Float32Array into a JS array (`toTensorProto`) for protobufjs to write back float by
 * float. For a 224×224×3 image that is tens of milliseconds each way. Here:
 *
 *  - packed `float_val` (and `tensor_content`) are little-endian float32 on the wire, so
 *    they are copied into a Float32Array in one `set`, or not copied at all (a view) when
 *    the bytes happen to be 4-byte aligned;
 *  - responses keep TF Serving's encoding (the typed `float_val`/`int_val`/`bool_val`/
 *    `string_val` fields, which every client reads) but write packed floats with one
 *    memcpy;
 *  - no defaults-filled objects are built for fields Predict never reads.
 *
 * The objects produced have the shapes of `protos.ts` (`PredictRequest`, field names as
 * in the .proto, int64 as decimal strings, enums by name), so the handler code is the same
 * whichever path decoded them. The tests compare both paths on the same bytes.
 */
import * as protobuf from "protobufjs";
import { servingRoot, type ModelSpecObject, type PredictRequest } from "./protos";
import type { HostTensor, TensorProtoObject } from "./tensor";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `tensorflow.DataType` numbers of the dtypes we answer with (types.proto). */
const DT_OF_HOST: Readonly<Record<HostTensor["dtype"], number>> = { float32: 1, int32: 3, string: 7, bool: 10 };

let dtypeNames: Readonly<Record<number, string>> | undefined;
/** `DT_*` name of a DataType number, as proto-loader's `enums: String` gives it (the number when unknown). */
function dtypeName(n: number): string {
  dtypeNames ??= servingRoot().lookupEnum("tensorflow.DataType").valuesById;
  return dtypeNames[n] ?? (n as unknown as string);
}

// Wire types.
const VARINT = 0;
const LEN = 2;
const I32 = 5;

/** Thrown for bytes that are not a valid message of the expected type. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

function expectWire(field: string, got: number, want: number): void {
  if (got !== want) throw new WireError(`field ${field} has wire type ${got}; expected ${want}`);
}

/** End offset of a length-delimited field whose length the reader is at. */
function end(r: protobuf.Reader): number {
  const len = r.uint32();
  const e = r.pos + len;
  if (e > r.len) throw new WireError(`length ${len} at offset ${r.pos} runs past the end of the message`);
  return e;
}

/** Checks that a nested message ended exactly where its length said. */
function closed(r: protobuf.Reader, e: number, what: string): void {
  if (r.pos !== e) throw new WireError(`${what} overruns its length`);
}

function int64String(v: number | protobuf.Long): string {
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- protobufjs types Long without toString; at run time it is long.js's Long, which has one
  return typeof v === "number" ? String(v) : v.toString();
}

/** Reads a length-delimited run of little-endian float32s into a new (or viewed) Float32Array. */
function floatsFrom(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) throw new WireError(`packed float field of ${bytes.byteLength} bytes is not a multiple of 4`);
  const n = bytes.byteLength / 4;
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
  }
  return out;
}

/** Appends a repeated scalar field, packed (wire type 2) or not (one element). */
function repeated<T>(r: protobuf.Reader, wire: number, elementWire: number, field: string, read: () => T, into: T[]): void {
  if (wire === LEN) {
    const e = end(r);
    while (r.pos < e) into.push(read());
    if (r.pos !== e) throw new WireError(`packed field ${field} overruns its length`);
  } else {
    expectWire(field, wire, elementWire);
    into.push(read());
  }
}

function decodeShape(r: protobuf.Reader, e: number): NonNullable<TensorProtoObject["tensor_shape"]> {
  const dim: { size: string; name: string }[] = [];
  let unknownRank = false;
  while (r.pos < e) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 2: {
        expectWire("tensor_shape.dim", wire, LEN);
        const de = end(r);
        const d = { size: "0", name: "" };
        while (r.pos < de) {
          const t = r.uint32();
          if (t >>> 3 === 1) {
            expectWire("dim.size", t & 7, VARINT);
            d.size = int64String(r.int64());
          } else if (t >>> 3 === 2) {
            expectWire("dim.name", t & 7, LEN);
            d.name = r.string();
          } else r.skipType(t & 7);
        }
        closed(r, de, "tensor_shape.dim");
        dim.push(d);
        break;
      }
      case 3:
        expectWire("tensor_shape.unknown_rank", wire, VARINT);
        unknownRank = r.bool();
        break;
      default:
        r.skipType(wire);
    }
  }
  closed(r, e, "tensor_shape");
  return { dim, unknown_rank: unknownRank };
}

/**
 * One TensorProto. Fields Predict reads (dtype, shape, tensor_content, and the value
 * fields of the dtypes we serve); the others are skipped, which is what the server did
 * with them anyway (`fromTensorProto` rejects those dtypes).
 */
function decodeTensor(r: protobuf.Reader, e: number): TensorProtoObject {
  const t: TensorProtoObject = {};
  // float_val may come packed (the norm) or one element per tag, even mixed: keep order.
  let floatRuns: Float32Array[] | undefined;
  let unpacked: number[] | undefined;
  while (r.pos < e) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: {
        expectWire("dtype", wire, VARINT);
        t.dtype = dtypeName(r.int32());
        break;
      }
      case 2:
        expectWire("tensor_shape", wire, LEN);
        t.tensor_shape = decodeShape(r, end(r));
        break;
      case 4: {
        expectWire("tensor_content", wire, LEN);
        t.tensor_content = r.bytes() as Buffer;
        break;
      }
      case 5:
        if (wire === LEN) {
          const fe = end(r);
          if (unpacked) (floatRuns ??= []).push(Float32Array.from(unpacked.splice(0)));
          (floatRuns ??= []).push(floatsFrom(r.buf.subarray(r.pos, fe)));
          r.pos = fe;
        } else {
          expectWire("float_val", wire, I32);
          (unpacked ??= []).push(r.float());
        }
        break;
      case 7:
        repeated(r, wire, VARINT, "int_val", () => r.int32(), (t.int_val ??= []));
        break;
      case 8:
        expectWire("string_val", wire, LEN);
        (t.string_val ??= []).push(r.bytes() as Buffer);
        break;
      case 11:
        repeated(r, wire, VARINT, "bool_val", () => r.bool(), (t.bool_val ??= []));
        break;
      default:
        if (wire === 6 || wire === 7) throw new WireError(`invalid wire type ${wire}`);
        r.skipType(wire);
    }
  }
  closed(r, e, "a TensorProto");
  if (unpacked?.length) (floatRuns ??= []).push(Float32Array.from(unpacked));
  if (floatRuns) {
    if (floatRuns.length === 1) t.float_val = floatRuns[0]!;
    else {
      const out = new Float32Array(floatRuns.reduce((s, a) => s + a.length, 0));
      let off = 0;
      for (const a of floatRuns) {
        out.set(a, off);
        off += a.length;
      }
      t.float_val = out;
    }
  }
  return t;
}

function decodeModelSpec(r: protobuf.Reader, e: number): ModelSpecObject {
  const spec: ModelSpecObject = { name: "", version: null, version_label: "", signature_name: "" };
  while (r.pos < e) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        expectWire("model_spec.name", wire, LEN);
        spec.name = r.string();
        break;
      case 2: {
        expectWire("model_spec.version", wire, LEN);
        const ve = end(r);
        let value = "0";
        while (r.pos < ve) {
          const t = r.uint32();
          if (t >>> 3 === 1) {
            expectWire("version.value", t & 7, VARINT);
            value = int64String(r.int64());
          } else r.skipType(t & 7);
        }
        closed(r, ve, "model_spec.version");
        // A oneof: the member seen last wins.
        spec.version = { value };
        spec.version_label = "";
        spec.version_choice = "version";
        break;
      }
      case 3:
        expectWire("model_spec.signature_name", wire, LEN);
        spec.signature_name = r.string();
        break;
      case 4:
        expectWire("model_spec.version_label", wire, LEN);
        spec.version_label = r.string();
        spec.version = null;
        spec.version_choice = "version_label";
        break;
      default:
        r.skipType(wire);
    }
  }
  closed(r, e, "model_spec");
  return spec;
}

/**
 * Decodes `tensorflow.serving.PredictRequest` bytes. Throws {@link WireError} (or
 * protobufjs's RangeError for a truncated varint) for bytes that are not one.
 */
export function decodePredictRequest(bytes: Uint8Array): PredictRequest {
  const r = protobuf.Reader.create(bytes);
  const req: PredictRequest = { model_spec: null, inputs: {}, output_filter: [] };
  while (r.pos < r.len) {
    const tag = r.uint32();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        expectWire("model_spec", wire, LEN);
        req.model_spec = decodeModelSpec(r, end(r));
        break;
      case 2: {
        expectWire("inputs", wire, LEN);
        const me = end(r);
        let key = "";
        let value: TensorProtoObject = {};
        while (r.pos < me) {
          const t = r.uint32();
          if (t >>> 3 === 1) {
            expectWire("inputs.key", t & 7, LEN);
            key = r.string();
          } else if (t >>> 3 === 2) {
            expectWire("inputs.value", t & 7, LEN);
            value = decodeTensor(r, end(r));
          } else r.skipType(t & 7);
        }
        closed(r, me, "an inputs entry");
        req.inputs![key] = value;
        break;
      }
      case 3:
        expectWire("output_filter", wire, LEN);
        req.output_filter!.push(r.string());
        break;
      default:
        if (wire === 6 || wire === 7) throw new WireError(`invalid wire type ${wire}`);
        r.skipType(wire);
    }
  }
  if (r.pos !== r.len) throw new WireError("the message overruns its length");
  return req;
}

/** What the Predict handler answers: outputs still as host tensors, encoded on the way out. */
export interface PredictAnswer {
  readonly modelName: string;
  readonly version: number;
  readonly signatureName: string;
  readonly outputs: Readonly<Record<string, HostTensor>>;
}

function encodeTensor(w: protobuf.Writer, t: HostTensor): void {
  w.uint32((1 << 3) | VARINT).int32(DT_OF_HOST[t.dtype]);
  w.uint32((2 << 3) | LEN).fork();
  for (const d of t.shape) {
    w.uint32((2 << 3) | LEN).fork();
    if (d !== 0) w.uint32((1 << 3) | VARINT).int64(d);
    w.ldelim();
  }
  w.ldelim();
  const n = t.values.length;
  if (n === 0) return;
  switch (t.dtype) {
    case "float32": {
      const v = t.values as Float32Array;
      let bytes: Uint8Array;
      if (LITTLE_ENDIAN) bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      else {
        bytes = new Uint8Array(v.byteLength);
        const dv = new DataView(bytes.buffer);
        for (let i = 0; i < n; i++) dv.setFloat32(i * 4, v[i]!, true);
      }
      // A packed repeated float is exactly its little-endian bytes, length-delimited.
      w.uint32((5 << 3) | LEN).bytes(bytes);
      break;
    }
    case "int32": {
      const v = t.values as Int32Array;
      w.uint32((7 << 3) | LEN).fork();
      for (let i = 0; i < n; i++) w.int32(v[i]!);
      w.ldelim();
      break;
    }
    case "bool": {
      const v = t.values as Uint8Array;
      w.uint32((11 << 3) | LEN).fork();
      for (let i = 0; i < n; i++) w.bool(v[i] !== 0);
      w.ldelim();
      break;
    }
    case "string":
      for (const s of t.values as Uint8Array[]) w.uint32((8 << 3) | LEN).bytes(s);
      break;
  }
}

/** Encodes a PredictResponse (typed value fields, as TF Serving answers) into a Buffer for grpc-js. */
export function encodePredictResponse(a: PredictAnswer): Buffer {
  const w = protobuf.Writer.create();
  for (const [name, t] of Object.entries(a.outputs)) {
    w.uint32((1 << 3) | LEN).fork();
    w.uint32((1 << 3) | LEN).string(name);
    w.uint32((2 << 3) | LEN).fork();
    encodeTensor(w, t);
    w.ldelim();
    w.ldelim();
  }
  w.uint32((2 << 3) | LEN).fork();
  if (a.modelName !== "") w.uint32((1 << 3) | LEN).string(a.modelName);
  w.uint32((2 << 3) | LEN).fork();
  if (a.version !== 0) w.uint32((1 << 3) | VARINT).int64(a.version);
  w.ldelim();
  if (a.signatureName !== "") w.uint32((3 << 3) | LEN).string(a.signatureName);
  w.ldelim();
  const out = w.finish();
  return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
