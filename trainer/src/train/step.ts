/**
 * One optimizer step of a softmax classifier, shared by `train-mnist`'s loop and `retrain`'s
 * head. Three implementations, the first that the model and backend allow:
 *
 *   compiled  the whole step as one TensorFlow graph run by a session (`./graph-step.ts`)
 *   eager     the same kernels op by op (`./native-step.ts` with `./native-adam.ts`)
 *   autograd  tfjs's `optimizer.minimize` with tfjs's Adam (any model, any backend)
 *
 * All minimise the mean categorical cross-entropy with the same Adam update and keep the
 * optimizer state in the same checkpoint layout, so a run resumes with any of them.
 * `MLP_TRAIN_STEP=compiled|eager|autograd` asks for one (an unavailable one is an error).
 */
import { TrainingError, describeError } from "../errors";
import { tf, type LayersModel, type Scalar, type Tensor, type Variable } from "../tf";
import { Rng } from "../util/rng";
import { GraphTrainStep } from "./graph-step";
import { NativeAdam } from "./native-adam";
import { lossAndGradients, planNativeStep, type DropoutMasks } from "./native-step";

export type StepKind = "compiled" | "eager" | "autograd";
const KINDS: readonly StepKind[] = ["compiled", "eager", "autograd"];

/** What checkpoints save and restore of an optimizer. */
export interface OptimizerState {
  getWeights(): Promise<{ name: string; tensor: Tensor }[]>;
  setWeights(weights: { name: string; tensor: Tensor }[]): Promise<void>;
}

export interface TrainStep {
  readonly kind: StepKind;
  /** Why a faster kind is not used (when `kind` is not compiled). */
  readonly reason?: string;
  /** Adam's state, for checkpoints. */
  readonly optimizer: OptimizerState;
  /** One step on a batch (`ys` one-hot float32); `step` (1-based) seeds the dropout masks. */
  run(xs: Tensor, ys: Tensor, step: number): { loss: number; accuracy: number };
  /** Frees the optimizer state (the model keeps its weights). */
  dispose(): void;
}

export interface TrainStepOptions {
  /** Adam's learning rate (β₁ 0.9, β₂ 0.999, ε 1e-7 as in tfjs and Keras). */
  readonly learningRate: number;
  /** Seeds the native step's dropout masks (with the step number): a rerun draws the same ones. */
  readonly seed: number;
  /** Default: `MLP_TRAIN_STEP` from the environment, else "auto". */
  readonly mode?: "auto" | StepKind;
}

/** Dropout masks drawn from a seeded generator per (seed, step, layer). */
export function seededDropoutMasks(seed: number, step: number): DropoutMasks {
  return (stage, size, rate) => {
    const rng = new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(step, 0x85ebca77) ^ Math.imul(stage + 1, 0xc2b2ae3d)) >>> 0);
    const keep = 1 / (1 - rate);
    const mask = new Float32Array(size);
    for (let i = 0; i < size; i++) mask[i] = rng.next() >= rate ? keep : 0;
    return mask;
  };
}

function modeFromEnv(): "auto" | StepKind {
  const v = process.env.MLP_TRAIN_STEP;
  if (v === undefined || v === "" || v === "auto") return "auto";
  if ((KINDS as string[]).includes(v)) return v as StepKind;
  throw new TrainingError(`MLP_TRAIN_STEP must be auto, ${KINDS.join(", ")}; got ${JSON.stringify(v)}`);
}

/** The training step for `model`, with its own Adam. */
export function createTrainStep(model: LayersModel, opts: TrainStepOptions): TrainStep {
  const mode = opts.mode ?? modeFromEnv();
  const plan = mode === "autograd" ? "MLP_TRAIN_STEP=autograd" : planNativeStep(model);
  const unavailable = (kind: StepKind, why: string) => new TrainingError(`MLP_TRAIN_STEP=${kind}, but the model cannot use it: ${why}`);
  let reason: string | undefined;
  if (typeof plan !== "string" && (mode === "auto" || mode === "compiled")) {
    let graph: GraphTrainStep | undefined;
    try {
      graph = new GraphTrainStep(plan.backend, model, plan, { learningRate: opts.learningRate });
    } catch (e) {
      const why = `the compiled graph did not load: ${describeError(e)}`;
      if (mode === "compiled") throw unavailable("compiled", why);
      reason = why;
    }
    if (graph) {
      const g = graph;
      return {
        kind: "compiled",
        optimizer: g,
        run: (xs, ys, step) => {
          const { loss, accuracy } = g.step(xs, ys, seededDropoutMasks(opts.seed, step));
          return read(loss, accuracy);
        },
        dispose: () => g.dispose(),
      };
    }
  }
  const vars = model.trainableWeights.map((w) => w.read() as Variable);
  if (typeof plan !== "string" && (mode === "auto" || mode === "eager")) {
    const optimizer = new NativeAdam(plan.backend, vars, { learningRate: opts.learningRate });
    return {
      kind: "eager",
      reason,
      optimizer,
      run(xs, ys, step) {
        const { loss, accuracy } = tf.tidy(() => {
          const r = lossAndGradients(plan, xs, ys, seededDropoutMasks(opts.seed, step));
          optimizer.applyGradients(r.grads);
          return { loss: r.loss, accuracy: r.accuracy };
        });
        return read(loss, accuracy);
      },
      dispose: () => optimizer.dispose(),
    };
  }
  if (typeof plan === "string" && mode !== "auto" && mode !== "autograd") throw unavailable(mode, plan);
  const optimizer = tf.train.adam(opts.learningRate);
  return {
    kind: "autograd",
    reason: typeof plan === "string" ? plan : reason,
    optimizer,
    run(xs, ys) {
      const { loss, accuracy } = tf.tidy(() => {
        let acc: Tensor | undefined;
        const cost = optimizer.minimize(
          () => {
            const probs = model.apply(xs, { training: true }) as Tensor;
            acc = tf.keep(tf.equal(probs.argMax(-1), ys.argMax(-1)).toFloat().mean());
            return tf.metrics.categoricalCrossentropy(ys, probs).mean() as Scalar;
          },
          true,
          vars,
        )!;
        return { loss: cost, accuracy: acc! };
      });
      return read(loss, accuracy);
    },
    dispose: () => optimizer.dispose(),
  };
}

function read(loss: Tensor, accuracy: Tensor): { loss: number; accuracy: number } {
  const l = loss.dataSync()[0]!;
  const a = accuracy.dataSync()[0]!;
  tf.dispose([loss, accuracy]);
  return { loss: l, accuracy: a };
}
