/**
 * Publishing an exported version (a directory with model.json, weights, metadata.json) as
 * the next free integer version under `<model-base>/<name>/`, where model servers watch.
 *
 * A server treats a version as present once `model.json` and `metadata.json` both exist
 * (serve/storage.ts), so a reader must never see those before everything else:
 *
 * - Local (or a mounted volume): the files are copied into a hidden temporary directory
 *   beside the versions and renamed to the version number, as export/publish.ts does. Two
 *   publishers racing for a number both succeed: the loser's rename fails because the
 *   target exists, and it takes the next number.
 * - S3: there is no rename, so the number is claimed first with a conditional write
 *   (`If-None-Match: *`) of `<version>/.publish.json`, which only one writer can win; the
 *   claim stays (a later publisher working from an older listing fails to claim the number
 *   instead of writing into it). Then every file is uploaded, `metadata.json` last, each
 *   conditionally. A failure removes what was uploaded. A claimed version without
 *   metadata.json (a publisher that died) is never served and its number is not reused.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ExportError, MlpError, UsageError, describeError } from "../errors";
import { nextVersion } from "../export/publish";
import { parseMetadata, type ModelMetadata } from "../metadata";
import { siblingTempName } from "../util/fs";
import { downloadTo, LocalLocation, S3Location, type ErrorFactory } from "./location";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const VERSION_DIR = /^[1-9][0-9]{0,15}$/;
/** The claim object of an S3 version (hidden: the server ignores it). */
export const CLAIM_FILE = ".publish.json";

const exportError: ErrorFactory = (m, cause) => new ExportError(`${m}; nothing was published`, { cause });

/** A version directory ready to publish. */
export interface SourceVersion {
  readonly dir: string;
  /** Relative paths of the files to copy (metadata.json last), hidden files left out. */
  readonly files: string[];
  readonly metadata: ModelMetadata;
}

/**
 * Reads and checks the version at `dir`: model.json (with every weights file it names) and a
 * valid metadata.json. Throws {@link ExportError} naming the file.
 */
export async function readSourceVersion(dir: string): Promise<SourceVersion> {
  const root = path.resolve(dir);
  const st = await fs.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new ExportError(`--from ${root}: not a directory; give a version directory such as <model-base>/<name>/1`);
  const files = (await new LocalLocation(root).list()).filter((f) => !f.split("/").some((p) => p.startsWith(".")));
  for (const f of ["model.json", "metadata.json"]) {
    if (!files.includes(f)) throw new ExportError(`${path.join(root, f)}: not found; --from must be a version directory with model.json and metadata.json`);
  }
  let manifest: { weightsManifest?: { paths?: string[] }[] };
  try {
    manifest = JSON.parse(await fs.readFile(path.join(root, "model.json"), "utf8")) as typeof manifest;
  } catch (e) {
    throw new ExportError(`${path.join(root, "model.json")}: not valid JSON: ${describeError(e)}`);
  }
  for (const group of manifest.weightsManifest ?? []) {
    for (const p of group.paths ?? []) {
      if (!files.includes(path.posix.normalize(p))) throw new ExportError(`${path.join(root, "model.json")}: names weights file ${p}, which is missing from ${root}`);
    }
  }
  let metadata: ModelMetadata;
  const metaFile = path.join(root, "metadata.json");
  try {
    metadata = parseMetadata(metaFile, JSON.parse(await fs.readFile(metaFile, "utf8")));
  } catch (e) {
    throw new ExportError(e instanceof SyntaxError ? `${metaFile}: not valid JSON: ${e.message}` : describeError(e));
  }
  return { dir: root, files: [...files.filter((f) => f !== "metadata.json"), "metadata.json"], metadata };
}

/**
 * Copies the version at `loc` (an S3 prefix such as a sweep trial's `s3://models/sweeps/…/1`)
 * into `dir`, hidden files (the publish claim) left out, so it can be checked and published
 * like a local one. Throws {@link ExportError} when there is nothing there.
 */
export async function downloadVersion(loc: S3Location, dir: string): Promise<string> {
  const files = await downloadTo(loc, dir, (rel) => !rel.split("/").some((p) => p.startsWith(".")));
  if (files.length === 0) throw new ExportError(`--from ${loc.uri}: no objects there; give a version such as s3://<bucket>/<prefix>/<name>/1; nothing was published`);
  return dir;
}

/** metadata.json of the published copy: the source's, with the new name and version. */
export function publishedMetadata(src: ModelMetadata, name: string, version: number): string {
  return JSON.stringify({ ...src, name, version }, null, 2) + "\n";
}

export interface PublishResult {
  readonly version: number;
  /** The version directory (local path or `s3://` URL). */
  readonly uri: string;
  readonly name: string;
}

export interface PublishOptions {
  readonly from: string;
  readonly name: string;
  /** Messages (progress, warnings). */
  readonly log?: (line: string) => void;
  /** Files uploaded in parallel to S3. Default 4. */
  readonly concurrency?: number;
  /** Test hook: called after each S3 upload / before the local rename. */
  readonly onStep?: (what: string) => Promise<void> | void;
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new UsageError(`--name must match ${NAME_RE} (letters, digits, ".", "_", "-"); got ${JSON.stringify(name)}`);
}

/** Publishes into a local (or mounted) model base. */
export async function publishLocal(modelBase: string, opts: PublishOptions): Promise<PublishResult> {
  checkName(opts.name);
  const base = path.resolve(modelBase);
  const src = await readSourceVersion(opts.from);
  // A fresh shared volume has no model base yet: the first publish makes it.
  const made = await fs.mkdir(base, { recursive: true }).catch((e: NodeJS.ErrnoException) => e);
  if (made instanceof Error) {
    throw new ExportError(
      made.code === "EEXIST" || made.code === "ENOTDIR"
        ? `model base ${base} is not a directory; nothing was published`
        : `model base ${base}: cannot create it: ${describeError(made)}; nothing was published`,
    );
  }
  if (made !== undefined) opts.log?.(`created the model base ${base}`);
  const st = await fs.stat(base);
  if (!st.isDirectory()) throw new ExportError(`model base ${base} is not a directory; nothing was published`);
  const modelDir = path.join(base, opts.name);
  const tmp = siblingTempName(path.join(modelDir, "x"), "publish");
  try {
    await fs.mkdir(modelDir, { recursive: true });
    await fs.mkdir(tmp);
    for (const f of src.files) {
      if (f === "metadata.json") continue;
      const target = path.join(tmp, ...f.split("/"));
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.copyFile(path.join(src.dir, ...f.split("/")), target);
    }
    for (let attempt = 0; ; attempt++) {
      const version = await nextVersion(modelDir);
      await fs.writeFile(path.join(tmp, "metadata.json"), publishedMetadata(src.metadata, opts.name, version));
      await opts.onStep?.(`rename ${version}`);
      const dir = path.join(modelDir, String(version));
      try {
        await fs.rename(tmp, dir);
        return { version, uri: dir, name: opts.name };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Another publisher took this number first (rename onto a non-empty directory).
        if ((code === "ENOTEMPTY" || code === "EEXIST") && attempt < 50) continue;
        throw e;
      }
    }
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
    if (e instanceof MlpError) throw e;
    throw new ExportError(`${modelDir}: cannot publish a new version: ${describeError(e)}; nothing was published`, { cause: e });
  }
}

/** Version numbers taken under `s3://…/<name>/`: every version directory holding any object. */
export async function takenS3Versions(base: S3Location, name: string): Promise<number[]> {
  const files = await base.list(name, exportError);
  const taken = new Set<number>();
  for (const f of files) {
    const dir = f.slice(name.length + 1).split("/")[0]!;
    if (VERSION_DIR.test(dir) && f.startsWith(`${name}/`)) taken.add(Number(dir));
  }
  return [...taken].sort((a, b) => a - b);
}

/** Publishes into `s3://bucket/prefix` (see the module comment for how it stays safe). */
export async function publishS3(base: S3Location, opts: PublishOptions): Promise<PublishResult> {
  checkName(opts.name);
  const log = opts.log ?? (() => {});
  const src = await readSourceVersion(opts.from);
  const taken = await takenS3Versions(base, opts.name);
  let version = (taken[taken.length - 1] ?? 0) + 1;
  const claim = JSON.stringify({ host: os.hostname(), pid: process.pid, from: src.dir, startedAt: new Date().toISOString(), id: randomBytes(8).toString("hex") });
  for (let attempt = 0; ; attempt++) {
    if (await base.put(`${opts.name}/${version}/${CLAIM_FILE}`, claim, { ifAbsent: true, contentType: "application/json", make: exportError })) break;
    if (attempt >= 100) throw new ExportError(`${base.locate(opts.name)}: could not claim a free version number after ${attempt + 1} tries; nothing was published`);
    version++;
  }
  const rel = (f: string) => `${opts.name}/${version}/${f}`;
  const uri = base.locate(`${opts.name}/${version}`);
  // A store that ignores If-None-Match would let two publishers claim one number: say so.
  if (await base.put(rel(CLAIM_FILE), claim, { ifAbsent: true, contentType: "application/json", make: exportError })) {
    log(`warning: ${base.options.endpoint ?? "the S3 endpoint"} ignores conditional writes (If-None-Match); concurrent publishes could collide`);
  }
  const uploaded: string[] = [];
  try {
    const files = src.files.filter((f) => f !== "metadata.json");
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++]!;
        if (!(await base.put(rel(f), await fs.readFile(path.join(src.dir, ...f.split("/"))), { ifAbsent: true, make: exportError }))) {
          throw new ExportError(`${base.locate(rel(f))}: written by someone else while publishing version ${version}`);
        }
        uploaded.push(f);
        await opts.onStep?.(`uploaded ${f}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, files.length) }, worker));
    // Last: with metadata.json the version becomes visible to servers.
    if (!(await base.put(rel("metadata.json"), publishedMetadata(src.metadata, opts.name, version), { ifAbsent: true, contentType: "application/json", make: exportError }))) {
      throw new ExportError(`${base.locate(rel("metadata.json"))}: written by someone else while publishing version ${version}`);
    }
    return { version, uri, name: opts.name };
  } catch (e) {
    // Publish nothing: remove what this run uploaded, then the claim (freeing the number).
    for (const f of [...uploaded, CLAIM_FILE]) await base.remove(rel(f)).catch(() => {});
    if (e instanceof ExportError) throw e;
    if (e instanceof MlpError) throw new ExportError(`${e.message}; nothing was published`, { cause: e });
    throw new ExportError(`${uri}: cannot publish: ${describeError(e)}; nothing was published`, { cause: e });
  }
}
