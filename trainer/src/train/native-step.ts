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
import type { LayersModel, Tensor, Variable } from "../tf";
import { tf } from "../tf";
import { nativeBackend, nativeOps, type Padding } from "./native-ops";

/** A trainable weight: the tfjs variable the optimizer updates, by its registered name. */
interface Weight {
  readonly name: string;
  readonly value: Tensor;
}

type Pair = readonly [number, number];

type Stage =
  | { readonly kind: "conv2d"; readonly layer: string; readonly kernel: Weight; readonly bias?: Weight; readonly strides: Pair; readonly padding: Padding; readonly relu: boolean; readonly trainable: boolean }
  | { readonly kind: "maxPool"; readonly layer: string; readonly size: Pair; readonly strides: Pair; readonly padding: Padding }
  | { readonly kind: "flatten"; readonly layer: string }
  | { readonly kind: "dense"; readonly layer: string; readonly kernel: Weight; readonly bias?: Weight; readonly relu: boolean; readonly trainable: boolean }
  | { readonly kind: "dropout"; readonly layer: string; readonly rate: number }
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
        if (c.dataFormat != null && c.dataFormat !== "channelsLast") return `${where}: dataFormat ${String(c.dataFormat)}`;
        stages.push({ kind: "flatten", layer: layer.name });
        break;
      case "Dense": {
        const act = c.activation;
        const inRank = layer.inboundNodes[0]!.inputShapes;
        const rank = Array.isArray(inRank[0]) ? (inRank[0] as unknown[]).length : (inRank as unknown[]).length;
        const last = i === layers.length - 1;
        const bad =
          unsupportedOptions(c) ??
          (rank !== 2 ? `input of rank ${rank} (only [batch, features])` : undefined) ??
          (last ? (act === "softmax" ? undefined : `output activation ${String(act)} (only softmax)`) : act === "relu" || act === "linear" ? undefined : `activation ${String(act)}`);
        if (bad) return `${where}: ${bad}`;
        stages.push({ kind: "dense", layer: layer.name, ...weightsOf(layer), relu: act === "relu", trainable: layer.trainable });
        break;
      }
      case "Dropout":
        if (c.noiseShape != null) return `${where}: noiseShape is set`;
        stages.push({ kind: "dropout", layer: layer.name, rate: Number(c.rate) });
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

/** What one forward and backward pass produces. All tensors belong to the caller's `tf.tidy`. */
export interface LossAndGradients {
  /** Mean cross-entropy over the batch (scalar). */
  readonly loss: Tensor;
  /** Fraction of the batch whose arg-max matches the label (scalar). */
  readonly accuracy: Tensor;
  /** Gradient of `loss` for every trainable weight, by variable name, in the model's order. */
  readonly grads: { name: string; tensor: Tensor }[];
}

/**
 * Loss, accuracy and gradients of `plan`'s model on a batch: `xs` the model input, `ys`
 * one-hot float32 `[b, classes]`. Call inside `tf.tidy`.
 */
export function lossAndGradients(plan: NativePlan, xs: Tensor, ys: Tensor, masks: DropoutMasks): LossAndGradients {
  const ops = nativeOps(plan.backend);
  const b = xs.shape[0]!;
  // Forward: keep each stage's input and output for the backward pass.
  const inputs: Tensor[] = [];
  const outputs: Tensor[] = [];
  const poolWorkspaces = new Map<number, Tensor>();
  const dropoutMasks: Tensor[] = [];
  let x = xs;
  let dropoutIndex = 0;
  for (const [i, s] of plan.stages.entries()) {
    inputs.push(x);
    switch (s.kind) {
      case "conv2d": {
        const y = ops.conv2d(x, s.kernel.value, s.bias?.value, s.strides, s.padding);
        x = s.relu ? ops.relu(y) : y;
        break;
      }
      case "dense": {
        let y = ops.matMul(x, s.kernel.value);
        if (s.bias) y = ops.biasAdd(y, s.bias.value);
        x = s.relu ? ops.relu(y) : y;
        break;
      }
      case "relu":
        x = ops.relu(x);
        break;
      case "maxPool": {
        const { y, workspace } = ops.maxPool(x, s.size, s.strides, s.padding);
        if (workspace) poolWorkspaces.set(i, workspace);
        x = y;
        break;
      }
      case "flatten":
        x = ops.reshape(x, [b, x.size / b]);
        break;
      case "dropout": {
        const mask = tf.tensor(masks(dropoutIndex++, x.size, s.rate), x.shape);
        dropoutMasks.push(mask);
        x = ops.mul(x, mask);
        break;
      }
    }
    outputs.push(x);
  }
  const out = plan.output;
  let logits = ops.matMul(x, out.kernel.value);
  if (out.bias) logits = ops.biasAdd(logits, out.bias.value);
  const { loss, dLogits } = ops.softmaxCrossEntropyWithLogits(logits, ys);
  const meanLoss = tf.mean(loss);
  const accuracy = tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.argMax(ys, -1)), "float32"));

  // Backward.
  const grads: { name: string; tensor: Tensor }[] = [];
  let dy = ops.mul(dLogits, tf.scalar(1 / b));
  if (out.trainable) {
    grads.push({ name: out.kernel.name, tensor: ops.matMul(x, dy, true, false) });
    if (out.bias) grads.push({ name: out.bias.name, tensor: ops.biasAddGrad(dy) });
  }
  const n = plan.stages.length;
  if (plan.firstTrainable < n) dy = ops.matMul(dy, out.kernel.value, false, true);
  for (let i = n - 1; i >= plan.firstTrainable; i--) {
    const s = plan.stages[i]!;
    const input = inputs[i]!;
    const needInputGrad = i > plan.firstTrainable;
    switch (s.kind) {
      case "conv2d":
      case "dense": {
        const dz = s.relu ? ops.reluGrad(dy, outputs[i]!) : dy;
        if (s.trainable) {
          const dk = s.kind === "conv2d" ? ops.conv2dBackpropFilter(input, s.kernel.value.shape, dz, s.strides, s.padding) : ops.matMul(input, dz, true, false);
          grads.push({ name: s.kernel.name, tensor: dk });
          if (s.bias) grads.push({ name: s.bias.name, tensor: ops.biasAddGrad(dz) });
        }
        if (needInputGrad) {
          dy = s.kind === "conv2d" ? ops.conv2dBackpropInput(input.shape, s.kernel.value, dz, s.strides, s.padding) : ops.matMul(dz, s.kernel.value, false, true);
        }
        break;
      }
      case "relu":
        if (needInputGrad) dy = ops.reluGrad(dy, outputs[i]!);
        break;
      case "maxPool":
        if (needInputGrad) dy = ops.maxPoolGrad(input, { y: outputs[i]!, workspace: poolWorkspaces.get(i) }, dy, s.size, s.strides, s.padding);
        break;
      case "flatten":
        if (needInputGrad) dy = ops.reshape(dy, input.shape);
        break;
      case "dropout":
        if (needInputGrad) dy = ops.mul(dy, dropoutMasks[--dropoutIndex]!);
        break;
    }
  }
  const at = (name: string) => plan.weightOrder.indexOf(name);
  return { loss: meanLoss, accuracy, grads: grads.sort((a, b) => at(a.name) - at(b.name)) };
}
