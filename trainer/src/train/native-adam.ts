/**
 * Adam for the native training step: each weight and its two moments live in TensorFlow
 * resource variables and one `ResourceApplyAdam` kernel updates all three in a single pass
 * (Keras's update; tfjs's `AdamOptimizer` runs ~14 element-wise kernels per weight, ~2 ms of
 * a 17 ms MNIST step). After every update the model's tfjs variables are pointed at the new
 * values, so evaluation, checkpoints and export always see the current weights; a model
 * weight changed from outside (a checkpoint restored into the model) is picked up before the
 * next update.
 *
 * The update is tfjs's (and Keras's up to where ε sits): `lr · m̂ / (√v̂ + ε)` with bias-
 * corrected moments. `ResourceApplyAdam` computes `lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε′)`,
 * which is the same when ε′ = ε·√(1−β₂ᵗ); that is what it is given each step (with ε′ = ε
 * the two differ visibly for weights whose gradients are ~1e-6). `getWeights` /
 * `setWeights` use tfjs `AdamOptimizer`'s names and order (`iter`, then `<weight>/m`…, then
 * `<weight>/v`…), so a checkpoint written by either optimizer resumes with the other.
 */
import type { NodeJSKernelBackend } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import { tf, type Tensor, type Variable } from "../tf";
import { nativeOps, type NativeOps } from "./native-ops";

export interface AdamConfig {
  readonly learningRate: number;
  readonly beta1?: number;
  readonly beta2?: number;
  /** Default: the backend's epsilon (1e-7 for float32), as tfjs's and Keras's Adam. */
  readonly epsilon?: number;
}

/**
 * What the two `ResourceApplyAdam` users (this file's {@link NativeAdam} and the compiled
 * step of `./graph-step.ts`) share: the settings, the step count, the scalars of each update,
 * and the optimizer state in tfjs `AdamOptimizer`'s layout for checkpoints.
 */
export abstract class AdamState {
  readonly learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  protected iterations = 0;
  private lent: Tensor[] = [];

  constructor(config: AdamConfig, backendEpsilon: number) {
    this.learningRate = config.learningRate;
    this.beta1 = config.beta1 ?? 0.9;
    this.beta2 = config.beta2 ?? 0.999;
    this.epsilon = config.epsilon ?? backendEpsilon;
  }

  /** The trainable variables, in the model's order (the layout's order). */
  protected abstract get stateWeights(): readonly Variable[];
  /** Current moments, in {@link stateWeights} order (new tensors, owned by the caller). */
  protected abstract readMoments(): { m: Tensor[]; v: Tensor[] };
  protected abstract writeMoments(m: readonly Tensor[], v: readonly Tensor[]): void;

  /**
   * The scalars of the next update, step `t`. ε is scaled by √(1−β₂ᵗ): `ResourceApplyAdam`
   * puts ε outside the bias correction, and with this ε′ its update is tfjs's.
   */
  protected nextStep(): { t: number; beta1Power: number; beta2Power: number; epsilon: number } {
    const t = this.iterations + 1;
    const beta2Power = this.beta2 ** t;
    return { t, beta1Power: this.beta1 ** t, beta2Power, epsilon: this.epsilon * Math.sqrt(1 - beta2Power) };
  }

  /** The optimizer state (`iter`, then `<weight>/m`…, then `<weight>/v`…); valid until the next call or dispose. */
  async getWeights(): Promise<{ name: string; tensor: Tensor }[]> {
    this.releaseLent();
    const weights = this.stateWeights;
    const { m, v } = this.readMoments();
    const out = [
      { name: "iter", tensor: tf.scalar(this.iterations, "int32") },
      ...weights.map((w, i) => ({ name: `${w.name}/m`, tensor: m[i]! })),
      ...weights.map((w, i) => ({ name: `${w.name}/v`, tensor: v[i]! })),
    ];
    this.lent = out.map((o) => o.tensor);
    return out;
  }

  /** Restores state saved by {@link getWeights} or by tfjs's `AdamOptimizer`. */
  async setWeights(state: readonly { name: string; tensor: Tensor }[]): Promise<void> {
    const weights = this.stateWeights;
    const [iter, ...rest] = state;
    if (iter?.name !== "iter" || rest.length !== 2 * weights.length) {
      throw new Error(`optimizer state has ${state.length} tensors; expected iter and two moments for each of ${weights.length} weights`);
    }
    // tfjs names the moments after the variables, whose numeric suffixes differ between
    // processes: match them by position, checking shapes.
    rest.forEach((w, k) => {
      const target = weights[k % weights.length]!;
      if (w.tensor.shape.join() !== target.shape.join()) {
        throw new Error(`optimizer state ${w.name} has shape [${w.tensor.shape.join()}] but weight ${target.name} is [${target.shape.join()}]`);
      }
    });
    this.writeMoments(
      rest.slice(0, weights.length).map((w) => w.tensor),
      rest.slice(weights.length).map((w) => w.tensor),
    );
    this.iterations = (await iter.tensor.data())[0]!;
  }

  protected releaseLent(): void {
    tf.dispose(this.lent);
    this.lent = [];
  }
}

interface Slot {
  readonly weight: Variable;
  readonly value: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  /** The data the model's variable held after our last update: anything else was set from outside. */
  expected?: object;
}

let instances = 0;

export class NativeAdam extends AdamState {
  private readonly slots: Slot[] = [];
  private readonly bySlotName = new Map<string, Slot>();
  private readonly ops: NativeOps;
  private readonly prefix = `mlp-adam-${process.pid}-${++instances}`;
  private disposed = false;

  /** `weights`: the trainable variables, in the model's order. */
  constructor(be: NodeJSKernelBackend, weights: readonly Variable[], config: AdamConfig) {
    super(config, be.epsilon());
    this.ops = nativeOps(be);
    try {
      for (const w of weights) {
        const handle = (what: string) => this.ops.variable(`${this.prefix}/${w.name}/${what}`, w.shape);
        const slot: Slot = { weight: w, value: handle("value"), m: handle("m"), v: handle("v") };
        this.slots.push(slot);
        this.bySlotName.set(w.name, slot);
        this.ops.assignVariable(slot.value, w);
        slot.expected = dataId(w);
        tf.tidy(() => {
          this.ops.assignVariable(slot.m, tf.zerosLike(w));
          this.ops.assignVariable(slot.v, tf.zerosLike(w));
        });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  protected get stateWeights(): readonly Variable[] {
    return this.slots.map((s) => s.weight);
  }
  protected readMoments(): { m: Tensor[]; v: Tensor[] } {
    return { m: this.slots.map((s) => this.ops.readVariable(s.m)), v: this.slots.map((s) => this.ops.readVariable(s.v)) };
  }
  protected writeMoments(m: readonly Tensor[], v: readonly Tensor[]): void {
    this.slots.forEach((s, i) => {
      this.ops.assignVariable(s.m, m[i]!);
      this.ops.assignVariable(s.v, v[i]!);
    });
  }

  /** One Adam update of the named weights; then the model's variables hold the new values. */
  applyGradients(grads: readonly { name: string; tensor: Tensor }[]): void {
    if (this.disposed) throw new Error("NativeAdam used after dispose()");
    const { t, beta1Power, beta2Power, epsilon } = this.nextStep();
    tf.tidy(() => {
      const scalars = [beta1Power, beta2Power, this.learningRate, this.beta1, this.beta2, epsilon].map((x) => tf.scalar(x));
      for (const { name, tensor } of grads) {
        const slot = this.bySlotName.get(name);
        if (!slot) throw new Error(`NativeAdam has no slot for weight ${name}`);
        // The model's weight was replaced from outside since our last update: start from it.
        if (dataId(slot.weight) !== slot.expected) this.ops.assignVariable(slot.value, slot.weight);
        this.ops.resourceApplyAdam(slot.value, slot.m, slot.v, scalars, tensor);
        slot.weight.assign(this.ops.readVariable(slot.value));
        slot.expected = dataId(slot.weight);
      }
    });
    this.iterations = t;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.releaseLent();
    for (const s of this.slots) for (const h of [s.value, s.m, s.v]) this.ops.destroyVariable(h);
    this.slots.length = 0;
    this.bySlotName.clear();
  }
}

/** Identity of a tensor's data (a variable's changes when it is assigned). */
export function dataId(t: Tensor): object {
  return (t as unknown as { dataId: object }).dataId;
}
