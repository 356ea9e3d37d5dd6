/**
 * The training loop for image classifiers on in-memory data: seeded batches from the
 * training split only, Adam at a constant learning rate, per-batch work inside `tf.tidy`,
 * TensorBoard scalars, periodic validation, checkpoints and resume.
 */
import { BatchIterator, type Split } from "../data/batches";
import type { ImageDataset } from "../data/images";
import { batchTensors } from "../data/tensors";
import { TrainingError } from "../errors";
import { tf, type LayersModel, type Tensor } from "../tf";
import { restoreCheckpoint, saveCheckpoint, type TrainState } from "./checkpoint";
import { createTrainStep, type LocalGradients, type StepKind, type TrainStep } from "./step";
import { shardOf, type Reducer, type ReducerStats } from "./reducer";
import { Progress, type ProgressMode, type ProgressStream } from "./progress";
import type { ScalarSink } from "./summaries";
import type { StepObserver } from "./metrics-server";

export interface TrainOptions {
  /** Uncompiled model: input `[b, h, w, 1]`, softmax output `[b, numClasses]`. */
  readonly model: LayersModel;
  readonly data: ImageDataset;
  /** Which examples of `data` train and which validate; training never sees `split.validation`. */
  readonly split: Split;
  /** Total optimizer steps of the run (a resumed run counts the steps already done). */
  readonly steps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  /** Seeds the batch order. */
  readonly seed: number;
  /** Validate every this many steps (and at the end). 0 = only at the end. */
  readonly evalEvery?: number;
  /** Write training scalars every this many steps. Default 10. */
  readonly summaryEvery?: number;
  readonly summaries?: { readonly train: ScalarSink; readonly validation: ScalarSink };
  /** Checkpoint directory and interval (steps); the run resumes from the newest checkpoint there. */
  readonly checkpoint?: { readonly dir: string; readonly every: number; readonly keep?: number };
  /** Settings stored with checkpoints; a resume with different values is refused. */
  readonly runConfig?: TrainState["config"];
  readonly progress?: { readonly out: ProgressStream; readonly mode?: ProgressMode };
  /** Messages (resume, validation results). Default: to the progress stream. */
  readonly log?: (message: string) => void;
  /** Test hook: throw after this step (after its checkpoint, if one is due), like a crash. */
  readonly crashAfterStep?: number;
  /**
   * Distributed runs (`../distributed/`): each step's global batch is `batchSize × replicas`
   * examples, this replica computes gradients on its part, the reducer combines them. Only
   * the chief restores and writes checkpoints, writes summaries and validates; the others
   * take the chief's state at the start. Without it, the fused local step runs.
   */
  readonly reducer?: Reducer;
  /** Told about every finished step (the metrics server, `./metrics-server.ts`). */
  readonly observer?: StepObserver;
}

export interface EvalResult {
  readonly loss: number;
  readonly accuracy: number;
  readonly count: number;
}

export interface TrainResult {
  readonly steps: number;
  /** Step the run resumed from (0 for a fresh run). */
  readonly resumedFrom: number;
  readonly epochs: number;
  /** Mean training loss and accuracy over the last (up to) 50 steps. */
  readonly trainLoss: number;
  readonly trainAccuracy: number;
  readonly validation?: EvalResult;
  /** Wall time of the steps run in this process, and examples/s over them. */
  readonly seconds: number;
  readonly examplesPerSecond: number;
  /** Which implementation ran the steps (see `./step.ts`). */
  readonly stepKind: StepKind;
  /** Distributed runs: the reducer, this replica's rank, and the time and bytes spent communicating. */
  readonly distribution?: ReducerStats & {
    readonly description: string;
    readonly rank: number;
    readonly replicas: number;
    /** Wall time waiting for the reducer (transfer and other replicas), of `seconds`. */
    readonly communicationSeconds: number;
    /** Wall time computing gradients (the split step's first half). */
    readonly gradientSeconds: number;
  };
}

/** Thrown by the `crashAfterStep` test hook. */
export class SimulatedCrash extends Error {}

/**
 * Mean categorical cross-entropy and accuracy of `model` on `indices` of `data`, in chunks
 * of `chunk` examples (inference mode: no dropout).
 */
export function evaluate(model: LayersModel, data: ImageDataset, indices: Uint32Array, chunk = 500): EvalResult {
  if (indices.length === 0) return { loss: NaN, accuracy: NaN, count: 0 };
  let lossSum = 0;
  let correct = 0;
  for (let i = 0; i < indices.length; i += chunk) {
    const part = indices.subarray(i, i + chunk);
    const [l, c] = tf.tidy(() => {
      const { xs, ys } = batchTensors(data, part);
      const probs = model.predict(xs) as Tensor;
      const loss = tf.metrics.categoricalCrossentropy(ys, probs).sum();
      const hits = tf.equal(probs.argMax(-1), ys.argMax(-1)).sum();
      return [loss.dataSync()[0]!, hits.dataSync()[0]!];
    });
    lossSum += l;
    correct += c;
  }
  return { loss: lossSum / indices.length, accuracy: correct / indices.length, count: indices.length };
}

/** Trains `opts.model` in place. See {@link TrainOptions}. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { model, data, split, steps, batchSize } = opts;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer; got ${steps}`);
  const log = opts.log ?? ((m: string) => opts.progress?.out.write(`${m}\n`));
  // Throws before any state exists if MLP_TRAIN_STEP=native and the model cannot use it.
  const trainStep = createTrainStep(model, { learningRate: opts.learningRate, seed: opts.seed });
  const runConfig = { ...opts.runConfig, batchSize, seed: opts.seed, learningRate: opts.learningRate, trainExamples: split.train.length };
  const reducer = opts.reducer;
  const replicas = reducer?.replicas ?? 1;
  const isChief = reducer?.isChief ?? true;
  const globalBatch = batchSize * replicas;

  let step = 0;
  let position;
  if (opts.checkpoint && isChief) {
    const restored = await restoreCheckpoint(opts.checkpoint.dir, model, trainStep.optimizer, runConfig).catch((e: unknown) => {
      trainStep.dispose();
      throw e;
    });
    if (restored) {
      step = restored.step;
      position = restored.position;
      log(`resuming from the checkpoint at step ${step} in ${opts.checkpoint.dir}`);
    }
  }
  if (reducer) {
    // Every replica starts from the chief's weights, optimizer state, step and data position.
    try {
      ({ step, position } = await reducer.start({ model, trainStep, state: { step, position }, config: { ...runConfig, steps, stepKind: trainStep.kind } }));
    } catch (e) {
      reducer.abort(e);
      trainStep.dispose();
      throw e;
    }
    log(`${reducer.description}: global batch ${globalBatch} (${batchSize} per replica)${step ? `, from step ${step}` : ""}`);
  }
  const resumedFrom = step;
  const batches = new BatchIterator(split.train, globalBatch, opts.seed, position);
  const progress = opts.progress ? new Progress(opts.progress.out, { total: steps, startStep: step, examplesPerStep: globalBatch, mode: opts.progress.mode }) : undefined;
  const say = (m: string) => (progress ? progress.log(m) : log(m));
  if (trainStep.reason) say(`training step: ${trainStep.kind} (${trainStep.reason})`);
  const summaryEvery = opts.summaryEvery ?? 10;
  const recent: { loss: number; acc: number }[] = [];
  let validation: EvalResult | undefined;
  const t0 = performance.now();

  const checkpointNow = async () => {
    if (!opts.checkpoint || !isChief) return;
    const optimizer = reducer ? reducer.optimizerState(trainStep.optimizer) : trainStep.optimizer;
    await saveCheckpoint(opts.checkpoint.dir, model, optimizer, { step, position: batches.position, config: runConfig }, opts.checkpoint.keep);
  };
  const validate = () => {
    if (split.validation.length === 0 || !isChief) return;
    validation = evaluate(model, data, split.validation);
    opts.summaries?.validation.scalar("loss", validation.loss, step);
    opts.summaries?.validation.scalar("accuracy", validation.accuracy, step);
    say(`step ${step}: validation loss ${validation.loss.toFixed(4)}, accuracy ${validation.accuracy.toFixed(4)} (${validation.count} examples)`);
  };

  const timing = { communication: 0, gradients: 0 };

  try {
    while (step < steps) {
      const s0 = performance.now();
      const indices = batches.next();
      let lossValue: number;
      let accValue: number;
      if (reducer) {
        ({ loss: lossValue, accuracy: accValue } = await reducedStep(trainStep, reducer, indices, step + 1, (idx) => batchTensors(data, idx), timing));
      } else {
        const { xs, ys } = batchTensors(data, indices);
        try {
          ({ loss: lossValue, accuracy: accValue } = trainStep.run(xs, ys, step + 1));
        } finally {
          tf.dispose([xs, ys]);
        }
      }
      step++;
      if (!Number.isFinite(lossValue)) {
        throw new TrainingError(`training loss became ${lossValue} at step ${step}; try a lower --learning-rate (now ${opts.learningRate})`);
      }
      recent.push({ loss: lossValue, acc: accValue });
      if (recent.length > 50) recent.shift();
      if (opts.summaries && isChief && (step % summaryEvery === 0 || step === steps)) {
        opts.summaries.train.scalar("loss", lossValue, step);
        opts.summaries.train.scalar("accuracy", accValue, step);
        opts.summaries.train.scalar("learning_rate", opts.learningRate, step);
      }
      progress?.update({ step, loss: lossValue, accuracy: accValue });
      await opts.observer?.step({ step, totalSteps: steps, loss: lossValue, accuracy: accValue, seconds: (performance.now() - s0) / 1000, examples: indices.length / replicas });
      if (opts.evalEvery && step % opts.evalEvery === 0 && step < steps) validate();
      if (opts.checkpoint && (step % opts.checkpoint.every === 0 || step === steps)) await checkpointNow();
      if (opts.crashAfterStep !== undefined && step >= opts.crashAfterStep) throw new SimulatedCrash(`simulated crash after step ${step}`);
    }
    await reducer?.finish();
    validate();
  } catch (e) {
    reducer?.abort(e);
    throw e;
  } finally {
    // The optimizer's slots are variables: release them (the model keeps its weights).
    trainStep.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const mean = (f: (r: { loss: number; acc: number }) => number) => (recent.length ? recent.reduce((s, r) => s + f(r), 0) / recent.length : NaN);
  return {
    steps,
    resumedFrom,
    epochs: steps / batches.stepsPerEpoch,
    trainLoss: mean((r) => r.loss),
    trainAccuracy: mean((r) => r.acc),
    validation,
    seconds,
    examplesPerSecond: seconds > 0 ? ((steps - resumedFrom) * globalBatch) / seconds : 0,
    stepKind: trainStep.kind,
    distribution: reducer && {
      description: reducer.description,
      rank: reducer.rank,
      replicas,
      communicationSeconds: timing.communication / 1000,
      gradientSeconds: timing.gradients / 1000,
      ...reducer.stats(),
    },
  };
}

/**
 * One distributed step: this replica's part of the global batch `indices` → gradients →
 * `reducer` → the optimizer (unless the reducer applied the update elsewhere). Returns the
 * combined loss and accuracy; adds the time spent to `timing` (ms).
 */
export async function reducedStep(
  trainStep: TrainStep,
  reducer: Reducer,
  indices: Uint32Array,
  step: number,
  batch: (indices: Uint32Array) => { xs: Tensor; ys: Tensor },
  timing: { communication: number; gradients: number },
): Promise<{ loss: number; accuracy: number }> {
  const c0 = performance.now();
  await reducer.beforeStep(step);
  const g0 = performance.now();
  const { lo, hi } = shardOf(indices.length, reducer.rank, reducer.replicas);
  let local: LocalGradients;
  if (hi > lo) {
    const { xs, ys } = batch(indices.subarray(lo, hi));
    try {
      local = trainStep.gradients(xs, ys, step, { offset: lo, total: indices.length });
    } finally {
      tf.dispose([xs, ys]);
    }
  } else {
    // An empty part (a global batch smaller than the replicas): weight 0 in the mean.
    local = { loss: 0, accuracy: 0, count: 0, grads: trainStep.variables.map((v) => new Float32Array(v.size)) };
  }
  const c1 = performance.now();
  const combined = await reducer.reduce(step, local);
  const c2 = performance.now();
  timing.communication += g0 - c0 + (c2 - c1);
  timing.gradients += c1 - g0;
  if (combined.grads) trainStep.apply(combined.grads);
  return { loss: combined.loss, accuracy: combined.accuracy };
}
