import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { DataError } from "../src/errors";
import { encodeIdxUint8, IdxFormatError, parseIdx } from "../src/data/idx";

function header(type: number, dims: number[]): Buffer {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = type;
  h[3] = dims.length;
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return h;
}

describe("parseIdx", () => {
  it("reads uint8 images with their dimensions", () => {
    const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const idx = parseIdx(encodeIdxUint8([2, 3, 4], data), "x.idx");
    expect(idx.type).toBe("uint8");
    expect(idx.dims).toEqual([2, 3, 4]);
    expect(Array.from(idx.data)).toEqual(Array.from(data));
  });

  it("reads big-endian int32 and float32 elements", () => {
    const i32 = Buffer.alloc(8);
    i32.writeInt32BE(-5, 0);
    i32.writeInt32BE(70000, 4);
    expect(Array.from(parseIdx(Buffer.concat([header(0x0c, [2]), i32]), "i").data)).toEqual([-5, 70000]);
    const f32 = Buffer.alloc(4);
    f32.writeFloatBE(1.5, 0);
    const f = parseIdx(Buffer.concat([header(0x0d, [1, 1]), f32]), "f");
    expect(f.type).toBe("float32");
    expect(Array.from(f.data)).toEqual([1.5]);
  });

  it("inflates gzip-compressed files", () => {
    const raw = encodeIdxUint8([3], Uint8Array.of(7, 8, 9));
    expect(Array.from(parseIdx(gzipSync(raw), "l.gz").data)).toEqual([7, 8, 9]);
  });

  it("rejects a bad magic number, naming the file", () => {
    const bad = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(16)]);
    expect(() => parseIdx(bad, "/data/train-images-idx3-ubyte")).toThrow(/^\/data\/train-images-idx3-ubyte: not a valid IDX file: bad magic number 0x504b0304/);
  });

  it("rejects an unknown element type", () => {
    expect(() => parseIdx(header(0x07, [1]), "t")).toThrow(/unknown element type 0x07/);
  });

  it("rejects truncated headers and data with sizes in the message", () => {
    expect(() => parseIdx(Buffer.from([0, 0]), "short")).toThrow(/short: .*only 2 bytes/);
    expect(() => parseIdx(header(0x08, [10, 28, 28]).subarray(0, 9), "hdr")).toThrow(/hdr: .*truncated header/);
    const full = encodeIdxUint8([2, 28, 28], new Uint8Array(2 * 784));
    let err: unknown;
    try {
      parseIdx(full.subarray(0, full.length - 100), "s3://data/mnist/train-images-idx3-ubyte");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IdxFormatError);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toBe("s3://data/mnist/train-images-idx3-ubyte: not a valid IDX file: truncated: dimensions [2, 28, 28] need 1584 bytes, file has 1484");
  });

  it("rejects trailing bytes and corrupt gzip", () => {
    expect(() => parseIdx(Buffer.concat([encodeIdxUint8([1], Uint8Array.of(1)), Buffer.from([0])]), "tail")).toThrow(/1 unexpected bytes/);
    const gz = gzipSync(encodeIdxUint8([100], new Uint8Array(100)));
    expect(() => parseIdx(gz.subarray(0, gz.length - 8), "cut.gz")).toThrow(/cut.gz: .*gzip data is corrupt or truncated/);
  });

  it("encodeIdxUint8 checks the element count", () => {
    expect(() => encodeIdxUint8([2, 2], new Uint8Array(3))).toThrow(RangeError);
  });
});
