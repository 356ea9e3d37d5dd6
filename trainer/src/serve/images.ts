/**
 * Encoded images as DT_STRING inputs, as TF Serving's Inception client sends them: a
 * string tensor of JPEG or PNG bytes, one per example (shape `[batch]`, `[batch, 1]` or a
 * scalar for one image), given for a signature input that takes decoded pixels
 * (float32 `[batch, height, width, channels]`). The server decodes and resizes them with
 * sharp, as the model's preprocessing metadata says (size, channels, value range), before
 * the model runs. Bytes that are not a JPEG or PNG image are INVALID_ARGUMENT.
 */
import sharp from "sharp";
import type { ImagePreprocessing, SignatureSpec, TensorSpec } from "../metadata";
import { invalidArgument } from "./errors";
import type { HostTensor } from "./tensor";

/** Largest decoded image, pixels: a bomb (a tiny PNG claiming 100k × 100k) is refused before decoding. */
export const MAX_IMAGE_PIXELS = 64 * 1024 * 1024;

/** Formats an encoded image may have (sharp's names). */
const FORMATS = new Set(["jpeg", "png"]);

/**
 * The preprocessing of each signature input that takes images: float32 of rank 4 whose
 * channel count is 1 or 3. Size and range come from the model's preprocessing metadata
 * when it matches the input; otherwise a fully known shape gives the size and the range
 * is [0, 1]. Inputs without a known size are not image inputs.
 */
export function imageInputs(sig: SignatureSpec, preprocessing: ImagePreprocessing | undefined): Map<string, ImagePreprocessing> {
  const out = new Map<string, ImagePreprocessing>();
  for (const [name, spec] of Object.entries(sig.inputs)) {
    const p = imagePreprocessingFor(spec, preprocessing);
    if (p) out.set(name, p);
  }
  return out;
}

function imagePreprocessingFor(spec: TensorSpec, p: ImagePreprocessing | undefined): ImagePreprocessing | undefined {
  if (spec.dtype !== "float32" || spec.shape.length !== 4) return undefined;
  const [, h, w, c] = spec.shape as [number, number, number, number];
  if (c !== 1 && c !== 3) return undefined;
  const fits = (want: number, have: number): boolean => want < 0 || want === have;
  if (p && p.channels === c && fits(h, p.height) && fits(w, p.width)) return p;
  if (h > 0 && w > 0) return { kind: "image", height: h, width: w, channels: c, range: [0, 1] };
  return undefined;
}

/** How many images a string tensor holds, if its shape is one we accept. */
function imageCount(t: HostTensor): number | undefined {
  const s = t.shape;
  if (s.length === 0) return 1;
  if (s.length === 1) return s[0];
  if (s.length === 2 && s[1] === 1) return s[0];
  return undefined;
}

/** Decodes one encoded image into `out` at `offset`, scaled to the preprocessing's range. */
async function decodeOne(where: string, bytes: Uint8Array, p: ImagePreprocessing, out: Float32Array, offset: number): Promise<void> {
  let raw: Buffer;
  try {
    const img = sharp(bytes, { failOn: "error", limitInputPixels: MAX_IMAGE_PIXELS });
    const meta = await img.metadata();
    if (!meta.format || !FORMATS.has(meta.format)) throw new Error(`the bytes are ${meta.format ?? "not an image"}, not JPEG or PNG`);
    let pipeline = img.rotate().removeAlpha().resize(p.width, p.height, { fit: "fill" });
    pipeline = p.channels === 1 ? pipeline.greyscale() : pipeline.toColourspace("srgb");
    const r = await pipeline.raw().toBuffer({ resolveWithObject: true });
    if (r.info.channels !== p.channels) throw new Error(`decoded to ${r.info.channels} channels; the model takes ${p.channels}`);
    raw = r.data;
  } catch (e) {
    throw invalidArgument(`${where}: cannot decode the image: ${(e as Error).message.split("\n")[0]}`);
  }
  const [lo, hi] = p.range;
  const scale = (hi - lo) / 255;
  for (let i = 0; i < raw.length; i++) out[offset + i] = lo + raw[i]! * scale;
}

/**
 * Replaces string tensors given for image inputs by decoded pixels. Other inputs pass
 * through (a string tensor for a non-image input is left for the signature check to refuse).
 */
export async function decodeImageInputs(
  inputs: Readonly<Record<string, HostTensor>>,
  images: ReadonlyMap<string, ImagePreprocessing>,
  limits: { readonly maxBatch: number; readonly maxElements: number } = { maxBatch: 4096, maxElements: 64 * 1024 * 1024 },
): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = { ...inputs };
  for (const [name, t] of Object.entries(inputs)) {
    const p = images.get(name);
    if (!p || t.dtype !== "string") continue;
    const n = imageCount(t);
    if (n === undefined) {
      throw invalidArgument(`input "${name}": encoded images must be a string tensor of shape [batch] or [batch,1]; got rank ${t.shape.length}`);
    }
    const per = p.height * p.width * p.channels;
    // Checked before decoding: a few bytes of JPEG become height × width × channels floats.
    if (n > limits.maxBatch) throw invalidArgument(`input "${name}": ${n} images exceed the server's batch limit of ${limits.maxBatch}`);
    if (n * per > limits.maxElements) {
      throw invalidArgument(`input "${name}": ${n} images of ${p.height}×${p.width}×${p.channels} exceed the limit of ${limits.maxElements} values per tensor`);
    }
    const values = new Float32Array(n * per);
    const bytes = t.values as Uint8Array[];
    // One at a time: sharp runs on libuv's pool, and a batch decoded at once would take every thread.
    for (let i = 0; i < n; i++) await decodeOne(`input "${name}"[${i}]`, bytes[i]!, p, values, i * per);
    out[name] = { dtype: "float32", shape: [n, p.height, p.width, p.channels], values };
  }
  return out;
}

/** The signature as REST JSON may carry it: image inputs as one encoded string per example. */
export function encodedImageSignature(sig: SignatureSpec, images: ReadonlyMap<string, ImagePreprocessing>): SignatureSpec {
  if (images.size === 0) return sig;
  const inputs: Record<string, TensorSpec> = {};
  for (const [name, spec] of Object.entries(sig.inputs)) inputs[name] = images.has(name) ? { dtype: "string", shape: [-1] } : spec;
  return { ...sig, inputs };
}
