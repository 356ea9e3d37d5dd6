import { promises as fs } from "node:fs";
import sharp from "sharp";
import { DataError, describeError } from "../errors";

/** Size, channels and value range a model expects (as in ImagePreprocessing of metadata.ts). */
export interface ImageSpec {
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3;
  readonly range: readonly [number, number];
}

/**
 * Decodes an image file (any format sharp reads) into `height·width·channels` floats scaled
 * to `spec.range`, resized to fill (aspect ratio not kept, as the models were trained).
 * Throws {@link DataError} naming the file if it cannot be decoded.
 */
export async function decodeImage(bytes: Buffer, file: string, spec: ImageSpec): Promise<Float32Array> {
  let raw: Buffer;
  try {
    let img = sharp(bytes, { failOn: "error" }).rotate().removeAlpha().resize(spec.width, spec.height, { fit: "fill" });
    img = spec.channels === 1 ? img.greyscale() : img.toColourspace("srgb");
    const out = await img.raw().toBuffer({ resolveWithObject: true });
    if (out.info.channels !== spec.channels) throw new Error(`decoded to ${out.info.channels} channels, want ${spec.channels}`);
    raw = out.data;
  } catch (e) {
    throw new DataError(`${file}: cannot decode image: ${describeError(e)}`, { cause: e });
  }
  const [lo, hi] = spec.range;
  const scale = (hi - lo) / 255;
  const px = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) px[i] = lo + raw[i]! * scale;
  return px;
}

/** Reads and decodes `file`. */
export async function readImage(file: string, spec: ImageSpec): Promise<{ bytes: Buffer; pixels: Float32Array }> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read: ${describeError(e)}`, { cause: e });
  }
  return { bytes, pixels: await decodeImage(bytes, file, spec) };
}
