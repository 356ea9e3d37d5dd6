/**
 * A place the pipeline steps read from and write to: a local (or mounted) directory, or an
 * S3 prefix (`s3://bucket/prefix`, the platform's MinIO). Unlike `data/source.ts`, which only
 * reads named files, the pipeline also lists (image folders, model versions), writes
 * (publishing) and claims names with a conditional write.
 *
 * Every error message names the full path or URL and, for S3, the endpoint.
 */
import { createWriteStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DataFileNotFoundError, openS3Client, parseS3Uri, type S3Options } from "../data/source";
import { MlpError, SourceError, UsageError, describeError } from "../errors";
import { tempFileBeside } from "../util/fs";

/** Makes the error thrown for a failed operation (callers pick the class: reading vs publishing). */
export type ErrorFactory = (message: string, cause: unknown) => MlpError;

const sourceError: ErrorFactory = (m, cause) => new SourceError(m, { cause });

export interface Location {
  /** `/abs/dir` or `s3://bucket/prefix`. */
  readonly uri: string;
  /** Full path or URL of `rel`. */
  locate(rel: string): string;
  /** Relative paths (`/`-separated) of every file below, sorted; hidden path parts are kept. */
  list(rel?: string): Promise<string[]>;
  /** True if the file `rel` exists. */
  has(rel: string): Promise<boolean>;
  /** Whole file. Throws {@link DataFileNotFoundError} when missing. */
  read(rel: string): Promise<Buffer>;
}

/** A directory on the local file system (or a mounted shared volume). */
export class LocalLocation implements Location {
  readonly uri: string;
  constructor(dir: string) {
    this.uri = path.resolve(dir);
  }

  locate(rel: string): string {
    return path.join(this.uri, rel);
  }

  async list(rel = ""): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let entries: import("node:fs").Dirent[];
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (e) {
        // A missing directory lists as empty; callers that need it to exist check first.
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw new SourceError(`${dir}: cannot list: ${describeError(e)}`, { cause: e });
      }
      for (const e of entries) {
        const r = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(path.join(dir, e.name), r);
        else if (e.isFile()) out.push(r);
      }
    };
    await walk(path.join(this.uri, rel), rel.replace(/\/+$/, ""));
    return out.sort();
  }

  async has(rel: string): Promise<boolean> {
    return fs.stat(this.locate(rel)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async read(rel: string): Promise<Buffer> {
    const file = this.locate(rel);
    try {
      return await fs.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new DataFileNotFoundError(file);
      throw new SourceError(`${file}: cannot read: ${describeError(e)}`, { cause: e });
    }
  }
}

type S3Module = typeof import("@aws-sdk/client-s3");

/** Errors that mean the endpoint was not reached at all. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"]);

/** What an S3 SDK error means, for messages. */
export function classifyS3Error(e: unknown): "network" | "no-bucket" | "not-found" | "denied" | "precondition" | "other" {
  const err = e as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  if (err.name === "NoSuchBucket") return "no-bucket";
  if (err.name === "NoSuchKey" || err.name === "NotFound" || status === 404) return "not-found";
  if (err.name === "PreconditionFailed" || status === 412) return "precondition";
  if (["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"].includes(err.name ?? "") || status === 403) return "denied";
  if (NETWORK_CODES.has(err.code ?? "") || err.name === "TimeoutError" || /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|socket hang up/.test(String((e as Error)?.message))) {
    return "network";
  }
  return "other";
}

/** One object below an {@link S3Location}, as a listing reports it. */
export interface ObjectInfo {
  /** Relative path (`/`-separated) below the location. */
  readonly rel: string;
  readonly size: number;
  /** The ETag without its quotes (an MD5 for single-part uploads; changes whenever the content does). */
  readonly etag: string;
}

/** Objects under an S3 prefix. The SDK is loaded on first use. */
export class S3Location implements Location {
  readonly uri: string;
  readonly bucket: string;
  readonly prefix: string;
  private client?: Promise<{ sdk: S3Module; client: InstanceType<S3Module["S3Client"]> }>;

  constructor(
    uri: string,
    readonly options: S3Options,
  ) {
    const { bucket, prefix } = parseS3Uri(uri);
    this.bucket = bucket;
    this.prefix = prefix;
    this.uri = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  }

  /** A location for `<this>/<rel>` sharing the options. */
  child(rel: string): S3Location {
    return new S3Location(`${this.uri}/${rel.replace(/^\/+|\/+$/g, "")}`, this.options);
  }

  key(rel: string): string {
    const r = rel.replace(/^\/+/, "");
    return this.prefix ? (r ? `${this.prefix}/${r}` : this.prefix) : r;
  }

  locate(rel: string): string {
    return `s3://${this.bucket}/${this.key(rel)}`;
  }

  /** ` at <endpoint>` (or nothing for AWS itself), for messages. */
  where(): string {
    return this.options.endpoint ? ` at ${this.options.endpoint}` : "";
  }

  private getClient() {
    this.client ??= openS3Client(this.options, 120_000);
    return this.client;
  }

  /** Turns an SDK error for `url` into an MlpError saying what failed, where, and why. */
  fail(e: unknown, what: string, url: string, make: ErrorFactory = sourceError): MlpError {
    if (e instanceof MlpError) return e;
    switch (classifyS3Error(e)) {
      case "no-bucket":
        return make(`${url}: bucket ${this.bucket} does not exist${this.where()}`, e);
      case "not-found":
        return new DataFileNotFoundError(url, `not found${this.where()}`);
      case "denied":
        return make(`${url}: access denied${this.where()} (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): ${describeError(e)}`, e);
      case "network":
        return make(`${url}: cannot reach S3${this.where() || " (no endpoint set: AWS)"}: ${describeError(e)}`, e);
      default:
        return make(`${url}: cannot ${what}${this.where()}: ${describeError(e)}`, e);
    }
  }

  async list(rel = "", make?: ErrorFactory): Promise<string[]> {
    return (await this.listObjects(rel, make)).map((o) => o.rel);
  }

  /** Every object below `rel` (all pages of ListObjectsV2) with its size and ETag, sorted by path; "directory" markers left out. */
  async listObjects(rel = "", make?: ErrorFactory): Promise<ObjectInfo[]> {
    const { sdk, client } = await this.getClient();
    const base = this.key(rel);
    const listPrefix = base ? `${base.replace(/\/+$/, "")}/` : "";
    const strip = this.prefix ? `${this.prefix}/` : "";
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: listPrefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) {
          if (o.Key && !o.Key.endsWith("/")) out.push({ rel: o.Key.slice(strip.length), size: o.Size ?? 0, etag: (o.ETag ?? "").replace(/"/g, "") });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      throw this.fail(e, "list", this.locate(rel), make);
    }
    return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  }

  async has(rel: string): Promise<boolean> {
    const { sdk, client } = await this.getClient();
    try {
      await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      return true;
    } catch (e) {
      const kind = classifyS3Error(e);
      // HEAD has no body, so a missing bucket shows as a bare 404 too: tell them apart by listing.
      if (kind === "not-found") {
        await this.list(path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel));
        return false;
      }
      throw this.fail(e, "read", this.locate(rel));
    }
  }

  async read(rel: string): Promise<Buffer> {
    const { sdk, client } = await this.getClient();
    const url = this.locate(rel);
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      if (!out.Body) throw new SourceError(`${url}${this.where()}: empty response body`);
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (e) {
      throw this.fail(e, "read", url);
    }
  }

  /**
   * Streams the object `rel` into the local `file` through a temporary file beside it and a
   * rename, so `file` holds either what it held before or the whole object, never part of it
   * (the temporary file is removed when the download fails). With `etag` the read is
   * conditional (`If-Match`): an object replaced since it was listed fails instead of
   * mixing versions. Resolves to the bytes written; `onBytes` is told as they arrive.
   */
  async download(rel: string, file: string, opts: { etag?: string; onBytes?: (n: number) => void } = {}): Promise<number> {
    const { sdk, client } = await this.getClient();
    const url = this.locate(rel);
    // Before the request: once the response is here its body must be read at once, or an
    // error on it (a dropped connection) would have no listener.
    await fs.mkdir(path.dirname(file), { recursive: true });
    let out;
    try {
      out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(rel), ...(opts.etag ? { IfMatch: `"${opts.etag}"` } : {}) }));
    } catch (e) {
      if (classifyS3Error(e) === "precondition") throw new SourceError(`${url}: changed while being downloaded${this.where()}; run again`, { cause: e });
      throw this.fail(e, "download", url);
    }
    if (!(out.Body instanceof Readable)) throw new SourceError(`${url}${this.where()}: empty response body`);
    const expected = out.ContentLength;
    const tmp = tempFileBeside(file);
    let got = 0;
    try {
      try {
        await pipeline(
          out.Body,
          async function* (chunks: AsyncIterable<Buffer>) {
            for await (const chunk of chunks) {
              got += chunk.length;
              opts.onBytes?.(chunk.length);
              yield chunk;
            }
          },
          createWriteStream(tmp),
        );
      } catch (e) {
        throw new SourceError(`${url}: download interrupted after ${got}${expected === undefined ? "" : ` of ${expected}`} bytes${this.where()}: ${describeError(e)}`, {
          cause: e,
        });
      }
      if (expected !== undefined && got !== expected) {
        throw new SourceError(`${url}: download ended after ${got} of ${expected} bytes${this.where()}`);
      }
      await fs.rename(tmp, file);
    } catch (e) {
      await fs.rm(tmp, { force: true });
      if (e instanceof MlpError) throw e;
      throw new SourceError(`${file}: cannot write the download of ${url}: ${describeError(e)}`, { cause: e });
    }
    return got;
  }

  /**
   * Writes `rel`. With `ifAbsent`, the write is conditional (`If-None-Match: *`) and resolves
   * to false, writing nothing, when the object already exists.
   */
  async put(rel: string, body: Buffer | string, opts: { ifAbsent?: boolean; contentType?: string; make?: ErrorFactory } = {}): Promise<boolean> {
    const { sdk, client } = await this.getClient();
    try {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(rel),
          Body: body,
          ContentType: opts.contentType,
          ...(opts.ifAbsent ? { IfNoneMatch: "*" } : {}),
        }),
      );
      return true;
    } catch (e) {
      if (opts.ifAbsent && classifyS3Error(e) === "precondition") return false;
      throw this.fail(e, "write", this.locate(rel), opts.make);
    }
  }

  /** Deletes `rel` (no error if it is already gone). */
  async remove(rel: string, make?: ErrorFactory): Promise<void> {
    const { sdk, client } = await this.getClient();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
    } catch (e) {
      if (classifyS3Error(e) === "not-found") return;
      throw this.fail(e, "delete", this.locate(rel), make);
    }
  }

  /** Releases the HTTP connections. */
  async close(): Promise<void> {
    if (this.client) (await this.client).client.destroy();
  }
}

/** `s3://…` as an {@link S3Location}, anything else as a local directory. */
export function openLocation(uri: string, s3: S3Options): LocalLocation | S3Location {
  if (uri.startsWith("s3://")) return new S3Location(uri, s3);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) {
    throw new UsageError(`unsupported URL ${JSON.stringify(uri)}: use a local directory or s3://bucket/prefix`);
  }
  return new LocalLocation(uri);
}

/** Closes `loc` if it holds connections. */
export async function closeLocation(loc: Location): Promise<void> {
  if (loc instanceof S3Location) await loc.close();
}

/**
 * Copies the files of `loc` (those `filter` accepts) into the local directory `dir`, keeping
 * relative paths; returns the relative paths copied. Used to evaluate models and image
 * folders stored in S3 with the code that reads local ones.
 */
export async function downloadTo(loc: Location, dir: string, filter: (rel: string) => boolean = () => true, concurrency = 8): Promise<string[]> {
  const files = (await loc.list()).filter(filter);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const f = files[next++]!;
      const target = path.join(dir, ...f.split("/"));
      if (!target.startsWith(path.resolve(dir) + path.sep)) throw new SourceError(`${loc.locate(f)}: object name leaves the target directory`);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, await loc.read(f));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  return files;
}
