/**
 * `mlp evaluate`: a model trained briefly by `trainMnist`, evaluated on the IDX test pair and
 * on an image folder of the same kind of digits; the gate (exit 0 / exit 3 with passed:false
 * written), and bad inputs. S3 over a real MinIO is in publish-s3.test.ts.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { trainMnist, type TrainMnistResult } from "../src/commands/train-mnist";
import { evaluateVersion, loadVersion } from "../src/pipeline/evaluate";
import { LocalLocation } from "../src/pipeline/location";
import { assignSet } from "../src/retrain/folder";
import { tf } from "../src/tf";
import { closedPort } from "./fixtures/fake-s3";
import { writeDigitFolder } from "./fixtures/image-folder";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { captureIo, tempDir } from "./fixtures/tmp";

let dir: string;
let cleanup: () => Promise<void>;
let data: string;
let trained: TrainMnistResult;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir("evaluate"));
  data = path.join(dir, "idx");
  await writeMnistIdx(data, { train: 2000, test: 500 });
  trained = await trainMnist(
    {
      data,
      modelBase: path.join(dir, "staging"),
      name: "digits",
      steps: 150,
      batchSize: 32,
      learningRate: 0.002,
      validationSplit: 0,
      hiddenUnits: 32,
      dropout: 0,
      seed: 7,
      checkpointEvery: 1000,
      progress: "none",
    },
    captureIo().io,
  );
});
afterAll(() => cleanup());

async function evaluate(args: string[], env: NodeJS.ProcessEnv = {}) {
  const c = captureIo(env);
  const code = await main(["evaluate", ...args], c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

describe("mlp evaluate on IDX data", () => {
  it("measures the accuracy train-mnist measured, prints a confusion matrix, exits 0 at or above the gate", async () => {
    const resultFile = path.join(dir, "results", "evaluation.json");
    const r = await evaluate(["--model", trained.dir, "--data", data, "--gate", "0.5", "--result-file", resultFile]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    // Same test pair, same model: the number train-mnist stored in metadata.json.
    expect(result.accuracy).toBeCloseTo(trained.test!.accuracy, 6);
    expect(result).toMatchObject({ gate: 0.5, passed: true, examples: 500, kind: "idx", name: "digits", version: 1, model: trained.dir });
    expect(result.accuracy).toBeGreaterThan(0.8);
    expect(result.correct).toBe(Math.round(result.accuracy * 500));
    const m = result.confusionMatrix as number[][];
    expect(m).toHaveLength(10);
    expect(m.flat().reduce((a, b) => a + b, 0)).toBe(500);
    expect(m.reduce((s, row, i) => s + row[i]!, 0)).toBe(result.correct);
    expect(JSON.parse(await fs.readFile(resultFile, "utf8"))).toEqual(result);
    expect(r.stderr).toMatch(new RegExp(`accuracy 0\\.\\d+ \\(${result.correct}/500\\); gate 0.5: passed`));
    expect(r.stderr).toContain("confusion matrix (rows actual, columns predicted):\nactual \\ predicted     0    1");
    // Exactly the gate passes too.
    expect((await evaluate(["--model", trained.dir, "--data", data, "--gate", String(result.accuracy)])).code).toBe(0);
  });

  it("below the gate: exit 3, the message, and passed:false in the result file", async () => {
    const resultFile = path.join(dir, "results", "gated.json");
    const r = await evaluate(["--model", trained.dir, "--data", data, "--gate", "0.999", "--result-file", resultFile]);
    expect(r.code).toBe(3);
    const written = JSON.parse(await fs.readFile(resultFile, "utf8"));
    expect(written).toMatchObject({ gate: 0.999, passed: false, examples: 500 });
    const acc = String(Number(written.accuracy.toFixed(4)));
    expect(r.stderr.trim().split("\n").pop()).toBe(`mlp evaluate: accuracy ${acc} is below the gate 0.999: not publishing`);
    expect(JSON.parse(r.stdout)).toEqual(written);
  });

  it("leaks no tensors", async () => {
    const before = tf.memory().numTensors;
    const model = await loadVersion(new LocalLocation(trained.dir));
    const e = await evaluateVersion(model, new LocalLocation(data), { testPrefix: "t10k", validationPercent: 10, testPercent: 10, log: () => {} });
    model.dispose();
    expect(e.examples).toBe(500);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("a missing or incomplete model version", async () => {
    const missing = path.join(dir, "nope", "1");
    let r = await evaluate(["--model", missing, "--data", data, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mlp evaluate: ${missing}: model version directory does not exist`);
    // The model's directory instead of a version directory.
    r = await evaluate(["--model", path.dirname(trained.dir), "--data", data, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${path.dirname(trained.dir)}/model.json: not found; --model must be a version directory with model.json and metadata.json`);
  });

  it("corrupt metadata.json or model.json", async () => {
    const copy = path.join(dir, "corrupt", "1");
    await fs.cp(trained.dir, copy, { recursive: true });
    await fs.writeFile(path.join(copy, "metadata.json"), "{ not json");
    let r = await evaluate(["--model", copy, "--data", data, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mlp evaluate: ${copy}/metadata.json: not valid JSON`);
    await fs.writeFile(path.join(copy, "metadata.json"), JSON.stringify({ format: "mlplatform.model/v1", name: "x", version: 1, modelType: "layers", signatures: {} }));
    r = await evaluate(["--model", copy, "--data", data, "--gate", "0.5"]);
    expect(r.stderr).toContain(`${copy}/metadata.json: invalid model metadata: signatures must name at least one signature`);
    await fs.copyFile(path.join(trained.dir, "metadata.json"), path.join(copy, "metadata.json"));
    await fs.rm(path.join(copy, "weights.bin"));
    r = await evaluate(["--model", copy, "--data", data, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`mlp evaluate: ${copy}/model.json: cannot load the model: .*weights\\.bin`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("missing or corrupt test data", async () => {
    const noTest = path.join(dir, "no-test");
    await writeMnistIdx(noTest, { train: 50, test: 0 });
    let r = await evaluate(["--model", trained.dir, "--data", noTest, "--kind", "idx", "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mlp evaluate: ${noTest}/t10k-images-idx3-ubyte: not found (nor t10k-images-idx3-ubyte.gz)`);
    const cut = path.join(dir, "cut-test");
    await writeMnistIdx(cut, { train: 50, test: 30 });
    await fs.truncate(path.join(cut, "t10k-labels-idx1-ubyte"), 9);
    r = await evaluate(["--model", trained.dir, "--data", cut, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${cut}/t10k-labels-idx1-ubyte: not a valid IDX file: truncated`);
    r = await evaluate(["--model", trained.dir, "--data", path.join(dir, "absent"), "--gate", "0.5"]);
    expect(r.stderr).toContain(`${path.join(dir, "absent")}: data directory does not exist`);
  });

  it("an unreachable S3 endpoint", async () => {
    const port = await closedPort();
    const r = await evaluate(["--model", trained.dir, "--data", "s3://data/mnist", "--gate", "0.5", "--s3-endpoint", `http://127.0.0.1:${port}`], {
      AWS_ACCESS_KEY_ID: "k",
      AWS_SECRET_ACCESS_KEY: "s",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`mlp evaluate: s3://data/mnist: cannot reach S3 at http://127.0.0.1:${port}: .*ECONNREFUSED`));
  });

  it("bad usage exits 2", async () => {
    expect((await evaluate(["--model", trained.dir, "--data", data])).stderr).toBe(
      `mlp evaluate: --gate is required: the minimum accuracy, e.g. 0.97\nRun 'mlp evaluate --help' for its flags.\n`,
    );
    const r = await evaluate(["--model", trained.dir, "--data", data, "--gate", "97"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`mlp evaluate: --gate must be a number in [0, 1]; got "97"\nRun 'mlp evaluate --help' for its flags.\n`);
  });
});

describe("mlp evaluate on an image folder", () => {
  it("uses retrain's test split, maps folder names to the model's labels, and reads PNG and JPEG", async () => {
    const images = path.join(dir, "digit-images");
    const digits = Object.fromEntries(Array.from({ length: 10 }, (_, d) => [String(d), d]));
    await writeDigitFolder(images, digits, { perClass: 30, from: 2500 });
    await writeDigitFolder(path.join(dir, "jpg"), { "3": 3 }, { perClass: 30, from: 4000, format: "jpg" });
    for (const f of await fs.readdir(path.join(dir, "jpg", "3"))) await fs.rename(path.join(dir, "jpg", "3", f), path.join(images, "3", `j${f}`));
    let testCount = 0;
    for (const label of await fs.readdir(images)) {
      for (const f of await fs.readdir(path.join(images, label))) if (assignSet(label, f, 10, 20) === "test") testCount++;
    }
    const r = await evaluate(["--model", trained.dir, "--data", images, "--gate", "0.6", "--test-percent", "20"]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ kind: "images", data: images, examples: testCount, passed: true });
    expect(testCount).toBeGreaterThan(30);
    expect(result.accuracy).toBeGreaterThan(0.7);
  });

  it("refuses label folders the model does not know, and an empty test split", async () => {
    const other = path.join(dir, "other-labels");
    await writeDigitFolder(other, { zero: 0, one: 1 }, { perClass: 20, from: 3000 });
    let r = await evaluate(["--model", trained.dir, "--data", other, "--gate", "0.5"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mlp evaluate: ${other}: label folders one, zero are not classes of the model ${trained.dir} (its labels: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)`);
    const tiny = path.join(dir, "tiny");
    await writeDigitFolder(tiny, { "0": 0, "1": 1 }, { perClass: 2, from: 0 });
    r = await evaluate(["--model", trained.dir, "--data", tiny, "--gate", "0.5", "--test-percent", "0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${tiny}: no image falls in the test split (--test-percent 0)`);
  });
});
