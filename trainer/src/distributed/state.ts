/**
 * A replica's starting state as arrays: all the model's weights, and Adam's moments of the
 * trainable ones (tfjs `AdamOptimizer` layout: `iter`, `<weight>/m`…, `<weight>/v`…).
 */
import { tf, type LayersModel, type Tensor } from "../tf";
import type { OptimizerState, TrainStep } from "../train/step";

export interface ArrayState {
  readonly weights: Float32Array[];
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  readonly iterations: number;
}

export const sizesOf = (ts: readonly { size: number }[]) => ts.map((t) => t.size);

/** Reads the model's weights and the optimizer's state. */
export async function captureState(model: LayersModel, optimizer: OptimizerState): Promise<ArrayState> {
  const weights = model.getWeights().map((w) => w.dataSync() as Float32Array);
  const named = await optimizer.getWeights();
  const [iter, ...rest] = named;
  const half = rest.length / 2;
  const arrays = rest.map((n) => n.tensor.dataSync() as Float32Array);
  return {
    weights: weights.map((w) => w.slice()),
    m: arrays.slice(0, half).map((a) => a.slice()),
    v: arrays.slice(half).map((a) => a.slice()),
    iterations: iter!.tensor.dataSync()[0]!,
  };
}

/** Writes moments and step count into `optimizer`, named after `trainStep`'s variables. */
export async function setOptimizerArrays(
  trainStep: TrainStep,
  optimizer: OptimizerState,
  m: readonly Float32Array[],
  v: readonly Float32Array[],
  iterations: number,
): Promise<void> {
  const vars = trainStep.variables;
  const named: { name: string; tensor: Tensor }[] = [
    { name: "iter", tensor: tf.scalar(iterations, "int32") },
    ...vars.map((w, i) => ({ name: `${w.name}/m`, tensor: tf.tensor(m[i]!, w.shape) })),
    ...vars.map((w, i) => ({ name: `${w.name}/v`, tensor: tf.tensor(v[i]!, w.shape) })),
  ];
  try {
    await optimizer.setWeights(named);
  } finally {
    tf.dispose(named.map((n) => n.tensor));
  }
}

/** Sets all the model's weights from arrays (in `model.getWeights()` order). */
export function setModelWeights(model: LayersModel, weights: readonly Float32Array[]): void {
  const current = model.getWeights();
  const ts = current.map((w, i) => tf.tensor(weights[i]!, w.shape));
  try {
    model.setWeights(ts);
  } finally {
    tf.dispose(ts);
  }
}

/** Assigns new values to the trainable variables (in order). */
export function assignVariables(trainStep: TrainStep, values: readonly Float32Array[]): void {
  tf.tidy(() => trainStep.variables.forEach((v, i) => v.assign(tf.tensor(values[i]!, v.shape))));
}

/** The settings of `config` that differ from `mine`, as "key=theirs (here key=mine)". */
export function configDifferences(theirs: Readonly<Record<string, unknown>>, mine: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(theirs), ...Object.keys(mine)])) {
    if (JSON.stringify(theirs[k]) !== JSON.stringify(mine[k])) out.push(`${k}=${JSON.stringify(theirs[k])} (the chief has ${k}=${JSON.stringify(mine[k])})`);
  }
  return out;
}
