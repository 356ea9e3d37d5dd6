/**
 * The native training step compiled into one TensorFlow graph: forward pass, loss, the
 * backward pass written out as TensorFlow's gradient kernels (as in `./native-step.ts`), and
 * Adam (`ResourceApplyAdam` on resource variables), loaded as a SavedModel through
 * tfjs-node's own SavedModel support and run with one `TF_SessionRun` per step.
 *
 * Why a graph: run op by op (eager), every kernel waits for the one before it, so on a CPU
 * the independent parts of a step (a layer's weight gradient and its input gradient, the
 * optimizer updates) never overlap, and many kernels use one core. A session schedules the
 * graph's independent nodes on its inter-op threads and applies TensorFlow's graph
 * optimisations (fused Conv2D+BiasAdd, oneDNN layouts) as Keras's compiled step gets.
 *
 * Weights live in the session's variables. After every step the updated values are fetched
 * (one copy of the parameters) and the model's tfjs variables point at them, so evaluation,
 * checkpoints and export see the current weights; a weight set on the model from outside
 * (a checkpoint restore) is written into the session before the next step. The optimizer
 * state reads and writes in tfjs `AdamOptimizer`'s layout (see `./native-adam.ts`).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ModelTensorInfo } from "@tensorflow/tfjs-core/dist/model_types";
import type { NodeJSKernelBackend } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import { tf, type LayersModel, type Tensor, type Variable } from "../tf";
import { DT, GraphBuilder, type Attr } from "./graph-def";
import { AdamState, dataId, type AdamConfig } from "./native-adam";
import type { Padding } from "./native-ops";
import { buildStep, type DropoutMasks, type NativePlan, type Pair, type Stage, type StepOps, type Weight } from "./native-step";

const FLOAT: Attr = { type: DT.float };
const INT32: Attr = { type: DT.int32 };
const TAG = "mlp-train";

interface GraphWeight {
  readonly variable: Variable;
  readonly handle: string;
  readonly init: string;
  readonly trainable: boolean;
  /** Trainable weights: the moment variables, their init placeholders and the updated value. */
  readonly m?: string;
  readonly v?: string;
  readonly mInit?: string;
  readonly vInit?: string;
  /** The data the model's variable held after our last step: anything else was set from outside. */
  expected?: object;
}

export class GraphTrainStep extends AdamState {
  private readonly weights: GraphWeight[] = [];
  /** The trainable ones, in the model's order: the optimizer state's layout and the updated values fetched. */
  private readonly trainable: GraphWeight[];
  private readonly dropouts: readonly DropoutStage[];
  private id: number | undefined;
  private readonly outputs: string[];
  /** The split step (distributed runs): the gradients' nodes, and Adam fed from placeholders. */
  private readonly gradNodes: string[];
  private readonly gradInputs: string[];
  private readonly appliedNodes: string[];
  private readonly setWeightsDone: string;
  private readonly setMomentsDone: string;

  constructor(
    private readonly be: NodeJSKernelBackend,
    model: LayersModel,
    plan: NativePlan,
    config: AdamConfig,
  ) {
    super(config, be.epsilon());
    const g = new GraphBuilder();
    const placeholder = (name: string, shape: readonly (number | null)[]) => g.add("Placeholder", name, [], { dtype: FLOAT, shape: { shape } });
    const inputShape = model.inputs[0]!.shape;
    const x = placeholder("x", inputShape);
    const y = placeholder("y", model.outputs[0]!.shape);
    const invBatch = placeholder("inv_batch", []);
    const lr = placeholder("learning_rate", []);
    const beta1Power = placeholder("beta1_power", []);
    const beta2Power = placeholder("beta2_power", []);
    const epsilon = placeholder("epsilon", []);
    const beta1 = g.constant("beta1", Float32Array.of(this.beta1), []);
    const beta2 = g.constant("beta2", Float32Array.of(this.beta2), []);

    // Variables: each weight of the plan, in the model's order for the trainable ones.
    const reads = new Map<string, string>();
    const weightAssigns: string[] = [];
    const momentAssigns: string[] = [];
    const variable = (name: string, shape: readonly number[]) => {
      const handle = g.add("VarHandleOp", name, [], { dtype: FLOAT, shape: { shape }, container: { s: "" }, shared_name: { s: name } });
      const init = placeholder(`${name}/init`, shape);
      // The variable takes a copy in TensorFlow's own memory, never the fed tensor's buffer: a
      // tensor tfjs-node made from a JS typed array shares the array's memory, and the buffer's
      // release (when a later assign replaces it) would run tfjs-node's N-API clean-up on the
      // session's worker thread, corrupting the JS heap (`free(): invalid pointer` in CI).
      const copy = g.add("DeepCopy", `${name}/copy`, [init], { T: FLOAT });
      return { handle, init, assign: g.add("AssignVariableOp", `${name}/assign`, [handle, copy], { dtype: FLOAT }) };
    };
    const allWeights = [...plan.stages, plan.output].flatMap((s) =>
      "kernel" in s ? [{ w: s.kernel, trainable: s.trainable }, ...(s.bias ? [{ w: s.bias, trainable: s.trainable }] : [])] : [],
    );
    allWeights.forEach(({ w, trainable }, i) => {
      const variableTensor = w.value as Variable;
      const base = variable(`weight${i}`, variableTensor.shape);
      weightAssigns.push(base.assign);
      reads.set(w.name, g.add("ReadVariableOp", `weight${i}/read`, [base.handle], { dtype: FLOAT }));
      let extra = {};
      if (trainable) {
        const m = variable(`weight${i}/m`, variableTensor.shape);
        const v = variable(`weight${i}/v`, variableTensor.shape);
        momentAssigns.push(m.assign, v.assign);
        extra = { m: m.handle, v: v.handle, mInit: m.init, vInit: v.init };
      }
      const gw: GraphWeight = { variable: variableTensor, handle: base.handle, init: base.init, trainable, ...extra };
      this.weights.push(gw);
    });
    this.setWeightsDone = g.add(
      "Const",
      "set_weights_done",
      weightAssigns.map((a) => `^${a}`),
      { dtype: INT32, value: { tensor: { dtype: DT.int32, shape: [], content: Int32Array.of(1) } } },
    );
    this.setMomentsDone = g.add(
      "Const",
      "set_moments_done",
      momentAssigns.map((a) => `^${a}`),
      { dtype: INT32, value: { tensor: { dtype: DT.int32, shape: [], content: Int32Array.of(1) } } },
    );
    for (const w of this.weights) {
      if (w.m) g.add("ReadVariableOp", `${w.m}/value`, [w.m], { dtype: FLOAT });
      if (w.v) g.add("ReadVariableOp", `${w.v}/value`, [w.v], { dtype: FLOAT });
    }

    const ops = new GraphStepOps(g, reads, invBatch);
    const { loss, accuracy, grads } = buildStep(plan, ops, x, y);
    this.dropouts = ops.dropouts;

    // Adam for each trainable weight (in the model's order: the optimizer state's layout),
    // then its updated value.
    const at = (w: GraphWeight) => plan.weightOrder.indexOf(w.variable.name);
    this.trainable = this.weights.filter((w) => w.trainable).sort((a, b) => at(a) - at(b));
    const updated = this.trainable.map((w) => {
      const apply = g.add("ResourceApplyAdam", `${w.handle}/adam`, [w.handle, w.m!, w.v!, beta1Power, beta2Power, lr, beta1, beta2, epsilon, grads.get(w.variable.name)!], {
        T: FLOAT,
        use_locking: { b: false },
        use_nesterov: { b: false },
      });
      return g.add("ReadVariableOp", `${w.handle}/updated`, [w.handle, `^${apply}`], { dtype: FLOAT });
    });
    this.outputs = [loss, accuracy, ...updated];
    // The same step split at the gradients, for distributed runs: one session run computes
    // them, a reducer combines them across replicas, a second run applies Adam to the result.
    this.gradNodes = this.trainable.map((w) => grads.get(w.variable.name)!);
    this.gradInputs = this.trainable.map((w, i) => placeholder(`grad_in${i}`, w.variable.shape));
    this.appliedNodes = this.trainable.map((w, i) => {
      const apply = g.add("ResourceApplyAdam", `${w.handle}/adam_in`, [w.handle, w.m!, w.v!, beta1Power, beta2Power, lr, beta1, beta2, epsilon, this.gradInputs[i]!], {
        T: FLOAT,
        use_locking: { b: false },
        use_nesterov: { b: false },
      });
      return g.add("ReadVariableOp", `${w.handle}/applied`, [w.handle, `^${apply}`], { dtype: FLOAT });
    });

    // Load it: tfjs-node reads a SavedModel directory; the graph needs no checkpoint.
    const dir = mkdtempSync(path.join(os.tmpdir(), "mlp-train-graph-"));
    try {
      writeFileSync(path.join(dir, "saved_model.pb"), g.toSavedModel([TAG]));
      this.id = be.loadSavedModelMetaGraph(dir, TAG);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    try {
      this.pushWeights();
      tf.tidy(() => this.setMoments(null, null));
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  private run(feeds: [string, Tensor][], fetches: string[]): Tensor[] {
    if (this.id === undefined) throw new Error("GraphTrainStep used after dispose()");
    const infos = feeds.map(([name, t]) => ({ name: `${name}:0`, shape: t.shape, dtype: t.dtype }) as ModelTensorInfo);
    return this.be.runSavedModel(
      this.id,
      feeds.map(([, t]) => t),
      infos,
      fetches.map((f) => (f.includes(":") ? f : `${f}:0`)),
    );
  }

  /** Writes the model's current weights into the session (all of them: one fetch runs every assign). */
  private pushWeights(): void {
    tf.dispose(
      this.run(
        this.weights.map((w) => [w.init, w.variable]),
        [this.setWeightsDone],
      ),
    );
    for (const w of this.weights) w.expected = dataId(w.variable);
  }

  /** Sets the trainable weights' moments, in {@link trainable} order (`null`: zeros). */
  private setMoments(m: readonly Tensor[] | null, v: readonly Tensor[] | null): void {
    const feeds: [string, Tensor][] = this.trainable.flatMap((w, i) => [
      [w.mInit!, m?.[i] ?? tf.zerosLike(w.variable)],
      [w.vInit!, v?.[i] ?? tf.zerosLike(w.variable)],
    ]);
    tf.dispose(this.run(feeds, [this.setMomentsDone]));
  }

  protected get stateWeights(): readonly Variable[] {
    return this.trainable.map((w) => w.variable);
  }
  protected readMoments(): { m: Tensor[]; v: Tensor[] } {
    const values = this.run([], [...this.trainable.map((w) => `${w.m}/value`), ...this.trainable.map((w) => `${w.v}/value`)]);
    return { m: values.slice(0, this.trainable.length), v: values.slice(this.trainable.length) };
  }
  protected writeMoments(m: readonly Tensor[], v: readonly Tensor[]): void {
    this.setMoments(m, v);
  }

  /** Feeds of a batch: inputs, labels, 1/b and the dropout masks (all but the first two created here). */
  private batchFeeds(xs: Tensor, ys: Tensor, masks: DropoutMasks): [string, Tensor][] {
    const b = xs.shape[0]!;
    return [
      ["x", xs],
      ["y", ys],
      ["inv_batch", tf.scalar(1 / b)],
      ...this.dropouts.map((d, k) => {
        const dims = d.shape.map((n) => n ?? b);
        return [
          `dropout${k}`,
          tf.tensor(
            masks(
              k,
              dims.reduce((p, q) => p * q, 1),
              d.rate,
            ),
            dims,
          ),
        ] as [string, Tensor];
      }),
    ];
  }

  /** Adam's scalars for the next update, as feeds (created here), and its step number. */
  private adamFeeds(): { t: number; feeds: [string, Tensor][] } {
    const { t, beta1Power, beta2Power, epsilon } = this.nextStep();
    const scalars: [string, number][] = [
      ["learning_rate", this.learningRate],
      ["beta1_power", beta1Power],
      ["beta2_power", beta2Power],
      ["epsilon", epsilon],
    ];
    return { t, feeds: scalars.map(([n, v]) => [n, tf.scalar(v)] as [string, Tensor]) };
  }

  /** Stores the updated weights the session returned in the model's variables (and disposes them). */
  private takeUpdated(t: number, updated: Tensor[]): void {
    this.iterations = t;
    this.trainable.forEach((w, i) => {
      w.variable.assign(updated[i]!);
      updated[i]!.dispose();
      w.expected = dataId(w.variable);
    });
  }

  /** One step: loss and accuracy (scalars, owned by the caller); the model's weights are updated. */
  step(xs: Tensor, ys: Tensor, masks: DropoutMasks): { loss: Tensor; accuracy: Tensor } {
    // Weights replaced on the model from outside (a restore) go into the session first.
    if (this.weights.some((w) => dataId(w.variable) !== w.expected)) this.pushWeights();
    const { t, feeds: adam } = this.adamFeeds();
    const feeds = [...this.batchFeeds(xs, ys, masks), ...adam];
    let outputs: Tensor[];
    try {
      outputs = this.run(feeds, this.outputs);
    } finally {
      tf.dispose(feeds.slice(2).map(([, t]) => t));
    }
    const [loss, accuracy, ...updated] = outputs;
    this.takeUpdated(t, updated);
    return { loss: loss!, accuracy: accuracy! };
  }

  /**
   * The first half of a split step: loss, accuracy and the gradient of every trainable weight
   * (in the model's order) on this batch; nothing is updated. All tensors are the caller's.
   */
  gradients(xs: Tensor, ys: Tensor, masks: DropoutMasks): { loss: Tensor; accuracy: Tensor; grads: Tensor[] } {
    if (this.weights.some((w) => dataId(w.variable) !== w.expected)) this.pushWeights();
    const feeds = this.batchFeeds(xs, ys, masks);
    let outputs: Tensor[];
    try {
      outputs = this.run(feeds, [this.outputs[0]!, this.outputs[1]!, ...this.gradNodes]);
    } finally {
      tf.dispose(feeds.slice(2).map(([, t]) => t));
    }
    const [loss, accuracy, ...grads] = outputs;
    return { loss: loss!, accuracy: accuracy!, grads };
  }

  /** The second half: Adam with `grads` (one per trainable weight, model order); the model gets the new weights. */
  applyGradients(grads: readonly Tensor[]): void {
    if (grads.length !== this.trainable.length) throw new Error(`applyGradients got ${grads.length} gradients for ${this.trainable.length} trainable weights`);
    if (this.weights.some((w) => dataId(w.variable) !== w.expected)) this.pushWeights();
    const { t, feeds: adam } = this.adamFeeds();
    try {
      const updated = this.run([...adam, ...grads.map((g, i) => [this.gradInputs[i]!, g] as [string, Tensor])], this.appliedNodes);
      this.takeUpdated(t, updated);
    } finally {
      tf.dispose(adam.map(([, t]) => t));
    }
  }

  dispose(): void {
    this.releaseLent();
    if (this.id !== undefined) this.be.deleteSavedModel(this.id);
    this.id = undefined;
  }
}

type DropoutStage = Extract<Stage, { kind: "dropout" }>;

/** {@link StepOps} that add nodes to a graph; values are node names (`"name:1"` for a second output). */
class GraphStepOps implements StepOps<string> {
  readonly dropouts: DropoutStage[] = [];
  private readonly nhwc: Attr = { s: "NHWC" };

  constructor(
    private readonly g: GraphBuilder,
    private readonly reads: ReadonlyMap<string, string>,
    private readonly invBatch: string,
  ) {}

  private ints(...v: number[]): string {
    return this.g.constant("const", Int32Array.from(v));
  }
  private shapeOf(t: string): string {
    return this.g.add("Shape", "shape", [t], { T: FLOAT, out_type: INT32 });
  }
  private conv(strides: Pair, padding: Padding): Record<string, Attr> {
    return {
      T: FLOAT,
      strides: { ints: [1, strides[0], strides[1], 1] },
      padding: { s: padding },
      data_format: this.nhwc,
      dilations: { ints: [1, 1, 1, 1] },
      use_cudnn_on_gpu: { b: true },
      explicit_paddings: { ints: [] },
    };
  }
  private pool(size: Pair, strides: Pair, padding: Padding): Record<string, Attr> {
    return { T: FLOAT, ksize: { ints: [1, size[0], size[1], 1] }, strides: { ints: [1, strides[0], strides[1], 1] }, padding: { s: padding }, data_format: this.nhwc };
  }

  weight(w: Weight): string {
    return this.reads.get(w.name)!;
  }
  conv2d(x: string, filter: string, bias: string | undefined, strides: Pair, padding: Padding): string {
    const y = this.g.add("Conv2D", "conv", [x, filter], this.conv(strides, padding));
    return bias ? this.biasAdd(y, bias) : y;
  }
  conv2dBackpropFilter(x: string, filterShape: readonly number[], dy: string, strides: Pair, padding: Padding): string {
    return this.g.add("Conv2DBackpropFilter", "kernel_grad", [x, this.ints(...filterShape), dy], this.conv(strides, padding));
  }
  conv2dBackpropInput(x: string, filter: string, dy: string, strides: Pair, padding: Padding): string {
    return this.g.add("Conv2DBackpropInput", "input_grad", [this.shapeOf(x), filter, dy], this.conv(strides, padding));
  }
  matMul(a: string, b: string, transposeA = false, transposeB = false): string {
    return this.g.add("MatMul", "matmul", [a, b], { T: FLOAT, transpose_a: { b: transposeA }, transpose_b: { b: transposeB } });
  }
  biasAdd(x: string, bias: string): string {
    return this.g.add("BiasAdd", "bias", [x, bias], { T: FLOAT, data_format: this.nhwc });
  }
  biasAddGrad(dy: string): string {
    return this.g.add("BiasAddGrad", "bias_grad", [dy], { T: FLOAT, data_format: this.nhwc });
  }
  relu(x: string): string {
    return this.g.add("Relu", "relu", [x], { T: FLOAT });
  }
  reluGrad(dy: string, y: string): string {
    return this.g.add("ReluGrad", "relu_grad", [dy, y], { T: FLOAT });
  }
  maxPool(x: string, size: Pair, strides: Pair, padding: Padding): { y: string } {
    // TensorFlow's graph rewrite gives this its oneDNN kernel (with workspace) where it has one.
    return { y: this.g.add("MaxPool", "pool", [x], this.pool(size, strides, padding)) };
  }
  maxPoolGrad(x: string, pooled: { y: string }, dy: string, size: Pair, strides: Pair, padding: Padding): string {
    return this.g.add("MaxPoolGrad", "pool_grad", [x, pooled.y, dy], this.pool(size, strides, padding));
  }
  flatten(x: string, features: number): string {
    return this.g.add("Reshape", "flatten", [x, this.ints(-1, features)], { T: FLOAT, Tshape: INT32 });
  }
  reshapeLike(dy: string, like: string): string {
    return this.g.add("Reshape", "reshape", [dy, this.shapeOf(like)], { T: FLOAT, Tshape: INT32 });
  }
  mul(a: string, b: string): string {
    return this.g.add("Mul", "mul", [a, b], { T: FLOAT });
  }
  dropoutMask(index: number, stage: DropoutStage): string {
    this.dropouts[index] = stage;
    return this.g.add("Placeholder", `dropout${index}`, [], { dtype: FLOAT, shape: { shape: stage.shape } });
  }
  softmaxCrossEntropy(logits: string, labels: string): { loss: string; dLogits: string } {
    const xent = this.g.add("SoftmaxCrossEntropyWithLogits", "xent", [logits, labels], { T: FLOAT });
    return {
      loss: this.g.add("Mean", "loss", [`${xent}:0`, this.ints(0)], { T: FLOAT, Tidx: INT32, keep_dims: { b: false } }),
      dLogits: this.g.add("Mul", "dlogits", [`${xent}:1`, this.invBatch], { T: FLOAT }),
    };
  }
  accuracy(logits: string, labels: string): string {
    const argmax = (t: string) => this.g.add("ArgMax", "argmax", [t, this.g.constant("axis", Int32Array.of(1), [])], { T: FLOAT, Tidx: INT32, output_type: INT32 });
    const equal = this.g.add("Equal", "equal", [argmax(logits), argmax(labels)], { T: INT32, incompatible_shape_error: { b: true } });
    const hits = this.g.add("Cast", "hits", [equal], { SrcT: { type: DT.bool }, DstT: FLOAT, Truncate: { b: false } });
    return this.g.add("Mean", "accuracy", [hits, this.ints(0)], { T: FLOAT, Tidx: INT32, keep_dims: { b: false } });
  }
}
