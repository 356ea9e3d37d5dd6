/**
 * Turning an image file or an IDX sample into the model's input tensor, the way the
 * model's metadata says (size, channels, value range), with sharp doing decode and resize.
 */
import { promises as fs } from "node:fs";
import sharp from "sharp";
import { MlpError } from "../errors";
import { parseIdx } from "../data/idx";
import type { ImagePreprocessing, SignatureSpec, TensorSpec } from "../metadata";
import type { HostTensor } from "../serve/tensor";

/** The input cannot be prepared (file unreadable, sample out of range, model not an image model). */
export class InputError extends MlpError {}

/** 8-bit pixels, row-major, `channels` interleaved. */
export interface Pixels {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

/** Where the pixels go: the preprocessing and the signature input that receives them. */
export interface ImageInput {
  readonly inputName: string;
  readonly spec: TensorSpec;
  readonly preprocessing: ImagePreprocessing;
}

/**
 * The signature's image input and how to fill it: from the model's preprocessing metadata
 * when the server provides it, else from the input's shape ([-1,H,W,C] or [-1,H,W]) with
 * values scaled to [0,1].
 */
export function imageInput(signatureName: string, sig: SignatureSpec, preprocessing: ImagePreprocessing | undefined): ImageInput {
  const names = Object.keys(sig.inputs);
  if (names.length !== 1) throw new InputError(`signature "${signatureName}" has ${names.length} inputs (${names.join(", ")}); an image model has one`);
  const inputName = names[0]!;
  const spec = sig.inputs[inputName]!;
  if (spec.dtype !== "float32") throw new InputError(`input "${inputName}" is ${spec.dtype}; an image input is float32`);
  const s = spec.shape;
  let p = preprocessing;
  if (!p) {
    const [h, w, c] = s.length === 4 ? [s[1]!, s[2]!, s[3]!] : s.length === 3 ? [s[1]!, s[2]!, 1] : [-1, -1, -1];
    if (h < 1 || w < 1 || (c !== 1 && c !== 3)) {
      throw new InputError(`input "${inputName}" has shape [${s.join(",")}] and the server gives no preprocessing metadata; cannot tell the image size`);
    }
    p = { kind: "image", height: h, width: w, channels: c as 1 | 3, range: [0, 1] };
  }
  const elements = s.slice(1).reduce((a, d) => a * d, 1);
  if (s.slice(1).every((d) => d > 0) && elements !== p.height * p.width * p.channels) {
    throw new InputError(`input "${inputName}" of shape [${s.join(",")}] does not hold a ${p.height}×${p.width}×${p.channels} image`);
  }
  return { inputName, spec, preprocessing: p };
}

/**
 * A local input, read and checked before any server is asked: an encoded image (its header
 * readable by sharp) or one IDX sample (index in range) with its true label if a label file
 * was given. Turned into pixels by {@link pixelsOf} once the model's size is known.
 */
export type LocalInput =
  | { readonly kind: "image"; readonly file: string; readonly bytes: Buffer }
  | { readonly kind: "idx"; readonly file: string; readonly rows: number; readonly cols: number; readonly grey: Uint8Array; readonly label?: number };

/** Reads an image file and checks that sharp can decode its header. */
export async function readImageInput(file: string): Promise<LocalInput> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new InputError(`${file}: cannot read: ${(e as Error).message}`);
  }
  try {
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) throw new Error("no image size in the header");
  } catch (e) {
    throw new InputError(`${file}: cannot read the image: ${(e as Error).message}`);
  }
  return { kind: "image", file, bytes };
}

/** Reads sample `index` of an IDX image file ([count, rows, cols] uint8, optionally gzipped), and its label from `labelsFile`. */
export async function readIdxInput(file: string, index: number, labelsFile?: string): Promise<LocalInput> {
  return (await readIdxInputs(file, index, 1, labelsFile))[0]!;
}

/** An IDX file, read and parsed; unreadable files are an {@link InputError} naming them. */
async function readIdx(file: string): Promise<ReturnType<typeof parseIdx>> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (e) {
    throw new InputError(`${file}: cannot read: ${(e as Error).message}`);
  }
  return parseIdx(buf, file);
}

/** Samples `index … index+count-1` of an IDX image file, with their labels when a label file is given (each file read once). */
export async function readIdxInputs(file: string, index: number, count: number, labelsFile?: string): Promise<LocalInput[]> {
  const idx = await readIdx(file);
  if (idx.type !== "uint8" || idx.dims.length !== 3) {
    throw new InputError(`${file}: expected images as [count, rows, cols] of uint8; got [${idx.dims.join(", ")}] of ${idx.type}`);
  }
  const [total, rows, cols] = idx.dims as [number, number, number];
  if (!Number.isInteger(index) || index < 0 || index >= total) throw new InputError(`--index ${index} is out of range: ${file} holds ${total} images (0..${total - 1})`);
  if (index + count > total) throw new InputError(`--index ${index} --count ${count} runs past the end: ${file} holds ${total} images`);
  const labels = labelsFile === undefined ? undefined : await labelsFromIdx(labelsFile, index, count);
  const out: LocalInput[] = [];
  for (let i = 0; i < count; i++) {
    const at = index + i;
    const grey = new Uint8Array((idx.data as Uint8Array).subarray(at * rows * cols, (at + 1) * rows * cols));
    out.push({ kind: "idx", file, rows, cols, grey, label: labels?.[i] });
  }
  return out;
}

/** The input's pixels at the model's size and channels. */
export async function pixelsOf(input: LocalInput, p: ImagePreprocessing): Promise<Pixels> {
  if (input.kind === "image") return decodeImage(input.bytes, input.file, p);
  let data = input.grey;
  if (input.rows !== p.height || input.cols !== p.width) {
    data = new Uint8Array(
      await sharp(Buffer.from(data), { raw: { width: input.cols, height: input.rows, channels: 1 } })
        .resize(p.width, p.height, { fit: "fill" })
        .raw()
        .toBuffer(),
    );
  }
  if (p.channels === 3) {
    const grey = data;
    data = Uint8Array.from({ length: grey.length * 3 }, (_, i) => grey[Math.floor(i / 3)]!);
  }
  return { width: p.width, height: p.height, channels: p.channels, data };
}

/** Decodes any image sharp reads (PNG, JPEG, WebP, ...) and resizes it to the model's size. */
export async function pixelsFromImage(file: string, p: ImagePreprocessing): Promise<Pixels> {
  return decodeImage(file, file, p);
}

async function decodeImage(source: string | Buffer, file: string, p: ImagePreprocessing): Promise<Pixels> {
  let pipeline = sharp(source).resize(p.width, p.height, { fit: "fill" });
  pipeline = p.channels === 1 ? pipeline.greyscale() : pipeline.removeAlpha().toColourspace("srgb");
  let out: { data: Buffer; info: { channels: number } };
  try {
    out = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new InputError(`${file}: cannot read the image: ${(e as Error).message}`);
  }
  let data = new Uint8Array(out.data);
  // sharp may keep an alpha or extra channel; keep the first `channels`.
  if (out.info.channels !== p.channels) {
    const src = data;
    data = new Uint8Array(p.width * p.height * p.channels);
    for (let i = 0; i < p.width * p.height; i++) for (let c = 0; c < p.channels; c++) data[i * p.channels + c] = src[i * out.info.channels + Math.min(c, out.info.channels - 1)]!;
  }
  return { width: p.width, height: p.height, channels: p.channels, data };
}

/** One sample of an IDX image file ([count, rows, cols] uint8, optionally gzipped). */
export async function pixelsFromIdx(file: string, index: number, p: ImagePreprocessing): Promise<Pixels> {
  return pixelsOf(await readIdxInput(file, index), p);
}

/** The label stored for sample `index` in an IDX label file ([count] uint8). */
export async function labelFromIdx(file: string, index: number): Promise<number> {
  return (await labelsFromIdx(file, index, 1))[0]!;
}

/** The labels of samples `index … index+count-1` in an IDX label file ([count] uint8). */
export async function labelsFromIdx(file: string, index: number, count: number): Promise<number[]> {
  const idx = await readIdx(file);
  if (idx.dims.length !== 1 || index + count > idx.dims[0]!) {
    throw new InputError(`${file}: no label for index ${count === 1 ? index : `${index}..${index + count - 1}`}`);
  }
  return Array.from(idx.data.subarray(index, index + count) as Uint8Array);
}

/**
 * Scales 8-bit pixels into the model's range (`[lo, hi]`, optionally inverted for dark
 * digits on light paper) as a [1, ...] tensor of the input's rank.
 */
export function toInputTensor(px: Pixels, input: ImageInput, invert = false): HostTensor {
  const [lo, hi] = input.preprocessing.range;
  const values = new Float32Array(px.data.length);
  for (let i = 0; i < values.length; i++) {
    const v = invert ? 255 - px.data[i]! : px.data[i]!;
    values[i] = lo + (v / 255) * (hi - lo);
  }
  const rank = input.spec.shape.length;
  const shape = rank === 4 ? [1, px.height, px.width, px.channels] : rank === 3 ? [1, px.height, px.width] : [1, values.length];
  return { dtype: "float32", shape, values };
}
