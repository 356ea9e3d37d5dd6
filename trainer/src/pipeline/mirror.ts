/**
 * A local mirror of an S3 prefix, kept in step incrementally: each sync lists the prefix,
 * downloads only the objects whose size or ETag differ from what the mirror's manifest says
 * it holds, and deletes local files whose objects are gone. Retrain reads image folders in
 * S3 this way, so a rerun (or another replica) after a few images were added downloads
 * those few.
 *
 * Interruptions: every file is written to a temporary name beside it and renamed into place
 * when complete (S3Location.download), so an interrupted sync leaves older complete files or
 * none, never a truncated one under the real name; the manifest is written last, and only
 * names what is on disk. Two syncs of one mirror at once (replicas of a TFJob sharing a
 * volume) get the same files as long as the prefix does not change meanwhile: both write
 * complete files by rename, and neither removes the other's temporary files (only ones older
 * than {@link STALE_TEMP_MS}, left by a killed process).
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, SourceError, describeError } from "../errors";
import { formatBytes } from "../retrain/fetch-base";
import { isTempFileName, writeFileAtomic } from "../util/fs";
import type { ObjectInfo, S3Location } from "./location";

/** The manifest at the mirror's root: what each local file was downloaded from. */
export const MIRROR_MANIFEST = ".mlp-mirror.json";

/** Temporary files older than this are a killed sync's leftovers and are removed (1 h). */
export const STALE_TEMP_MS = 3600_000;

interface Manifest {
  readonly uri: string;
  readonly objects: Record<string, { readonly size: number; readonly etag: string }>;
}

export interface MirrorProgress {
  /** Files downloaded so far, of `totalFiles` to download (unchanged ones not counted). */
  readonly files: number;
  readonly totalFiles: number;
  readonly bytes: number;
  readonly totalBytes: number;
}

export interface MirrorOptions {
  /** Which objects (by relative path) to mirror; others are neither downloaded nor kept. Default all. */
  readonly filter?: (rel: string) => boolean;
  /** Downloads at once. Default 8. */
  readonly concurrency?: number;
  /** Told as files and bytes arrive. */
  readonly onProgress?: (p: MirrorProgress) => void;
  /** Clock for the stale-temporary-file rule (tests). Default Date.now. */
  readonly now?: () => number;
}

export interface MirrorResult {
  /** The local directory. */
  readonly dir: string;
  /** Objects mirrored (those the filter accepts). */
  readonly objects: number;
  /** Their total size. */
  readonly totalBytes: number;
  /** Objects downloaded by this sync, and their bytes. */
  readonly downloaded: number;
  readonly bytes: number;
  /** Objects already in the mirror with the same size and ETag. */
  readonly unchanged: number;
  /** Local files removed: their objects are gone (or no longer pass the filter), or a killed sync left them. */
  readonly removed: number;
  /** Objects under the prefix the filter left out. */
  readonly ignored: number;
  readonly seconds: number;
}

/**
 * Where the mirror of `loc` lives under `root`: `<root>/<bucket>/<prefix>`, the prefix one
 * directory name with `/` written `%2F` (so the mirror of `s3://b/x` never contains the
 * mirror of `s3://b/x/y`), and `%` for a whole bucket (a name no prefix encodes to).
 */
export function mirrorDir(root: string, loc: Pick<S3Location, "bucket" | "prefix">): string {
  return path.join(root, loc.bucket, loc.prefix ? encodeURIComponent(loc.prefix) : "%");
}

async function readManifest(dir: string, uri: string): Promise<Manifest["objects"]> {
  try {
    const m = JSON.parse(await fs.readFile(path.join(dir, MIRROR_MANIFEST), "utf8")) as Partial<Manifest>;
    // Anything unexpected (another prefix, a hand-edited file) means: trust no local file.
    if (m.uri === uri && m.objects && typeof m.objects === "object") return { ...m.objects };
  } catch {
    // Missing or unreadable: a first sync.
  }
  return {};
}

/** Relative paths of the files below `dir` (the manifest at its root left out). */
async function localFiles(dir: string): Promise<{ rel: string; mtimeMs: number }[]> {
  const out: { rel: string; mtimeMs: number }[] = [];
  const walk = async (d: string, prefix: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(d, e.name), rel);
      else if (rel !== MIRROR_MANIFEST) out.push({ rel, mtimeMs: (await fs.lstat(path.join(d, e.name))).mtimeMs });
    }
  };
  await walk(dir, "");
  return out;
}

/** Removes the empty directories below `dir` (not `dir` itself). */
async function pruneEmptyDirs(dir: string): Promise<void> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const sub = path.join(dir, e.name);
    await pruneEmptyDirs(sub);
    // Another sync may have just put a file there: then it is not empty and stays.
    await fs.rmdir(sub).catch(() => {});
  }
}

/** The local path of object `rel` under `dir`; refuses names that would land elsewhere or collide. */
function localPath(loc: S3Location, dir: string, rel: string): string {
  const parts = rel.split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..") || rel === MIRROR_MANIFEST || isTempFileName(parts[parts.length - 1]!)) {
    throw new SourceError(`${loc.locate(rel)}: this object name cannot be mirrored to a local file`);
  }
  return path.join(dir, ...parts);
}

/**
 * Brings `dir` in step with the objects under `loc` (see the module comment). Fails naming
 * the S3 URL when the prefix cannot be listed or holds no objects at all, or when a download
 * fails; what was downloaded before the failure is kept and recorded, so a rerun resumes.
 */
export async function mirrorPrefix(loc: S3Location, dir: string, opts: MirrorOptions = {}): Promise<MirrorResult> {
  const t0 = performance.now();
  const now = opts.now ?? Date.now;
  const listed = await loc.listObjects();
  if (listed.length === 0) throw new DataError(`${loc.uri}: no objects under this prefix${loc.where()}`);
  const wanted = listed.filter((o) => opts.filter?.(o.rel) ?? true);
  const targets = new Map(wanted.map((o) => [o.rel, localPath(loc, dir, o.rel)] as const));

  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new SourceError(`${dir}: cannot create the mirror of ${loc.uri}: ${describeError(e)}`, { cause: e });
  }
  const manifest = await readManifest(dir, loc.uri);
  const stale: ObjectInfo[] = [];
  for (const o of wanted) {
    const had = manifest[o.rel];
    const st = await fs.stat(targets.get(o.rel)!).catch(() => undefined);
    if (!had || had.etag !== o.etag || had.size !== o.size || !st?.isFile() || st.size !== o.size) stale.push(o);
  }

  const totalBytes = stale.reduce((n, o) => n + o.size, 0);
  let files = 0;
  let bytes = 0;
  const report = () => opts.onProgress?.({ files, totalFiles: stale.length, bytes, totalBytes });
  let failure: unknown;
  let next = 0;
  const worker = async () => {
    while (failure === undefined && next < stale.length) {
      const o = stale[next++]!;
      const file = targets.get(o.rel)!;
      try {
        // Files are replaced by rename; a directory in the way (the object used to be a prefix) is not.
        const st = await fs.lstat(file).catch(() => undefined);
        if (st?.isDirectory()) await fs.rm(file, { recursive: true, force: true });
        await loc.download(o.rel, file, {
          etag: o.etag || undefined,
          onBytes: (n) => {
            bytes += n;
            report();
          },
        });
      } catch (e) {
        failure ??= e;
        // The old file, if any, is intact; its old manifest entry still describes it.
        return;
      }
      manifest[o.rel] = { size: o.size, etag: o.etag };
      files++;
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 8, stale.length)) }, worker));

  let removed = 0;
  if (failure === undefined) {
    for (const f of await localFiles(dir)) {
      if (targets.has(f.rel)) continue;
      // A temporary file may be another sync's download in progress: only old ones are leftovers.
      if (isTempFileName(path.posix.basename(f.rel)) && now() - f.mtimeMs < STALE_TEMP_MS) continue;
      await fs.rm(path.join(dir, ...f.rel.split("/")), { force: true });
      removed++;
    }
    await pruneEmptyDirs(dir);
  }
  const keep: Manifest["objects"] = {};
  for (const rel of Object.keys(manifest).sort()) if (failure !== undefined || targets.has(rel)) keep[rel] = manifest[rel]!;
  await writeFileAtomic(path.join(dir, MIRROR_MANIFEST), JSON.stringify({ uri: loc.uri, objects: keep } satisfies Manifest) + "\n");
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- the download's own error, rethrown as caught once the manifest is saved
  if (failure !== undefined) throw failure;

  return {
    dir,
    objects: wanted.length,
    totalBytes: wanted.reduce((n, o) => n + o.size, 0),
    downloaded: files,
    bytes,
    unchanged: wanted.length - stale.length,
    removed,
    ignored: listed.length - wanted.length,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * An `onProgress` that logs `<label>: N of M files, X of Y` at most every `everyMs` (and when
 * the last file is in), for logs rather than terminals.
 */
export function progressLines(log: (line: string) => void, label: string, everyMs = 2000, now: () => number = () => performance.now()): (p: MirrorProgress) => void {
  let last = now();
  let lastFiles = -1;
  return (p) => {
    const t = now();
    const done = p.files === p.totalFiles;
    if (done ? p.files === lastFiles : t - last < everyMs) return;
    last = t;
    lastFiles = p.files;
    log(`${label}: ${p.files} of ${p.totalFiles} files, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}`);
  };
}

/** One line saying what a sync did. */
export function describeMirror(uri: string, r: MirrorResult): string {
  return (
    `${uri} → ${r.dir}: ${r.objects} files (${formatBytes(r.totalBytes)}); ${r.downloaded} downloaded (${formatBytes(r.bytes)}), ` +
    `${r.unchanged} unchanged, ${r.removed} removed` +
    (r.ignored ? `, ${r.ignored} other objects ignored` : "") +
    ` in ${r.seconds.toFixed(1)} s`
  );
}
