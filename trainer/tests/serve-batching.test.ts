/**
 * Server-side batching: concurrent requests share model runs and each still gets its own
 * answer; a full queue answers RESOURCE_EXHAUSTED (gRPC) / 429 (REST); a request larger
 * than the batch limit is refused.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Batcher } from "../src/serve/batcher";
import { clientConstructors } from "../src/serve/protos";
import type { Servable } from "../src/serve/servable";
import { startServer, type RunningServer, type ServerOptions } from "../src/serve/server";
import type { HostTensor } from "../src/serve/tensor";
import { loadBackend, type Tf } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

let tf: Tf;
let base: string;
let model: TF.LayersModel;
let server: RunningServer | undefined;
let client: grpc.Client | undefined;

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-batch-"));
  model = mnistDense(tf, 5);
  await publishVersion(tf, path.join(base, "mnist"), 1, model, mnistMetadata("mnist", 1));
});

afterAll(async () => {
  model.dispose();
  await fs.rm(base, { recursive: true, force: true });
});

afterEach(async () => {
  client?.close();
  client = undefined;
  await server?.stop(2000);
  server = undefined;
});

async function start(batching: ServerOptions["batching"]): Promise<RunningServer> {
  server = await startServer({
    models: [{ name: "mnist", basePath: path.join(base, "mnist") }],
    host: "127.0.0.1",
    grpcPort: 0,
    restPort: 0,
    pollIntervalMs: 0,
    log: () => {},
    tf,
    batching,
  });
  const { PredictionService } = clientConstructors();
  client = new PredictionService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  return server;
}

function grpcPredict(pixels: Float32Array): Promise<{ err: grpc.ServiceError | null; values?: number[] }> {
  const n = pixels.length / 784;
  return new Promise((resolve) => {
    (client as any).Predict(
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [n, 28, 28, 1].map((size) => ({ size })) }, float_val: Array.from(pixels) } } },
      { deadline: Date.now() + 10_000 },
      (err: grpc.ServiceError | null, res: any) => resolve({ err, values: res?.outputs.probabilities.float_val }),
    );
  });
}

describe("Batcher", () => {
  it("splits outputs back to the requests in order and refuses oversized requests", async () => {
    const runs: number[] = [];
    // A fake servable whose output row i is [input row i sum, its batch size].
    const fake: Servable = {
      name: "f",
      version: 1,
      metadata: {} as Servable["metadata"],
      labels: undefined,
      imageInputs: () => new Map(),
      signature: () => ({ name: "serving_default", spec: {} as never }),
      run: async (_s, inputs) => {
        const x = inputs.x!;
        const n = x.shape[0]!;
        runs.push(n);
        const out = new Float32Array(n * 2);
        for (let i = 0; i < n; i++) {
          out[i * 2] = (x.values as Float32Array)[i * 2]! + (x.values as Float32Array)[i * 2 + 1]!;
          out[i * 2 + 1] = n;
        }
        return { y: { dtype: "float32", shape: [n, 2], values: out } };
      },
      dispose: () => {},
    };
    const b = new Batcher({ maxBatchSize: 5, batchTimeoutMicros: 20_000, maxQueuedRequests: 6 });
    const req = (rows: number[][]): HostTensor => ({ dtype: "float32", shape: [rows.length, 2], values: Float32Array.from(rows.flat()) });
    const results = await Promise.allSettled([
      b.run(fake, "s", { x: req([[1, 2]]) }, 1, {}),
      b.run(
        fake,
        "s",
        {
          x: req([
            [3, 4],
            [5, 6],
          ]),
        },
        2,
        {},
      ),
      b.run(
        fake,
        "s",
        {
          x: req([
            [7, 8],
            [9, 10],
          ]),
        },
        2,
        {},
      ),
      b.run(fake, "s", { x: req([[0, 1]]) }, 1, {}),
      b.run(
        fake,
        "s",
        {
          x: req([
            [1, 1],
            [1, 1],
            [1, 1],
            [1, 1],
            [1, 1],
            [1, 1],
          ]),
        },
        6,
        {},
      ),
    ]);
    const ok = results.slice(0, 4).map((r) => (r.status === "fulfilled" ? Array.from(r.value.y!.values as Float32Array) : r.reason));
    expect(ok).toEqual([
      [3, 5],
      [7, 5, 11, 5],
      [15, 5, 19, 5],
      [1, 1],
    ]);
    expect(runs).toEqual([5, 1]);
    expect(results[4]).toMatchObject({ status: "rejected", reason: { code: grpc.status.INVALID_ARGUMENT } });
  });
});

describe("batching in the server", () => {
  it("batches concurrent requests and answers each correctly", async () => {
    const s = await start({ maxBatchSize: 8, batchTimeoutMicros: 50_000, maxQueuedRequests: 64 });
    const inputs = Array.from({ length: 16 }, (_, i) => samplePixels(1 + (i % 2), 100 + i));
    const answers = await Promise.all(inputs.map((p) => grpcPredict(p)));
    answers.forEach((a, i) => {
      expect(a.err).toBeNull();
      const ref = referencePredict(tf, model, inputs[i]!);
      a.values!.forEach((v, k) => expect(v).toBeCloseTo(ref[k]!, 5));
    });
    const text = await s.metrics.render();
    const count = Number(/^mlp_serving_batch_size_count\{model="mnist",version="1"\} (\d+)$/m.exec(text)?.[1]);
    const sum = Number(/^mlp_serving_batch_size_sum\{model="mnist",version="1"\} (\d+)$/m.exec(text)?.[1]);
    expect(sum).toBe(24);
    expect(count).toBeLessThan(16);
  });

  it("answers RESOURCE_EXHAUSTED / 429 when the queue is full", async () => {
    const s = await start({ maxBatchSize: 64, batchTimeoutMicros: 300_000, maxQueuedRequests: 4 });
    const pixels = samplePixels(1);
    const rest = `http://127.0.0.1:${s.restPort}/v1/models/mnist:predict`;
    const body = JSON.stringify({ instances: nestedImages(pixels) });
    const [grpcAnswers, restAnswers] = await Promise.all([
      Promise.all(Array.from({ length: 5 }, () => grpcPredict(pixels))),
      Promise.all(
        Array.from({ length: 5 }, async () => {
          await new Promise((r) => setTimeout(r, 50));
          const res = await fetch(rest, { method: "POST", body });
          return { status: res.status, body: (await res.json()) as { error?: string } };
        }),
      ),
    ]);
    const grpcCodes = grpcAnswers.map((a) => a.err?.code ?? grpc.status.OK);
    expect(grpcCodes.filter((c) => c === grpc.status.OK)).toHaveLength(4);
    expect(grpcCodes.filter((c) => c === grpc.status.RESOURCE_EXHAUSTED)).toHaveLength(1);
    expect(restAnswers.map((a) => a.status)).toEqual([429, 429, 429, 429, 429]);
    expect(restAnswers[0]!.body.error).toMatch(/queue .* is full/);
    // Once the batch has run, there is room again.
    const after = await grpcPredict(pixels);
    expect(after.err).toBeNull();
  });

  it("refuses a request larger than the maximum batch size", async () => {
    await start({ maxBatchSize: 2, batchTimeoutMicros: 1000, maxQueuedRequests: 8 });
    const a = await grpcPredict(samplePixels(3));
    expect(a.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(a.err?.details).toBe("Task size 3 is larger than maximum batch size 2");
  });
});
