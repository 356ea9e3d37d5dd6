/**
 * The forward and backward pass of a classifier written out as TensorFlow kernels, for models
 * that are a chain of the layers the trainer builds: Conv2D, MaxPooling2D, Flatten, Dense,
 * Dropout, with ReLU or linear activations and a softmax Dense on top.
 *
 * Why: tfjs's autograd runs each layer's gradient as several generic ops (on the MNIST CNN,
 * ~300 kernels a step, a quarter of the time in the ReLU gradient alone); here a step is ~40
 * kernels, the fused ones Keras uses (`ReluGrad`, `BiasAddGrad`, `MaxPoolGrad`,
 * `Conv2DBackpropFilter/Input`, `SoftmaxCrossEntropyWithLogits`). The loss is the same mean
 * categorical cross-entropy, computed from the logits (tfjs computes it from the clipped
 * softmax; the values agree to float precision away from saturated outputs).
 *
 * `planNativeStep` says why a model cannot use it (any other layer, regularizers, constraints,
 * shared layers, a non-native backend); the caller then uses tfjs's autograd.
 */
import type { NodeJSKernelBackend } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import { tf, type LayersModel, type Tensor, type Variable } from "../tf";
import { nativeBackend, nativeOps, type NativeOps, type Padding } from "./native-ops";

/** A weight: the tfjs variable the optimizer updates, by its registered name. */
export interface Weight {
  readonly name: string;
  readonly value: Tensor;
}

export type Pair = readonly [number, number];

export type Stage =
  | {
      readonly kind: "conv2d";
      readonly layer: string;
      readonly kernel: Weight;
      readonly bias?: Weight;
      readonly strides: Pair;
      readonly padding: Padding;
      readonly relu: boolean;
      readonly trainable: boolean;
    }
  | { readonly kind: "maxPool"; readonly layer: string; readonly size: Pair; readonly strides: Pair; readonly padding: Padding }
  | { readonly kind: "flatten"; readonly layer: string; readonly features: number }
  | { readonly kind: "dense"; readonly layer: string; readonly kernel: Weight; readonly bias?: Weight; readonly relu: boolean; readonly trainable: boolean }
  | { readonly kind: "dropout"; readonly layer: string; readonly rate: number; readonly shape: readonly (number | null)[] }
  | { readonly kind: "relu"; readonly layer: string };

/** The stages of a model the native step can run, and its softmax output layer. */
export interface NativePlan {
  readonly stages: readonly Stage[];
  readonly output: Extract<Stage, { kind: "dense" }>;
  /** Index of the first stage whose input gradient is needed (earlier stages have no trainable weights before them). */
  readonly firstTrainable: number;
  readonly backend: NodeJSKernelBackend;
  /** Names of the model's trainable variables, in `model.trainableWeights` order (the order of the gradients). */
  readonly weightOrder: readonly string[];
}

/**
 * Multiplier for every unit of a dropout layer's output this step: 0 (dropped) or
 * 1 / (1 − rate) (kept). `stage` numbers the model's dropout layers from 0.
 */
export type DropoutMasks = (stage: number, size: number, rate: number) => Float32Array;

type Config = Record<string, unknown>;

function pair(v: unknown, name: string): Pair | string {
  const a = Array.isArray(v) ? v : [v, v];
  return a.length === 2 && a.every((n) => Number.isInteger(n)) ? [a[0] as number, a[1] as number] : `${name} ${JSON.stringify(v)}`;
}

function padding(v: unknown): Padding | undefined {
  return v === "valid" ? "VALID" : v === "same" ? "SAME" : undefined;
}

/** Options shared by Conv2D and Dense: what the native step does not implement. */
function unsupportedOptions(c: Config): string | undefined {
  for (const k of ["kernelRegularizer", "biasRegularizer", "activityRegularizer", "kernelConstraint", "biasConstraint"]) {
    if (c[k] != null) return `${k} is set`;
  }
  return undefined;
}

function weightsOf(layer: LayersModel["layers"][number]): { kernel: Weight; bias?: Weight } {
  const [kernel, bias] = layer.weights.map((w) => {
    const v = w.read() as Variable;
    return { name: v.name, value: v };
  });
  return { kernel: kernel!, bias };
}

/** The native plan for `model`, or the reason it has none. */
export function planNativeStep(model: LayersModel): NativePlan | string {
  const be = nativeBackend();
  if (typeof be === "string") return be;
  if (model.inputs.length !== 1 || model.outputs.length !== 1) return "the model has more than one input or output";
  const layers = model.layers;
  const stages: Stage[] = [];
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const cls = layer.getClassName();
    const where = `layer ${layer.name} (${cls})`;
    if (i === 0) {
      if (cls !== "InputLayer") return `${where} is not the input layer`;
      continue;
    }
    const nodes = layer.inboundNodes;
    if (nodes.length !== 1 || nodes[0]!.inboundLayers.length !== 1 || nodes[0]!.inboundLayers[0] !== layers[i - 1]) {
      return `${where} is not applied once to the output of the layer before it`;
    }
    const c = layer.getConfig() as Config;
    switch (cls) {
      case "Conv2D": {
        const strides = pair(c.strides, "strides");
        const dilation = pair(c.dilationRate ?? 1, "dilationRate");
        const pad = padding(c.padding);
        const act = c.activation;
        const bad =
          unsupportedOptions(c) ??
          (typeof strides === "string" ? strides : undefined) ??
          (typeof dilation === "string" || dilation[0] !== 1 || dilation[1] !== 1 ? `dilationRate ${JSON.stringify(c.dilationRate)}` : undefined) ??
          (c.dataFormat !== "channelsLast" ? `dataFormat ${String(c.dataFormat)}` : undefined) ??
          (pad ? undefined : `padding ${String(c.padding)}`) ??
          (act === "relu" || act === "linear" ? undefined : `activation ${String(act)}`);
        if (bad) return `${where}: ${bad}`;
        stages.push({ kind: "conv2d", layer: layer.name, ...weightsOf(layer), strides: strides as Pair, padding: pad!, relu: act === "relu", trainable: layer.trainable });
        break;
      }
      case "MaxPooling2D": {
        const size = pair(c.poolSize, "poolSize");
        const strides = pair(c.strides ?? c.poolSize, "strides");
        const pad = padding(c.padding);
        const bad =
          (typeof size === "string" ? size : undefined) ??
          (typeof strides === "string" ? strides : undefined) ??
          (c.dataFormat !== "channelsLast" ? `dataFormat ${String(c.dataFormat)}` : undefined) ??
          (pad ? undefined : `padding ${String(c.padding)}`);
        if (bad) return `${where}: ${bad}`;
        stages.push({ kind: "maxPool", layer: layer.name, size: size as Pair, strides: strides as Pair, padding: pad! });
        break;
      }
      case "Flatten":
        // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a Keras layer config's dataFormat is a string
        if (c.dataFormat != null && c.dataFormat !== "channelsLast") return `${where}: dataFormat ${String(c.dataFormat)}`;
        stages.push({ kind: "flatten", layer: layer.name, features: (layer.outputShape as number[])[1]! });
        break;
      case "Dense": {
        const act = c.activation;
        const inRank = layer.inboundNodes[0]!.inputShapes;
        const rank = Array.isArray(inRank[0]) ? (inRank[0] as unknown[]).length : (inRank as unknown[]).length;
        const last = i === layers.length - 1;
        const bad =
          unsupportedOptions(c) ??
          (rank !== 2 ? `input of rank ${rank} (only [batch, features])` : undefined) ??
          (last
            ? act === "softmax"
              ? undefined
              : `output activation ${String(act)} (only softmax)`
            : act === "relu" || act === "linear"
              ? undefined
              : `activation ${String(act)}`);
        if (bad) return `${where}: ${bad}`;
        stages.push({ kind: "dense", layer: layer.name, ...weightsOf(layer), relu: act === "relu", trainable: layer.trainable });
        break;
      }
      case "Dropout":
        if (c.noiseShape != null) return `${where}: noiseShape is set`;
        stages.push({ kind: "dropout", layer: layer.name, rate: Number(c.rate), shape: layer.outputShape as (number | null)[] });
        break;
      default:
        return `${where} is not one of Conv2D, MaxPooling2D, Flatten, Dense, Dropout`;
    }
  }
  reluAfterPooling(stages);
  const output = stages.pop();
  if (output?.kind !== "dense") return "the model does not end in a softmax Dense layer";
  const trainableAt = [...stages, output].findIndex((s) => (s.kind === "conv2d" || s.kind === "dense") && s.trainable);
  if (trainableAt < 0) return "the model has no trainable weights";
  const weightOrder = model.trainableWeights.map((w) => (w.read() as Variable).name);
  return { stages, output, firstTrainable: trainableAt, backend: be, weightOrder };
}

/**
 * Rewrites "layer with ReLU → max pooling" as "layer → max pooling → ReLU": max pooling
 * commutes with ReLU (a non-decreasing function), so the outputs are identical and so are the
 * gradients (where the window maximum is ≤ 0 both give 0), but the ReLU and its gradient run
 * on the pooled tensor, a quarter of the size for 2×2 pooling.
 */
function reluAfterPooling(stages: Stage[]): void {
  for (let i = 0; i + 1 < stages.length; i++) {
    const s = stages[i]!;
    if ((s.kind === "conv2d" || s.kind === "dense") && s.relu && stages[i + 1]!.kind === "maxPool") {
      stages[i] = { ...s, relu: false };
      stages.splice(i + 2, 0, { kind: "relu", layer: s.layer });
    }
  }
}

/**
 * The operations a training step is made of, over values of type `V`: eager tensors
 * (`EagerStepOps` below) or the names of nodes in a graph being built (`./graph-step.ts`).
 * {@link buildStep} writes the forward and backward pass once for both.
 */
export interface StepOps<V> {
  /** The current value of a weight. */
  weight(w: Weight): V;
  /** 2-D convolution, plus `bias` when given. */
  conv2d(x: V, filter: V, bias: V | undefined, strides: Pair, padding: Padding): V;
  conv2dBackpropFilter(x: V, filterShape: readonly number[], dy: V, strides: Pair, padding: Padding): V;
  /** Gradient with respect to `x` (whose shape it takes). */
  conv2dBackpropInput(x: V, filter: V, dy: V, strides: Pair, padding: Padding): V;
  matMul(a: V, b: V, transposeA?: boolean, transposeB?: boolean): V;
  biasAdd(x: V, bias: V): V;
  biasAddGrad(dy: V): V;
  relu(x: V): V;
  /** `dy` where the ReLU output `y` is positive, else 0. */
  reluGrad(dy: V, y: V): V;
  maxPool(x: V, size: Pair, strides: Pair, padding: Padding): { y: V; workspace?: V };
  maxPoolGrad(x: V, pooled: { y: V; workspace?: V }, dy: V, size: Pair, strides: Pair, padding: Padding): V;
  /** `[b, ...] → [b, features]`. */
  flatten(x: V, features: number): V;
  /** `dy` reshaped to the shape of `like`. */
  reshapeLike(dy: V, like: V): V;
  mul(a: V, b: V): V;
  /** The `index`-th dropout layer's mask (0 or 1/(1−rate) per unit) for a value like `x`. */
  dropoutMask(index: number, stage: Extract<Stage, { kind: "dropout" }>, x: V): V;
  /** Mean softmax cross-entropy of `logits` against one-hot `labels`, and its gradient with respect to the logits. */
  softmaxCrossEntropy(logits: V, labels: V): { loss: V; dLogits: V };
  /** Fraction of rows whose arg-max of `logits` matches that of `labels`. */
  accuracy(logits: V, labels: V): V;
}

/** Loss, accuracy and the gradient of every trainable weight (by variable name) of one step. */
export interface StepValues<V> {
  readonly loss: V;
  readonly accuracy: V;
  readonly grads: Map<string, V>;
}

/** The forward pass, loss and backward pass of `plan` on `(xs, ys)`, in terms of `ops`. */
export function buildStep<V>(plan: NativePlan, ops: StepOps<V>, xs: V, ys: V): StepValues<V> {
  // Forward: keep each stage's input and output (and pooling workspace) for the backward pass.
  const inputs: V[] = [];
  const outputs: { y: V; workspace?: V }[] = [];
  const masks: V[] = [];
  let x = xs;
  for (const s of plan.stages) {
    inputs.push(x);
    let out: { y: V; workspace?: V };
    switch (s.kind) {
      case "conv2d": {
        const z = ops.conv2d(x, ops.weight(s.kernel), s.bias && ops.weight(s.bias), s.strides, s.padding);
        out = { y: s.relu ? ops.relu(z) : z };
        break;
      }
      case "dense": {
        let z = ops.matMul(x, ops.weight(s.kernel));
        if (s.bias) z = ops.biasAdd(z, ops.weight(s.bias));
        out = { y: s.relu ? ops.relu(z) : z };
        break;
      }
      case "relu":
        out = { y: ops.relu(x) };
        break;
      case "maxPool":
        out = ops.maxPool(x, s.size, s.strides, s.padding);
        break;
      case "flatten":
        out = { y: ops.flatten(x, s.features) };
        break;
      case "dropout": {
        const mask = ops.dropoutMask(masks.length, s, x);
        masks.push(mask);
        out = { y: ops.mul(x, mask) };
        break;
      }
    }
    outputs.push(out);
    x = out.y;
  }
  const head = plan.output;
  let logits = ops.matMul(x, ops.weight(head.kernel));
  if (head.bias) logits = ops.biasAdd(logits, ops.weight(head.bias));
  const { loss, dLogits } = ops.softmaxCrossEntropy(logits, ys);
  const accuracy = ops.accuracy(logits, ys);

  // Backward, from the logits down to the first stage with trainable weights.
  const grads = new Map<string, V>();
  let dy = dLogits;
  if (head.trainable) {
    grads.set(head.kernel.name, ops.matMul(x, dy, true, false));
    if (head.bias) grads.set(head.bias.name, ops.biasAddGrad(dy));
  }
  const n = plan.stages.length;
  if (plan.firstTrainable < n) dy = ops.matMul(dy, ops.weight(head.kernel), false, true);
  for (let i = n - 1; i >= plan.firstTrainable; i--) {
    const s = plan.stages[i]!;
    const input = inputs[i]!;
    const needInputGrad = i > plan.firstTrainable;
    switch (s.kind) {
      case "conv2d":
      case "dense": {
        const dz = s.relu ? ops.reluGrad(dy, outputs[i]!.y) : dy;
        const kernel = ops.weight(s.kernel);
        if (s.trainable) {
          const kernelShape = (s.kernel.value as Variable).shape;
          grads.set(s.kernel.name, s.kind === "conv2d" ? ops.conv2dBackpropFilter(input, kernelShape, dz, s.strides, s.padding) : ops.matMul(input, dz, true, false));
          if (s.bias) grads.set(s.bias.name, ops.biasAddGrad(dz));
        }
        if (needInputGrad) dy = s.kind === "conv2d" ? ops.conv2dBackpropInput(input, kernel, dz, s.strides, s.padding) : ops.matMul(dz, kernel, false, true);
        break;
      }
      case "relu":
        if (needInputGrad) dy = ops.reluGrad(dy, outputs[i]!.y);
        break;
      case "maxPool":
        if (needInputGrad) dy = ops.maxPoolGrad(input, outputs[i]!, dy, s.size, s.strides, s.padding);
        break;
      case "flatten":
        if (needInputGrad) dy = ops.reshapeLike(dy, input);
        break;
      case "dropout":
        if (needInputGrad) dy = ops.mul(dy, masks[plan.stages.slice(0, i).filter((t) => t.kind === "dropout").length]!);
        break;
    }
  }
  return { loss, accuracy, grads };
}

/** {@link StepOps} on eager tensors: each call runs its TensorFlow kernel now. */
class EagerStepOps implements StepOps<Tensor> {
  private readonly ops: NativeOps;
  constructor(
    plan: NativePlan,
    private readonly masks: DropoutMasks,
  ) {
    this.ops = nativeOps(plan.backend);
  }
  weight(w: Weight): Tensor {
    return w.value;
  }
  conv2d(x: Tensor, filter: Tensor, bias: Tensor | undefined, strides: Pair, padding: Padding): Tensor {
    return this.ops.conv2d(x, filter, bias, strides, padding);
  }
  conv2dBackpropFilter(x: Tensor, filterShape: readonly number[], dy: Tensor, strides: Pair, padding: Padding): Tensor {
    return this.ops.conv2dBackpropFilter(x, filterShape, dy, strides, padding);
  }
  conv2dBackpropInput(x: Tensor, filter: Tensor, dy: Tensor, strides: Pair, padding: Padding): Tensor {
    return this.ops.conv2dBackpropInput(x.shape, filter, dy, strides, padding);
  }
  matMul(a: Tensor, b: Tensor, transposeA = false, transposeB = false): Tensor {
    return this.ops.matMul(a, b, transposeA, transposeB);
  }
  biasAdd(x: Tensor, bias: Tensor): Tensor {
    return this.ops.biasAdd(x, bias);
  }
  biasAddGrad(dy: Tensor): Tensor {
    return this.ops.biasAddGrad(dy);
  }
  relu(x: Tensor): Tensor {
    return this.ops.relu(x);
  }
  reluGrad(dy: Tensor, y: Tensor): Tensor {
    return this.ops.reluGrad(dy, y);
  }
  maxPool(x: Tensor, size: Pair, strides: Pair, padding: Padding): { y: Tensor; workspace?: Tensor } {
    return this.ops.maxPool(x, size, strides, padding);
  }
  maxPoolGrad(x: Tensor, pooled: { y: Tensor; workspace?: Tensor }, dy: Tensor, size: Pair, strides: Pair, padding: Padding): Tensor {
    return this.ops.maxPoolGrad(x, pooled, dy, size, strides, padding);
  }
  flatten(x: Tensor, features: number): Tensor {
    return this.ops.reshape(x, [x.shape[0]!, features]);
  }
  reshapeLike(dy: Tensor, like: Tensor): Tensor {
    return this.ops.reshape(dy, like.shape);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.ops.mul(a, b);
  }
  dropoutMask(index: number, stage: Extract<Stage, { kind: "dropout" }>, x: Tensor): Tensor {
    return tf.tensor(this.masks(index, x.size, stage.rate), x.shape);
  }
  softmaxCrossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; dLogits: Tensor } {
    const { loss, dLogits } = this.ops.softmaxCrossEntropyWithLogits(logits, labels);
    return { loss: tf.mean(loss), dLogits: this.ops.mul(dLogits, tf.scalar(1 / logits.shape[0]!)) };
  }
  accuracy(logits: Tensor, labels: Tensor): Tensor {
    return tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.argMax(labels, -1)), "float32"));
  }
}

/** What one eager forward and backward pass produces. All tensors belong to the caller's `tf.tidy`. */
export interface LossAndGradients {
  /** Mean cross-entropy over the batch (scalar). */
  readonly loss: Tensor;
  /** Fraction of the batch whose arg-max matches the label (scalar). */
  readonly accuracy: Tensor;
  /** Gradient of `loss` for every trainable weight, by variable name, in the model's order. */
  readonly grads: { name: string; tensor: Tensor }[];
}

/**
 * Loss, accuracy and gradients of `plan`'s model on a batch, kernel by kernel: `xs` the model
 * input, `ys` one-hot float32 `[b, classes]`. Call inside `tf.tidy`.
 */
export function lossAndGradients(plan: NativePlan, xs: Tensor, ys: Tensor, masks: DropoutMasks): LossAndGradients {
  const { loss, accuracy, grads } = buildStep(plan, new EagerStepOps(plan, masks), xs, ys);
  return { loss, accuracy, grads: plan.weightOrder.filter((n) => grads.has(n)).map((name) => ({ name, tensor: grads.get(name)! })) };
}
