/**
 * Publishing a model version: `<modelBase>/<name>/<version>/` with `model.json`, weight
 * shards, `metadata.json` (see ../metadata.ts) and `labels.txt`.
 *
 * The version directory appears atomically: everything is written into a hidden temporary
 * directory beside it (`.tmp-…`, same file system) and renamed to the next free integer.
 * A server watching `<modelBase>/<name>/` therefore never sees a half-written version, and
 * a failed export publishes nothing. Two exporters racing for the same number both succeed:
 * the loser's rename fails (the target exists and is not empty) and it takes the next number.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { ExportError, describeError } from "../errors";
import { METADATA_FORMAT, parseMetadata, type ModelMetadata } from "../metadata";
import type { LayersModel } from "../tf";
import { siblingTempName } from "../util/fs";

/** Metadata fields the caller supplies; `format`, `name`, `version` and `createdAt` are filled in. */
export type MetadataInput = Omit<ModelMetadata, "format" | "name" | "version" | "createdAt">;

export interface PublishOptions {
  readonly modelBase: string;
  readonly name: string;
  /** A Layers model, or anything else that saves model.json and weights into a `file://` directory. */
  readonly model: Pick<LayersModel, "save"> | { save(url: string): Promise<unknown> };
  readonly metadata: MetadataInput;
  /** Clock for `createdAt` (tests). */
  readonly now?: () => Date;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Version numbers already published under `dir` (integer directory names ≥ 1). */
export async function publishedVersions(dir: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return entries
    .filter((e) => /^[1-9]\d*$/.test(e))
    .map(Number)
    .sort((a, b) => a - b);
}

/** The next free version number under `<modelBase>/<name>`: one more than the highest, or 1. */
export async function nextVersion(modelDir: string): Promise<number> {
  const v = await publishedVersions(modelDir);
  return v.length ? v[v.length - 1]! + 1 : 1;
}

/**
 * Writes the model and its metadata as the next version and returns its number and path.
 * Throws {@link ExportError} (and leaves no version behind) if anything fails.
 */
export async function publishModelVersion(opts: PublishOptions): Promise<{ version: number; dir: string }> {
  if (!NAME_RE.test(opts.name)) {
    throw new ExportError(`model name must match ${NAME_RE} (letters, digits, ".", "_", "-"); got ${JSON.stringify(opts.name)}`);
  }
  const modelDir = path.join(path.resolve(opts.modelBase), opts.name);
  const tmp = siblingTempName(path.join(modelDir, "x"), "publish");
  try {
    await fs.mkdir(modelDir, { recursive: true });
    await opts.model.save(`file://${tmp}`);
    if (opts.metadata.labels) await fs.writeFile(path.join(tmp, "labels.txt"), opts.metadata.labels.join("\n") + "\n");
    for (let attempt = 0; ; attempt++) {
      const version = await nextVersion(modelDir);
      const metadata: ModelMetadata = {
        format: METADATA_FORMAT,
        name: opts.name,
        version,
        createdAt: (opts.now ?? (() => new Date()))().toISOString(),
        ...opts.metadata,
      };
      parseMetadata(path.join(tmp, "metadata.json"), JSON.parse(JSON.stringify(metadata)));
      await fs.writeFile(path.join(tmp, "metadata.json"), JSON.stringify(metadata, null, 2) + "\n");
      const dir = path.join(modelDir, String(version));
      try {
        await fs.rename(tmp, dir);
        return { version, dir };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Someone else published this number first (rename onto a non-empty directory).
        if ((code === "ENOTEMPTY" || code === "EEXIST") && attempt < 20) continue;
        throw e;
      }
    }
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    if (e instanceof ExportError) throw e;
    throw new ExportError(`${modelDir}: cannot publish a new version: ${describeError(e)}`, { cause: e });
  }
}
