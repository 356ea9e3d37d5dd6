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
import type { TFEOpAttr } from "@tensorflow/tfjs-node/dist/tfjs_binding";
import { tf, type Tensor, type Variable } from "../tf";

export interface AdamConfig {
  readonly learningRate: number;
  readonly beta1?: number;
  readonly beta2?: number;
  /** Default: the backend's epsilon (1e-7 for float32), as tfjs's and Keras's Adam. */
  readonly epsilon?: number;
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

export class NativeAdam {
  private readonly slots = new Map<string, Slot>();
  private readonly order: string[];
  private iterations = 0;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly prefix = `mlp-adam-${process.pid}-${++instances}`;
  private lent: Tensor[] = [];
  private disposed = false;

  /** `weights`: the trainable variables, in the model's order. */
  constructor(
    private readonly be: NodeJSKernelBackend,
    weights: readonly Variable[],
    private readonly config: AdamConfig,
  ) {
    this.beta1 = config.beta1 ?? 0.9;
    this.beta2 = config.beta2 ?? 0.999;
    this.epsilon = config.epsilon ?? be.epsilon();
    this.order = weights.map((w) => w.name);
    try {
      for (const w of weights) {
        const slot: Slot = { weight: w, value: this.handle(w, "value"), m: this.handle(w, "m"), v: this.handle(w, "v") };
        this.slots.set(w.name, slot);
        this.assign(slot.value, w);
        slot.expected = dataId(w);
        tf.tidy(() => {
          this.assign(slot.m, tf.zerosLike(w));
          this.assign(slot.v, tf.zerosLike(w));
        });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  private attr(name: string, type: "type" | "string" | "bool" | "shape", value: unknown): TFEOpAttr {
    const b = this.be.binding;
    const t = { type: b.TF_ATTR_TYPE, string: b.TF_ATTR_STRING, bool: b.TF_ATTR_BOOL, shape: b.TF_ATTR_SHAPE }[type];
    return { name, type: t, value: value as TFEOpAttr["value"] };
  }
  private handle(w: Variable, what: string): Tensor {
    const attrs = [
      this.attr("container", "string", ""),
      this.attr("shared_name", "string", `${this.prefix}/${w.name}/${what}`),
      this.attr("dtype", "type", this.be.binding.TF_FLOAT),
      this.attr("shape", "shape", w.shape),
    ];
    return tf.keep(this.be.executeSingleOutput("VarHandleOp", attrs, []));
  }
  private assign(handle: Tensor, value: Tensor): void {
    this.be.executeMultipleOutputs("AssignVariableOp", [this.attr("dtype", "type", this.be.binding.TF_FLOAT), this.attr("validate_shape", "bool", false)], [handle, value], 0);
  }
  private read(handle: Tensor): Tensor {
    return this.be.executeSingleOutput("ReadVariableOp", [this.attr("dtype", "type", this.be.binding.TF_FLOAT)], [handle]);
  }

  /** One Adam update of the named weights; then the model's variables hold the new values. */
  applyGradients(grads: readonly { name: string; tensor: Tensor }[]): void {
    if (this.disposed) throw new Error("NativeAdam used after dispose()");
    const t = this.iterations + 1;
    tf.tidy(() => {
      const s = (x: number) => tf.scalar(x);
      const beta2Power = this.beta2 ** t;
      const epsilon = this.epsilon * Math.sqrt(1 - beta2Power);
      const scalars = [s(this.beta1 ** t), s(beta2Power), s(this.config.learningRate), s(this.beta1), s(this.beta2), s(epsilon)];
      const attrs = [this.attr("T", "type", this.be.binding.TF_FLOAT), this.attr("use_locking", "bool", false), this.attr("use_nesterov", "bool", false)];
      for (const { name, tensor } of grads) {
        const slot = this.slots.get(name);
        if (!slot) throw new Error(`NativeAdam has no slot for weight ${name}`);
        // The model's weight was replaced from outside since our last update: start from it.
        if (dataId(slot.weight) !== slot.expected) this.assign(slot.value, slot.weight);
        this.be.executeMultipleOutputs("ResourceApplyAdam", attrs, [slot.value, slot.m, slot.v, ...scalars, tensor], 0);
        slot.weight.assign(this.read(slot.value) as Variable);
        slot.expected = dataId(slot.weight);
      }
    });
    this.iterations = t;
  }

  /**
   * The optimizer state in tfjs `AdamOptimizer`'s layout. The tensors stay valid until the
   * next call or `dispose()`.
   */
  async getWeights(): Promise<{ name: string; tensor: Tensor }[]> {
    tf.dispose(this.lent);
    const slots = this.order.map((n) => this.slots.get(n)!);
    const out = [
      { name: "iter", tensor: tf.scalar(this.iterations, "int32") },
      ...slots.map((s) => ({ name: `${s.weight.name}/m`, tensor: this.read(s.m) })),
      ...slots.map((s) => ({ name: `${s.weight.name}/v`, tensor: this.read(s.v) })),
    ];
    this.lent = out.map((o) => o.tensor);
    return out;
  }

  /** Restores state saved by {@link getWeights} (or by tfjs's `AdamOptimizer`). */
  async setWeights(weights: readonly { name: string; tensor: Tensor }[]): Promise<void> {
    const [iter, ...rest] = weights;
    const n = rest.length / 2;
    if (iter?.name !== "iter" || !Number.isInteger(n) || n !== this.slots.size) {
      throw new Error(`optimizer state has ${weights.length} tensors; expected iter and two moments for each of ${this.slots.size} weights`);
    }
    // tfjs names the moments after the variables, whose numeric suffixes differ between
    // processes: match them by position, checking shapes.
    const slots = this.order.map((name) => this.slots.get(name)!);
    slots.forEach((s, i) => {
      for (const [k, what] of [[i, "m"], [i + n, "v"]] as const) {
        const w = rest[k]!;
        if (w.tensor.shape.join() !== s.weight.shape.join()) {
          throw new Error(`optimizer state ${w.name} has shape [${w.tensor.shape}] but weight ${s.weight.name} is [${s.weight.shape}]`);
        }
        this.assign(what === "m" ? s.m : s.v, w.tensor);
      }
    });
    this.iterations = (await iter.tensor.data())[0]!;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose(this.lent);
    const attrs = [this.attr("ignore_lookup_error", "bool", true)];
    for (const s of this.slots.values()) {
      for (const h of [s.value, s.m, s.v]) {
        this.be.executeMultipleOutputs("DestroyResourceOp", attrs, [h], 0);
        h.dispose();
      }
    }
    this.slots.clear();
  }
}

function dataId(t: Tensor): object {
  return (t as unknown as { dataId: object }).dataId;
}
