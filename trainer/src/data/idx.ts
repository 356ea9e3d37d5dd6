/**
 * Reader and writer for the IDX format of the MNIST and Fashion-MNIST files:
 *
 *   bytes 0–1  zero
 *   byte  2    element type (0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
 *   byte  3    number of dimensions n
 *   4·n bytes  the sizes of the dimensions, big-endian uint32
 *   then       the elements, big-endian, row-major
 *
 * Gzip-compressed files (`*.gz`, as Debian's dataset packages ship them) are recognised by
 * their magic bytes and inflated first.
 */
import { gunzipSync } from "node:zlib";
import { DataError, describeError } from "../errors";

export type IdxElementType = "uint8" | "int8" | "int16" | "int32" | "float32" | "float64";

const TYPE_CODES: Readonly<Record<number, { type: IdxElementType; size: number }>> = {
  0x08: { type: "uint8", size: 1 },
  0x09: { type: "int8", size: 1 },
  0x0b: { type: "int16", size: 2 },
  0x0c: { type: "int32", size: 4 },
  0x0d: { type: "float32", size: 4 },
  0x0e: { type: "float64", size: 8 },
};

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  readonly type: IdxElementType;
  /** Sizes of the dimensions, e.g. `[60000, 28, 28]` for images, `[60000]` for labels. */
  readonly dims: readonly number[];
  /** The elements in row-major order, `dims` multiplied together long. */
  readonly data: IdxData;
}

/** Thrown for a file that is not valid IDX; the message names the file. */
export class IdxFormatError extends DataError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: not a valid IDX file: ${problem}`);
  }
}

function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/**
 * Parses an IDX file already in memory. `file` names it in error messages (a path or URL).
 * Truncated data, trailing bytes, an unknown type code or a bad magic number throw
 * {@link IdxFormatError}.
 */
export function parseIdx(buf: Uint8Array, file: string): IdxArray {
  if (isGzip(buf)) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new IdxFormatError(file, `gzip data is corrupt or truncated (${describeError(e)})`);
    }
  }
  if (buf.length < 4) throw new IdxFormatError(file, `only ${buf.length} bytes, shorter than the 4-byte header`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    const magic = Array.from(buf.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
    throw new IdxFormatError(file, `bad magic number 0x${magic} (must start with 0x0000)`);
  }
  const code = TYPE_CODES[buf[2]!];
  if (!code) throw new IdxFormatError(file, `unknown element type 0x${buf[2]!.toString(16).padStart(2, "0")}`);
  const ndims = buf[3]!;
  if (ndims === 0) throw new IdxFormatError(file, "zero dimensions");
  const headerSize = 4 + 4 * ndims;
  if (buf.length < headerSize) {
    throw new IdxFormatError(file, `truncated header: ${ndims} dimensions need ${headerSize} bytes, file has ${buf.length}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const expected = headerSize + count * code.size;
  if (buf.length < expected) {
    throw new IdxFormatError(file, `truncated: dimensions [${dims.join(", ")}] need ${expected} bytes, file has ${buf.length}`);
  }
  if (buf.length > expected) {
    throw new IdxFormatError(file, `${buf.length - expected} unexpected bytes after the data of dimensions [${dims.join(", ")}]`);
  }
  return { type: code.type, dims, data: readElements(view, headerSize, count, code.type) };
}

function readElements(view: DataView, offset: number, count: number, type: IdxElementType): IdxData {
  switch (type) {
    case "uint8":
      return new Uint8Array(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + count));
    case "int8":
      return new Int8Array(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + count));
    case "int16": {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case "int32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case "float32": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case "float64": {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

/** Encodes unsigned bytes as an IDX file (type 0x08): used by tests and data tools. */
export function encodeIdxUint8(dims: readonly number[], data: Uint8Array): Buffer {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`dims [${dims.join(", ")}] hold ${count} elements, data has ${data.length}`);
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}
