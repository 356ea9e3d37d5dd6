import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { retrain, type RetrainOptions } from "../src/commands/retrain";
import { trainMnist } from "../src/commands/train-mnist";
import { parseMetadata } from "../src/metadata";
import { confusionMatrix, formatConfusionMatrix } from "../src/retrain/confusion";
import { readImage } from "../src/retrain/decode";
import { assignSet, scanImageFolder } from "../src/retrain/folder";
import { tf, type Tensor } from "../src/tf";
import { writeDigitFolder } from "./fixtures/image-folder";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { freePorts, tfConfig } from "./fixtures/distributed-cluster";
import { captureIo, list, tempDir } from "./fixtures/tmp";

describe("image folder", () => {
  it("assigns sets by a stable hash of label/name", () => {
    expect(assignSet("cat", "1.jpg", 10, 10)).toBe(assignSet("cat", "1.jpg", 10, 10));
    const sets = Array.from({ length: 2000 }, (_, i) => assignSet("x", `${i}.png`, 20, 10));
    const share = (s: string) => sets.filter((v) => v === s).length / sets.length;
    expect(share("test")).toBeGreaterThan(0.07);
    expect(share("test")).toBeLessThan(0.13);
    expect(share("validation")).toBeGreaterThan(0.16);
    expect(share("validation")).toBeLessThan(0.24);
  });

  it("formats a confusion matrix with actual rows and predicted columns", () => {
    const m = confusionMatrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 2);
    expect(m).toEqual([
      [1, 1],
      [1, 2],
    ]);
    expect(formatConfusionMatrix(m, ["cat", "dog"]).split("\n")).toEqual(["actual \\ predicted     0    1", "0 cat                  1    1", "1 dog                  1    2"]);
  });
});

describe("mlp retrain", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let baseDir: string;
  let opts: RetrainOptions;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("retrain"));
    // Base: the MNIST CNN trained briefly on the first 2,000 digits.
    await writeMnistIdx(path.join(dir, "idx"), { train: 2000 });
    const base = await trainMnist(
      {
        data: path.join(dir, "idx"),
        modelBase: path.join(dir, "base"),
        name: "digits",
        steps: 150,
        batchSize: 32,
        learningRate: 0.001,
        validationSplit: 0,
        hiddenUnits: 64,
        dropout: 0,
        seed: 3,
        checkpointEvery: 1000,
        progress: "none",
      },
      captureIo().io,
    );
    baseDir = base.dir;
    // New task on digits the base never saw: three classes, one stored as RGB JPEG.
    await writeDigitFolder(path.join(dir, "images"), { zero: 0, seven: 7 }, { perClass: 60, from: 5000 });
    await writeDigitFolder(path.join(dir, "images"), { one: 1 }, { perClass: 60, from: 5000, format: "jpg" });
    opts = {
      images: path.join(dir, "images"),
      baseModel: baseDir,
      cacheDir: path.join(dir, "cache"),
      modelBase: path.join(dir, "models"),
      name: "three",
      epochs: 30,
      batchSize: 16,
      learningRate: 0.01,
      hiddenUnits: 0,
      dropout: 0,
      validationPercent: 10,
      testPercent: 30,
      seed: 1,
      progress: "none",
    };
  });
  afterAll(() => cleanup());

  it("trains a head on cached bottlenecks, reports a confusion matrix, and publishes base + head", async () => {
    const c = captureIo();
    const r = await retrain(opts, c.io);
    expect(r.labels).toEqual(["one", "seven", "zero"]);
    expect(r.bottlenecks).toMatchObject({ computed: 180, cached: 0 });
    const folder = await scanImageFolder(opts.images, 10, 30);
    const testImages = folder.images.filter((i) => i.set === "test");
    expect(r.confusionMatrix.flat().reduce((a, b) => a + b, 0)).toBe(testImages.length);
    expect(r.metrics.testAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(c.stderr()).toMatch(/cut at dropout|cut at hidden/);
    expect(c.stderr()).toMatch(/confusion matrix \(test\):\nactual \\ predicted/);

    const meta = parseMetadata("m", JSON.parse(await fs.readFile(path.join(r.dir, "metadata.json"), "utf8")));
    expect(meta.labels).toEqual(["one", "seven", "zero"]);
    expect(meta.signatures.serving_default!.outputs.probabilities!.shape).toEqual([-1, 3]);
    expect(meta.preprocessing).toEqual({ kind: "image", height: 28, width: 28, channels: 1, range: [0, 1] });

    // The published model alone (base + head, from image pixels) reproduces the test accuracy.
    const model = await tf.loadLayersModel(`file://${path.join(r.dir, "model.json")}`);
    expect(model.inputs[0]!.shape).toEqual([null, 28, 28, 1]);
    let correct = 0;
    for (const img of testImages) {
      const { pixels } = await readImage(img.file, { height: 28, width: 28, channels: 1, range: [0, 1] });
      const p = tf.tidy(() => (model.predict(tf.tensor4d(pixels, [1, 28, 28, 1])) as Tensor).argMax(-1).dataSync()[0]);
      if (p === img.labelIndex) correct++;
    }
    model.dispose();
    expect(correct / testImages.length).toBeCloseTo(r.metrics.testAccuracy!, 5);

    // Second run: every bottleneck comes from the cache.
    const again = await retrain(opts, captureIo().io);
    expect(again.bottlenecks).toEqual({ computed: 0, cached: 180, baseModelId: r.bottlenecks.baseModelId });
    expect(again.version).toBe(r.version + 1);
    // Another bottleneck layer is another base model id: nothing cached for it.
    const other = await retrain({ ...opts, bottleneckLayer: "flatten", epochs: 2 }, captureIo().io);
    expect(other.bottlenecks.baseModelId).not.toBe(r.bottlenecks.baseModelId);
    expect(other.bottlenecks.computed).toBe(180);
  });

  it("with TF_CONFIG, a chief and a worker train the head as one replica with twice the batch; only the chief publishes", async () => {
    const [p0, p1] = await freePorts(2);
    const cluster = { chief: [`127.0.0.1:${p0}`], worker: [`127.0.0.1:${p1}`] };
    const run = { ...opts, epochs: undefined, steps: 40, batchSize: 8, distributed: { timeoutMs: 30_000, startupTimeoutMs: 60_000, psMode: "sync" as const } };
    const [chief, worker] = await Promise.all(
      (["chief", "worker"] as const).map((type) =>
        retrain({ ...run, modelBase: path.join(dir, "models-dist"), cacheDir: path.join(dir, `cache-${type}`) }, captureIo({ TF_CONFIG: tfConfig(cluster, type, 0) }).io),
      ),
    );
    expect(chief).toMatchObject({ version: 1, replica: `chief #0 (${cluster.chief[0]})` });
    expect(worker).toMatchObject({ version: 0, dir: "", replica: `worker #0 (${cluster.worker[0]})` });
    expect(await fs.readdir(path.join(dir, "models-dist", "three"))).toEqual(["1"]);
    const single = await retrain({ ...run, batchSize: 16, modelBase: path.join(dir, "models-single") }, captureIo().io);
    const head = async (d: string) => {
      const m = await tf.loadLayersModel(`file://${path.join(d, "model.json")}`);
      const w = m
        .getLayer("probabilities")
        .getWeights()
        .map((t) => t.dataSync() as Float32Array);
      m.dispose();
      return w;
    };
    const [a, b] = [await head(chief.dir), await head(single.dir)];
    let diff = 0;
    a.forEach((x, i) => x.forEach((v, k) => (diff = Math.max(diff, Math.abs(v - b[i]![k]!)))));
    expect(diff).toBeLessThan(1e-4);
    expect(chief.metrics.testAccuracy).toBeCloseTo(single.metrics.testAccuracy!, 5);
    const meta = JSON.parse(await fs.readFile(path.join(chief.dir, "metadata.json"), "utf8")) as { training: Record<string, unknown> };
    expect(meta.training).toMatchObject({ replicas: 2, distribution: "all-reduce", batchSize: 8 });
  });

  it("names a corrupt image and publishes nothing", async () => {
    const images = path.join(dir, "corrupt");
    await writeDigitFolder(images, { zero: 0, one: 1 }, { perClass: 5, from: 6000 });
    const bad = path.join(images, "one", "broken.png");
    await fs.writeFile(bad, Buffer.from("\x89PNG\r\n\x1a\nnot really"));
    const c = captureIo();
    const code = await main(
      ["retrain", "--images", images, "--base-model", baseDir, "--model-base", path.join(dir, "m2"), "--cache-dir", path.join(dir, "cache"), "--progress", "none"],
      c.io,
    );
    expect(code).toBe(1);
    expect(c.stderr()).toContain(`mlp retrain: ${bad}: cannot decode image:`);
    expect(await list(path.join(dir, "m2", "retrained"))).toEqual([]);
  });

  it("refuses an unknown bottleneck layer and a folder with one label", async () => {
    const c = captureIo();
    const code = await main(["retrain", "--images", opts.images, "--base-model", baseDir, "--model-base", path.join(dir, "m3"), "--bottleneck-layer", "nope"], c.io);
    expect(code).toBe(2);
    expect(c.stderr()).toMatch(/layer "nope" not found in .*model.json; layers: images, conv1, pool1/);
    const one = path.join(dir, "one-label");
    await writeDigitFolder(one, { zero: 0 }, { perClass: 3, from: 0 });
    await expect(retrain({ ...opts, images: one }, captureIo().io)).rejects.toThrow(`${one}: needs at least two label directories`);
  });
});
