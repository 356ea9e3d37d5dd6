/**
 * Transfer-learning benchmark: `mlp retrain` with a real ImageNet-style base (MobileNetV2 from
 * the npm `nsfwjs` package, converted by prepare-nsfwjs-base.ts) on Fashion-MNIST images
 * written as PNG files per label (`--per-class` of each class from the Debian package's
 * training file). Reports accuracy, bottleneck images/s (cold) and the time of a second,
 * fully cached run; writes JSON to bench/results/.
 *
 *   npx tsx trainer/bench/retrain.ts --package <path to nsfwjs> [--per-class 100]
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { retrain, type RetrainOptions } from "../src/commands/retrain";
import type { CommandIo } from "../src/commands/command";
import { loadIdxPair } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { tf } from "../src/tf";
import { prepareNsfwjsBase } from "./prepare-nsfwjs-base";

const FASHION_LABELS = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"];

async function main() {
  const { values } = parseArgs({ options: { package: { type: "string" }, "per-class": { type: "string" }, base: { type: "string" } } });
  const perClass = Number(values["per-class"] ?? 100);
  const cache = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
  const baseDir =
    values.base ??
    (await prepareNsfwjsBase(values.package ?? path.dirname(require.resolve("nsfwjs/package.json")), "mobilenet_v2", path.join(cache, "base-models", "nsfwjs-mobilenet_v2")));
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-bench-retrain-"));
  try {
    const ds = await loadIdxPair(new LocalSource("/usr/share/datasets/fashion-mnist"), "train");
    const counts = new Array<number>(10).fill(0);
    for (let k = 0; k < ds.count && counts.some((c) => c < perClass); k++) {
      const label = ds.labels[k]!;
      if (counts[label]! >= perClass) continue;
      counts[label]!++;
      const dir = path.join(work, "images", FASHION_LABELS[label]!);
      await fs.mkdir(dir, { recursive: true });
      await sharp(Buffer.from(ds.images.subarray(k * 784, (k + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(path.join(dir, `${k}.png`));
    }
    const io = { stdout: process.stdout, stderr: process.stderr, env: {} } as unknown as CommandIo;
    const opts: RetrainOptions = {
      images: path.join(work, "images"),
      baseModel: baseDir,
      bottleneckLayer: "average_pooling2d_1",
      cacheDir: path.join(work, "cache"),
      modelBase: path.join(work, "models"),
      name: "fashion-retrained",
      epochs: 30,
      batchSize: 32,
      learningRate: 0.003,
      hiddenUnits: 0,
      dropout: 0,
      validationPercent: 10,
      testPercent: 20,
      seed: 42,
      progress: "lines",
    };
    let t0 = performance.now();
    const cold = await retrain(opts, io);
    const coldSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const warm = await retrain(opts, io);
    const warmSeconds = (performance.now() - t0) / 1000;
    const images = perClass * 10;
    const row = {
      base: "nsfwjs MobileNetV2 (224×224×3) cut at average_pooling2d_1",
      images,
      testAccuracy: cold.metrics.testAccuracy,
      validationAccuracy: cold.metrics.validationAccuracy,
      coldSeconds: Number(coldSeconds.toFixed(1)),
      bottleneckImagesPerSecCold: Math.round(images / coldSeconds),
      warmSeconds: Number(warmSeconds.toFixed(1)),
      warmCached: warm.bottlenecks.cached,
    };
    console.log("\n| base | images | test acc | cold s | cold img/s | cached rerun s |");
    console.log("|---|---|---|---|---|---|");
    console.log(`| ${row.base} | ${images} | ${row.testAccuracy?.toFixed(4)} | ${row.coldSeconds} | ${row.bottleneckImagesPerSecCold} | ${row.warmSeconds} |`);
    const result = {
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadAverage1m: os.loadavg()[0] },
      versions: { node: process.versions.node, tfjs: tf.version.tfjs, backend: tf.getBackend() },
      results: [row],
      confusionMatrix: cold.confusionMatrix,
      labels: cold.labels,
    };
    const outDir = path.join(__dirname, "results");
    await fs.mkdir(outDir, { recursive: true });
    const file = path.join(outDir, `retrain-${result.date.replace(/[:.]/g, "-")}.json`);
    await fs.writeFile(file, JSON.stringify(result, null, 2) + "\n");
    console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
