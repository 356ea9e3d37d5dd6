import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitTrainValidation } from "../src/data/batches";
import { loadIdxPair, type ImageDataset } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { CheckpointError } from "../src/errors";
import { createMnistModel } from "../src/model/mnist";
import { latestCheckpointStep } from "../src/train/checkpoint";
import { SimulatedCrash, train, type TrainOptions } from "../src/train/loop";
import { tf } from "../src/tf";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { list, tempDir } from "./fixtures/tmp";

const trainerRoot = path.resolve(__dirname, "..");

describe("checkpoints", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let data: ImageDataset;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("ckpt"));
    await writeMnistIdx(path.join(dir, "data"), { train: 600, test: 100 });
    data = await loadIdxPair(new LocalSource(path.join(dir, "data")), "train");
  });
  afterAll(() => cleanup());

  function run(extra: Partial<TrainOptions>) {
    const model = createMnistModel({ hiddenUnits: 16, filters: [4, 8], dropout: 0, seed: 9 });
    const opts: TrainOptions = {
      model,
      data,
      split: splitTrainValidation(data.count, 0.1, 9),
      steps: 50,
      batchSize: 16,
      learningRate: 0.003,
      seed: 9,
      runConfig: { hiddenUnits: 16 },
      ...extra,
    };
    return { model, result: train(opts) };
  }

  it("resumes model, optimizer state and data position: crash + resume = uninterrupted run", async () => {
    const straight = run({});
    await straight.result;
    const expected = straight.model.getWeights().map((w) => Array.from(w.dataSync()));
    straight.model.dispose();

    const ckdir = path.join(dir, "ck1");
    const crashed = run({ checkpoint: { dir: ckdir, every: 10 }, crashAfterStep: 45 });
    await expect(crashed.result).rejects.toBeInstanceOf(SimulatedCrash);
    crashed.model.dispose();
    // Steps 41–45 are lost; the newest checkpoint is step 40 (in the second epoch: 34 steps
    // make one), and only the last two are kept.
    expect(await latestCheckpointStep(ckdir)).toBe(40);
    expect((await list(ckdir)).sort()).toEqual(["checkpoint.json", "step-00000030", "step-00000040"]);

    const resumed = run({ checkpoint: { dir: ckdir, every: 10 }, log: () => undefined });
    const r = await resumed.result;
    expect(r.resumedFrom).toBe(40);
    const got = resumed.model.getWeights().map((w) => Array.from(w.dataSync()));
    resumed.model.dispose();
    expect(got.length).toBe(expected.length);
    got.forEach((w, i) => {
      const maxDiff = w.reduce((m, v, j) => Math.max(m, Math.abs(v - expected[i]![j]!)), 0);
      expect(maxDiff).toBeLessThan(1e-4);
    });
    expect(await latestCheckpointStep(ckdir)).toBe(50);
  });

  it("refuses to resume with different model settings, naming the setting", async () => {
    const ckdir = path.join(dir, "ck2");
    const a = run({ steps: 5, checkpoint: { dir: ckdir, every: 5 } });
    await a.result;
    a.model.dispose();
    const b = run({ steps: 10, checkpoint: { dir: ckdir, every: 5 }, runConfig: { hiddenUnits: 32 } });
    const err = await b.result.catch((e: unknown) => e);
    b.model.dispose();
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/step-00000005 was written with hiddenUnits=16 but this run has hiddenUnits=32/);
    expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
  });

  it("a killed CLI run resumes from its last checkpoint and publishes once", async () => {
    const ckdir = path.join(dir, "ck3");
    const models = path.join(dir, "models");
    const args = [
      "--import",
      "tsx",
      "src/cli.ts",
      "train-mnist",
      "--data",
      path.join(dir, "data"),
      "--model-base",
      models,
      "--steps",
      "400",
      "--batch-size",
      "16",
      "--checkpoint-dir",
      ckdir,
      "--checkpoint-every",
      "20",
      "--progress",
      "lines",
      "--hidden-units",
      "16",
    ];
    const first = spawn(process.execPath, args, { cwd: trainerRoot, stdio: ["ignore", "pipe", "pipe"] });
    let firstErr = "";
    first.stderr.on("data", (d: Buffer) => (firstErr += d.toString()));
    const exited = new Promise<number | null>((resolve) => first.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 120_000;
    let step: number | undefined;
    while (Date.now() < deadline) {
      step = await latestCheckpointStep(ckdir).catch(() => undefined);
      if (step !== undefined && step >= 40) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    first.kill("SIGKILL");
    await exited;
    expect(step, firstErr).toBeGreaterThanOrEqual(40);
    expect(step).toBeLessThan(400);
    expect(await list(path.join(models, "mnist"))).toEqual([]);

    const killedAt = (await latestCheckpointStep(ckdir))!;
    const second = spawn(process.execPath, args, { cwd: trainerRoot, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    second.stdout.on("data", (d: Buffer) => (out += d.toString()));
    second.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => second.on("exit", (c) => resolve(c)));
    expect(code, err).toBe(0);
    expect(err).toContain(`resuming from the checkpoint at step ${killedAt} in ${ckdir}`);
    expect(JSON.parse(out)).toMatchObject({ version: 1 });
    const meta = JSON.parse(await fs.readFile(path.join(models, "mnist", "1", "metadata.json"), "utf8")) as { training: { resumedFromStep: number } };
    expect(meta.training.resumedFromStep).toBe(killedAt);
    expect(await list(path.join(models, "mnist"))).toEqual(["1"]);
  });
});
