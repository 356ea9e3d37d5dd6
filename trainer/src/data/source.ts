/**
 * Where training data comes from: a local directory or an S3 prefix (`s3://bucket/prefix`,
 * e.g. the platform's Minio `data` bucket). Both read whole files by name; errors name the
 * full path or URL of the file.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, SourceError, UsageError, describeError } from "../errors";

export interface DataSource {
  /** `/abs/dir` or `s3://bucket/prefix`, for messages and provenance. */
  readonly uri: string;
  /** The full location of `name` in this source (path or `s3://` URL). */
  locate(name: string): string;
  /** Reads a whole file. Throws {@link DataFileNotFoundError} or {@link SourceError}. */
  read(name: string): Promise<Buffer>;
}

/** The named file does not exist in the source. */
export class DataFileNotFoundError extends DataError {
  constructor(
    readonly location: string,
    detail = "not found",
  ) {
    super(`${location}: ${detail}`);
  }
}

/** A directory on the local file system (or a mounted shared volume). */
export class LocalSource implements DataSource {
  readonly uri: string;

  constructor(dir: string) {
    this.uri = path.resolve(dir);
  }

  locate(name: string): string {
    return path.join(this.uri, name);
  }

  async read(name: string): Promise<Buffer> {
    const file = this.locate(name);
    try {
      return await fs.readFile(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new DataFileNotFoundError(file);
      throw new SourceError(`${file}: cannot read: ${describeError(e)}`, { cause: e });
    }
  }
}

/** How to reach an S3-compatible object store. */
export interface S3Options {
  /** Endpoint URL such as `http://minio.data:9000`; unset means AWS itself. */
  readonly endpoint?: string;
  /** Default `us-east-1` (Minio ignores it but the signer needs one). */
  readonly region: string;
  /** Path-style addressing (`endpoint/bucket/key`), which Minio needs. Default true. */
  readonly forcePathStyle: boolean;
  /** Static credentials; when unset the SDK's default chain is used. */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Attempts per request (the SDK retries with backoff). Default 3. */
  readonly maxAttempts: number;
  /** Milliseconds to wait for a TCP connection. Default 5000. */
  readonly connectionTimeoutMs: number;
}

/** Command-line overrides for {@link resolveS3Options}. */
export interface S3Flags {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  maxAttempts?: number;
}

/**
 * Combines flags with the environment: endpoint from `--s3-endpoint`, `AWS_ENDPOINT_URL_S3`,
 * `AWS_ENDPOINT_URL` or `S3_ENDPOINT`; region from `--s3-region`, `AWS_REGION`,
 * `AWS_DEFAULT_REGION`; credentials only from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
 * `AWS_SESSION_TOKEN` (never flags: they would show in `ps`).
 */
export function resolveS3Options(flags: S3Flags = {}, env: NodeJS.ProcessEnv = process.env): S3Options {
  const endpoint = flags.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? env.S3_ENDPOINT;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) {
    throw new UsageError(`S3 endpoint must be an http:// or https:// URL; got ${JSON.stringify(endpoint)}`);
  }
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new UsageError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither");
  }
  return {
    endpoint: endpoint || undefined,
    region: flags.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1",
    forcePathStyle: flags.forcePathStyle ?? true,
    credentials:
      accessKeyId !== undefined && secretAccessKey !== undefined
        ? { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
        : undefined,
    maxAttempts: flags.maxAttempts ?? 3,
    connectionTimeoutMs: 5000,
  };
}

/** Splits `s3://bucket/prefix/` into bucket and key prefix (without trailing slash). */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m || m[1] === "") throw new UsageError(`not an S3 URL (want s3://bucket/prefix): ${JSON.stringify(uri)}`);
  return { bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, "") };
}

type S3Module = typeof import("@aws-sdk/client-s3");

/** The AWS SDK (loaded on first use) and a client configured from {@link S3Options}. */
export type S3Handle = { sdk: S3Module; client: InstanceType<S3Module["S3Client"]> };

/** Opens an S3 client for `options`; `requestTimeoutMs` bounds one request. */
export function openS3Client(options: S3Options, requestTimeoutMs: number): Promise<S3Handle> {
  return import("@aws-sdk/client-s3").then((sdk) => ({
    sdk,
    client: new sdk.S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts,
      requestHandler: { connectionTimeout: options.connectionTimeoutMs, requestTimeout: requestTimeoutMs },
    }),
  }));
}

/** Objects under an S3 prefix. The SDK is loaded on first use. */
export class S3Source implements DataSource {
  readonly uri: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private client?: Promise<{ sdk: S3Module; client: InstanceType<S3Module["S3Client"]> }>;

  constructor(
    uri: string,
    private readonly options: S3Options,
  ) {
    const { bucket, prefix } = parseS3Uri(uri);
    this.bucket = bucket;
    this.prefix = prefix;
    this.uri = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  }

  private key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  locate(name: string): string {
    return `s3://${this.bucket}/${this.key(name)}`;
  }

  private where(): string {
    return this.options.endpoint ? ` at ${this.options.endpoint}` : "";
  }

  private async getClient() {
    this.client ??= openS3Client(this.options, 60_000);
    return this.client;
  }

  async read(name: string): Promise<Buffer> {
    const url = this.locate(name);
    const { sdk, client } = await this.getClient();
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
      if (!out.Body) throw new SourceError(`${url}${this.where()}: empty response body`);
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (e) {
      if (e instanceof SourceError) throw e;
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (err.name === "NoSuchKey" || (err.$metadata?.httpStatusCode === 404 && err.name !== "NoSuchBucket")) {
        throw new DataFileNotFoundError(url, `not found${this.where()}`);
      }
      if (err.name === "NoSuchBucket") {
        throw new SourceError(`${url}: bucket ${this.bucket} does not exist${this.where()}`, { cause: e });
      }
      throw new SourceError(`${url}: cannot read${this.where()}: ${describeError(e)}`, { cause: e });
    }
  }

  /** Releases the HTTP connections (the CLI exits anyway; tests call it). */
  async close(): Promise<void> {
    if (this.client) (await this.client).client.destroy();
  }
}

/** Opens `s3://…` as an {@link S3Source} and anything else as a local directory. */
export function openSource(uri: string, s3: S3Options = resolveS3Options()): DataSource {
  if (uri.startsWith("s3://")) return new S3Source(uri, s3);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) {
    throw new UsageError(`unsupported data URL ${JSON.stringify(uri)}: use a local directory or s3://bucket/prefix`);
  }
  return new LocalSource(uri);
}

/**
 * Reads `name`, or `name.gz` if `name` is missing (Debian ships the IDX files gzipped).
 * Returns the bytes and the location actually read.
 */
export async function readWithGzFallback(source: DataSource, name: string): Promise<{ data: Buffer; location: string }> {
  try {
    return { data: await source.read(name), location: source.locate(name) };
  } catch (e) {
    if (!(e instanceof DataFileNotFoundError) || name.endsWith(".gz")) throw e;
    try {
      return { data: await source.read(`${name}.gz`), location: source.locate(`${name}.gz`) };
    } catch (e2) {
      if (e2 instanceof DataFileNotFoundError) {
        throw new DataFileNotFoundError(source.locate(name), `not found (nor ${name}.gz)`);
      }
      throw e2;
    }
  }
}
