/**
 * Puts a pipeline's dataset into the platform's object store, where its WorkflowTemplate
 * reads it: MNIST IDX files for the `mnist` template (its `dataset` parameter, default
 * s3://data/mnist), or a folder of labelled images for the `retrain` template (its `images`
 * parameter set to the S3 prefix; `mlp retrain` mirrors it before training).
 *
 * Usage: npm run dataset -- mnist [flags]               (tsx scripts/dataset.ts …)
 *        npm run dataset -- images --from DIR [flags]
 *
 *   --from DIR             mnist: IDX files to upload (train-images-idx3-ubyte,
 *                          train-labels-idx1-ubyte, t10k-…; `.gz` too). Default: the 10,000
 *                          digits of the npm `mnist` package, split into --train-examples and
 *                          --test-examples.
 *                          images (required): one sub-folder per label holding its images
 *                          (jpg, jpeg, png, webp, gif, tif, tiff: what retrain reads); at least
 *                          two labels, each with images. Uploaded as PREFIX/<label>/<file>;
 *                          objects already there with the same size and MD5 (ETag) are skipped
 *   --to s3://BUCKET/PREFIX  where (default s3://data/mnist or s3://data/images)
 *   --train-examples N     mnist: default 8000
 *   --test-examples N      mnist: default 2000 (the held-out digits: never trained on)
 *   --endpoint URL         the object store's S3 endpoint as reached from here (default the
 *                          stack's objectStoreEndpoint, which resolves inside the cluster only;
 *                          scripts/up-local.sh prints the local node's forward)
 *   --stack NAME | --outputs-file FILE   the platform stack's outputs (as for `npm run submit`)
 *
 * Credentials: the stack's objectStoreAccessKeyId / objectStoreSecretAccessKey outputs, or
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set. Exit codes: 0 uploaded, 1 failed, 2 bad usage.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { formatBytes } from "../trainer/src/retrain/fetch-base";
import { scanImageFolder } from "../trainer/src/retrain/folder";
import { s3Client } from "./lib/s3";
import { UsageError, readOutputsDocument } from "./submit";

/** Where a dataset goes and how to reach the object store. */
interface StoreOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint?: string;
  readonly stack: string;
  readonly outputsFile?: string;
}

export interface MnistOptions extends StoreOptions {
  /** Optional: the default dataset. */
  readonly kind?: "mnist";
  readonly from?: string;
  readonly trainExamples: number;
  readonly testExamples: number;
}

export interface ImagesOptions extends StoreOptions {
  readonly kind: "images";
  /** The labelled image folder (absolute). */
  readonly from: string;
}

export type DatasetOptions = MnistOptions | ImagesOptions;

/** Each dataset's default --to (where its WorkflowTemplate, or the user's run of it, reads). */
export const DEFAULT_TO = { mnist: "s3://data/mnist", images: "s3://data/images" } as const;

const STORE_USAGE = "[--to s3://BUCKET/PREFIX] [--endpoint URL] [--stack NAME | --outputs-file FILE]";
const USAGE = `usage: npm run dataset -- mnist [--from DIR] [--train-examples N] [--test-examples N]
                              ${STORE_USAGE}
       npm run dataset -- images --from DIR ${STORE_USAGE}
--to defaults: ${Object.entries(DEFAULT_TO)
  .map(([k, v]) => `${k} ${v}`)
  .join(", ")}`;

export function parseDatasetOptions(argv: string[]): DatasetOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        from: { type: "string" },
        to: { type: "string" },
        "train-examples": { type: "string" },
        "test-examples": { type: "string" },
        endpoint: { type: "string" },
        stack: { type: "string" },
        "outputs-file": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]}\n${USAGE}`);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const [kind, ...extra] = parsed.positionals;
  if ((kind !== "mnist" && kind !== "images") || extra.length > 0) {
    throw new UsageError(`expected the dataset name "mnist" or "images"; got ${JSON.stringify(parsed.positionals)}\n${USAGE}`);
  }
  const to = v.to ?? DEFAULT_TO[kind];
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+?)\/?$/.exec(to);
  if (!m) throw new UsageError(`--to must be s3://BUCKET/PREFIX; got ${JSON.stringify(to)}`);
  const count = (flag: string, raw: string | undefined, fallback: number, min: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer ≥ ${min}; got ${JSON.stringify(raw)}`);
    return n;
  };
  if (v.endpoint !== undefined && !/^https?:\/\/[^/]+/.test(v.endpoint)) throw new UsageError(`--endpoint must be an http(s):// URL; got ${JSON.stringify(v.endpoint)}`);
  if (v.stack !== undefined && v["outputs-file"] !== undefined) throw new UsageError("--stack and --outputs-file exclude each other");
  const store: StoreOptions = { bucket: m[1]!, prefix: m[2]!, endpoint: v.endpoint, stack: v.stack ?? "dev", outputsFile: v["outputs-file"] };
  if (kind === "images") {
    for (const flag of ["train-examples", "test-examples"] as const) {
      if (v[flag] !== undefined) throw new UsageError(`--${flag} is for mnist only; images uploads every image under --from`);
    }
    if (v.from === undefined) throw new UsageError(`images needs --from DIR: a folder with one sub-folder of images per label\n${USAGE}`);
    return { kind, ...store, from: path.resolve(v.from) };
  }
  const trainExamples = count("train-examples", v["train-examples"], 8000, 100);
  const testExamples = count("test-examples", v["test-examples"], 2000, 10);
  if (v.from === undefined && trainExamples + testExamples > 10000) {
    throw new UsageError("the mnist package has 10000 digits: --train-examples plus --test-examples must be ≤ 10000");
  }
  return { kind, ...store, from: v.from === undefined ? undefined : path.resolve(v.from), trainExamples, testExamples };
}

/** Object-store endpoint and credentials: flags and AWS_* first, then the stack's outputs. */
async function objectStore(o: StoreOptions): Promise<{ endpoint: string; env: NodeJS.ProcessEnv }> {
  const fromEnv = process.env.AWS_ACCESS_KEY_ID && process.env.AWS_SECRET_ACCESS_KEY;
  if (o.endpoint && fromEnv) return { endpoint: o.endpoint, env: process.env };
  const { doc, where } = await readOutputsDocument(o);
  const out = (doc ?? {}) as Record<string, unknown>;
  const str = (k: string) => {
    const val = out[k];
    if (typeof val !== "string" || !val || val === "[secret]") throw new Error(`${where}: output ${k} is missing or unreadable (is the object store enabled?)`);
    return val;
  };
  return {
    endpoint: o.endpoint ?? str("objectStoreEndpoint"),
    env: fromEnv ? process.env : { ...process.env, AWS_ACCESS_KEY_ID: str("objectStoreAccessKeyId"), AWS_SECRET_ACCESS_KEY: str("objectStoreSecretAccessKey") },
  };
}

export async function uploadMnist(o: MnistOptions, log: (line: string) => void = (l) => console.error(l)): Promise<{ files: string[]; bytes: number }> {
  let dir = o.from;
  let tmp: string | undefined;
  if (!dir) {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-mnist-"));
    dir = tmp;
    const { writeMnistIdx } = await import("../trainer/tests/fixtures/mnist-idx");
    await writeMnistIdx(dir, { train: o.trainExamples, test: o.testExamples });
    log(`dataset: ${o.trainExamples} training and ${o.testExamples} held-out digits of the npm mnist package, as IDX files`);
  }
  try {
    const names = (
      await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`--from ${dir}: ${e.code === "ENOENT" ? "no such directory" : e.message}`);
      })
    ).filter((n) => /^(train|t10k)-(images-idx3|labels-idx1)-ubyte(\.gz)?$/.test(n));
    for (const want of ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]) {
      if (!names.some((n) => n.startsWith(want))) throw new Error(`--from ${dir}: no ${want}[.gz]`);
    }
    const { endpoint, env } = await objectStore(o);
    const s3 = await s3Client(endpoint, env);
    try {
      if (await s3.ensureBucket(o.bucket)) log(`dataset: created bucket ${o.bucket}`);
      let bytes = 0;
      for (const n of names.sort()) {
        const body = await fs.readFile(path.join(dir, n));
        await s3.put(o.bucket, `${o.prefix}/${n}`, body);
        bytes += body.length;
        log(`dataset: s3://${o.bucket}/${o.prefix}/${n} (${(body.length / 1e6).toFixed(1)} MB)`);
      }
      return { files: names.map((n) => `s3://${o.bucket}/${o.prefix}/${n}`), bytes };
    } finally {
      s3.client.destroy();
    }
  } finally {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }
}

const CONTENT_TYPES: Record<string, string> = {
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".tif": "image/tiff",
  ".tiff": "image/tiff",
};

export interface ImagesUpload {
  readonly labels: string[];
  /** Images in the folder, and their bytes. */
  readonly files: number;
  readonly bytes: number;
  /** Uploaded now, and their bytes. */
  readonly uploaded: number;
  readonly uploadedBytes: number;
  /** Already there with the same size and MD5. */
  readonly skipped: number;
  /** Objects under the prefix that are not in the folder (left in place). */
  readonly extra: string[];
}

/**
 * Uploads the labelled image folder `o.from` to `s3://BUCKET/PREFIX/<label>/<file>`, skipping
 * objects already there with the same size and MD5 (the ETag of a single-part upload).
 * Refuses, before connecting, a folder retrain would refuse (fewer than two labels, a label
 * without images). Nothing is deleted: objects under the prefix that are not in the folder
 * are listed in `extra` and reported, since retrain would read them too.
 */
export async function uploadImages(o: ImagesOptions, log: (line: string) => void = (l) => console.error(l), progressEveryMs = 2000): Promise<ImagesUpload> {
  const folder = await scanImageFolder(o.from).catch((e: Error) => {
    throw new Error(`--from ${e.message.startsWith(o.from) ? e.message : `${o.from}: ${e.message}`}`);
  });
  const files = await Promise.all(folder.images.map(async (img) => ({ rel: `${img.label}/${path.basename(img.file)}`, file: img.file, size: (await fs.stat(img.file)).size })));
  const bytes = files.reduce((n, f) => n + f.size, 0);
  const base = `s3://${o.bucket}/${o.prefix}`;
  log(`dataset: ${o.from}: ${folder.labels.length} labels (${folder.labels.join(", ")}), ${files.length} images, ${formatBytes(bytes)}`);

  const { endpoint, env } = await objectStore(o);
  const s3 = await s3Client(endpoint, env);
  try {
    let existing;
    try {
      if (await s3.ensureBucket(o.bucket)) log(`dataset: created bucket ${o.bucket}`);
      existing = await s3.list(o.bucket, `${o.prefix}/`);
    } catch (e) {
      throw new Error(`${base}: ${(e as Error).message}`, { cause: e });
    }
    let done = 0;
    let uploaded = 0;
    let uploadedBytes = 0;
    let skipped = 0;
    let last = performance.now();
    const progress = () => {
      if (done < files.length && performance.now() - last < progressEveryMs) return;
      last = performance.now();
      log(`dataset: ${done} of ${files.length} files (${formatBytes(uploadedBytes)} uploaded, ${skipped} already there)`);
    };
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++]!;
        const key = `${o.prefix}/${f.rel}`;
        const body = await fs.readFile(f.file);
        const md5 = createHash("md5").update(body).digest();
        const there = existing.get(key);
        if (there && there.size === body.length && there.etag === md5.toString("hex")) {
          skipped++;
        } else {
          await s3.put(o.bucket, key, body, { contentType: CONTENT_TYPES[path.extname(f.file).toLowerCase()], md5: md5.toString("base64") });
          uploaded++;
          uploadedBytes += body.length;
        }
        done++;
        progress();
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, files.length) }, worker));
    const ours = new Set(files.map((f) => `${o.prefix}/${f.rel}`));
    const extra = [...existing.keys()].filter((k) => !ours.has(k)).sort();
    if (extra.length) {
      const shown =
        extra
          .slice(0, 5)
          .map((k) => `s3://${o.bucket}/${k}`)
          .join(", ") + (extra.length > 5 ? `, … (${extra.length} in all)` : "");
      log(`dataset: warning: ${extra.length} objects under ${base} are not in ${o.from} and were left in place (retrain reads them too): ${shown}`);
    }
    return { labels: [...folder.labels], files: files.length, bytes, uploaded, uploadedBytes, skipped, extra };
  } finally {
    s3.client.destroy();
  }
}

async function main(argv: string[]): Promise<number> {
  let o;
  try {
    o = parseDatasetOptions(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`dataset: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (o === "help") {
    console.log(USAGE);
    return 0;
  }
  try {
    if (o.kind === "images") {
      const r = await uploadImages(o);
      console.log(
        `s3://${o.bucket}/${o.prefix}: ${r.files} images of ${r.labels.length} labels; uploaded ${r.uploaded} (${formatBytes(r.uploadedBytes)}), ${r.skipped} already there`,
      );
      return 0;
    }
    const r = await uploadMnist(o);
    console.log(`uploaded ${r.files.length} files (${(r.bytes / 1e6).toFixed(1)} MB) to s3://${o.bucket}/${o.prefix}`);
    return 0;
  } catch (e) {
    console.error(`dataset: ${(e as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`dataset: unexpected error: ${(e as Error)?.stack ?? String(e)}`);
      process.exit(1);
    },
  );
}
