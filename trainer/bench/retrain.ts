/**
 * Transfer-learning benchmark: `mlp retrain` with a real pretrained base (MobileNetV2 or
 * InceptionV3 from the npm `nsfwjs` package, converted by prepare-nsfwjs-base.ts) on
 * two-class Fashion-MNIST tasks. For each pair of classes, `--per-class` images of each class
 * from the training file of Debian's `dataset-fashion-mnist` are written as PNG files into
 * `<work>/<pair>/<label>/`, `retrain()` runs on that folder (hash split: 70% train,
 * 10% validation, 20% test), then:
 *
 * - test accuracy and the confusion matrix of retrain's own test split;
 * - the published model (base + head, one tfjs model taking images) on `--t10k-per-class`
 *   images per class of the official test file (never seen by retrain), decoded by the same
 *   code (src/retrain/decode.ts) from PNG;
 * - a second, identical run: it must take every bottleneck from the cache (computed 0).
 *
 *   npx tsx trainer/bench/retrain.ts --package <dir of an installed nsfwjs> \
 *     [--model mobilenet_v2|inception_v3] [--pairs "Trouser:Bag,Sneaker:Ankle boot,Shirt:T-shirt/top"] \
 *     [--per-class 400] [--t10k-per-class 200] [--epochs 30] [--min-accuracy 0.9]
 *
 * `nsfwjs` is not a dependency of the repository: install it anywhere else, e.g.
 * `npm install --prefix /tmp/nsfwjs --ignore-scripts --legacy-peer-deps nsfwjs@4.4.0` and pass
 * `--package /tmp/nsfwjs/node_modules/nsfwjs`. Writes JSON to bench/results/; exits 1 when the
 * first pair's test accuracy is below `--min-accuracy` or a rerun computed bottlenecks again.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { retrain, type RetrainOptions, type RetrainResult } from "../src/commands/retrain";
import type { CommandIo } from "../src/commands/command";
import { loadIdxPair, type ImageDataset } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { confusionMatrix, formatConfusionMatrix } from "../src/retrain/confusion";
import { decodeImage, type ImageSpec } from "../src/retrain/decode";
import { tf, type Tensor } from "../src/tf";
import { prepareNsfwjsBase } from "./prepare-nsfwjs-base";

const FASHION_DIR = "/usr/share/datasets/fashion-mnist";
const FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
/** Default pairs: the first is the target task; the others are harder. */
const DEFAULT_PAIRS = "Sneaker:Ankle boot,Trouser:Bag,Shirt:T-shirt/top";
/**
 * Bottleneck of both nsfwjs models: `flatten_1`, the pooled features (1280 values for
 * MobileNetV2) right before nsfwjs' own dense head (dense_1 → dense_2 → dense_3).
 */
const BOTTLENECK = "flatten_1";

/** "Ankle boot" → "ankle-boot", "T-shirt/top" → "t-shirt-top": a folder name. */
const slug = (label: string) => label.toLowerCase().replace(/[^a-z0-9]+/g, "-");

function classIndex(name: string): number {
  const i = FASHION_LABELS.findIndex((l) => l.toLowerCase() === name.trim().toLowerCase());
  if (i < 0) throw new Error(`unknown Fashion-MNIST class ${JSON.stringify(name)}; classes: ${FASHION_LABELS.join(", ")}`);
  return i;
}

function pngOf(ds: ImageDataset, k: number): Promise<Buffer> {
  const px = ds.height * ds.width;
  return sharp(Buffer.from(ds.images.subarray(k * px, (k + 1) * px)), { raw: { width: ds.width, height: ds.height, channels: 1 } })
    .png()
    .toBuffer();
}

/** Indices of the first `n` examples of each class in `classes`. */
function firstOfEach(ds: ImageDataset, classes: readonly number[], n: number): Map<number, number[]> {
  const out = new Map(classes.map((c) => [c, [] as number[]]));
  for (let k = 0; k < ds.count; k++) {
    const list = out.get(ds.labels[k]!);
    if (list && list.length < n) list.push(k);
  }
  for (const [c, list] of out) if (list.length < n) throw new Error(`${FASHION_DIR}: only ${list.length} images of ${FASHION_LABELS[c]}`);
  return out;
}

/** Accuracy and confusion matrix of the published model (images in, probabilities out) on PNGs. */
async function evaluatePublished(dir: string, spec: ImageSpec, samples: { png: Buffer; label: number }[], numClasses: number) {
  const model = await tf.loadLayersModel(`file://${path.join(dir, "model.json")}`);
  const predicted: number[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < samples.length; i += 32) {
      const part = samples.slice(i, i + 32);
      const pixels = await Promise.all(part.map((s, k) => decodeImage(s.png, `t10k #${i + k}`, spec)));
      const flat = new Float32Array(part.length * spec.height * spec.width * spec.channels);
      pixels.forEach((p, k) => flat.set(p, k * p.length));
      const pred = tf.tidy(() => (model.predict(tf.tensor4d(flat, [part.length, spec.height, spec.width, spec.channels])) as Tensor).argMax(-1).dataSync());
      predicted.push(...pred);
    }
  } finally {
    model.dispose();
  }
  const actual = samples.map((s) => s.label);
  const correct = predicted.filter((p, i) => p === actual[i]).length;
  return {
    accuracy: correct / samples.length,
    count: samples.length,
    confusionMatrix: confusionMatrix(actual, predicted, numClasses),
    imagesPerSec: samples.length / ((performance.now() - t0) / 1000),
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      package: { type: "string" },
      model: { type: "string" },
      base: { type: "string" },
      "bottleneck-layer": { type: "string" },
      pairs: { type: "string" },
      "per-class": { type: "string" },
      "t10k-per-class": { type: "string" },
      epochs: { type: "string" },
      "learning-rate": { type: "string" },
      "hidden-units": { type: "string" },
      "min-accuracy": { type: "string" },
    },
  });
  const perClass = Number(values["per-class"] ?? 400);
  const t10kPerClass = Number(values["t10k-per-class"] ?? 200);
  const minAccuracy = Number(values["min-accuracy"] ?? 0.9);
  const modelName = values.model ?? "mobilenet_v2";
  const bottleneckLayer = values["bottleneck-layer"] ?? BOTTLENECK;
  const pairs = (values.pairs ?? DEFAULT_PAIRS).split(",").map((p) => {
    const names = p.split(":");
    if (names.length !== 2) throw new Error(`--pairs: ${JSON.stringify(p)} is not "<class>:<class>"`);
    return names.map(classIndex) as [number, number];
  });
  const cache = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
  let nsfwjsVersion: string | undefined;
  let baseDir = values.base;
  if (!baseDir) {
    if (!values.package) throw new Error("pass --package <dir of an installed nsfwjs> (or --base <prepared model dir>); see the comment at the top of bench/retrain.ts");
    const pkgJson = JSON.parse(await fs.readFile(path.join(values.package, "package.json"), "utf8")) as { name: string; version: string };
    if (pkgJson.name !== "nsfwjs") throw new Error(`${values.package} is ${pkgJson.name}, not nsfwjs`);
    nsfwjsVersion = pkgJson.version;
    baseDir = await prepareNsfwjsBase(values.package, modelName, path.join(cache, "base-models", `nsfwjs-${nsfwjsVersion}-${modelName}`));
  }
  await fs.access(path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")).catch(() => {
    throw new Error(`${FASHION_DIR} is missing: apt-get install -y dataset-fashion-mnist`);
  });
  const train = await loadIdxPair(new LocalSource(FASHION_DIR), "train");
  const t10k = await loadIdxPair(new LocalSource(FASHION_DIR), "t10k");

  const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-bench-retrain-"));
  const io = { stdout: process.stdout, stderr: process.stderr, env: {} } as unknown as CommandIo;
  const loadBefore = os.loadavg();
  const rows: Record<string, unknown>[] = [];
  try {
    for (const [a, b] of pairs) {
      const labels = [FASHION_LABELS[a]!, FASHION_LABELS[b]!];
      const pairName = `${slug(labels[0]!)}-vs-${slug(labels[1]!)}`;
      process.stderr.write(`\n== ${labels[0]} vs ${labels[1]}: ${perClass} PNG images per class\n`);
      const images = path.join(work, pairName, "images");
      for (const [c, list] of firstOfEach(train, [a, b], perClass)) {
        const dir = path.join(images, slug(FASHION_LABELS[c]!));
        await fs.mkdir(dir, { recursive: true });
        for (const k of list) await fs.writeFile(path.join(dir, `train-${String(k).padStart(5, "0")}.png`), await pngOf(train, k));
      }
      const opts: RetrainOptions = {
        images,
        baseModel: baseDir,
        bottleneckLayer,
        cacheDir: path.join(work, pairName, "bottlenecks"),
        modelBase: path.join(work, pairName, "models"),
        name: pairName,
        epochs: Number(values.epochs ?? 30),
        batchSize: 32,
        learningRate: Number(values["learning-rate"] ?? 0.003),
        hiddenUnits: Number(values["hidden-units"] ?? 0),
        dropout: 0,
        validationPercent: 10,
        testPercent: 20,
        seed: 42,
        progress: "lines",
      };
      let t0 = performance.now();
      const cold: RetrainResult = await retrain(opts, io);
      const coldSeconds = (performance.now() - t0) / 1000;
      t0 = performance.now();
      const warm: RetrainResult = await retrain(opts, io);
      const warmSeconds = (performance.now() - t0) / 1000;

      // Folder labels are sorted: map Fashion-MNIST classes to the retrained model's class ids.
      const idOf = new Map([a, b].map((c) => [c, cold.labels.indexOf(slug(FASHION_LABELS[c]!))]));
      const samples: { png: Buffer; label: number }[] = [];
      for (const [c, list] of firstOfEach(t10k, [a, b], t10kPerClass)) for (const k of list) samples.push({ png: await pngOf(t10k, k), label: idOf.get(c)! });
      const spec: ImageSpec = { height: 0, width: 0, channels: 3, range: [0, 1] };
      const meta = JSON.parse(await fs.readFile(path.join(cold.dir, "metadata.json"), "utf8")) as {
        preprocessing: { height: number; width: number; channels: 1 | 3; range: [number, number] };
        training: { trainImages: number; validationImages: number; testImages: number };
      };
      Object.assign(spec, meta.preprocessing);
      const official = await evaluatePublished(cold.dir, spec, samples, 2);

      const row = {
        pair: `${labels[0]} vs ${labels[1]}`,
        labels: cold.labels,
        imagesPerClass: perClass,
        trainImages: meta.training.trainImages,
        validationImages: meta.training.validationImages,
        testImages: meta.training.testImages,
        testAccuracy: cold.metrics.testAccuracy,
        validationAccuracy: cold.metrics.validationAccuracy,
        trainAccuracy: cold.metrics.trainAccuracy,
        confusionMatrix: cold.confusionMatrix,
        t10kAccuracy: official.accuracy,
        t10kImages: official.count,
        t10kConfusionMatrix: official.confusionMatrix,
        publishedModelImagesPerSec: Math.round(official.imagesPerSec),
        coldSeconds: Number(coldSeconds.toFixed(1)),
        coldBottlenecks: cold.bottlenecks,
        bottleneckImagesPerSecCold: Math.round((perClass * 2) / coldSeconds),
        warmSeconds: Number(warmSeconds.toFixed(1)),
        warmBottlenecks: warm.bottlenecks,
        warmTestAccuracy: warm.metrics.testAccuracy,
        cacheOk: warm.bottlenecks.computed === 0 && warm.bottlenecks.cached === perClass * 2,
      };
      rows.push(row);
      process.stderr.write(
        `${row.pair}: test accuracy ${row.testAccuracy?.toFixed(4)}, official t10k ${official.accuracy.toFixed(4)} (${official.count} images)\n` +
          `t10k confusion matrix (published model):\n${formatConfusionMatrix(official.confusionMatrix, cold.labels)}\n` +
          `rerun: ${warm.bottlenecks.computed} bottlenecks computed, ${warm.bottlenecks.cached} from the cache\n`,
      );
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg();

  console.log(`\nmlp retrain on two-class Fashion-MNIST (PNG), base nsfwjs ${nsfwjsVersion ?? "?"} ${modelName} cut at ${bottleneckLayer}\n`);
  console.log(
    "| pair | images | test acc (retrain split) | confusion (rows actual) | t10k acc (published model) | t10k confusion | cold s | cold img/s | rerun: computed / cached | rerun s |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows as Record<string, any>[]) {
    const cm = (m: number[][]) => m.map((row) => row.join(" ")).join(" / ");
    console.log(
      `| ${r.pair} (${r.labels.join(", ")}) | ${r.imagesPerClass * 2} | ${r.testAccuracy?.toFixed(4)} | ${cm(r.confusionMatrix)} | ${r.t10kAccuracy.toFixed(4)} | ${cm(r.t10kConfusionMatrix)} | ${r.coldSeconds} | ${r.bottleneckImagesPerSecCold} | ${r.warmBottlenecks.computed} / ${r.warmBottlenecks.cached} | ${r.warmSeconds} |`,
    );
  }
  console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}`);
  const target = rows[0] as { testAccuracy?: number; pair: string };
  const pass = (target.testAccuracy ?? 0) >= minAccuracy;
  const cacheOk = rows.every((r) => r.cacheOk);
  console.log(`target: ${target.pair} test accuracy ≥ ${minAccuracy}: ${pass ? "met" : "NOT met"}; second runs computed no bottleneck: ${cacheOk ? "yes" : "NO"}`);

  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  const date = new Date().toISOString();
  const result = {
    benchmark: "retrain",
    date,
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
    },
    versions: {
      node: process.versions.node,
      tfjs: tf.version.tfjs,
      libtensorflow: backend.binding?.TF_Version,
      backend: tf.getBackend(),
      nsfwjs: nsfwjsVersion,
      onednn: process.env.TF_ENABLE_ONEDNN_OPTS ?? "unset",
    },
    settings: {
      base: `nsfwjs ${modelName}`,
      baseDir,
      bottleneckLayer,
      perClass,
      t10kPerClass,
      epochs: Number(values.epochs ?? 30),
      learningRate: Number(values["learning-rate"] ?? 0.003),
      hiddenUnits: Number(values["hidden-units"] ?? 0),
      split: { validationPercent: 10, testPercent: 20 },
      minAccuracy,
    },
    target: { pair: target.pair, testAccuracy: target.testAccuracy, pass },
    cacheOk,
    results: rows,
  };
  const outDir = path.join(__dirname, "results");
  await fs.mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `retrain-${date.replace(/[:.]/g, "-")}.json`);
  await fs.writeFile(file, JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  if (!pass || !cacheOk) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
