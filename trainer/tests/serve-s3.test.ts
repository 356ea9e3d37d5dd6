/**
 * Serving from `s3://bucket/prefix`: versions found by ListObjectsV2 against a small
 * S3-compatible server on 127.0.0.1:0 (SigV4 requests from the real AWS SDK), loaded by
 * GetObject, new versions picked up, incomplete ones (no metadata.json yet) ignored.
 */
import { promises as fs } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../src/serve/server";
import { S3Storage } from "../src/serve/storage";
import { loadBackend, type Tf } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

/** Path-style GetObject and ListObjectsV2 (prefix, continuation) over an in-memory bucket. */
async function fakeS3(bucket: string, objects: Map<string, Buffer>, pageSize = 2): Promise<{ endpoint: string; server: Server; lists: () => number }> {
  let lists = 0;
  const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const [, b, ...rest] = url.pathname.split("/");
    const key = decodeURIComponent(rest.join("/"));
    const xml = (status: number, body: string): void => {
      res.writeHead(status, { "content-type": "application/xml" });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
    };
    if (!req.headers.authorization?.startsWith("AWS4-HMAC-SHA256")) return xml(403, "<Error><Code>AccessDenied</Code></Error>");
    if (b !== bucket) return xml(404, "<Error><Code>NoSuchBucket</Code></Error>");
    if (key === "" && url.searchParams.get("list-type") === "2") {
      lists++;
      const prefix = url.searchParams.get("prefix") ?? "";
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort();
      const start = Number(url.searchParams.get("continuation-token") ?? 0);
      const page = keys.slice(start, start + pageSize);
      const more = start + pageSize < keys.length;
      return xml(
        200,
        `<ListBucketResult><Name>${bucket}</Name><Prefix>${esc(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${pageSize}</MaxKeys>` +
          `<IsTruncated>${more}</IsTruncated>${more ? `<NextContinuationToken>${start + pageSize}</NextContinuationToken>` : ""}` +
          page.map((k) => `<Contents><Key>${esc(k)}</Key><Size>${objects.get(k)!.length}</Size><ETag>"x"</ETag></Contents>`).join("") +
          "</ListBucketResult>",
      );
    }
    const body = objects.get(key);
    if (!body) return xml(404, `<Error><Code>NoSuchKey</Code><Key>${esc(key)}</Key></Error>`);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length, etag: '"x"' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, lists: () => lists };
}

let tf: Tf;
let dir: string;
const models: TF.LayersModel[] = [];
const objects = new Map<string, Buffer>();
let s3: Awaited<ReturnType<typeof fakeS3>>;
let server: RunningServer | undefined;
const savedEnv = { ...process.env };
let uploads = 0;

/** Publishes a version locally, then uploads its files under `models/mnist/<v>/` (metadata last). */
async function upload(version: number, withMetadata = true): Promise<void> {
  const local = await publishVersion(tf, path.join(dir, `local-${version}-${++uploads}`), version, models[version - 1]!, mnistMetadata("mnist", version));
  for (const f of await fs.readdir(local)) {
    if (f === "metadata.json" && !withMetadata) continue;
    objects.set(`models/mnist/${version}/${f}`, await fs.readFile(path.join(local, f)));
  }
}

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-s3-"));
  models.push(mnistDense(tf, 31), mnistDense(tf, 32));
  s3 = await fakeS3("models", objects);
  Object.assign(process.env, { AWS_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test-secret", AWS_REGION: "us-east-1" });
  objects.set("models/mnist/README", Buffer.from("not a version"));
  objects.set("models/other/1/model.json", Buffer.from("{}"));
  await upload(1);
});

afterAll(async () => {
  for (const k of ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  for (const m of models) m.dispose();
  await new Promise((r) => s3.server.close(r));
  await fs.rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await server?.stop(1000);
  server = undefined;
});

describe("S3 model source", () => {
  it("lists only complete versions, across pages", async () => {
    await upload(2, false);
    const storage = new S3Storage("s3://models/models/mnist");
    expect(await storage.listVersions()).toEqual([1]);
    objects.set("models/mnist/2/metadata.json", Buffer.from(JSON.stringify(mnistMetadata("mnist", 2))));
    expect(await storage.listVersions()).toEqual([1, 2]);
    await expect(storage.readFile(1, "../2/model.json")).rejects.toThrow(/leaves the version directory/);
    for (const k of [...objects.keys()]) if (k.startsWith("models/mnist/2/")) objects.delete(k);
  });

  it("serves versions from S3 and picks up a new one", async () => {
    server = await startServer({
      models: [{ name: "mnist", basePath: "s3://models/models/mnist" }],
      host: "127.0.0.1",
      grpcPort: null,
      restPort: 0,
      pollIntervalMs: 0,
      log: () => {},
      tf,
    });
    const pixels = samplePixels(2, 6);
    const predict = async (): Promise<number[]> => {
      const res = await fetch(`http://127.0.0.1:${server!.restPort}/v1/models/mnist:predict`, { method: "POST", body: JSON.stringify({ instances: nestedImages(pixels) }) });
      expect(res.status).toBe(200);
      return ((await res.json()) as { predictions: number[][] }).predictions.flat();
    };
    const close = (a: number[], b: Float32Array): void => a.forEach((v, i) => expect(v).toBeCloseTo(b[i]!, 6));
    close(await predict(), referencePredict(tf, models[0]!, pixels));
    await upload(2);
    await server.reconcile();
    expect(server.managers.get("mnist")!.availableVersions()).toEqual([2]);
    close(await predict(), referencePredict(tf, models[1]!, pixels));
    expect(s3.lists()).toBeGreaterThan(0);
  });
});
