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

/** Where a replica's batch sits in the step's global batch (distributed runs), for the dropout masks. */
export interface BatchShard {
  /** First row of this replica's part. */
  readonly offset: number;
  /** Rows of the global batch. */
  readonly total: number;
}

/** What the first half of a split step produces: the local batch's mean loss, accuracy and gradients. */
export interface LocalGradients {
  readonly loss: number;
  readonly accuracy: number;
  /** Examples in the batch the values are means over. */
  readonly count: number;
  /** One per trainable weight, in {@link TrainStep.variables} order. */
  readonly grads: Float32Array[];
}

export interface TrainStep {
  readonly kind: StepKind;
  /** Why a faster kind is not used (when `kind` is not compiled). */
  readonly reason?: string;
  /** Adam's state, for checkpoints. */
  readonly optimizer: OptimizerState;
  /** The trainable variables, in the model's order: the order of gradients. */
  readonly variables: readonly Variable[];
  /** One step on a batch (`ys` one-hot float32); `step` (1-based) seeds the dropout masks. */
  run(xs: Tensor, ys: Tensor, step: number): { loss: number; accuracy: number };
  /**
   * The step split at the gradients (distributed runs; `run` is the fused local path): loss,
   * accuracy and gradients on this batch, nothing updated. `shard` places the batch in the
   * global batch, so each row gets the dropout mask it would get in one big batch.
   */
  gradients(xs: Tensor, ys: Tensor, step: number, shard?: BatchShard): LocalGradients;
  /** Applies combined gradients ({@link variables} order) with this step's Adam; the model gets the new weights. */
  apply(grads: readonly Float32Array[]): void;
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

/**
 * Dropout masks drawn from a seeded generator per (seed, step, layer). With `shard`, the
 * mask of the whole global batch is drawn and this replica's rows cut out of it, so N
 * replicas drop exactly the units one replica with the global batch would.
 */
export function seededDropoutMasks(seed: number, step: number, shard?: BatchShard & { readonly rows: number }): DropoutMasks {
  return (stage, size, rate) => {
    const rng = new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(step, 0x85ebca77) ^ Math.imul(stage + 1, 0xc2b2ae3d)) >>> 0);
    const keep = 1 / (1 - rate);
    const perRow = shard ? size / shard.rows : 0;
    const skip = shard ? shard.offset * perRow : 0;
    for (let i = 0; i < skip; i++) rng.next();
    const mask = new Float32Array(size);
    for (let i = 0; i < size; i++) mask[i] = rng.next() >= rate ? keep : 0;
    return mask;
  };
}

/** Reads gradient tensors (any order given) into arrays and disposes them. */
function readGrads(grads: readonly Tensor[]): Float32Array[] {
  const out = grads.map((g) => g.dataSync() as Float32Array);
  tf.dispose([...grads]);
  return out;
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
  const vars = model.trainableWeights.map((w) => w.read() as Variable);
  const masksFor = (step: number, xs: Tensor, shard?: BatchShard) => seededDropoutMasks(opts.seed, step, shard && { ...shard, rows: xs.shape[0]! });
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
        variables: vars,
        run: (xs, ys, step) => {
          const { loss, accuracy } = g.step(xs, ys, seededDropoutMasks(opts.seed, step));
          return read(loss, accuracy);
        },
        gradients: (xs, ys, step, shard) => {
          const r = g.gradients(xs, ys, masksFor(step, xs, shard));
          return { ...read(r.loss, r.accuracy), count: xs.shape[0]!, grads: readGrads(r.grads) };
        },
        apply: (grads) => {
          const ts = grads.map((a, i) => tf.tensor(a, vars[i]!.shape));
          try {
            g.applyGradients(ts);
          } finally {
            tf.dispose(ts);
          }
        },
        dispose: () => g.dispose(),
      };
    }
  }
  if (typeof plan !== "string" && (mode === "auto" || mode === "eager")) {
    const optimizer = new NativeAdam(plan.backend, vars, { learningRate: opts.learningRate });
    return {
      kind: "eager",
      reason,
      optimizer,
      variables: vars,
      run(xs, ys, step) {
        const { loss, accuracy } = tf.tidy(() => {
          const r = lossAndGradients(plan, xs, ys, seededDropoutMasks(opts.seed, step));
          optimizer.applyGradients(r.grads);
          return { loss: r.loss, accuracy: r.accuracy };
        });
        return read(loss, accuracy);
      },
      gradients(xs, ys, step, shard) {
        const r = tf.tidy(() => {
          const { loss, accuracy, grads } = lossAndGradients(plan, xs, ys, masksFor(step, xs, shard));
          return { loss, accuracy, grads: grads.map((g) => g.tensor) };
        });
        return { ...read(r.loss, r.accuracy), count: xs.shape[0]!, grads: readGrads(r.grads) };
      },
      apply(grads) {
        tf.tidy(() => optimizer.applyGradients(grads.map((a, i) => ({ name: vars[i]!.name, tensor: tf.tensor(a, vars[i]!.shape) }))));
      },
      dispose: () => optimizer.dispose(),
    };
  }
  if (typeof plan === "string" && mode !== "auto" && mode !== "autograd") throw unavailable(mode, plan);
  const optimizer = tf.train.adam(opts.learningRate);
  const lossOf = (xs: Tensor, ys: Tensor, accOut: { acc?: Tensor }) => () => {
    const probs = model.apply(xs, { training: true }) as Tensor;
    accOut.acc = tf.keep(tf.equal(probs.argMax(-1), ys.argMax(-1)).toFloat().mean());
    return tf.metrics.categoricalCrossentropy(ys, probs).mean() as Scalar;
  };
  return {
    kind: "autograd",
    reason: typeof plan === "string" ? plan : reason,
    optimizer,
    variables: vars,
    // tfjs's dropout draws its own masks: a sharded batch does not drop what one big batch would.
    gradients(xs, ys) {
      const out: { acc?: Tensor } = {};
      const { value, grads } = tf.tidy(() => tf.variableGrads(lossOf(xs, ys, out), vars));
      const ordered = vars.map((v) => grads[v.name]!);
      return { ...read(value, out.acc!), count: xs.shape[0]!, grads: readGrads(ordered) };
    },
    apply(grads) {
      tf.tidy(() => optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: tf.tensor(grads[i]!, v.shape) }))));
    },
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
