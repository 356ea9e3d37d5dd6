/**
 * Distributed training (src/distributed/, src/train/reducer.ts) with TF_CONFIG as the
 * Training Operator sets it, every replica on 127.0.0.1. The replicas of the first tests run
 * in this process (each its own model, step, reducer and gRPC channel), so their weights can
 * be compared directly; the fault and accuracy tests run real `mlp train-mnist` processes.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitTrainValidation, type Split } from "../src/data/batches";
import { loadIdxPair, type ImageDataset } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { createReducer, runParameterServer, type DistributedOptions } from "../src/distributed";
import { assignShards } from "../src/distributed/ps";
import { createMnistModel } from "../src/model/mnist";
import { train, type TrainOptions, type TrainResult } from "../src/train/loop";
import { latestCheckpointStep } from "../src/train/checkpoint";
import { LocalReducer, type Reducer } from "../src/train/reducer";
import { parseTfConfig } from "../src/train/tfconfig";
import { tf, type LayersModel } from "../src/tf";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { freePorts, launch, launchCluster, tfConfig, waitFor, exitsWithin, killReplicas } from "./fixtures/distributed-cluster";
import { list, tempDir } from "./fixtures/tmp";

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

describe("distributed training across processes", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("dist-proc"));
    await writeMnistIdx(path.join(dir, "data"), { train: 1200, test: 200 });
  });
  afterAll(async () => {
    killReplicas();
    await cleanup();
  });

  it("a killed or hung worker stops the others within --replica-timeout, naming it; a restart resumes from the chief's checkpoint", async () => {
    const ports = await freePorts(3);
    const cluster = { chief: [`127.0.0.1:${ports[0]}`], worker: [`127.0.0.1:${ports[1]}`, `127.0.0.1:${ports[2]}`] };
    const ckdir = path.join(dir, "ck");
    const models = path.join(dir, "models");
    const TIMEOUT_S = 4;
    const STEPS = 150;
    const args = [
      "--data",
      path.join(dir, "data"),
      "--model-base",
      models,
      "--steps",
      String(STEPS),
      "--batch-size",
      "16",
      "--hidden-units",
      "16",
      "--checkpoint-dir",
      ckdir,
      "--checkpoint-every",
      "10",
      "--progress",
      "lines",
      "--replica-timeout",
      String(TIMEOUT_S),
      "--startup-timeout",
      "120",
    ];
    const ckptStep = async () => (await latestCheckpointStep(ckdir).catch(() => undefined)) ?? 0;

    // 1. Kill worker #1 once the chief has checkpointed: the chief and worker #0 stop at once.
    let run = launchCluster(cluster, args);
    await waitFor("a checkpoint at step 20", async () => (await ckptStep()) >= 20, 180_000, run);
    run[2]!.child.kill("SIGKILL");
    const killedAt = performance.now();
    const [chief1, w0] = await exitsWithin([run[0]!, run[1]!], 30_000);
    for (const [r, e] of [
      [run[0]!, chief1],
      [run[1]!, w0],
    ] as const) {
      expect(e.code, r.err()).toBe(1);
      expect(r.err()).toContain(`lost worker #1 (${cluster.worker[1]})`);
      expect(e.at - killedAt).toBeLessThan(TIMEOUT_S * 1000);
    }
    expect(run[0]!.err()).toMatch(/connection to the chief closed mid-run/);

    // 2. Restart: every replica resumes from the chief's checkpoint; then worker #0 hangs
    //    (SIGSTOP): the others stop after the timeout, not before, naming it.
    const resumed1 = await ckptStep();
    run = launchCluster(cluster, args);
    await waitFor("a newer checkpoint", async () => (await ckptStep()) >= resumed1 + 10, 180_000, run);
    expect(run[0]!.err()).toContain(`resuming from the checkpoint at step ${resumed1} in ${ckdir}`);
    for (const w of run.slice(1)) expect(w.err()).toContain(`starting at step ${resumed1}`);
    run[1]!.child.kill("SIGSTOP");
    const hungAt = performance.now();
    const [chief2, w1] = await exitsWithin([run[0]!, run[2]!], 30_000);
    run[1]!.child.kill("SIGKILL");
    for (const [r, e] of [
      [run[0]!, chief2],
      [run[2]!, w1],
    ] as const) {
      expect(e.code, r.err()).toBe(1);
      expect(r.err()).toMatch(new RegExp(`lost worker #0 \\(${cluster.worker[0]}\\): no gradients for step \\d+ within ${TIMEOUT_S} s`));
      expect(e.at - hungAt).toBeGreaterThan(TIMEOUT_S * 1000 - 1500);
      expect(e.at - hungAt).toBeLessThan(TIMEOUT_S * 1000 + 4000);
    }
    expect(await list(path.join(models, "mnist"))).toEqual([]);

    // 3. Restart again: it resumes and finishes; only the chief publishes, once.
    const resumed2 = await ckptStep();
    expect(resumed2).toBeGreaterThan(resumed1);
    run = launchCluster(cluster, args);
    const exits = await exitsWithin(run, 200_000);
    exits.forEach((e, i) => expect(e.code, run[i]!.err()).toBe(0));
    expect(run[0]!.err()).toContain(`resuming from the checkpoint at step ${resumed2}`);
    for (const w of run.slice(1)) expect(w.err()).toContain(`starting at step ${resumed2}`);
    expect(JSON.parse(run[0]!.out())).toMatchObject({ version: 1, published: true });
    for (const w of run.slice(1)) expect(JSON.parse(w.out())).toMatchObject({ version: 0, published: false });
    const meta = JSON.parse(await fs.readFile(path.join(models, "mnist", "1", "metadata.json"), "utf8")) as { training: Record<string, unknown> };
    expect(meta.training).toMatchObject({ resumedFromStep: resumed2, replicas: 3, steps: STEPS, globalBatchSize: 48 });

    // 4. The same TFJob once more: the run is complete; nothing new is published.
    run = launchCluster(cluster, args);
    const again = await exitsWithin(run, 60_000);
    again.forEach((e, i) => expect(e.code, run[i]!.err()).toBe(0));
    expect(run[0]!.err()).toMatch(/already complete \(step 150 of 150\) and published version 1/);
    expect(JSON.parse(run[0]!.out())).toMatchObject({ version: 1, published: false });
    expect(await list(path.join(models, "mnist"))).toEqual(["1"]);
  });

  it("parameter servers: a killed worker stops the servers and the other workers, a killed server stops the workers, each naming the lost replica", async () => {
    const ports = await freePorts(3);
    const cluster = { worker: [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`], ps: [`127.0.0.1:${ports[2]}`] };
    const ckdir = path.join(dir, "ck-ps");
    const args = [
      "--data",
      path.join(dir, "data"),
      "--model-base",
      path.join(dir, "models-ps"),
      "--steps",
      "2000",
      "--batch-size",
      "16",
      "--hidden-units",
      "16",
      "--checkpoint-dir",
      ckdir,
      "--checkpoint-every",
      "10",
      "--progress",
      "none",
      "--replica-timeout",
      "4",
      "--startup-timeout",
      "120",
    ];
    const ckptStep = async () => (await latestCheckpointStep(ckdir).catch(() => undefined)) ?? 0;
    // launchCluster order: worker 0 (the chief), worker 1, ps 0.
    let run = launchCluster(cluster, args);
    await waitFor("a checkpoint", async () => (await ckptStep()) >= 10, 180_000, run);
    run[1]!.child.kill("SIGKILL");
    const killedAt = performance.now();
    const exits = await exitsWithin([run[0]!, run[2]!], 30_000);
    for (const [i, e] of [
      [0, exits[0]!],
      [2, exits[1]!],
    ] as const) {
      expect(e.code, run[i]!.err()).toBe(1);
      expect(run[i]!.err()).toContain(`lost worker #1 (${cluster.worker[1]}): its connection to ps #0 (${cluster.ps[0]}) closed mid-run`);
      expect(e.at - killedAt).toBeLessThan(4000);
    }

    // Restart; the chief resumes from its checkpoint (pushed to the server); then the server dies.
    const resumed = await ckptStep();
    run = launchCluster(cluster, args);
    await waitFor("a newer checkpoint", async () => (await ckptStep()) >= resumed + 10, 180_000, run);
    expect(run[0]!.err()).toContain(`resuming from the checkpoint at step ${resumed}`);
    expect(run[1]!.err()).toContain(`starting at step ${resumed}`);
    run[2]!.child.kill("SIGKILL");
    const serverKilledAt = performance.now();
    const workers = await exitsWithin([run[0]!, run[1]!], 30_000);
    workers.forEach((e, i) => {
      expect(e.code, run[i]!.err()).toBe(1);
      expect(run[i]!.err()).toContain(`lost ps #0 (${cluster.ps[0]})`);
      expect(e.at - serverKilledAt).toBeLessThan(4000);
    });
  });

  it("replicas started with different arguments are refused with the setting that differs", async () => {
    const ports = await freePorts(2);
    const cluster = { worker: [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`] };
    const base = ["--data", path.join(dir, "data"), "--model-base", path.join(dir, "m2"), "--steps", "5", "--hidden-units", "16", "--progress", "none", "--startup-timeout", "120"];
    const a = launch([...base, "--batch-size", "16"], tfConfig(cluster, "worker", 0));
    const b = launch([...base, "--batch-size", "32"], tfConfig(cluster, "worker", 1));
    const [ea, eb] = await exitsWithin([a, b], 60_000);
    expect(ea.code, a.err()).toBe(1);
    expect(eb.code, b.err()).toBe(1);
    const msg = /worker #1 \(127\.0\.0\.1:\d+\) runs with batchSize=32 \(the chief has batchSize=16\).*every replica of a TFJob must get the same arguments/;
    expect(a.err()).toMatch(msg);
    expect(b.err()).toMatch(msg);
  });
});
