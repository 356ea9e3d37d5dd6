/**
 * Puts the MNIST pipeline's dataset into the platform's object store, where the `mnist`
 * WorkflowTemplate reads it (its `dataset` parameter, default s3://data/mnist).
 *
 * Usage: npm run dataset -- mnist [flags]        (tsx scripts/dataset.ts …)
 *
 *   --from DIR             IDX files to upload (train-images-idx3-ubyte, train-labels-idx1-ubyte,
 *                          t10k-…; `.gz` too). Default: the 10,000 digits of the npm `mnist`
 *                          package, split into --train-examples and --test-examples
 *   --to s3://BUCKET/PREFIX  where (default s3://data/mnist)
 *   --train-examples N     default 8000
 *   --test-examples N      default 2000 (the held-out digits: never trained on)
 *   --endpoint URL         the object store's S3 endpoint as reached from here (default the
 *                          stack's objectStoreEndpoint, which resolves inside the cluster only;
 *                          scripts/up-local.sh prints the local node's forward)
 *   --stack NAME | --outputs-file FILE   the platform stack's outputs (as for `npm run submit`)
 *
 * Credentials: the stack's objectStoreAccessKeyId / objectStoreSecretAccessKey outputs, or
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set. Exit codes: 0 uploaded, 1 failed, 2 bad usage.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { s3Client } from "./lib/s3";
import { UsageError, readOutputsDocument } from "./submit";

export interface DatasetOptions {
  readonly from?: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly trainExamples: number;
  readonly testExamples: number;
  readonly endpoint?: string;
  readonly stack: string;
  readonly outputsFile?: string;
}

const USAGE = `usage: npm run dataset -- mnist [--from DIR] [--to s3://BUCKET/PREFIX] [--train-examples N] [--test-examples N]
                              [--endpoint URL] [--stack NAME | --outputs-file FILE]`;

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
  if (kind !== "mnist" || extra.length > 0) throw new UsageError(`expected the dataset name "mnist"; got ${JSON.stringify(parsed.positionals)}\n${USAGE}`);
  const to = v.to ?? "s3://data/mnist";
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+?)\/?$/.exec(to);
  if (!m) throw new UsageError(`--to must be s3://BUCKET/PREFIX; got ${JSON.stringify(to)}`);
  const count = (flag: string, raw: string | undefined, fallback: number, min: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer ≥ ${min}; got ${JSON.stringify(raw)}`);
    return n;
  };
  const trainExamples = count("train-examples", v["train-examples"], 8000, 100);
  const testExamples = count("test-examples", v["test-examples"], 2000, 10);
  if (v.from === undefined && trainExamples + testExamples > 10000) {
    throw new UsageError("the mnist package has 10000 digits: --train-examples plus --test-examples must be ≤ 10000");
  }
  if (v.endpoint !== undefined && !/^https?:\/\/[^/]+/.test(v.endpoint)) throw new UsageError(`--endpoint must be an http(s):// URL; got ${JSON.stringify(v.endpoint)}`);
  if (v.stack !== undefined && v["outputs-file"] !== undefined) throw new UsageError("--stack and --outputs-file exclude each other");
  return {
    from: v.from === undefined ? undefined : path.resolve(v.from),
    bucket: m[1]!,
    prefix: m[2]!,
    trainExamples,
    testExamples,
    endpoint: v.endpoint,
    stack: v.stack ?? "dev",
    outputsFile: v["outputs-file"],
  };
}

/** Object-store endpoint and credentials: flags and AWS_* first, then the stack's outputs. */
async function objectStore(o: DatasetOptions): Promise<{ endpoint: string; env: NodeJS.ProcessEnv }> {
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

export async function uploadMnist(o: DatasetOptions, log: (line: string) => void = (l) => console.error(l)): Promise<{ files: string[]; bytes: number }> {
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
    const names = (await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`--from ${dir}: ${e.code === "ENOENT" ? "no such directory" : e.message}`);
    })).filter((n) => /^(train|t10k)-(images-idx3|labels-idx1)-ubyte(\.gz)?$/.test(n));
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
