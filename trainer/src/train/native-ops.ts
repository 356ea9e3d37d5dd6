/**
 * TensorFlow kernels called by name on the native (`tensorflow`) backend, for the training
 * step of `./native-step.ts`. tfjs exposes the forward ops but computes most gradients from
 * several generic ops (a ReLU gradient is `dy · step(y)`, six kernels on tfjs-node 4.22);
 * TensorFlow has one kernel for each of them (`ReluGrad`, `BiasAddGrad`, `MaxPoolGrad`,
 * `SoftmaxCrossEntropyWithLogits`), the same ones Keras runs.
 *
 * Every function returns a tfjs tensor owned by the caller (use inside `tf.tidy`).
 */
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { NodeJSKernelBackend } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import type { TFEOpAttr } from "@tensorflow/tfjs-node/dist/tfjs_binding";
import { tf, type Tensor } from "../tf";

export type Padding = "VALID" | "SAME";

/** The native backend, or why there is none. */
export function nativeBackend(): NodeJSKernelBackend | string {
  const name = tf.getBackend();
  const be = tf.backend() as Partial<NodeJSKernelBackend>;
  if (name !== "tensorflow" || typeof be.executeSingleOutput !== "function" || !be.binding) {
    return `the active backend is ${name}, not the native tensorflow backend`;
  }
  return be as NodeJSKernelBackend;
}

const cache = new WeakMap<NodeJSKernelBackend, NativeOps>();

/** The {@link NativeOps} of the native backend (one per backend: it remembers what it probed). */
export function nativeOps(be: NodeJSKernelBackend): NativeOps {
  let ops = cache.get(be);
  if (!ops) cache.set(be, (ops = new NativeOps(be)));
  return ops;
}

/** Typed wrappers around one backend's `executeSingleOutput`. */
export class NativeOps {
  private readonly T: TFEOpAttr;
  private readonly nhwc: TFEOpAttr;

  constructor(private readonly be: NodeJSKernelBackend) {
    this.T = this.type("T", be.binding.TF_FLOAT);
    this.nhwc = this.str("data_format", "NHWC");
  }

  private type(name: string, value: number): TFEOpAttr {
    return { name, type: this.be.binding.TF_ATTR_TYPE, value };
  }
  private str(name: string, value: string): TFEOpAttr {
    return { name, type: this.be.binding.TF_ATTR_STRING, value };
  }
  private ints(name: string, value: number[]): TFEOpAttr {
    return { name, type: this.be.binding.TF_ATTR_INT, value };
  }
  private bool(name: string, value: boolean): TFEOpAttr {
    return { name, type: this.be.binding.TF_ATTR_BOOL, value };
  }
  private run(op: string, attrs: TFEOpAttr[], inputs: TensorInfo[]): Tensor {
    return this.be.executeSingleOutput(op, attrs, inputs);
  }
  private shape(dims: readonly number[]): Tensor {
    return tf.tensor1d(dims as number[], "int32");
  }
  private convAttrs(strides: readonly [number, number], padding: Padding): TFEOpAttr[] {
    return [
      this.T,
      this.ints("strides", [1, strides[0], strides[1], 1]),
      this.bool("use_cudnn_on_gpu", true),
      this.str("padding", padding),
      this.ints("explicit_paddings", []),
      this.nhwc,
      this.ints("dilations", [1, 1, 1, 1]),
    ];
  }
  private poolAttrs(size: readonly [number, number], strides: readonly [number, number], padding: Padding): TFEOpAttr[] {
    return [this.T, this.ints("ksize", [1, size[0], size[1], 1]), this.ints("strides", [1, strides[0], strides[1], 1]), this.str("padding", padding), this.nhwc];
  }

  /** 2-D convolution plus `bias` (one oneDNN kernel where available). */
  conv2d(x: Tensor, filter: Tensor, bias: Tensor | undefined, strides: readonly [number, number], padding: Padding): Tensor {
    if (bias && this.oneDnnKernels()) {
      return this.run("_MklNativeConv2DWithBias", [...this.convAttrs(strides, padding), this.oneDnnLabel, this.bool("is_filter_const", false)], [x, filter, bias]);
    }
    const y = this.run("Conv2D", this.convAttrs(strides, padding), [x, filter]);
    return bias ? this.biasAdd(y, bias) : y;
  }
  /** Gradient of conv2d with respect to its filter. */
  conv2dBackpropFilter(x: Tensor, filterShape: readonly number[], dy: Tensor, strides: readonly [number, number], padding: Padding): Tensor {
    return this.run("Conv2DBackpropFilter", this.convAttrs(strides, padding), [x, this.shape(filterShape), dy]);
  }
  /** Gradient of conv2d with respect to its input. */
  conv2dBackpropInput(xShape: readonly number[], filter: Tensor, dy: Tensor, strides: readonly [number, number], padding: Padding): Tensor {
    return this.run("Conv2DBackpropInput", this.convAttrs(strides, padding), [this.shape(xShape), filter, dy]);
  }
  /** Adds `bias` along the last axis. */
  biasAdd(x: Tensor, bias: Tensor): Tensor {
    return this.run("BiasAdd", [this.T, this.nhwc], [x, bias]);
  }
  /** Sum of `dy` over every axis but the last: the gradient of a bias. */
  biasAddGrad(dy: Tensor): Tensor {
    return this.run("BiasAddGrad", [this.T, this.nhwc], [dy]);
  }
  relu(x: Tensor): Tensor {
    return this.run("Relu", [this.T], [x]);
  }
  /**
   * `dy` where the ReLU's output `y` is positive, else 0. Computed as `dy · sign(y)`: the
   * same values as `ReluGrad` (NaN included), in half its time on the CPU (its kernel is not
   * vectorised: 1.0 ms against 0.5 ms on [64, 26, 26, 32]).
   */
  reluGrad(dy: Tensor, y: Tensor): Tensor {
    if (this.be.isUsingGpuDevice) return this.run("ReluGrad", [this.T], [dy, y]);
    return tf.tidy(() => this.mul(dy, this.run("Sign", [this.T], [y])));
  }
  /**
   * Max pooling that also returns what its gradient needs. With oneDNN (TensorFlow's x86 CPU
   * builds) that is the pooling workspace of `_MklNativeMaxPool`: forward and backward then
   * take ~0.4 ms on a [64, 26, 26, 32] input instead of ~4.6 ms for `MaxPool` + `MaxPoolGrad`,
   * whose CPU kernel searches every window again (Keras's graph gets the oneDNN op from
   * TensorFlow's layout pass; eager execution does not rewrite pooling). Elsewhere (GPU, or a
   * build without oneDNN) the plain ops.
   */
  maxPool(x: Tensor, size: readonly [number, number], strides: readonly [number, number], padding: Padding): { y: Tensor; workspace?: Tensor } {
    if (this.oneDnnKernels()) {
      const [y, workspace] = this.be.executeMultipleOutputs("_MklNativeMaxPool", this.oneDnnPoolAttrs(size, strides, padding), [x], 2);
      return { y: y!, workspace: workspace! };
    }
    return { y: this.run("MaxPool", this.poolAttrs(size, strides, padding), [x]) };
  }
  /** Gradient of {@link maxPool}: `dy` routed to the first maximum of each window. */
  maxPoolGrad(x: Tensor, pooled: { y: Tensor; workspace?: Tensor }, dy: Tensor, size: readonly [number, number], strides: readonly [number, number], padding: Padding): Tensor {
    if (pooled.workspace) return this.run("_MklNativeMaxPoolGrad", this.oneDnnPoolAttrs(size, strides, padding), [x, pooled.y, dy, pooled.workspace]);
    return this.run("MaxPoolGrad", this.poolAttrs(size, strides, padding), [x, pooled.y, dy]);
  }
  private oneDnnPoolAttrs(size: readonly [number, number], strides: readonly [number, number], padding: Padding): TFEOpAttr[] {
    return [...this.poolAttrs(size, strides, padding), this.oneDnnLabel, this.bool("workspace_enabled", true)];
  }
  /** The oneDNN kernels are registered under a kernel label, chosen with the `_kernel` attribute. */
  private get oneDnnLabel(): TFEOpAttr {
    return this.str("_kernel", "MklNameChangeOp");
  }

  private oneDnn?: boolean;
  /**
   * Whether TensorFlow's oneDNN kernels (`_MklNativeMaxPool`, `_MklNativeMaxPoolGrad`,
   * `_MklNativeConv2DWithBias`) run here and agree exactly with the plain ones; checked once,
   * on small inputs with ties. Only on the CPU, where they exist; `MLP_NATIVE_ONEDNN=0` turns
   * them off.
   */
  oneDnnKernels(): boolean {
    if (this.oneDnn === undefined) {
      this.oneDnn = false;
      if (!this.be.isUsingGpuDevice && process.env.MLP_NATIVE_ONEDNN !== "0") {
        try {
          this.oneDnn = tf.tidy(() => {
            const same = (a: Tensor, b: Tensor) => a.shape.join() === b.shape.join() && a.dataSync().every((v, i) => v === b.dataSync()[i]);
            const x = tf.tensor4d([0, 3, 3, 1, 2, 2, 0, 5, -1, 7, 7, 7, 4, 0, 0, 4, 6, 1, 2, 2, 9, 9, 1, 0, 3, 3, 3, 3, 8, 1, 0, 2], [1, 4, 4, 2]);
            const dy = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2]);
            const attrs = this.oneDnnPoolAttrs([2, 2], [2, 2], "VALID");
            const [y, ws] = this.be.executeMultipleOutputs("_MklNativeMaxPool", attrs, [x], 2);
            const dx = this.run("_MklNativeMaxPoolGrad", attrs, [x, y!, dy, ws!]);
            const yRef = this.run("MaxPool", this.poolAttrs([2, 2], [2, 2], "VALID"), [x]);
            const dxRef = this.run("MaxPoolGrad", this.poolAttrs([2, 2], [2, 2], "VALID"), [x, yRef, dy]);
            const filter = tf.tensor4d([1, -2, 0.5, 3, 0, 1, -1, 2, 4, 0, 1, 1, -3, 2, 0, 1], [2, 2, 2, 2]);
            const bias = tf.tensor1d([0.25, -1]);
            const conv = this.run("_MklNativeConv2DWithBias", [...this.convAttrs([1, 1], "VALID"), this.oneDnnLabel, this.bool("is_filter_const", false)], [x, filter, bias]);
            const convRef = this.biasAdd(this.run("Conv2D", this.convAttrs([1, 1], "VALID"), [x, filter]), bias);
            return same(y!, yRef) && same(dx, dxRef) && same(conv, convRef);
          });
        } catch {
          this.oneDnn = false;
        }
      }
    }
    return this.oneDnn;
  }

  matMul(a: Tensor, b: Tensor, transposeA = false, transposeB = false): Tensor {
    return this.run("MatMul", [this.T, this.bool("transpose_a", transposeA), this.bool("transpose_b", transposeB)], [a, b]);
  }
  reshape(x: Tensor, shape: readonly number[]): Tensor {
    return this.run("Reshape", [this.T, this.type("Tshape", this.be.binding.TF_INT32)], [x, this.shape(shape)]);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.run("Mul", [this.T], [a, b]);
  }
  /** A new float32 TensorFlow resource variable of `shape`; its handle is a tfjs tensor the caller keeps and frees with {@link destroyVariable}. */
  variable(sharedName: string, shape: readonly number[]): Tensor {
    const attrs = [
      this.str("container", ""),
      this.str("shared_name", sharedName),
      this.type("dtype", this.be.binding.TF_FLOAT),
      { name: "shape", type: this.be.binding.TF_ATTR_SHAPE, value: shape as number[] },
    ];
    return tf.keep(this.be.executeSingleOutput("VarHandleOp", attrs, []));
  }
  assignVariable(handle: Tensor, value: Tensor): void {
    this.be.executeMultipleOutputs("AssignVariableOp", [this.type("dtype", this.be.binding.TF_FLOAT), this.bool("validate_shape", false)], [handle, value], 0);
  }
  readVariable(handle: Tensor): Tensor {
    return this.run("ReadVariableOp", [this.type("dtype", this.be.binding.TF_FLOAT)], [handle]);
  }
  destroyVariable(handle: Tensor): void {
    this.be.executeMultipleOutputs("DestroyResourceOp", [this.bool("ignore_lookup_error", true)], [handle], 0);
    handle.dispose();
  }
  /** One Adam update of the variables `value`, `m`, `v` in place; `scalars`: β₁ᵗ, β₂ᵗ, lr, β₁, β₂, ε. */
  resourceApplyAdam(value: Tensor, m: Tensor, v: Tensor, scalars: readonly Tensor[], grad: Tensor): void {
    const attrs = [this.T, this.bool("use_locking", false), this.bool("use_nesterov", false)];
    this.be.executeMultipleOutputs("ResourceApplyAdam", attrs, [value, m, v, ...scalars, grad], 0);
  }

  /** Per-example cross-entropy of softmax(`logits`) against `labels`, and its gradient with respect to the logits. */
  softmaxCrossEntropyWithLogits(logits: Tensor, labels: Tensor): { loss: Tensor; dLogits: Tensor } {
    const [loss, dLogits] = this.be.executeMultipleOutputs("SoftmaxCrossEntropyWithLogits", [this.T], [logits, labels], 2);
    return { loss: loss!, dLogits: dLogits! };
  }
}
