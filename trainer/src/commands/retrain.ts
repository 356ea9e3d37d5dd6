/**
 * `mlp retrain`: transfer learning on a folder of labelled images (a local directory, or an S3
 * prefix mirrored incrementally into the cache directory first). The base model's
 * bottleneck features are computed once per image (cached by content hash and base model id),
 * a new softmax head is trained on them, and base + head are published as one model.
 */
import * as os from "node:os";
import * as path from "node:path";
import { promises as fs } from "node:fs";
import { resolveS3Options, type S3Options } from "../data/source";
import { DataError, TrainingError, UsageError } from "../errors";
import { publishModelVersion } from "../export/publish";
import { DEFAULT_SIGNATURE } from "../metadata";
import { loadBaseModel } from "../retrain/base-model";
import { baseModelsDir, DEFAULT_BASE_MODELS_DIR, resolveBaseModel } from "../retrain/fetch-base";
import { bottlenecks } from "../retrain/bottlenecks";
import { confusionMatrix, formatConfusionMatrix } from "../retrain/confusion";
import { scanImageFolder, type ImageFolder, type SetName } from "../retrain/folder";
import { localImageFolder } from "../pipeline/dataset";
import { S3Location } from "../pipeline/location";
import { attachHead, createHead, featureSet, predictClasses, trainHead } from "../retrain/head";
import { createReducer, DEFAULT_DISTRIBUTED, DISTRIBUTED_FLAGS, distributedOptions, servedAsParameterServer, type DistributedOptions } from "../distributed";
import type { ProgressMode } from "../train/progress";
import { parseTfConfig, replicaName } from "../train/tfconfig";
import { tensorBoardSinks } from "../train/summaries";
import { METRICS_FLAGS, parseMetricsPort, replicaLabel, startTrainingMetrics, type StepObserver } from "../train/metrics-server";
import { tf } from "../tf";
import { defineFlags } from "../util/flags";
import { writeFileAtomic } from "../util/fs";
import { defineCommand, type CommandIo } from "./command";
import { parseRange, S3_FLAGS, s3Options, SPLIT_FLAGS, splitPercents } from "./shared-flags";

export interface RetrainOptions {
  /** A local directory, or `s3://bucket/prefix` (mirrored into `<cacheDir>/images`). */
  readonly images: string;
  /** How to reach S3 for `s3://` images. Default: from the environment ({@link resolveS3Options}). */
  readonly s3?: S3Options;
  /** A model directory, or a name fetched into {@link baseModels} by `mlp fetch-base`. */
  readonly baseModel: string;
  /** Cache root of `mlp fetch-base`. Default {@link baseModelsDir}. */
  readonly baseModels?: string;
  readonly bottleneckLayer?: string;
  readonly range?: readonly [number, number];
  readonly cacheDir: string;
  readonly modelBase: string;
  readonly name: string;
  readonly steps?: number;
  readonly epochs?: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly hiddenUnits: number;
  readonly dropout: number;
  readonly validationPercent: number;
  readonly testPercent: number;
  readonly seed: number;
  readonly logdir?: string;
  readonly minAccuracy?: number;
  readonly resultFile?: string;
  readonly progress: ProgressMode;
  /** Timeouts and PS mode of a distributed run (TF_CONFIG). Default {@link DEFAULT_DISTRIBUTED}. */
  readonly distributed?: DistributedOptions;
  /** Told about every step (the metrics server of `--metrics-port`). */
  readonly observer?: StepObserver;
}

export interface RetrainResult {
  /** The published version; 0 on a replica that does not publish (not the chief). */
  readonly version: number;
  /** Its directory; "" on a replica that does not publish. */
  readonly dir: string;
  /** `chief #0 (host:port)`, `worker #1 (host:port)`; `local` without TF_CONFIG. */
  readonly replica: string;
  readonly labels: readonly string[];
  readonly metrics: Record<string, number>;
  /** Rows: actual class, columns: predicted class, on the test set (else validation). */
  readonly confusionMatrix: number[][];
  readonly bottlenecks: { readonly computed: number; readonly cached: number; readonly baseModelId: string };
}

/** Default bottleneck cache: `${MLPLATFORM_CACHE:-~/.cache/mlplatform}/bottlenecks`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return path.join(env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform"), "bottlenecks");
}

/** Where S3 images are mirrored: `<cacheDir>/images/<bucket>/<prefix>` (pipeline/mirror.ts mirrorDir). */
export function imagesCacheDir(cacheDir: string): string {
  return path.join(cacheDir, "images");
}

/**
 * The image folder of `--images` and how to name it in messages and metadata: a local
 * directory as given, an S3 prefix through its mirror (by its URL).
 */
async function openImages(opts: RetrainOptions, io: CommandIo, say: (m: string) => void): Promise<{ folder: ImageFolder; source: string }> {
  if (!opts.images.startsWith("s3://")) {
    const folder = await scanImageFolder(opts.images, opts.validationPercent, opts.testPercent);
    return { folder, source: folder.root };
  }
  const loc = new S3Location(opts.images, opts.s3 ?? resolveS3Options({}, io.env));
  try {
    const { folder, source } = await localImageFolder(loc, opts.validationPercent, opts.testPercent, { cacheDir: imagesCacheDir(opts.cacheDir), log: say });
    return { folder, source };
  } finally {
    await loc.close();
  }
}

export async function retrain(opts: RetrainOptions, io: CommandIo): Promise<RetrainResult> {
  const say = (m: string) => io.stderr.write(`${m}\n`);
  // TF_CONFIG: the head trains data-parallel across the training replicas (each computes the
  // bottlenecks it needs from the shared cache); only the chief evaluates and publishes.
  const task = parseTfConfig(io.env.TF_CONFIG);
  const replica = task ? replicaName(task) : "local";
  if (task) say(`TF_CONFIG: ${replica}, ${task.numTrainingReplicas} training replica(s), ${task.ps.length} PS: ${task.strategy}`);
  if (task?.type === "ps") throw new UsageError(`TF_CONFIG makes this process ${replica}, a parameter server: run it with \`mlp retrain\`, which serves the variables`);
  const isChief = task?.isChief ?? true;
  const { folder, source } = await openImages(opts, io, say);
  const baseDir = await resolveBaseModel(opts.baseModel, opts.baseModels ?? baseModelsDir(io.env));
  const base = await loadBaseModel(baseDir, { bottleneckLayer: opts.bottleneckLayer, range: opts.range });
  const count = (s: SetName) => folder.images.filter((i) => i.set === s).length;
  say(
    `images ${source}: ${folder.labels.length} labels, ${count("train")} training, ${count("validation")} validation, ${count("test")} test; ` +
      `base ${base.dir} (id ${base.id}) cut at ${base.bottleneckLayer} → features [${base.featureShape.join(", ")}], input ${base.spec.height}×${base.spec.width}×${base.spec.channels}`,
  );
  if (count("train") === 0) throw new UsageError(`${source}: no image falls in the training set; add images or lower --test-percent/--validation-percent`);

  let lastLine = performance.now();
  const bn = await bottlenecks(
    folder.images.map((i) => i.file),
    base,
    opts.cacheDir,
    {
      onProgress: (done, total) => {
        if (done === total || performance.now() - lastLine > 5000) {
          lastLine = performance.now();
          say(`bottlenecks: ${done}/${total}`);
        }
      },
    },
  ).catch((e: unknown) => {
    // A mirrored image is named by its S3 URL.
    if (e instanceof DataError && source !== folder.root) throw new DataError(e.message.split(folder.root).join(source), { cause: e });
    throw e;
  });
  say(`bottlenecks: ${bn.computed} computed, ${bn.cached} from the cache ${path.join(opts.cacheDir, base.id)}`);

  const sets = Object.fromEntries(
    (["train", "validation", "test"] as const).map((s) => {
      const idx = folder.images.flatMap((img, i) => (img.set === s ? [i] : []));
      return [
        s,
        featureSet(
          idx.map((i) => bn.features[i]!),
          idx.map((i) => folder.images[i]!.labelIndex),
        ),
      ];
    }),
  ) as Record<SetName, ReturnType<typeof featureSet>>;

  const numClasses = folder.labels.length;
  const stepsPerEpoch = Math.ceil(sets.train.count / (opts.batchSize * (task?.numTrainingReplicas ?? 1)));
  const steps = opts.steps ?? Math.max(1, Math.ceil((opts.epochs ?? 20) * stepsPerEpoch));
  const head = createHead(base.featureShape, numClasses, { hiddenUnits: opts.hiddenUnits, dropout: opts.dropout, seed: opts.seed });
  const summaries = opts.logdir && isChief ? tensorBoardSinks(opts.logdir) : undefined;
  try {
    const reducer = await createReducer(task, opts.distributed ?? DEFAULT_DISTRIBUTED, say);
    const trained = await trainHead(head, sets.train, base.featureShape, numClasses, {
      reducer,
      config: { baseModelId: base.id, bottleneckLayer: base.bottleneckLayer, labels: folder.labels.join(","), hiddenUnits: opts.hiddenUnits, dropout: opts.dropout },
      steps,
      batchSize: opts.batchSize,
      learningRate: opts.learningRate,
      seed: opts.seed,
      summaries,
      progress: { out: io.stderr, mode: opts.progress },
      observer: opts.observer,
    });
    const metrics: Record<string, number> = { trainLoss: trained.loss, trainAccuracy: trained.accuracy };
    if (!isChief) {
      say(`${replica}: ${steps} steps done; the chief evaluates and publishes`);
      return { version: 0, dir: "", replica, labels: folder.labels, metrics, confusionMatrix: [], bottlenecks: { computed: bn.computed, cached: bn.cached, baseModelId: base.id } };
    }
    let confusion: number[][] = [];
    for (const s of ["validation", "test"] as const) {
      if (sets[s].count === 0) continue;
      const pred = predictClasses(head, sets[s], base.featureShape, numClasses);
      const correct = pred.reduce((n, p, i) => n + (p === sets[s].labels[i] ? 1 : 0), 0);
      metrics[`${s}Accuracy`] = correct / sets[s].count;
      confusion = confusionMatrix(sets[s].labels, pred, numClasses);
      summaries?.validation.scalar(`${s}_accuracy`, metrics[`${s}Accuracy`]!, steps);
      say(`${s} accuracy ${metrics[`${s}Accuracy`]!.toFixed(4)} (${sets[s].count} images)`);
    }
    if (confusion.length) say(`confusion matrix (${sets.test.count ? "test" : "validation"}):\n${formatConfusionMatrix(confusion, folder.labels)}`);

    const gate = metrics.testAccuracy ?? metrics.validationAccuracy;
    if (opts.minAccuracy !== undefined) {
      if (gate === undefined) throw new UsageError("--min-accuracy needs test or validation images to measure");
      if (gate < opts.minAccuracy) throw new TrainingError(`accuracy ${gate.toFixed(4)} is below --min-accuracy ${opts.minAccuracy}; no version was published`);
    }

    const full = attachHead(base, head);
    const { height, width, channels, range } = base.spec;
    const published = await publishModelVersion({
      modelBase: opts.modelBase,
      name: opts.name,
      model: full.model,
      metadata: {
        modelType: full.modelType,
        signatures: {
          [DEFAULT_SIGNATURE]: {
            methodName: "tensorflow/serving/predict",
            inputs: { images: { dtype: "float32", shape: [-1, height, width, channels] } },
            outputs: { probabilities: { dtype: "float32", shape: [-1, numClasses] } },
          },
        },
        preprocessing: { kind: "image", height, width, channels, range: [range[0], range[1]] },
        labels: folder.labels,
        metrics,
        training: {
          kind: "retrain",
          images: source,
          baseModel: base.dir,
          baseModelId: base.id,
          bottleneckLayer: base.bottleneckLayer,
          steps,
          batchSize: opts.batchSize,
          learningRate: opts.learningRate,
          hiddenUnits: opts.hiddenUnits,
          dropout: opts.dropout,
          seed: opts.seed,
          trainImages: sets.train.count,
          ...(task && task.numTrainingReplicas > 1 && { replicas: task.numTrainingReplicas, distribution: task.strategy }),
          validationImages: sets.validation.count,
          testImages: sets.test.count,
          confusionMatrix: confusion,
          backend: tf.getBackend(),
          tfjsVersion: tf.version.tfjs,
        },
      },
    });
    say(`published ${published.dir} (version ${published.version})`);
    const result: RetrainResult = {
      ...published,
      replica,
      labels: folder.labels,
      metrics,
      confusionMatrix: confusion,
      bottlenecks: { computed: bn.computed, cached: bn.cached, baseModelId: base.id },
    };
    if (opts.resultFile) {
      await fs.mkdir(path.dirname(path.resolve(opts.resultFile)), { recursive: true });
      await writeFileAtomic(opts.resultFile, JSON.stringify(result, null, 2) + "\n");
    }
    return result;
  } finally {
    summaries?.train.flush();
    summaries?.validation.flush();
    head.dispose();
    base.dispose();
  }
}

export const RETRAIN_FLAGS = defineFlags({
  images: {
    kind: "string",
    arg: "<dir|s3://…>",
    help: "one subdirectory per label; an S3 prefix is mirrored into <cache-dir>/images first (only changed objects are downloaded)",
    required: true,
  },
  "base-model": {
    kind: "string",
    arg: "<dir|name>",
    help: "directory with model.json, e.g. a published version, or the name of a model fetched with mlp fetch-base, e.g. inception-v3",
    required: true,
  },
  "base-models": { kind: "string", arg: "<dir>", help: "where fetch-base caches models", defaultHelp: `$MLP_BASE_MODELS or ${DEFAULT_BASE_MODELS_DIR}` },
  "bottleneck-layer": {
    kind: "string",
    arg: "<name>",
    help: "layer (graph: output node) whose output is the feature vector",
    defaultHelp: "fetch-base's choice, else the one feeding the last layer",
  },
  range: { kind: "parsed", arg: "<lo,hi>", help: "input pixel range", defaultHelp: "from fetch-base or the base's metadata.json, else 0,1", parse: parseRange },
  "cache-dir": {
    kind: "string",
    arg: "<dir>",
    help: "bottleneck cache, and mirrors of S3 images under images/",
    defaultHelp: "$MLPLATFORM_CACHE/bottlenecks or ~/.cache/mlplatform/bottlenecks",
  },
  ...SPLIT_FLAGS,
  ...S3_FLAGS,
  steps: { kind: "int", min: 1, help: "head training length in steps (or give --epochs)", defaultHelp: "20 epochs" },
  epochs: { kind: "float", min: 0.001, help: "head training length in epochs (or give --steps)" },
  "batch-size": { kind: "int", min: 1, max: 65536, default: 32, help: "examples per step per training replica" },
  "learning-rate": { kind: "float", min: 1e-7, max: 10, default: 0.001, arg: "<f>", help: "learning rate" },
  "hidden-units": { kind: "int", min: 0, max: 65536, default: 0, help: "hidden layer in the head (0: softmax only)" },
  dropout: { kind: "float", min: 0, max: 0.95, default: 0, arg: "<f>", help: "dropout rate" },
  seed: { kind: "int", min: 0, max: 2 ** 32 - 1, default: 42, help: "seeds initialisation and batch order" },
  "model-base": { kind: "string", arg: "<dir>", help: "root of published models", required: true },
  name: { kind: "string", arg: "<name>", default: "retrained", help: "model name" },
  logdir: { kind: "string", arg: "<dir>", help: "TensorBoard event files (train/, validation/)" },
  "min-accuracy": { kind: "float", min: 0, max: 1, arg: "<f>", help: "publish only if test (else validation) accuracy ≥ f" },
  "result-file": { kind: "string", arg: "<file>", help: "write the result as JSON" },
  progress: { kind: "choice", choices: ["auto", "bar", "lines", "none"], default: "auto", help: "auto: a bar on a terminal, lines otherwise" },
  ...METRICS_FLAGS,
  ...DISTRIBUTED_FLAGS,
});

export const command = defineCommand({
  name: "retrain",
  flags: RETRAIN_FLAGS,
  help: {
    about: `Transfer learning: images in <dir>/<label>/*.{jpg,png,webp,…} are decoded with sharp, fed
through the base model (a tfjs Layers or Graph model) up to its bottleneck, and a new
softmax head is trained on those features. Base and head are published together as
<model-base>/<name>/<version>/. Features are cached by image content and base model.
With --images s3://bucket/prefix the objects <prefix>/<label>/<image> are mirrored into
<cache-dir>/images/<bucket>/<prefix> first; later runs download only what changed.`,
    notes: `--batch-size is per training replica; every replica computes (or reads from --cache-dir)
the bottlenecks of all images.

Environment: TF_CONFIG (TFJob: chief/master, workers, ps), MLP_TFJS_BACKEND=gpu,
  MLP_TRAIN_STEP=compiled|eager|autograd (default: the fastest the head allows).`,
  },
  async run(f, io: CommandIo): Promise<number> {
    const distributed = distributedOptions(f);
    if (await servedAsParameterServer(io, distributed)) return 0;
    if (f.steps !== undefined && f.epochs !== undefined) throw new UsageError("give --steps or --epochs, not both");
    const { validationPercent, testPercent } = splitPercents(f);
    const name = f.name;
    const metrics = await startTrainingMetrics(parseMetricsPort(f["metrics-port"], io.env), { replica: replicaLabel(parseTfConfig(io.env.TF_CONFIG)), model: name }, (m) =>
      io.stderr.write(`${m}\n`),
    );
    const result = await retrain(
      {
        images: f.images,
        s3: f.images.startsWith("s3://") ? s3Options(f, io.env) : undefined,
        baseModel: f["base-model"],
        baseModels: f["base-models"],
        bottleneckLayer: f["bottleneck-layer"],
        range: f.range,
        cacheDir: f["cache-dir"] ?? defaultCacheDir(io.env),
        modelBase: f["model-base"],
        name,
        steps: f.steps,
        epochs: f.epochs,
        batchSize: f["batch-size"],
        learningRate: f["learning-rate"],
        hiddenUnits: f["hidden-units"],
        dropout: f.dropout,
        validationPercent,
        testPercent,
        seed: f.seed,
        logdir: f.logdir,
        minAccuracy: f["min-accuracy"],
        resultFile: f["result-file"],
        progress: f.progress,
        distributed,
        observer: metrics.observer,
      },
      io,
    ).finally(() => metrics.close());
    io.stdout.write(`${JSON.stringify({ version: result.version, dir: result.dir, replica: result.replica, metrics: result.metrics, labels: result.labels })}\n`);
    return 0;
  },
});
