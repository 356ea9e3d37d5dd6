import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { trainMnist } from "../src/commands/train-mnist";
import { splitTrainValidation } from "../src/data/batches";
import { loadIdxPair } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { parseMetadata } from "../src/metadata";
import { createMnistModel } from "../src/model/mnist";
import { evaluate, train } from "../src/train/loop";
import { tf } from "../src/tf";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { readScalars } from "./fixtures/tfevents";
import { captureIo, tempDir } from "./fixtures/tmp";

describe("training on MNIST digits", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("train"));
    await writeMnistIdx(path.join(dir, "data"), { train: 2000, test: 1000 });
  });
  afterAll(() => cleanup());

  it("reaches ≥ 90% on held-out digits in 200 steps and publishes a valid version", async () => {
    const { io, stderr } = captureIo();
    const result = await trainMnist(
      {
        data: path.join(dir, "data"),
        modelBase: path.join(dir, "models"),
        name: "digits",
        steps: 200,
        batchSize: 32,
        learningRate: 0.001,
        validationSplit: 0.1,
        hiddenUnits: 64,
        dropout: 0.25,
        seed: 1,
        evalEvery: 100,
        logdir: path.join(dir, "logs"),
        checkpointEvery: 100,
        progress: "lines",
      },
      io,
    );
    expect(result.test!.count).toBe(1000);
    expect(result.test!.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.version).toBe(1);
    expect(stderr()).toMatch(/1800 training, 200 validation, 1000 test images of 28×28; 200 steps of 32/);
    expect(stderr()).toMatch(/step 200\/200 \(100%\).*img\/s/);

    const meta = parseMetadata("metadata.json", JSON.parse(await fs.readFile(path.join(result.dir, "metadata.json"), "utf8")));
    expect(meta.signatures.serving_default).toEqual({
      methodName: "tensorflow/serving/predict",
      inputs: { images: { dtype: "float32", shape: [-1, 28, 28, 1] } },
      outputs: { probabilities: { dtype: "float32", shape: [-1, 10] } },
    });
    expect(meta.preprocessing).toEqual({ kind: "image", height: 28, width: 28, channels: 1, range: [0, 1] });
    expect(meta.metrics!.testAccuracy).toBe(result.test!.accuracy);
    expect(meta.training).toMatchObject({ steps: 200, batchSize: 32, hiddenUnits: 64, trainExamples: 1800, validationExamples: 200 });

    // The published model gives the accuracy the metadata claims.
    const model = await tf.loadLayersModel(`file://${path.join(result.dir, "model.json")}`);
    const test = await loadIdxPair(new LocalSource(path.join(dir, "data")), "t10k");
    const again = evaluate(
      model,
      test,
      Uint32Array.from({ length: test.count }, (_, i) => i),
    );
    expect(again.accuracy).toBeCloseTo(result.test!.accuracy, 5);
    model.dispose();

    // TensorBoard scalars: loss, accuracy and learning rate for training, validation curves.
    const trainScalars = await readScalars(path.join(dir, "logs", "train"));
    const tags = new Set(trainScalars.map((s) => s.tag));
    expect(tags).toEqual(new Set(["loss", "accuracy", "learning_rate"]));
    expect(trainScalars.filter((s) => s.tag === "loss").map((s) => s.step)).toEqual(Array.from({ length: 20 }, (_, i) => 10 * (i + 1)));
    expect(trainScalars.find((s) => s.tag === "learning_rate")!.value).toBeCloseTo(0.001, 7);
    const val = (await readScalars(path.join(dir, "logs", "validation"))).filter((s) => s.tag === "accuracy");
    expect(val.map((s) => s.step)).toEqual([100, 200]);
    expect(val[1]!.value).toBeCloseTo(result.train.validation!.accuracy, 5);
  });

  it("resuming a finished run says so and publishes nothing new, unless asked", async () => {
    const opts = {
      data: path.join(dir, "data"),
      modelBase: path.join(dir, "models-done"),
      name: "done",
      steps: 20,
      batchSize: 16,
      learningRate: 0.001,
      validationSplit: 0.1,
      hiddenUnits: 16,
      dropout: 0,
      seed: 2,
      maxTrainExamples: 400,
      checkpointDir: path.join(dir, "ck-done"),
      checkpointEvery: 10,
      progress: "none" as const,
      resultFile: path.join(dir, "done-result.json"),
    };
    const first = await trainMnist(opts, captureIo().io);
    expect(first).toMatchObject({ version: 1, published: true, replica: "local" });
    const c = captureIo();
    const again = await trainMnist(opts, c.io);
    expect(again).toMatchObject({ version: 1, dir: first.dir, published: false });
    expect(c.stderr()).toContain(`the run in ${opts.checkpointDir} is already complete (step 20 of 20) and published version 1 (${first.dir}); nothing new published`);
    expect(await fs.readdir(path.join(opts.modelBase, "done"))).toEqual(["1"]);
    // The pipeline's result file still names the version.
    expect(JSON.parse(await fs.readFile(opts.resultFile, "utf8"))).toMatchObject({ version: 1, dir: first.dir });
    const forced = await trainMnist({ ...opts, publishAgain: true }, captureIo().io);
    expect(forced).toMatchObject({ version: 2, published: true });
    expect((await fs.readdir(path.join(opts.modelBase, "done"))).sort()).toEqual(["1", "2"]);
  });

  it("trains only on the training split and leaks no tensors", async () => {
    const data = await loadIdxPair(new LocalSource(path.join(dir, "data")), "train");
    const split = splitTrainValidation(data.count, 0.5, 3);
    // Record which labels the loop reads: none may belong to the validation split.
    const read = new Set<number>();
    const labels = new Proxy(data.labels, {
      get(target, prop) {
        if (typeof prop === "string" && /^\d+$/.test(prop)) read.add(Number(prop));
        return Reflect.get(target, prop);
      },
    });
    const watched = { ...data, labels };
    const model = createMnistModel({ hiddenUnits: 16, filters: [4, 8], seed: 2 });
    const before = tf.memory().numTensors;
    // Snapshot the labels read by training steps when the last step's scalars are written
    // (validation at the end reads the other half).
    let readByTraining = new Set<number>();
    const sink = { scalar: () => (readByTraining = new Set(read)), flush: () => undefined };
    const r = await train({
      model,
      data: watched,
      split,
      steps: 40,
      batchSize: 25,
      learningRate: 0.002,
      seed: 4,
      summaries: { train: sink, validation: { scalar: () => undefined, flush: () => undefined } },
    });
    expect(tf.memory().numTensors).toBe(before);
    expect([...readByTraining].sort((a, b) => a - b)).toEqual(Array.from(split.train));
    expect(r.validation!.count).toBe(split.validation.length);
    expect(read.size).toBe(data.count);
    expect(Number.isFinite(r.trainLoss)).toBe(true);
    expect(r.epochs).toBeCloseTo(1, 5);
    model.dispose();
  });
});
