/**
 * Downloading a base model into the shared cache: `<root>/<name>/<sha256>/` holds `model.json`,
 * its weight shards and `base-model.json` (where it came from, how to feed it), and
 * `<root>/<name>/current` names the digest `mlp retrain --base-model <name>` uses.
 *
 * The digest of a model is the sha256 of `model.json` followed by its weight files in
 * manifest order (`cat model.json <shards in order> | sha256sum`). A model is downloaded into
 * a hidden temporary directory beside its cache entry, hashed as it streams, and renamed into
 * place only when the digest is the one expected: a failed or interrupted download, or a
 * digest mismatch, leaves no entry behind, and readers never see a half-written one.
 */
import { createHash, type Hash } from "node:crypto";
import { createWriteStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DigestMismatchError, FetchError, UsageError, describeError } from "../errors";
import { formatDuration } from "../train/progress";
import { exists, siblingTempName, writeFileAtomic } from "../util/fs";
import type { BaseInputSpec } from "./base-catalogue";

/** Default cache root on the shared volume (the pipeline's mount path). */
export const DEFAULT_BASE_MODELS_DIR = "/mnt/shared/base-models";

/** The cache root: `$MLP_BASE_MODELS`, else {@link DEFAULT_BASE_MODELS_DIR}. */
export function baseModelsDir(env: NodeJS.ProcessEnv): string {
  return env.MLP_BASE_MODELS || DEFAULT_BASE_MODELS_DIR;
}

/** Written into every cache entry; its presence marks the entry complete. */
export const BASE_MODEL_FILE = "base-model.json";

/** Contents of {@link BASE_MODEL_FILE}. */
export interface BaseModelRecord {
  readonly name: string;
  readonly url: string;
  readonly sha256: string;
  readonly format: "graph" | "layers";
  /** How to feed it, where model.json does not say (a dynamic input size, the pixel range). */
  readonly input?: Partial<BaseInputSpec>;
  readonly bottleneckLayer?: string;
  readonly bytes: number;
  readonly fetchedAt: string;
}

export interface FetchRequest {
  readonly name: string;
  /** URL of model.json (http or https). */
  readonly url: string;
  /** Expected digest; undefined = the one recorded by an earlier fetch of `name`, else recorded now. */
  readonly sha256?: string;
  /** Declared format; checked against model.json when given. */
  readonly format?: "graph" | "layers";
  readonly input?: Partial<BaseInputSpec>;
  readonly bottleneckLayer?: string;
  readonly root: string;
  readonly log: (line: string) => void;
  /** Minimum time between progress lines. Default 2000 ms. */
  readonly progressEveryMs?: number;
  /** Injectable clock (ms), for tests. */
  readonly now?: () => number;
}

export interface FetchResult {
  readonly name: string;
  readonly sha256: string;
  readonly dir: string;
  /** True when nothing was downloaded (the entry was there). */
  readonly cached: boolean;
  /** True when no digest was given or recorded before: this fetch recorded it. */
  readonly recorded: boolean;
  readonly bytes: number;
}

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/** Checks a model name (a directory name under the cache root). */
export function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new UsageError(`base model name must match ${NAME_RE} (letters, digits, ".", "_", "-"); got ${JSON.stringify(name)}`);
}

/** Checks and normalizes (lower case) a sha256 given on the command line. */
export function checkSha256(sha: string): string {
  const s = sha.toLowerCase().replace(/^sha256:/, "");
  if (!SHA256_RE.test(s)) throw new UsageError(`--sha256 must be 64 hex digits (optionally prefixed sha256:); got ${JSON.stringify(sha)}`);
  return s;
}

const currentFile = (root: string, name: string) => path.join(root, name, "current");

/** The digest recorded for `name` (the last successful fetch), or undefined. */
export async function recordedDigest(root: string, name: string): Promise<string | undefined> {
  const raw = await fs.readFile(currentFile(root, name), "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new FetchError(`${currentFile(root, name)}: cannot read: ${describeError(e)}`, { cause: e });
  });
  if (raw === undefined) return undefined;
  const sha = raw.trim();
  if (!SHA256_RE.test(sha)) throw new FetchError(`${currentFile(root, name)}: does not hold a sha256 (got ${JSON.stringify(raw.slice(0, 80))}); delete it and fetch again`);
  return sha;
}

/** True when `<root>/<name>/<sha>/` is a complete cache entry. */
async function isComplete(dir: string): Promise<boolean> {
  return exists(path.join(dir, BASE_MODEL_FILE));
}

/**
 * Resolves retrain's `--base-model`: a directory holding model.json is used as is; otherwise
 * a name fetched into `root` resolves to its current cache entry.
 */
export async function resolveBaseModel(spec: string, root: string): Promise<string> {
  if (await exists(path.join(spec, "model.json"))) return spec;
  if (NAME_RE.test(spec)) {
    const sha = await recordedDigest(root, spec);
    if (sha) {
      const dir = path.join(root, spec, sha);
      if (await isComplete(dir)) return dir;
      throw new FetchError(`base model ${spec}: ${currentFile(root, spec)} names ${sha}, but ${dir} is not a complete entry; run \`mlp fetch-base --name ${spec}\` again`);
    }
  }
  throw new UsageError(
    `--base-model ${JSON.stringify(spec)} is neither a directory with model.json nor a model fetched into ${root} ` +
      `(no ${currentFile(root, spec)}); fetch it first: mlp fetch-base --name ${spec} --base-models ${root}`,
  );
}

/** Weight files of a model.json, in manifest order; each must be a plain relative path. */
export function weightPaths(where: string, modelJson: unknown): string[] {
  const manifest = (modelJson as { weightsManifest?: unknown }).weightsManifest;
  if (!Array.isArray(manifest)) throw new FetchError(`${where}: model.json has no weightsManifest; is this a tfjs model?`);
  const out: string[] = [];
  for (const group of manifest as { paths?: unknown }[]) {
    if (!Array.isArray(group?.paths)) throw new FetchError(`${where}: a weightsManifest group has no paths`);
    for (const p of group.paths) {
      // The files land in the cache entry: nothing may point outside it.
      if (typeof p !== "string" || p === "" || p.split(/[\\/]/).some((s) => s === ".." || s === "") || path.isAbsolute(p)) {
        throw new FetchError(`${where}: weight path ${JSON.stringify(p)} is not a plain relative file name`);
      }
      out.push(p);
    }
  }
  return out;
}

/** `graph` or `layers`, from model.json's `format` (or its topology when absent). */
export function modelFormat(where: string, modelJson: unknown): "graph" | "layers" {
  const m = modelJson as { format?: unknown; modelTopology?: { node?: unknown; class_name?: unknown; model_config?: unknown } };
  if (m.format === "graph-model") return "graph";
  if (m.format === "layers-model") return "layers";
  if (Array.isArray(m.modelTopology?.node)) return "graph";
  if (m.modelTopology?.class_name !== undefined || m.modelTopology?.model_config !== undefined) return "layers";
  throw new FetchError(`${where}: cannot tell whether model.json is a tfjs graph or layers model (format ${JSON.stringify(m.format)})`);
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2, int16: 2, int8: 1 };

/** Total bytes of the weights a manifest describes, or undefined when it cannot tell (strings). */
export function manifestBytes(modelJson: unknown): number | undefined {
  let total = 0;
  for (const group of (modelJson as { weightsManifest: { weights?: { shape?: number[]; dtype?: string; quantization?: { dtype?: string } }[] }[] }).weightsManifest) {
    for (const w of group.weights ?? []) {
      const size = DTYPE_BYTES[w.quantization?.dtype ?? w.dtype ?? ""];
      if (size === undefined || !Array.isArray(w.shape)) return undefined;
      total += w.shape.reduce((a, b) => a * b, 1) * size;
    }
  }
  return total;
}

/** The URL of `file`, relative to the URL of model.json, keeping model.json's query (TF Hub needs it). */
export function siblingUrl(modelJsonUrl: string, file: string): string {
  const u = new URL(modelJsonUrl);
  const f = new URL(file, u);
  f.search = u.search;
  return f.toString();
}

/** `512 B`, `3.4 kB`, `91.2 MB`. */
export function formatBytes(n: number): string {
  if (n < 1e3) return `${Math.round(n)} B`;
  return n < 1e6 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(1)} MB`;
}
const MB = formatBytes;

/** Bytes-so-far lines at a bounded rate. */
class ByteProgress {
  private done = 0;
  private last: number;
  private readonly t0: number;
  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly log: (line: string) => void,
    private readonly everyMs: number,
    private readonly now: () => number,
  ) {
    this.t0 = now();
    this.last = this.t0;
  }
  add(n: number, file: string): void {
    this.done += n;
    const t = this.now();
    if (t - this.last >= this.everyMs) {
      this.last = t;
      this.log(this.line(file, t));
    }
  }
  private line(file: string, t: number): string {
    const secs = (t - this.t0) / 1000;
    const rate = secs > 0 ? this.done / secs : 0;
    const of = this.total ? ` of ${MB(this.total)} (${((100 * this.done) / this.total).toFixed(0)}%, ETA ${formatDuration((this.total - this.done) / rate)})` : "";
    return `${this.label}: ${MB(this.done)}${of} at ${MB(rate)}/s, ${file}`;
  }
  get bytes(): number {
    return this.done;
  }
}

/** Streams `url` into `file`, feeding `hash`; checks the length against Content-Length. */
async function download(url: string, file: string, hash: Hash, progress: ByteProgress): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (e) {
    throw new FetchError(`GET ${url}: ${describeError((e as { cause?: unknown }).cause ?? e)}`, { cause: e });
  }
  if (!res.ok || !res.body) throw new FetchError(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
  // A compressed response's Content-Length counts compressed bytes; fetch hands over decoded ones.
  const encoding = res.headers.get("content-encoding");
  const expected = encoding && encoding !== "identity" ? null : res.headers.get("content-length");
  const name = path.basename(file);
  let got = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      got += chunk.length;
      progress.add(chunk.length, name);
      done(null, chunk);
    },
  });
  try {
    // pipeline() tears all three down on an error (and waits for the file to close).
    await pipeline(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>), tap, createWriteStream(file, { flags: "wx" }));
  } catch (e) {
    throw new FetchError(`GET ${url}: download interrupted after ${got} bytes${expected ? ` of ${expected}` : ""}: ${describeError((e as { cause?: unknown }).cause ?? e)}`, {
      cause: e,
    });
  }
  if (expected !== null && Number(expected) !== got) throw new FetchError(`GET ${url}: got ${got} bytes, Content-Length said ${expected}`);
}

/** A temporary directory older than this is left over by a killed fetch, not one under way. */
export const STALE_TEMP_MS = 24 * 3600 * 1000;

/** Removes what fetches killed mid-download (SIGKILL, a node gone) left in `nameDir`. */
async function removeStaleTemps(nameDir: string, log: (line: string) => void): Promise<void> {
  for (const entry of await fs.readdir(nameDir)) {
    if (!entry.startsWith(".tmp-fetch-")) continue;
    const dir = path.join(nameDir, entry);
    const stat = await fs.stat(dir).catch(() => undefined);
    if (stat && Date.now() - stat.mtimeMs > STALE_TEMP_MS) {
      await fs.rm(dir, { recursive: true, force: true });
      log(`removed ${dir}, left by an interrupted fetch`);
    }
  }
}

/**
 * Fetches the model at `req.url` into `<root>/<name>/<sha256>/` unless that entry exists.
 * Throws {@link DigestMismatchError} when the content's digest is not the expected one, and
 * {@link FetchError} when the download fails; either way nothing is left in the cache.
 */
export async function fetchBaseModel(req: FetchRequest): Promise<FetchResult> {
  checkName(req.name);
  const nameDir = path.join(req.root, req.name);
  const given = req.sha256 === undefined ? undefined : checkSha256(req.sha256);
  const recorded = await recordedDigest(req.root, req.name);
  const expected = given ?? recorded;
  if (expected) {
    const dir = path.join(nameDir, expected);
    if (await isComplete(dir)) {
      if (recorded !== expected) await writeFileAtomic(currentFile(req.root, req.name), `${expected}\n`);
      req.log(`base model ${req.name} sha256:${expected} is already in ${dir}; nothing to fetch`);
      return { name: req.name, sha256: expected, dir, cached: true, recorded: false, bytes: 0 };
    }
  }
  let protocol: string;
  try {
    protocol = new URL(req.url).protocol;
  } catch {
    throw new UsageError(`--url must be an absolute http(s) URL of a model.json; got ${JSON.stringify(req.url)}`);
  }
  if (protocol !== "http:" && protocol !== "https:") throw new UsageError(`--url must be an http or https URL; got ${JSON.stringify(req.url)}`);

  await fs.mkdir(nameDir, { recursive: true });
  await removeStaleTemps(nameDir, req.log);
  const tmp = siblingTempName(path.join(nameDir, "x"), "fetch");
  await fs.mkdir(tmp);
  try {
    const hash = createHash("sha256");
    req.log(`fetching base model ${req.name} from ${req.url}`);
    // model.json first (small): it lists the weight files and their sizes.
    const head = new ByteProgress(req.name, undefined, () => {}, Infinity, req.now ?? (() => performance.now()));
    await download(req.url, path.join(tmp, "model.json"), hash, head);
    let modelJson: unknown;
    try {
      modelJson = JSON.parse(await fs.readFile(path.join(tmp, "model.json"), "utf8"));
    } catch (e) {
      throw new FetchError(`${req.url}: is not JSON (${describeError(e)}); --url must point at a tfjs model.json`);
    }
    const format = modelFormat(req.url, modelJson);
    if (req.format && req.format !== format) throw new FetchError(`${req.url}: expected a tfjs ${req.format} model, got a ${format} model`);
    const files = weightPaths(req.url, modelJson);
    const weightBytes = manifestBytes(modelJson);
    const progress = new ByteProgress(
      req.name,
      weightBytes === undefined ? undefined : head.bytes + weightBytes,
      req.log,
      req.progressEveryMs ?? 2000,
      req.now ?? (() => performance.now()),
    );
    progress.add(head.bytes, "model.json");
    for (const file of files) {
      await fs.mkdir(path.dirname(path.join(tmp, file)), { recursive: true });
      await download(siblingUrl(req.url, file), path.join(tmp, file), hash, progress);
    }
    const sha256 = hash.digest("hex");
    if (expected && sha256 !== expected) {
      const source = given ? "--sha256" : `the digest recorded by the first fetch (${currentFile(req.root, req.name)})`;
      throw new DigestMismatchError(
        `${req.url}: content sha256 is ${sha256}, but ${source} is ${expected}; nothing was cached. ` +
          (given ? "Check the URL and digest." : "The published model changed: pass --sha256 " + sha256 + " to accept it."),
      );
    }
    const record: BaseModelRecord = {
      name: req.name,
      url: req.url,
      sha256,
      format,
      ...(req.input && { input: req.input }),
      ...(req.bottleneckLayer && { bottleneckLayer: req.bottleneckLayer }),
      bytes: progress.bytes,
      fetchedAt: new Date().toISOString(),
    };
    await fs.writeFile(path.join(tmp, BASE_MODEL_FILE), JSON.stringify(record, null, 2) + "\n");
    const dir = path.join(nameDir, sha256);
    let cached = false;
    try {
      await fs.rename(tmp, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // A concurrent fetch of the same content won the rename: its entry is as good as ours.
      if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !(await isComplete(dir))) throw e;
      cached = true;
    }
    await writeFileAtomic(currentFile(req.root, req.name), `${sha256}\n`);
    req.log(
      `base model ${req.name}: ${MB(progress.bytes)} in ${files.length + 1} files, sha256:${sha256} → ${dir}` +
        (expected ? " (digest verified)" : " (no digest was given or recorded: this one is recorded, and later fetches must match it)"),
    );
    return { name: req.name, sha256, dir, cached, recorded: !expected, bytes: progress.bytes };
  } catch (e) {
    if (e instanceof FetchError || e instanceof UsageError) throw e;
    throw new FetchError(`base model ${req.name}: cannot fetch into ${nameDir}: ${describeError(e)}`, { cause: e });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
