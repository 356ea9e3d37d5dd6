/**
 * Bottleneck features (the base model's output at the bottleneck layer) for every image,
 * cached on disk under `<cacheDir>/<baseModelId>/<hh>/<sha256 of the image bytes>.f32`:
 * a second run, or a run with more images, computes only what is new, and a different base
 * model or bottleneck layer never sees another's features.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, describeError } from "../errors";
import { tf } from "../tf";
import { writeFileAtomic } from "../util/fs";
import type { BaseModel } from "./base-model";
import { decodeImage } from "./decode";

export interface BottleneckResult {
  /** One feature vector per input file, in order. */
  readonly features: Float32Array[];
  readonly computed: number;
  readonly cached: number;
}

function cachePath(cacheDir: string, baseId: string, digest: string): string {
  return path.join(cacheDir, baseId, digest.slice(0, 2), `${digest}.f32`);
}

/**
 * Features of `files` from `base.extract`, `batchSize` images per forward pass.
 * `onProgress(done, total)` is called as files are processed.
 */
export async function bottlenecks(
  files: readonly string[],
  base: BaseModel,
  cacheDir: string,
  opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<BottleneckResult> {
  const dim = base.featureShape.reduce((a, b) => a * b, 1);
  const features = new Array<Float32Array>(files.length);
  const pending: { i: number; bytes: Buffer; digest: string }[] = [];
  let cached = 0;
  for (const [i, file] of files.entries()) {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch (e) {
      throw new DataError(`${file}: cannot read: ${describeError(e)}`, { cause: e });
    }
    const digest = createHash("sha256").update(bytes).digest("hex");
    const hit = await fs.readFile(cachePath(cacheDir, base.id, digest)).catch(() => undefined);
    if (hit && hit.length === dim * 4) {
      features[i] = new Float32Array(hit.buffer.slice(hit.byteOffset, hit.byteOffset + hit.length));
      cached++;
      opts.onProgress?.(cached, files.length);
    } else {
      pending.push({ i, bytes, digest });
    }
  }
  const batchSize = opts.batchSize ?? 32;
  const { height, width, channels } = base.spec;
  for (let b = 0; b < pending.length; b += batchSize) {
    const part = pending.slice(b, b + batchSize);
    const pixels = await Promise.all(part.map((p) => decodeImage(p.bytes, files[p.i]!, base.spec)));
    const flat = new Float32Array(part.length * height * width * channels);
    pixels.forEach((px, k) => flat.set(px, k * px.length));
    const out = tf.tidy(() => base.extract(tf.tensor4d(flat, [part.length, height, width, channels])).dataSync() as Float32Array);
    for (const [k, p] of part.entries()) {
      const f = out.slice(k * dim, (k + 1) * dim);
      features[p.i] = f;
      const file = cachePath(cacheDir, base.id, p.digest);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, new Uint8Array(f.buffer));
    }
    opts.onProgress?.(cached + b + part.length, files.length);
  }
  return { features, computed: pending.length, cached };
}
