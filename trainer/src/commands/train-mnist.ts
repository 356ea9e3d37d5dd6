/**
 * `mlp train-mnist`: reads MNIST-style IDX files, trains the CNN of model/mnist.ts, and
 * publishes `<model-base>/<name>/<version>/` with metadata. Also the entry the TFJob runs.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { splitTrainValidation } from "../data/batches";
import { idxPairNames, loadIdxPair, takeFirst, type ImageDataset } from "../data/images";
import { DataFileNotFoundError, openSource, resolveS3Options, S3Source } from "../data/source";
import { TrainingError, UsageError } from "../errors";
import { publishModelVersion } from "../export/publish";
import { DEFAULT_SIGNATURE } from "../metadata";
import { createMnistModel, MNIST_INPUT_NAME, MNIST_OUTPUT_NAME } from "../model/mnist";
import { evaluate, train, type EvalResult, type TrainResult } from "../train/loop";
import type { ProgressMode } from "../train/progress";
import { tensorBoardSinks } from "../train/summaries";
import { parseTfConfig, replicaName } from "../train/tfconfig";
import { createReducer, DEFAULT_DISTRIBUTED, DISTRIBUTED_FLAGS, distributedOptions, servedAsParameterServer, type DistributedOptions } from "../distributed";
import { readPublishedRecord, writePublishedRecord } from "../train/published";
import { METRICS_FLAGS, parseMetricsPort, replicaLabel, startTrainingMetrics, type StepObserver } from "../train/metrics-server";
import { tf } from "../tf";
import { writeFileAtomic } from "../util/fs";
import { defineFlags } from "../util/flags";
import { defineCommand, type CommandIo } from "./command";
import { S3_FLAGS } from "./shared-flags";

export interface TrainMnistOptions {
  /** Directory or `s3://bucket/prefix` holding `<trainPrefix>-images-idx3-ubyte[.gz]` etc. */
  readonly data: string;
  readonly modelBase: string;
  readonly name: string;
  /** IDX prefix of the training pair. Default `train`. */
  readonly trainPrefix?: string;
  /** IDX prefix of the test pair; `null` = no test set. Default `t10k`, used if present. */
  readonly testPrefix?: string | null;
  readonly steps?: number;
  readonly epochs?: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly validationSplit: number;
  readonly hiddenUnits: number;
  readonly dropout: number;
  readonly seed: number;
  readonly maxTrainExamples?: number;
  readonly evalEvery?: number;
  readonly logdir?: string;
  readonly checkpointDir?: string;
  readonly checkpointEvery: number;
  readonly labels?: readonly string[];
  /** Refuse to publish when test (else validation) accuracy is below this. */
  readonly minAccuracy?: number;
  readonly resultFile?: string;
  readonly progress: ProgressMode;
  readonly s3?: { endpoint?: string; region?: string; maxAttempts?: number };
  /** Test hook, see TrainOptions.crashAfterStep. */
  readonly crashAfterStep?: number;
  /** Timeouts and PS mode of a distributed run (TF_CONFIG). Default {@link DEFAULT_DISTRIBUTED}. */
  readonly distributed?: DistributedOptions;
  /** Publish a new version even when the checkpoint says this run already finished and published. */
  readonly publishAgain?: boolean;
  /** Told about every step (the metrics server of `--metrics-port`). */
  readonly observer?: StepObserver;
}

export interface TrainMnistResult {
  /** The published version (for a finished run that published nothing new, the version it published before); 0 on a replica that does not publish. */
  readonly version: number;
  /** Its directory; "" on a replica that does not publish. */
  readonly dir: string;
  /** Whether this call published `version`. False on non-chief replicas, parameter servers, and a finished run resumed again. */
  readonly published: boolean;
  /** `chief`, `worker #1 (host:port)`, `ps #0 (host:port)`; `local` without TF_CONFIG. */
  readonly replica: string;
  readonly train: TrainResult;
  readonly test?: EvalResult;
  readonly metrics: Record<string, number>;
}

const DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/** The whole job: load, train, evaluate, publish. Throws MlpErrors for expected failures. */
export async function trainMnist(opts: TrainMnistOptions, io: CommandIo): Promise<TrainMnistResult> {
  const task = parseTfConfig(io.env.TF_CONFIG);
  const say = (m: string) => io.stderr.write(`${m}\n`);
  const distributed = opts.distributed ?? DEFAULT_DISTRIBUTED;
  const replica = task ? replicaName(task) : "local";
  if (task) say(`TF_CONFIG: ${replica}, ${task.numTrainingReplicas} training replica(s), ${task.ps.length} PS: ${task.strategy}`);
  if (task?.type === "ps") throw new UsageError(`TF_CONFIG makes this process ${replica}, a parameter server: run it with \`mlp train-mnist\`, which serves the variables`);

  const labels = opts.labels ?? DIGITS;
  const numClasses = labels.length;
  const source = openSource(opts.data, resolveS3Options(opts.s3 ?? {}, io.env));
  let trainData: ImageDataset;
  let testData: ImageDataset | undefined;
  try {
    const testPrefix = opts.testPrefix === undefined ? "t10k" : opts.testPrefix;
    // One after the other, so a failure names the training files first.
    trainData = await loadIdxPair(source, opts.trainPrefix ?? "train", numClasses);
    if (testPrefix !== null) {
      testData = await loadIdxPair(source, testPrefix, numClasses).catch((e: unknown) => {
        // The default test pair is optional; an explicitly named one is not.
        if (opts.testPrefix === undefined && e instanceof DataFileNotFoundError) {
          say(`no test set (${source.locate(idxPairNames(testPrefix).images)} not found): metrics come from the validation split`);
          return undefined;
        }
        throw e;
      });
    }
  } finally {
    if (source instanceof S3Source) await source.close();
  }
  if (opts.maxTrainExamples !== undefined) trainData = takeFirst(trainData, opts.maxTrainExamples);
  if (testData && (testData.height !== trainData.height || testData.width !== trainData.width)) {
    throw new UsageError(`test images are ${testData.height}×${testData.width} but training images are ${trainData.height}×${trainData.width}`);
  }
  const split = splitTrainValidation(trainData.count, opts.validationSplit, opts.seed);
  // Each step trains on batch-size examples per training replica.
  const replicas = task?.numTrainingReplicas ?? 1;
  const stepsPerEpoch = Math.ceil(split.train.length / (opts.batchSize * replicas));
  const steps = opts.steps ?? Math.ceil((opts.epochs ?? 1) * stepsPerEpoch);
  say(
    `data ${source.uri}: ${split.train.length} training, ${split.validation.length} validation` +
      `${testData ? `, ${testData.count} test` : ""} images of ${trainData.height}×${trainData.width}; ` +
      `${steps} steps of ${opts.batchSize}${replicas > 1 ? ` × ${replicas} replicas` : ""} (${(steps / stepsPerEpoch).toFixed(2)} epochs) on backend ${tf.getBackend()}`,
  );

  const model = createMnistModel({
    height: trainData.height,
    width: trainData.width,
    numClasses,
    hiddenUnits: opts.hiddenUnits,
    dropout: opts.dropout,
    seed: opts.seed,
  });
  const isChief = task?.isChief ?? true;
  // Only the chief writes summaries (and checkpoints, and the export).
  const summaries = opts.logdir && isChief ? tensorBoardSinks(opts.logdir) : undefined;
  try {
    const reducer = await createReducer(task, distributed, say);
    const result = await train({
      reducer,
      model,
      data: trainData,
      split,
      steps,
      batchSize: opts.batchSize,
      learningRate: opts.learningRate,
      seed: opts.seed,
      evalEvery: opts.evalEvery,
      summaries,
      checkpoint: opts.checkpointDir ? { dir: opts.checkpointDir, every: opts.checkpointEvery } : undefined,
      runConfig: {
        model: "mnist_cnn",
        hiddenUnits: opts.hiddenUnits,
        dropout: opts.dropout,
        numClasses,
        height: trainData.height,
        width: trainData.width,
        validationSplit: opts.validationSplit,
      },
      progress: { out: io.stderr, mode: opts.progress },
      crashAfterStep: opts.crashAfterStep,
      observer: opts.observer,
    });
    if (!isChief) {
      say(`${replica}: ${steps} steps done; the chief evaluates and publishes`);
      return { version: 0, dir: "", published: false, replica, train: result, metrics: { trainLoss: result.trainLoss, trainAccuracy: result.trainAccuracy } };
    }
    if (opts.checkpointDir && result.resumedFrom >= steps && !opts.publishAgain) {
      const before = await readPublishedRecord(opts.checkpointDir);
      if (before) {
        say(
          `the run in ${opts.checkpointDir} is already complete (step ${result.resumedFrom} of ${steps}) and published version ${before.version} (${before.dir}); nothing new published (--publish-again publishes another version)`,
        );
        if (opts.resultFile) await writeResultFile(opts.resultFile, before);
        return { version: before.version, dir: before.dir, published: false, replica, train: result, metrics: before.metrics };
      }
    }
    const test = testData
      ? evaluate(
          model,
          testData,
          Uint32Array.from({ length: testData.count }, (_, i) => i),
        )
      : undefined;
    if (test) {
      say(`test loss ${test.loss.toFixed(4)}, accuracy ${test.accuracy.toFixed(4)} (${test.count} examples)`);
      summaries?.validation.scalar("test_accuracy", test.accuracy, steps);
    }
    const metrics: Record<string, number> = { trainLoss: result.trainLoss, trainAccuracy: result.trainAccuracy };
    if (result.validation) Object.assign(metrics, { validationLoss: result.validation.loss, validationAccuracy: result.validation.accuracy });
    if (test) Object.assign(metrics, { testLoss: test.loss, testAccuracy: test.accuracy });

    const gate = test?.accuracy ?? result.validation?.accuracy;
    if (opts.minAccuracy !== undefined) {
      if (gate === undefined) throw new UsageError("--min-accuracy needs a test set or a validation split to measure");
      if (gate < opts.minAccuracy) {
        throw new TrainingError(`${test ? "test" : "validation"} accuracy ${gate.toFixed(4)} is below --min-accuracy ${opts.minAccuracy}; no version was published`);
      }
    }

    const published = await publishModelVersion({
      modelBase: opts.modelBase,
      name: opts.name,
      model,
      metadata: {
        modelType: "layers",
        signatures: {
          [DEFAULT_SIGNATURE]: {
            methodName: "tensorflow/serving/predict",
            inputs: { [MNIST_INPUT_NAME]: { dtype: "float32", shape: [-1, trainData.height, trainData.width, 1] } },
            outputs: { [MNIST_OUTPUT_NAME]: { dtype: "float32", shape: [-1, numClasses] } },
          },
        },
        preprocessing: { kind: "image", height: trainData.height, width: trainData.width, channels: 1, range: [0, 1] },
        labels,
        metrics,
        training: {
          data: source.uri,
          steps,
          epochs: Number(result.epochs.toFixed(3)),
          batchSize: opts.batchSize,
          learningRate: opts.learningRate,
          optimizer: "adam",
          hiddenUnits: opts.hiddenUnits,
          dropout: opts.dropout,
          seed: opts.seed,
          validationSplit: opts.validationSplit,
          trainExamples: split.train.length,
          validationExamples: split.validation.length,
          testExamples: testData?.count ?? 0,
          resumedFromStep: result.resumedFrom,
          examplesPerSecond: Math.round(result.examplesPerSecond),
          trainStep: result.stepKind,
          ...(result.distribution && {
            replicas: result.distribution.replicas,
            distribution: result.distribution.description,
            globalBatchSize: opts.batchSize * result.distribution.replicas,
          }),
          backend: tf.getBackend(),
          tfjsVersion: tf.version.tfjs,
        },
      },
    });
    say(`published ${published.dir} (version ${published.version})`);
    if (opts.checkpointDir) await writePublishedRecord(opts.checkpointDir, { version: published.version, dir: published.dir, step: steps, metrics });
    const out: TrainMnistResult = { ...published, published: true, replica, train: result, test, metrics };
    if (opts.resultFile) await writeResultFile(opts.resultFile, out);
    return out;
  } finally {
    summaries?.train.flush();
    summaries?.validation.flush();
    model.dispose();
  }
}

async function writeResultFile(file: string, r: { version: number; dir: string; metrics: Record<string, number> }): Promise<void> {
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFileAtomic(file, JSON.stringify({ version: r.version, dir: r.dir, metrics: r.metrics }, null, 2) + "\n");
}

export const TRAIN_MNIST_FLAGS = defineFlags({
  data: { kind: "string", arg: "<dir|s3://…>", help: "directory or S3 prefix with the IDX files", required: true, section: "Data" },
  "train-prefix": { kind: "string", arg: "<p>", default: "train", help: "training pair prefix" },
  "test-prefix": { kind: "string", arg: "<p|none>", help: "test pair prefix; none: no test set", defaultHelp: "t10k, used if present" },
  "max-train-examples": { kind: "int", min: 1, help: "use only the first n training examples" },
  "validation-split": { kind: "float", min: 0, max: 0.9, default: 0.1, arg: "<f>", help: "fraction of training examples held out" },
  labels: { kind: "string", arg: "<a,b,…>", help: "class names", defaultHelp: "0,…,9" },
  ...S3_FLAGS,
  steps: { kind: "int", min: 1, help: "length of the run in steps (or give --epochs)", defaultHelp: "1 epoch", section: "Training" },
  epochs: { kind: "float", min: 0.001, help: "length of the run in epochs (or give --steps)" },
  "batch-size": { kind: "int", min: 1, max: 65536, default: 64, help: "examples per step per training replica" },
  "learning-rate": { kind: "float", min: 1e-7, max: 10, default: 0.001, arg: "<f>", help: "Adam learning rate" },
  "hidden-units": { kind: "int", min: 1, max: 65536, default: 128, help: "units of the hidden dense layer" },
  dropout: { kind: "float", min: 0, max: 0.95, default: 0.25, arg: "<f>", help: "dropout rate" },
  seed: { kind: "int", min: 0, max: 2 ** 32 - 1, default: 42, help: "seeds initialisation, split and batch order" },
  "eval-every": { kind: "int", min: 0, help: "validate every n steps", defaultHelp: "only at the end" },
  "model-base": { kind: "string", arg: "<dir>", help: "root of published models", required: true, section: "Output" },
  name: { kind: "string", arg: "<name>", default: "mnist", help: "model name" },
  logdir: { kind: "string", arg: "<dir>", help: "TensorBoard event files (train/, validation/)" },
  "checkpoint-dir": { kind: "string", arg: "<dir>", help: "checkpoints; a rerun resumes from the newest one" },
  "checkpoint-every": { kind: "int", min: 1, default: 100, help: "steps between checkpoints" },
  "min-accuracy": { kind: "float", min: 0, max: 1, arg: "<f>", help: "publish only if test (else validation) accuracy ≥ f" },
  "result-file": { kind: "string", arg: "<file>", help: "write {version, dir, metrics} as JSON" },
  progress: { kind: "choice", choices: ["auto", "bar", "lines", "none"], default: "auto", help: "auto: a bar on a terminal, lines otherwise" },
  "publish-again": {
    kind: "boolean",
    help: "resuming a run that already finished and published: publish another version (without it: say so and publish nothing)",
  },
  ...METRICS_FLAGS,
  ...DISTRIBUTED_FLAGS,
});

export const command = defineCommand({
  name: "train-mnist",
  flags: TRAIN_MNIST_FLAGS,
  help: {
    about: `Trains a small CNN on MNIST-style IDX files (<prefix>-images-idx3-ubyte and
<prefix>-labels-idx1-ubyte, optionally .gz) and publishes <model-base>/<name>/<version>/.`,
    notes: `--batch-size is per training replica: a step trains on batch-size × replicas examples.

Environment: TF_CONFIG (TFJob: chief/master, workers, ps), MLP_TFJS_BACKEND=gpu,
  MLP_TRAIN_STEP=compiled|eager|autograd (default: the fastest the model allows).`,
  },
  async run(f, io: CommandIo): Promise<number> {
    if (f.steps !== undefined && f.epochs !== undefined) throw new UsageError("give --steps or --epochs, not both");
    const distributed = distributedOptions(f);
    if (await servedAsParameterServer(io, distributed)) return 0;
    const labels = f.labels?.split(",").map((l) => l.trim());
    if (labels && (labels.length < 2 || labels.some((l) => l === ""))) {
      throw new UsageError(`--labels must list at least two non-empty class names; got ${JSON.stringify(f.labels)}`);
    }
    const name = f.name;
    const metrics = await startTrainingMetrics(parseMetricsPort(f["metrics-port"], io.env), { replica: replicaLabel(parseTfConfig(io.env.TF_CONFIG)), model: name }, (m) =>
      io.stderr.write(`${m}\n`),
    );
    const result = await trainMnist(
      {
        data: f.data,
        modelBase: f["model-base"],
        name,
        trainPrefix: f["train-prefix"],
        testPrefix: f["test-prefix"] === "none" ? null : f["test-prefix"],
        maxTrainExamples: f["max-train-examples"],
        validationSplit: f["validation-split"],
        labels,
        s3: { endpoint: f["s3-endpoint"], region: f["s3-region"] },
        steps: f.steps,
        epochs: f.epochs,
        batchSize: f["batch-size"],
        learningRate: f["learning-rate"],
        hiddenUnits: f["hidden-units"],
        dropout: f.dropout,
        seed: f.seed,
        evalEvery: f["eval-every"],
        logdir: f.logdir,
        checkpointDir: f["checkpoint-dir"],
        checkpointEvery: f["checkpoint-every"],
        minAccuracy: f["min-accuracy"],
        resultFile: f["result-file"],
        progress: f.progress,
        publishAgain: f["publish-again"],
        distributed,
        observer: metrics.observer,
      },
      io,
    ).finally(() => metrics.close());
    io.stdout.write(`${JSON.stringify({ version: result.version, dir: result.dir, published: result.published, replica: result.replica, metrics: result.metrics })}\n`);
    return 0;
  },
});
