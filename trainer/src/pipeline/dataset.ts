/**
 * The pipeline's datasets, as the training commands read them: MNIST-style IDX pairs
 * (`train-*`, `t10k-*`, see data/images.ts) or a folder of labelled images
 * (`<root>/<label>/<image>`, see retrain/folder.ts), in a local directory or under an S3
 * prefix. Image folders in S3 are mirrored to a local directory (pipeline/mirror.ts: a
 * cache that later syncs update incrementally, or a temporary copy) and then read by the
 * same code as local ones, so the training/validation/test assignment is identical.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataError } from "../errors";
import { idxPairNames } from "../data/images";
import { IMAGE_EXTENSIONS, scanImageFolder, type ImageFolder } from "../retrain/folder";
import { type Location, LocalLocation, S3Location } from "./location";
import { describeMirror, mirrorDir, mirrorPrefix, progressLines, type MirrorResult } from "./mirror";

export type DataKind = "idx" | "images";

/** Relative path `<label>/<file>` of an image the folder layout counts. */
export function isFolderImage(rel: string): boolean {
  const parts = rel.split("/");
  return parts.length === 2 && !parts[0]!.startsWith(".") && IMAGE_EXTENSIONS.has(path.extname(parts[1]!).toLowerCase());
}

/**
 * Fails with a message naming the location when it does not exist (local) or holds no
 * objects (S3; a missing bucket or an unreachable endpoint fail here too).
 */
export async function requireDataLocation(loc: Location): Promise<void> {
  if (loc instanceof LocalLocation) {
    const st = await fs.stat(loc.uri).catch((e: NodeJS.ErrnoException) => e);
    if (st instanceof Error) {
      if (st.code === "ENOENT") throw new DataError(`${loc.uri}: data directory does not exist`);
      throw new DataError(`${loc.uri}: cannot read the data directory: ${st.message}`);
    }
    if (!st.isDirectory()) throw new DataError(`${loc.uri}: is a file; --data must be a directory`);
    return;
  }
  const s3 = loc as S3Location;
  const files = await s3.list();
  if (files.length === 0) throw new DataError(`${loc.uri}: no objects under this prefix${s3.where()}`);
}

/** `idx` when the training images (plain or .gz) are there, `images` when label folders are, else an error. */
export async function detectKind(loc: Location, trainPrefix = "train"): Promise<DataKind> {
  const names = idxPairNames(trainPrefix);
  if ((await loc.has(names.images)) || (await loc.has(`${names.images}.gz`))) return "idx";
  const files = await loc.list();
  if (files.some(isFolderImage)) return "images";
  const seen = files.slice(0, 5).join(", ") + (files.length > 5 ? `, … (${files.length} files)` : "");
  throw new DataError(`${loc.uri}: neither IDX files (${names.images}[.gz]) nor label folders (<label>/<image>) found` + (files.length ? `; it holds ${seen}` : "; it is empty"));
}

export interface LocalImageFolderOptions {
  /**
   * For S3: keep the copy as a mirror under this directory ({@link mirrorDir}), updated
   * incrementally by later calls. Default: a temporary copy, removed by `dispose`.
   */
  readonly cacheDir?: string;
  /** Progress and a summary of the sync (S3 only). */
  readonly log?: (line: string) => void;
}

/**
 * An image folder readable by retrain's code: `loc` itself when local, else a local copy of
 * its `<label>/<image>` objects (see {@link LocalImageFolderOptions.cacheDir}; call
 * `dispose` when done). Errors about the copy name the S3 URL, not the local directory.
 */
export async function localImageFolder(
  loc: Location,
  validationPercent: number,
  testPercent: number,
  opts: LocalImageFolderOptions = {},
): Promise<{ folder: ImageFolder; source: string; dispose: () => Promise<void>; sync?: MirrorResult }> {
  if (loc instanceof LocalLocation) {
    return { folder: await scanImageFolder(loc.uri, validationPercent, testPercent), source: loc.uri, dispose: async () => {} };
  }
  const s3 = loc as S3Location;
  const dir = opts.cacheDir ? mirrorDir(opts.cacheDir, s3) : await fs.mkdtemp(path.join(os.tmpdir(), "mlp-images-"));
  const dispose = opts.cacheDir ? async () => {} : () => fs.rm(dir, { recursive: true, force: true });
  try {
    const log = opts.log ?? (() => {});
    const sync = await mirrorPrefix(s3, dir, { filter: isFolderImage, onProgress: progressLines(log, `images ${s3.uri}`) });
    log(`images ${describeMirror(s3.uri, sync)}`);
    const folder = await scanImageFolder(dir, validationPercent, testPercent).catch((e: unknown) => {
      // Name the S3 location, not the local copy.
      if (e instanceof DataError) throw new DataError(e.message.split(dir).join(s3.uri), { cause: e });
      throw e;
    });
    return { folder, source: s3.uri, dispose, sync };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** `file` of a folder image as the user knows it (its S3 URL when the folder was downloaded). */
export function displayPath(folder: ImageFolder, source: string, file: string): string {
  if (folder.root === source) return file;
  return `${source}/${path.relative(folder.root, file).split(path.sep).join("/")}`;
}
