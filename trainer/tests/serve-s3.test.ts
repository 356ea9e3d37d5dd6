/**
 * Serving from `s3://bucket/prefix`: versions found by ListObjectsV2 against a small
 * S3-compatible server on 127.0.0.1:0 (SigV4 requests from the real AWS SDK), loaded by
 * GetObject, new versions picked up, incomplete ones (no metadata.json yet) ignored.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../src/serve/server";
import { S3Storage } from "../src/serve/storage";
import { loadBackend, type Tf } from "../src/serve/tf";
import { fakeS3 } from "./fixtures/fake-s3-list";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

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
