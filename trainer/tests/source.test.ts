import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { encodeIdxUint8 } from "../src/data/idx";
import { loadIdxPair } from "../src/data/images";
import { DataFileNotFoundError, LocalSource, openSource, parseS3Uri, readWithGzFallback, resolveS3Options, S3Source } from "../src/data/source";
import { SourceError, UsageError } from "../src/errors";
import { closedPort, startFakeS3, type FakeS3 } from "./fixtures/fake-s3";

const creds = { AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "testsecret" };

describe("resolveS3Options", () => {
  it("takes the endpoint from flags, then AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, S3_ENDPOINT", () => {
    expect(resolveS3Options({}, { S3_ENDPOINT: "http://c:9000" }).endpoint).toBe("http://c:9000");
    expect(resolveS3Options({}, { S3_ENDPOINT: "http://c:9000", AWS_ENDPOINT_URL: "http://b:9000" }).endpoint).toBe("http://b:9000");
    expect(resolveS3Options({}, { AWS_ENDPOINT_URL: "http://b:9000", AWS_ENDPOINT_URL_S3: "http://a:9000" }).endpoint).toBe("http://a:9000");
    expect(resolveS3Options({ endpoint: "http://f:1" }, { AWS_ENDPOINT_URL_S3: "http://a:9000" }).endpoint).toBe("http://f:1");
    expect(resolveS3Options({}, {}).endpoint).toBeUndefined();
  });

  it("uses path-style addressing, a default region and credentials from the environment", () => {
    const o = resolveS3Options({}, { ...creds, AWS_REGION: "eu-west-1" });
    expect(o).toMatchObject({ forcePathStyle: true, region: "eu-west-1", credentials: { accessKeyId: "test", secretAccessKey: "testsecret" } });
    expect(resolveS3Options({}, {}).region).toBe("us-east-1");
    expect(resolveS3Options({}, {}).credentials).toBeUndefined();
  });

  it("rejects a malformed endpoint and half-set credentials", () => {
    expect(() => resolveS3Options({ endpoint: "minio:9000" }, {})).toThrow(UsageError);
    expect(() => resolveS3Options({}, { AWS_ACCESS_KEY_ID: "x" })).toThrow(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  });
});

describe("parseS3Uri / openSource", () => {
  it("splits bucket and prefix", () => {
    expect(parseS3Uri("s3://data/mnist/")).toEqual({ bucket: "data", prefix: "mnist" });
    expect(parseS3Uri("s3://data")).toEqual({ bucket: "data", prefix: "" });
    expect(() => parseS3Uri("s3:///x")).toThrow(UsageError);
  });

  it("picks the source kind from the URI and refuses other schemes", () => {
    expect(openSource("/tmp/x")).toBeInstanceOf(LocalSource);
    expect(openSource("s3://b/p", resolveS3Options({}, creds))).toBeInstanceOf(S3Source);
    expect(() => openSource("gs://b/p")).toThrow(/unsupported data URL "gs:\/\/b\/p"/);
  });
});

describe("LocalSource", () => {
  it("reads files and reports missing ones by full path", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-src-"));
    await fs.writeFile(path.join(dir, "a"), "hello");
    const src = new LocalSource(dir);
    expect((await src.read("a")).toString()).toBe("hello");
    await expect(src.read("b")).rejects.toThrow(new DataFileNotFoundError(path.join(dir, "b")));
    await fs.writeFile(path.join(dir, "c.gz"), "z");
    expect((await readWithGzFallback(src, "c")).location).toBe(path.join(dir, "c.gz"));
    await expect(readWithGzFallback(src, "d")).rejects.toThrow(`${path.join(dir, "d")}: not found (nor d.gz)`);
    await fs.rm(dir, { recursive: true });
  });
});

describe("S3Source", () => {
  let s3: FakeS3 | undefined;
  afterEach(async () => {
    await s3?.close();
    s3 = undefined;
  });

  it("reads an IDX pair from a bucket prefix (gzip fallback included)", async () => {
    s3 = await startFakeS3({
      data: {
        "mnist/train-images-idx3-ubyte": encodeIdxUint8([2, 2, 2], Uint8Array.of(0, 255, 0, 255, 1, 2, 3, 4)),
        "mnist/train-labels-idx1-ubyte.gz": gzipSync(encodeIdxUint8([2], Uint8Array.of(3, 9))),
      },
    });
    const src = new S3Source("s3://data/mnist", resolveS3Options({ endpoint: s3.endpoint, maxAttempts: 1 }, creds));
    const ds = await loadIdxPair(src, "train");
    await src.close();
    expect(ds).toMatchObject({ count: 2, height: 2, width: 2 });
    expect(Array.from(ds.labels)).toEqual([3, 9]);
    expect(ds.from.labels).toBe("s3://data/mnist/train-labels-idx1-ubyte.gz");
    expect(s3.requests).toContain("GET /data/mnist/train-images-idx3-ubyte");
  });

  it("reports a missing object and a missing bucket by URL", async () => {
    s3 = await startFakeS3({ data: {} });
    const opts = resolveS3Options({ endpoint: s3.endpoint, maxAttempts: 1 }, creds);
    const src = new S3Source("s3://data/mnist", opts);
    await expect(src.read("x")).rejects.toThrow(`s3://data/mnist/x: not found at ${s3.endpoint}`);
    const other = new S3Source("s3://nobucket/p", opts);
    await expect(other.read("x")).rejects.toThrow(/^s3:\/\/nobucket\/p\/x: bucket nobucket does not exist/);
    await Promise.all([src.close(), other.close()]);
  });

  it("fails fast with the URL and endpoint when nothing listens", async () => {
    const port = await closedPort();
    const endpoint = `http://127.0.0.1:${port}`;
    const src = new S3Source("s3://data/mnist", resolveS3Options({ endpoint, maxAttempts: 1 }, creds));
    const err = await src.read("train-images-idx3-ubyte").catch((e: unknown) => e);
    await src.close();
    expect(err).toBeInstanceOf(SourceError);
    expect((err as Error).message).toMatch(new RegExp(`^s3://data/mnist/train-images-idx3-ubyte: cannot read at ${endpoint}: .*ECONNREFUSED`));
  });
});
