/**
 * The new classifier on top of bottleneck features: an optional hidden layer and a softmax,
 * trained on cached features (fast), then attached to the frozen base for export.
 */
import { BatchIterator } from "../data/batches";
import { TrainingError } from "../errors";
import { Progress, type ProgressMode, type ProgressStream } from "../train/progress";
import type { ScalarSink } from "../train/summaries";
import type { StepObserver } from "../train/metrics-server";
import { reducedStep } from "../train/loop";
import type { Reducer } from "../train/reducer";
import { createTrainStep } from "../train/step";
import { tf, type LayersModel, type Tensor } from "../tf";
import { freezeUpTo, type BaseModel } from "./base-model";
import { graphWithHead, type SavableModel } from "./graph-head";

type SymbolicTensor = ReturnType<typeof tf.input>;

export interface HeadOptions {
  /** Units of a hidden ReLU layer before the softmax; 0 = softmax only. Default 0. */
  readonly hiddenUnits?: number;
  readonly dropout?: number;
  readonly seed?: number;
}

/**
 * Uncompiled head: input `features` float32 `[b, ...featureShape]` (flattened if not 1-D),
 * output `probabilities` float32 `[b, numClasses]`.
 */
export function createHead(featureShape: readonly number[], numClasses: number, opts: HeadOptions = {}): LayersModel {
  const init = (k: number) => tf.initializers.glorotUniform(opts.seed === undefined ? {} : { seed: opts.seed + k });
  const input = tf.input({ shape: [...featureShape], name: "features" });
  let x = input;
  if (featureShape.length > 1) x = tf.layers.flatten({ name: "head_flatten" }).apply(x) as typeof input;
  if (opts.hiddenUnits) {
    x = tf.layers.dense({ name: "head_hidden", units: opts.hiddenUnits, activation: "relu", kernelInitializer: init(1) }).apply(x) as typeof input;
  }
  if (opts.dropout) x = tf.layers.dropout({ name: "head_dropout", rate: opts.dropout }).apply(x) as typeof input;
  const out = tf.layers.dense({ name: "probabilities", units: numClasses, activation: "softmax", kernelInitializer: init(2) }).apply(x) as typeof input;
  return tf.model({ name: "head", inputs: input, outputs: out });
}

/**
 * One model from the base's input to the head's output: for a Layers base, a Layers model
 * sharing the head's (trained) layers and the base's layers up to the bottleneck, which are
 * frozen; for a Graph base, the base graph with the head appended (see ./graph-head.ts).
 */
export function attachHead(base: BaseModel, head: LayersModel): { modelType: "layers" | "graph"; model: SavableModel } {
  if (base.model.kind === "graph") return { modelType: "graph", model: graphWithHead(base, head) };
  const model = base.model.model;
  freezeUpTo(model, base.bottleneckLayer);
  let x = model.getLayer(base.bottleneckLayer).output as SymbolicTensor;
  for (const layer of head.layers.slice(1)) x = layer.apply(x) as SymbolicTensor;
  return { modelType: "layers", model: tf.model({ name: "retrained", inputs: model.inputs, outputs: x }) };
}

export interface FeatureSet {
  /** `count × dim` row-major. */
  readonly features: Float32Array;
  readonly labels: Int32Array;
  readonly count: number;
  readonly dim: number;
}

/** Packs per-image feature vectors and labels. */
export function featureSet(features: readonly Float32Array[], labels: readonly number[]): FeatureSet {
  const dim = features[0]?.length ?? 0;
  const flat = new Float32Array(features.length * dim);
  features.forEach((f, i) => flat.set(f, i * dim));
  return { features: flat, labels: Int32Array.from(labels), count: features.length, dim };
}

function tensors(set: FeatureSet, indices: ArrayLike<number>, featureShape: readonly number[], numClasses: number) {
  const b = indices.length;
  const x = new Float32Array(b * set.dim);
  const y = new Int32Array(b);
  for (let i = 0; i < b; i++) {
    const k = indices[i]!;
    x.set(set.features.subarray(k * set.dim, (k + 1) * set.dim), i * set.dim);
    y[i] = set.labels[k]!;
  }
  return { xs: tf.tensor(x, [b, ...featureShape]), ys: tf.oneHot(tf.tensor1d(y, "int32"), numClasses).toFloat() };
}

/** Predicted class ids of `head` for every row of `set`. */
export function predictClasses(head: LayersModel, set: FeatureSet, featureShape: readonly number[], numClasses: number): Int32Array {
  const out = new Int32Array(set.count);
  for (let i = 0; i < set.count; i += 512) {
    const idx = Array.from({ length: Math.min(512, set.count - i) }, (_, k) => i + k);
    const pred = tf.tidy(() => (head.predict(tensors(set, idx, featureShape, numClasses).xs) as Tensor).argMax(-1).dataSync());
    out.set(pred, i);
  }
  return out;
}

export interface HeadTrainOptions {
  readonly steps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly seed: number;
  readonly summaries?: { readonly train: ScalarSink };
  readonly progress?: { readonly out: ProgressStream; readonly mode?: ProgressMode };
  /**
   * Distributed runs: each step's global batch is `batchSize × replicas` features, this
   * replica computes gradients on its part, the reducer combines them (see `../train/reducer.ts`).
   */
  readonly reducer?: Reducer;
  /** Settings that must agree across replicas (checked when they join). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Told about every finished step (the metrics server, `../train/metrics-server.ts`). */
  readonly observer?: StepObserver;
}

/** Trains `head` on `set` with Adam; returns the mean loss and accuracy of the last 20 steps. */
export async function trainHead(
  head: LayersModel,
  set: FeatureSet,
  featureShape: readonly number[],
  numClasses: number,
  opts: HeadTrainOptions,
): Promise<{ loss: number; accuracy: number }> {
  const trainStep = createTrainStep(head, { learningRate: opts.learningRate, seed: opts.seed });
  const reducer = opts.reducer;
  const globalBatch = opts.batchSize * (reducer?.replicas ?? 1);
  const batches = new BatchIterator(
    Uint32Array.from({ length: set.count }, (_, i) => i),
    globalBatch,
    opts.seed,
  );
  const progress = opts.progress ? new Progress(opts.progress.out, { total: opts.steps, examplesPerStep: globalBatch, mode: opts.progress.mode }) : undefined;
  const recent: [number, number][] = [];
  const timing = { communication: 0, gradients: 0 };
  const summaries = reducer && !reducer.isChief ? undefined : opts.summaries;
  try {
    if (trainStep.reason && opts.progress) opts.progress.out.write(`training step: ${trainStep.kind} (${trainStep.reason})\n`);
    if (reducer) {
      await reducer.start({
        model: head,
        trainStep,
        state: { step: 0 },
        config: { ...opts.config, steps: opts.steps, batchSize: opts.batchSize, learningRate: opts.learningRate, seed: opts.seed, examples: set.count, stepKind: trainStep.kind },
      });
      opts.progress?.out.write(`${reducer.description}: global batch ${globalBatch} (${opts.batchSize} per replica)\n`);
    }
    for (let step = 1; step <= opts.steps; step++) {
      const s0 = performance.now();
      const idx = batches.next();
      let l: number;
      let a: number;
      if (reducer) {
        ({ loss: l, accuracy: a } = await reducedStep(trainStep, reducer, idx, step, (part) => tensors(set, part, featureShape, numClasses), timing));
      } else {
        const { xs, ys } = tensors(set, idx, featureShape, numClasses);
        try {
          ({ loss: l, accuracy: a } = trainStep.run(xs, ys, step));
        } finally {
          tf.dispose([xs, ys]);
        }
      }
      if (!Number.isFinite(l)) throw new TrainingError(`head training loss became ${l} at step ${step}; try a lower --learning-rate`);
      recent.push([l, a]);
      if (recent.length > 20) recent.shift();
      if (summaries && (step % 10 === 0 || step === opts.steps)) {
        summaries.train.scalar("loss", l, step);
        summaries.train.scalar("accuracy", a, step);
        summaries.train.scalar("learning_rate", opts.learningRate, step);
      }
      progress?.update({ step, loss: l, accuracy: a });
      await opts.observer?.step({ step, totalSteps: opts.steps, loss: l, accuracy: a, seconds: (performance.now() - s0) / 1000, examples: idx.length / (reducer?.replicas ?? 1) });
    }
    await reducer?.finish();
  } catch (e) {
    reducer?.abort(e);
    throw e;
  } finally {
    trainStep.dispose();
  }
  return {
    loss: recent.reduce((s, r) => s + r[0], 0) / recent.length,
    accuracy: recent.reduce((s, r) => s + r[1], 0) / recent.length,
  };
}
