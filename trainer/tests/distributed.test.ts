/**
 * Distributed training (src/distributed/, src/train/reducer.ts) with TF_CONFIG as the
 * Training Operator sets it, every replica on 127.0.0.1. The replicas of the first tests run
 * in this process (each its own model, step, reducer and gRPC channel), so their weights can
 * be compared directly; the fault and accuracy tests run real `mlp train-mnist` processes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitTrainValidation, type Split } from "../src/data/batches";
import { loadIdxPair, type ImageDataset } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { createReducer, runParameterServer, type DistributedOptions } from "../src/distributed";
import { assignShards } from "../src/distributed/ps";
import { createMnistModel } from "../src/model/mnist";
import { train, type TrainOptions, type TrainResult } from "../src/train/loop";
import { LocalReducer, type Reducer } from "../src/train/reducer";
import { parseTfConfig } from "../src/train/tfconfig";
import { tf, type LayersModel } from "../src/tf";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { tempDir } from "./fixtures/tmp";

const trainerRoot = path.resolve(__dirname, "..");

/** Free TCP ports on 127.0.0.1 (bound and released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** TF_CONFIG of one replica, as the Training Operator writes it. */
function tfConfig(cluster: Record<string, string[]>, type: string, index: number): string {
  return JSON.stringify({ cluster, task: { type, index }, environment: "cloud" });
}

const TIMING: DistributedOptions = { timeoutMs: 20_000, startupTimeoutMs: 30_000, psMode: "sync" };
const quiet = () => undefined;

function weightsOf(model: LayersModel): Float32Array[] {
  return model.getWeights().map((w) => w.dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, k) => (d = Math.max(d, Math.abs(v - b[i]![k]!)))));
  return d;
}

describe("distributed training in one process", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let data: ImageDataset;
  let split: Split;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("dist"));
    await writeMnistIdx(path.join(dir, "data"), { train: 301, test: 10 });
    data = await loadIdxPair(new LocalSource(path.join(dir, "data")), "train");
    // 201 training examples: with a global batch of 32 the 7th step's batch has 9, split 4 + 5.
    split = splitTrainValidation(data.count, 100 / 301, 5);
  });
  afterAll(() => cleanup());

  const K = 12;
  const B = 16;
  const model = () => createMnistModel({ hiddenUnits: 32, filters: [4, 8], dropout: 0.3, seed: 11 });
  const opts = (m: LayersModel, batchSize: number, reducer?: Reducer): TrainOptions => ({
    model: m,
    data,
    split,
    steps: K,
    batchSize,
    learningRate: 0.003,
    seed: 7,
    reducer,
    log: quiet,
  });

  /** Trains one model per replica of `cluster` at once; returns the models (rank order) and results. */
  async function trainCluster(cluster: Record<string, string[]>, timing: DistributedOptions): Promise<{ models: LayersModel[]; results: TrainResult[] }> {
    const trainers = [...(cluster.chief ?? []).map((_, i) => ["chief", i] as const), ...(cluster.worker ?? []).map((_, i) => ["worker", i] as const)];
    const servers = (cluster.ps ?? []).map((_, i) => runParameterServer(parseTfConfig(tfConfig(cluster, "ps", i))!, timing, quiet));
    const models = trainers.map(() => model());
    // Each replica builds its model before its reducer, as a replica process does.
    const results = await Promise.all(
      trainers.map(async ([type, index], r) => {
        const reducer = await createReducer(parseTfConfig(tfConfig(cluster, type, index)), timing, quiet);
        expect(reducer!.rank).toBe(r);
        return train(opts(models[r]!, B, reducer));
      }),
    );
    await Promise.all(servers);
    return { models, results };
  }

  it(`2 replicas with batch ${B} reach the weights of 1 replica with batch ${2 * B} after ${K} steps (all-reduce)`, async () => {
    const before = tf.memory().numTensors;
    const single = model();
    await train(opts(single, 2 * B));
    const expected = weightsOf(single);
    single.dispose();

    const [p0, p1] = await freePorts(2);
    const cluster = { chief: [`127.0.0.1:${p0}`], worker: [`127.0.0.1:${p1}`] };
    const { models, results } = await trainCluster(cluster, TIMING);
    const [w0, w1] = models.map(weightsOf);
    // Same updates on both replicas: bit-identical weights.
    expect(maxAbsDiff(w0!, w1!)).toBe(0);
    // And the same as one replica on the whole batch, to float tolerance (the weights moved by ~K·lr).
    expect(maxAbsDiff(w0!, expected)).toBeLessThan(2e-5);
    expect(maxAbsDiff(w0!, weightsOf(createMnistModel({ hiddenUnits: 32, filters: [4, 8], dropout: 0.3, seed: 11 })))).toBeGreaterThan(1e-3);
    for (const r of results) {
      expect(r.distribution).toMatchObject({ replicas: 2 });
      expect(r.distribution!.bytesSent).toBeGreaterThan(0);
    }
    expect(results[0]!.validation).toBeDefined();
    expect(results[1]!.validation).toBeUndefined();
    models.forEach((m) => m.dispose());
    tf.disposeVariables();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("the split step with the local reducer equals the fused step", async () => {
    const fused = model();
    await train(opts(fused, B));
    const split = model();
    await train(opts(split, B, new LocalReducer()));
    expect(maxAbsDiff(weightsOf(split), weightsOf(fused))).toBeLessThan(2e-6);
    fused.dispose();
    split.dispose();
  });

  it("2 parameter servers + 2 workers (sync) reach the all-reduce weights; async trains too", async () => {
    const ports = await freePorts(4);
    const cluster = { worker: [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`], ps: [`127.0.0.1:${ports[2]}`, `127.0.0.1:${ports[3]}`] };
    const single = model();
    await train(opts(single, 2 * B));
    const expected = weightsOf(single);
    single.dispose();
    const { models } = await trainCluster(cluster, TIMING);
    const [w0, w1] = models.map(weightsOf);
    expect(maxAbsDiff(w0!, w1!)).toBe(0);
    // The servers' Adam runs in float64 JavaScript, the reference in TensorFlow's float32 kernels.
    expect(maxAbsDiff(w0!, expected)).toBeLessThan(5e-5);
    models.forEach((m) => m.dispose());

    const asyncRun = await trainCluster(cluster, { ...TIMING, psMode: "async" });
    for (const r of asyncRun.results) expect(Number.isFinite(r.trainLoss)).toBe(true);
    // Both replicas end with the servers' final values.
    const [a0, a1] = asyncRun.models.map(weightsOf);
    expect(maxAbsDiff(a0!, a1!)).toBe(0);
    asyncRun.models.forEach((m) => m.dispose());
  });

  it("shards weights across parameter servers by size", () => {
    expect(assignShards([100, 10, 50, 60], 2)).toEqual([0, 0, 1, 1]);
    expect(assignShards([5, 5, 5], 3)).toEqual([0, 1, 2]);
    expect(assignShards([7], 2)).toEqual([0]);
  });
});
