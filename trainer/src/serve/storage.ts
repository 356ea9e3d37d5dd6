/**
 * Where model versions come from. The server only needs to list a model's versions and
 * read files of one version, so a new source (S3, GCS, HTTP) is one small class.
 *
 * Two sources: {@link LocalStorage} (a directory, also NFS/Azure Files/Filestore mounts)
 * and {@link S3Storage} (`s3://bucket/prefix`, Minio or S3).
 *
 * Layout: `<basePath>/<version>/` where `<basePath>` is the model's directory
 * (`<modelBase>/<name>`, TF Serving's `--model_base_path`) and `<version>` a positive
 * integer without leading zeros, holding either a tfjs model per the contract in
 * `../metadata.ts` (`metadata.json`, `model.json`, `*.bin`) or a TensorFlow SavedModel
 * (`saved_model.pb`, `variables/`, optionally `assets/` and a `metadata.json` with labels
 * and preprocessing). Anything else in `<basePath>` (temporary export dirs, `.DS_Store`)
 * is ignored.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { openS3Client, parseS3Uri, resolveS3Options, S3Source, type S3Options } from "../data/source";

export interface ModelStorage {
  /** The source as a user wrote it, for logs and errors. */
  readonly location: string;
  /**
   * Versions ready to load: directories named by a version number that hold both
   * `model.json` and `metadata.json`, or `saved_model.pb` (exports are atomic renames, so
   * a listed version is complete; uploads to S3 put these files last). Ascending. A
   * missing base directory is an empty list, not an error: the trainer may not have
   * published yet.
   */
  listVersions(): Promise<number[]>;
  /** Bytes of `<version>/<file>`; `file` is relative and may not leave the version dir. */
  readFile(version: number, file: string): Promise<Buffer>;
  /** Whether `<version>/<file>` exists. */
  hasFile(version: number, file: string): Promise<boolean>;
  /**
   * The version as a local directory, for loaders that read files themselves (the
   * TensorFlow runtime loading a SavedModel). `release` removes a temporary copy.
   */
  localCopy(version: number): Promise<{ dir: string; release(): Promise<void> }>;
}

/** Files that make a version directory loadable: a tfjs model, or a SavedModel. */
export const TFJS_MARKERS = ["model.json", "metadata.json"] as const;
export const SAVED_MODEL_MARKER = "saved_model.pb";

function complete(files: (f: string) => boolean): boolean {
  return TFJS_MARKERS.every(files) || files(SAVED_MODEL_MARKER);
}

/** Thrown for a source string we cannot serve from, naming the source and the fix. */
export class StorageError extends Error {
  constructor(location: string, problem: string) {
    super(`model source ${location}: ${problem}`);
    this.name = "StorageError";
  }
}

const VERSION_DIR = /^[1-9][0-9]{0,15}$/;

/**
 * Checks that `file` stays inside a version directory (weight paths come from
 * `model.json`, which we do not trust to be well-formed).
 */
export function checkRelativeFile(location: string, file: string): string {
  const norm = path.posix.normalize(file.replace(/\\/g, "/"));
  if (norm === "" || norm === "." || norm.startsWith("../") || norm === ".." || path.posix.isAbsolute(norm)) {
    throw new StorageError(location, `file path ${JSON.stringify(file)} leaves the version directory`);
  }
  return norm;
}

/** A model directory on a local or mounted (NFS, Azure Files, Filestore) file system. */
export class LocalStorage implements ModelStorage {
  constructor(readonly location: string) {}

  async listVersions(): Promise<number[]> {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await fs.readdir(this.location, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const versions: number[] = [];
    for (const e of entries) {
      if (!e.isDirectory() || !VERSION_DIR.test(e.name)) continue;
      const dir = path.join(this.location, e.name);
      const names = [...TFJS_MARKERS, SAVED_MODEL_MARKER];
      const present = await Promise.all(
        names.map((f) =>
          fs.stat(path.join(dir, f)).then(
            (s) => s.isFile(),
            () => false,
          ),
        ),
      );
      if (complete((f) => present[names.indexOf(f as (typeof names)[number])]!)) versions.push(Number(e.name));
    }
    return versions.sort((a, b) => a - b);
  }

  async readFile(version: number, file: string): Promise<Buffer> {
    return fs.readFile(path.join(this.location, String(version), checkRelativeFile(this.location, file)));
  }

  async hasFile(version: number, file: string): Promise<boolean> {
    return fs.stat(path.join(this.location, String(version), checkRelativeFile(this.location, file))).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async localCopy(version: number): Promise<{ dir: string; release(): Promise<void> }> {
    return { dir: path.join(this.location, String(version)), release: async () => {} };
  }
}

type S3Module = typeof import("@aws-sdk/client-s3");

/**
 * A model directory in an S3-compatible store (`s3://bucket/prefix/<name>`, Minio in the
 * platform). One ListObjectsV2 per poll finds the versions; a version counts once both
 * `model.json` and `metadata.json` are there, so publishers upload `metadata.json` last.
 * Endpoint and credentials come from the environment as for the trainer
 * (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...; see `resolveS3Options`).
 */
export class S3Storage implements ModelStorage {
  readonly location: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly objects: S3Source;
  private client?: Promise<{ sdk: S3Module; client: InstanceType<S3Module["S3Client"]> }>;

  constructor(
    uri: string,
    private readonly options: S3Options = resolveS3Options(),
  ) {
    const { bucket, prefix } = parseS3Uri(uri);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
    this.objects = new S3Source(this.location, options);
  }

  private getClient(): Promise<{ sdk: S3Module; client: InstanceType<S3Module["S3Client"]> }> {
    this.client ??= openS3Client(this.options, 30_000);
    return this.client;
  }

  async listVersions(): Promise<number[]> {
    const { sdk, client } = await this.getClient();
    const base = this.prefix ? `${this.prefix}/` : "";
    const files = new Map<string, Set<string>>();
    let token: string | undefined;
    do {
      const out = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }));
      for (const o of out.Contents ?? []) {
        const rest = (o.Key ?? "").slice(base.length);
        const slash = rest.indexOf("/");
        if (slash < 0) continue;
        const dir = rest.slice(0, slash);
        if (!VERSION_DIR.test(dir)) continue;
        let set = files.get(dir);
        if (!set) files.set(dir, (set = new Set()));
        set.add(rest.slice(slash + 1));
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return [...files]
      .filter(([, f]) => complete((n) => f.has(n)))
      .map(([d]) => Number(d))
      .sort((a, b) => a - b);
  }

  async readFile(version: number, file: string): Promise<Buffer> {
    return this.objects.read(`${version}/${checkRelativeFile(this.location, file)}`);
  }

  /** Keys under `<prefix>/<version>/`, relative to it. */
  private async versionFiles(version: number): Promise<string[]> {
    const { sdk, client } = await this.getClient();
    const base = `${this.prefix ? `${this.prefix}/` : ""}${version}/`;
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }));
      for (const o of out.Contents ?? []) if (o.Key && !o.Key.endsWith("/")) keys.push(o.Key.slice(base.length));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  async hasFile(version: number, file: string): Promise<boolean> {
    const want = checkRelativeFile(this.location, file);
    return (await this.versionFiles(version)).includes(want);
  }

  /** Downloads the version into a temporary directory (the runtime reads it once, at load). */
  async localCopy(version: number): Promise<{ dir: string; release(): Promise<void> }> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-serve-s3-"));
    const release = (): Promise<void> => fs.rm(dir, { recursive: true, force: true });
    try {
      for (const rel of await this.versionFiles(version)) {
        const safe = checkRelativeFile(this.location, rel);
        const target = path.join(dir, safe);
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.writeFile(target, await this.readFile(version, safe));
      }
    } catch (e) {
      await release();
      throw e;
    }
    return { dir, release };
  }
}

/** Opens a model source: a local path, a `file://` URL, or `s3://bucket/prefix`. */
export function openStorage(source: string): ModelStorage {
  if (source.startsWith("file://")) return new LocalStorage(new URL(source).pathname);
  if (source.startsWith("s3://")) return new S3Storage(source);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(source)?.[1];
  if (scheme) {
    throw new StorageError(source, `the ${scheme}:// scheme is not supported; use a local or mounted directory, or s3://bucket/prefix`);
  }
  return new LocalStorage(path.resolve(source));
}
