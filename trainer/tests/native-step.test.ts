/**
 * The native training step (src/train/native-step.ts, native-ops.ts, native-adam.ts, step.ts)
 * against tfjs's own autograd and Adam on the same weights and batches.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ImageDataset } from "../src/data/images";
import { createMnistModel } from "../src/model/mnist";
import { train } from "../src/train/loop";
import { NativeAdam } from "../src/train/native-adam";
import { NativeOps, nativeBackend } from "../src/train/native-ops";
import { lossAndGradients, planNativeStep, type DropoutMasks, type NativePlan } from "../src/train/native-step";
import { createTrainStep, seededDropoutMasks } from "../src/train/step";
import { tf, type LayersModel, type Scalar, type Tensor, type Tensor1D, type Variable } from "../src/tf";

const noDropout: DropoutMasks = () => {
  throw new Error("the model has no dropout");
};

function batch(b: number, shape: number[], classes: number, seed: number) {
  return tf.tidy(() => ({
    xs: tf.randomUniform([b, ...shape], 0, 1, "float32", seed),
    ys: tf.oneHot(tf.randomUniform([b], 0, classes, "int32", seed + 1) as Tensor1D, classes).toFloat(),
  }));
}

/** max |a − b| relative to max |b| (plus a floor for all-zero gradients). */
function relDiff(a: Tensor, b: Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / (tf.max(tf.abs(b)).dataSync()[0]! + 1e-6));
}

/** The model's trainable variables, in order. */
const weightsOf = (m: LayersModel) => m.trainableWeights.map((w) => w.read() as Variable);

/**
 * Checks that two models took the same Adam step from the same weights. Adam divides by the
 * gradient's own magnitude, so an entry whose gradient is at rounding-noise level (a ReLU
 * that is just off, a pixel that is zero in the whole batch) can move by up to ±lr in either
 * kernel set, depending on how each sums its float rounding: such entries are allowed to
 * differ (by at most 2·lr), as long as they are rare; every other entry must agree.
 */
function expectSameAdamStep(a: LayersModel, b: LayersModel, lr: number): void {
  const wa = weightsOf(a);
  const wb = weightsOf(b);
  wa.forEach((w, i) => {
    const [maxAbs, off] = tf.tidy(() => {
      const d = tf.abs(tf.sub(w, wb[i]!));
      return [tf.max(d).dataSync()[0]!, tf.sum(tf.cast(tf.greater(d, 1e-6), "float32")).dataSync()[0]!];
    });
    expect(maxAbs, `${w.name}: largest difference`).toBeLessThanOrEqual(2 * lr + 1e-6);
    expect(off / w.size, `${w.name}: share of entries that differ`).toBeLessThan(0.005);
  });
}

/** Loss and gradients by tfjs's autograd, applying the model's layers one by one (dropout by `masks`). */
function reference(model: LayersModel, xs: Tensor, ys: Tensor, masks?: DropoutMasks) {
  const vars = model.trainableWeights.map((w) => w.read() as Variable);
  return tf.variableGrads(() => {
    let x = xs;
    let k = 0;
    for (const layer of model.layers.slice(1)) {
      if (layer.getClassName() === "Dropout") {
        const rate = (layer.getConfig() as { rate: number }).rate;
        x = tf.mul(x, tf.tensor(masks!(k++, x.size, rate), x.shape));
      } else {
        x = layer.apply(x) as Tensor;
      }
    }
    return tf.metrics.categoricalCrossentropy(ys, x).mean() as Scalar;
  }, vars);
}

function expectSameGradients(model: LayersModel, plan: NativePlan, xs: Tensor, ys: Tensor, masks: DropoutMasks) {
  const ref = reference(model, xs, ys, masks);
  const mine = tf.tidy(() => {
    const r = lossAndGradients(plan, xs, ys, masks);
    return { loss: r.loss, grads: Object.fromEntries(r.grads.map((g) => [g.name, g.tensor])) };
  });
  expect(mine.loss.dataSync()[0]).toBeCloseTo(ref.value.dataSync()[0]!, 5);
  const trainable = model.trainableWeights.map((w) => (w.read() as Variable).name);
  expect(Object.keys(mine.grads).sort()).toEqual([...trainable].sort());
  for (const name of trainable) expect(relDiff(mine.grads[name]!, ref.grads[name]!), name).toBeLessThan(1e-5);
  tf.dispose([ref.value, ...Object.values(ref.grads), mine.loss, ...Object.values(mine.grads)]);
}

/** Same padding, strides, a linear conv, overlapping pools, a frozen layer without bias. */
function oddModel(): LayersModel {
  const input = tf.input({ shape: [15, 13, 3] });
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  let x = tf.layers.conv2d({ filters: 6, kernelSize: [3, 2], strides: 2, padding: "same", activation: "linear", kernelInitializer: init(1) }).apply(input);
  x = tf.layers.conv2d({ filters: 5, kernelSize: 3, activation: "relu", padding: "same", kernelInitializer: init(2), biasInitializer: "ones" }).apply(x);
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: "same" }).apply(x);
  x = tf.layers.flatten().apply(x);
  const frozen = tf.layers.dense({ units: 7, activation: "relu", kernelInitializer: init(3), useBias: false });
  x = frozen.apply(x);
  x = tf.layers.dropout({ rate: 0.2 }).apply(x);
  x = tf.layers.dense({ units: 9, activation: "linear", kernelInitializer: init(4) }).apply(x);
  const out = tf.layers.dense({ units: 4, activation: "softmax", kernelInitializer: init(5) }).apply(x) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  frozen.trainable = false;
  return model;
}

function plan(model: LayersModel): NativePlan {
  const p = planNativeStep(model);
  if (typeof p === "string") throw new Error(p);
  return p;
}

describe("native training step: gradients", () => {
  afterEach(() => {
    delete process.env.MLP_TRAIN_STEP;
  });

  it("matches tfjs autograd on the MNIST CNN (no dropout)", () => {
    const model = createMnistModel({ seed: 3, dropout: 0 });
    const { xs, ys } = batch(16, [28, 28, 1], 10, 5);
    expectSameGradients(model, plan(model), xs, ys, noDropout);
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it("matches tfjs autograd with dropout, given the same masks", () => {
    const model = createMnistModel({ seed: 4, dropout: 0.5 });
    const { xs, ys } = batch(12, [28, 28, 1], 10, 6);
    const masks = seededDropoutMasks(9, 1);
    expectSameGradients(model, plan(model), xs, ys, masks);
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it("matches on other supported shapes: same padding, strides, linear conv, overlapping pools, frozen layers", () => {
    const model = oddModel();
    const { xs, ys } = batch(5, [15, 13, 3], 4, 7);
    const p = plan(model);
    expect(p.stages.map((s) => s.kind)).toEqual(["conv2d", "conv2d", "maxPool", "relu", "flatten", "dense", "dropout", "dense"]);
    expectSameGradients(model, p, xs, ys, seededDropoutMasks(3, 1));
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it("gives the same gradients with and without the oneDNN kernels", () => {
    const be = nativeBackend();
    if (typeof be === "string") throw new Error(be);
    process.env.MLP_NATIVE_ONEDNN = "0";
    const plain = new NativeOps(be);
    expect(plain.oneDnnKernels()).toBe(false);
    delete process.env.MLP_NATIVE_ONEDNN;
    // On this x86 CPU build the oneDNN kernels are there and pass the probe.
    expect(new NativeOps(be).oneDnnKernels()).toBe(true);
    const { xs, ys } = batch(4, [12, 12, 2], 3, 1);
    tf.tidy(() => {
      const a = plain.maxPool(xs, [2, 2], [2, 2], "VALID");
      const fast = new NativeOps(be);
      const b = fast.maxPool(xs, [2, 2], [2, 2], "VALID");
      expect(a.workspace).toBeUndefined();
      expect(b.workspace).toBeDefined();
      const dy = tf.randomNormal(a.y.shape, 0, 1, "float32", 3);
      expect(relDiff(b.y, a.y)).toBe(0);
      expect(relDiff(fast.maxPoolGrad(xs, b, dy, [2, 2], [2, 2], "VALID"), plain.maxPoolGrad(xs, a, dy, [2, 2], [2, 2], "VALID"))).toBe(0);
      const w = tf.randomNormal([3, 3, 2, 4], 0, 1, "float32", 4);
      const bias = tf.randomNormal([4], 0, 1, "float32", 5);
      expect(relDiff(fast.conv2d(xs, w, bias, [1, 1], "SAME"), plain.conv2d(xs, w, bias, [1, 1], "SAME"))).toBeLessThan(1e-6);
    });
    tf.dispose([xs, ys]);
  });

  it("names the layer or setting it cannot run, and the trainer falls back to autograd", () => {
    const input = tf.input({ shape: [8] });
    const bn = tf.layers.batchNormalization({ name: "bn" }).apply(input);
    const m1 = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2, activation: "softmax" }).apply(bn) as ReturnType<typeof tf.input> });
    expect(planNativeStep(m1)).toBe("layer bn (BatchNormalization) is not one of Conv2D, MaxPooling2D, Flatten, Dense, Dropout");
    const reg = tf.layers.dense({ name: "reg", units: 3, activation: "relu", kernelRegularizer: tf.regularizers.l2() }).apply(input);
    const m2 = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2, activation: "softmax" }).apply(reg) as ReturnType<typeof tf.input> });
    expect(planNativeStep(m2)).toBe("layer reg (Dense): kernelRegularizer is set");
    const m3 = tf.model({ inputs: input, outputs: tf.layers.dense({ name: "sig", units: 2, activation: "sigmoid" }).apply(input) as ReturnType<typeof tf.input> });
    expect(planNativeStep(m3)).toBe("layer sig (Dense): output activation sigmoid (only softmax)");

    const step = createTrainStep(m1, { learningRate: 0.01, seed: 1 });
    expect(step.kind).toBe("autograd");
    expect(step.reason).toContain("layer bn");
    const { xs, ys } = batch(8, [8], 2, 2);
    const r = step.run(xs, ys, 1);
    expect(Number.isFinite(r.loss)).toBe(true);
    step.dispose();
    for (const kind of ["compiled", "eager"]) {
      process.env.MLP_TRAIN_STEP = kind;
      expect(() => createTrainStep(m1, { learningRate: 0.01, seed: 1 })).toThrow(`MLP_TRAIN_STEP=${kind}, but the model cannot use it: layer bn`);
    }
    process.env.MLP_TRAIN_STEP = "fast";
    expect(() => createTrainStep(m1, { learningRate: 0.01, seed: 1 })).toThrow(/MLP_TRAIN_STEP must be auto, compiled, eager, autograd; got "fast"/);
    tf.dispose([xs, ys]);
    [m1, m2, m3].forEach((m) => m.dispose());
  });

  it("the training loop says which step it fell back to, and why", async () => {
    const input = tf.input({ shape: [4, 4, 1] });
    let x = tf.layers.flatten().apply(input);
    x = tf.layers.batchNormalization({ name: "norm" }).apply(x);
    const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2, activation: "softmax" }).apply(x) as ReturnType<typeof tf.input> });
    const n = 16;
    const data = {
      images: Uint8Array.from({ length: n * 16 }, (_, i) => (i * 37) % 256),
      labels: Uint8Array.from({ length: n }, (_, i) => i % 2),
      count: n,
      height: 4,
      width: 4,
      numClasses: 2,
    } as ImageDataset;
    const lines: string[] = [];
    const r = await train({
      model,
      data,
      split: { train: Uint32Array.from({ length: n }, (_, i) => i), validation: new Uint32Array(0) },
      steps: 3,
      batchSize: 8,
      learningRate: 0.01,
      seed: 1,
      log: (m) => lines.push(m),
    });
    expect(r.stepKind).toBe("autograd");
    expect(lines).toContain("training step: autograd (layer norm (BatchNormalization) is not one of Conv2D, MaxPooling2D, Flatten, Dense, Dropout)");
    model.dispose();
  });

  it("dropout masks are seeded per step and layer, with the right keep rate and scale", () => {
    const a = seededDropoutMasks(1, 5)(0, 20000, 0.25);
    expect(seededDropoutMasks(1, 5)(0, 20000, 0.25)).toEqual(a);
    expect(seededDropoutMasks(1, 6)(0, 20000, 0.25)).not.toEqual(a);
    expect(seededDropoutMasks(1, 5)(1, 20000, 0.25)).not.toEqual(a);
    expect(new Set(a)).toEqual(new Set([0, Math.fround(1 / 0.75)]));
    const kept = a.filter((v) => v > 0).length / a.length;
    expect(kept).toBeGreaterThan(0.74);
    expect(kept).toBeLessThan(0.76);
  });
});

describe("native training step: Adam", () => {
  function twin(seed: number) {
    return [createMnistModel({ seed, dropout: 0 }), createMnistModel({ seed, dropout: 0 })] as const;
  }

  it("takes the same steps as tfjs's Adam, and keeps the model's variables current", () => {
    const [a, b] = twin(11);
    const be = nativeBackend();
    if (typeof be === "string") throw new Error(be);
    const native = new NativeAdam(be, weightsOf(a), { learningRate: 0.01 });
    const tfjs = tf.train.adam(0.01);
    // The same gradients for both (drawn, not computed from the weights, so rounding cannot
    // feed back), spanning 1e-8..1 in magnitude, where ε's placement matters.
    for (let step = 0; step < 5; step++) {
      const grads = weightsOf(a).map((w, i) =>
        tf.tidy(() => tf.mul(tf.randomNormal(w.shape, 0, 1, "float32", 100 * step + i), tf.pow(10, tf.randomUniform(w.shape, -8, 0, "float32", 100 * step + i + 50)))),
      );
      native.applyGradients(weightsOf(a).map((w, i) => ({ name: w.name, tensor: grads[i]! })));
      tfjs.applyGradients(weightsOf(b).map((w, i) => ({ name: w.name, tensor: grads[i]! })));
      tf.dispose(grads);
    }
    weightsOf(a).forEach((w, i) => {
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(w, weightsOf(b)[i]!))).dataSync()[0]!);
      // Five steps of at most lr each; the two agree to float rounding of the weights.
      expect(diff, w.name).toBeLessThan(1e-6);
    });
    native.dispose();
    tfjs.dispose();
    a.dispose();
    b.dispose();
  });

  it("saves and restores state in tfjs AdamOptimizer's layout, both ways", async () => {
    const [a, b] = twin(12);
    const be = nativeBackend();
    if (typeof be === "string") throw new Error(be);
    const { xs, ys } = batch(8, [28, 28, 1], 10, 40);
    // tfjs Adam takes two steps on b; its state moves into a NativeAdam on a copy of b's weights.
    const tfjs = tf.train.adam(0.01);
    for (let i = 0; i < 2; i++) tf.tidy(() => tfjs.applyGradients(lossAndGradients(plan(b), xs, ys, noDropout).grads));
    a.setWeights(b.getWeights());
    const native = new NativeAdam(be, weightsOf(a), { learningRate: 0.01 });
    const saved = await tfjs.getWeights();
    await native.setWeights(saved);
    const back = await native.getWeights();
    expect(back.map((w) => w.name)).toEqual([`iter`, ...weightsOf(a).map((w) => `${w.name}/m`), ...weightsOf(a).map((w) => `${w.name}/v`)]);
    expect(back[0]!.tensor.dataSync()[0]).toBe(2);
    back.slice(1).forEach((w, i) => expect(relDiff(w.tensor, saved[i + 1]!.tensor)).toBe(0));
    // One more step each from the same state: the same weights, to float rounding.
    tf.tidy(() => native.applyGradients(lossAndGradients(plan(a), xs, ys, noDropout).grads));
    tf.tidy(() => tfjs.applyGradients(lossAndGradients(plan(b), xs, ys, noDropout).grads));
    weightsOf(a).forEach((w, i) => expect(relDiff(w, weightsOf(b)[i]!), w.name).toBeLessThan(1e-5));
    // And back: a tfjs Adam restored from the NativeAdam continues the same way.
    const again = tf.train.adam(0.01);
    await again.setWeights(await native.getWeights());
    expect(again.iterations).toBe(3);
    await expect(native.setWeights(saved.slice(0, 3))).rejects.toThrow(/expected iter and two moments for each of 8 weights/);
    tf.dispose([xs, ys]);
    [native, tfjs, again].forEach((o) => o.dispose());
    a.dispose();
    b.dispose();
  });

  it("picks up weights set on the model from outside before its next update", () => {
    const [a, b] = twin(13);
    const be = nativeBackend();
    if (typeof be === "string") throw new Error(be);
    const native = new NativeAdam(be, weightsOf(a), { learningRate: 0.01 });
    const { xs, ys } = batch(8, [28, 28, 1], 10, 50);
    tf.tidy(() => native.applyGradients(lossAndGradients(plan(a), xs, ys, noDropout).grads));
    // A restore writes other weights into the model: the next update must start from them.
    const other = createMnistModel({ seed: 99, dropout: 0 });
    a.setWeights(other.getWeights());
    b.setWeights(other.getWeights());
    const g = tf.tidy(() => lossAndGradients(plan(a), xs, ys, noDropout).grads.map((x) => tf.keep(x.tensor)));
    expect(g.map((t) => t.shape)).toEqual(weightsOf(a).map((w) => w.shape));
    tf.tidy(() => native.applyGradients(weightsOf(a).map((w, i) => ({ name: w.name, tensor: g[i]! }))));
    // The step moved each weight from `other`'s value by at most ~lr.
    weightsOf(a).forEach((w, i) => {
      const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(w, weightsOf(b)[i]!))).dataSync()[0]!);
      expect(moved, w.name).toBeLessThan(0.05);
    });
    tf.dispose([xs, ys, ...g]);
    native.dispose();
    [a, b, other].forEach((m) => m.dispose());
  });

  it("a step leaks no tensors, and dispose frees the variables", () => {
    const model = createMnistModel({ seed: 14 });
    const { xs, ys } = batch(8, [28, 28, 1], 10, 60);
    const be = nativeBackend();
    if (typeof be === "string") throw new Error(be);
    for (const mode of ["compiled", "eager"] as const) {
      const sessions = be.getNumOfSavedModels();
      const step = createTrainStep(model, { learningRate: 0.001, seed: 1, mode });
      expect(step.kind).toBe(mode);
      step.run(xs, ys, 1);
      const before = tf.memory().numTensors;
      for (let i = 2; i <= 6; i++) step.run(xs, ys, i);
      expect(tf.memory().numTensors).toBe(before);
      step.dispose();
      if (mode === "eager") {
        // The three TensorFlow variables per weight are gone (their handles were tfjs tensors).
        expect(tf.memory().numTensors).toBe(before - 3 * model.trainableWeights.length);
      } else {
        // The session (which held the variables) is closed.
        expect(be.getNumOfSavedModels()).toBe(sessions);
      }
    }
    tf.dispose([xs, ys]);
    model.dispose();
  });
});

describe("compiled training step (one TensorFlow graph per step)", () => {
  afterEach(() => {
    delete process.env.MLP_TRAIN_STEP;
  });

  it("is the default, and takes the same step as the eager kernels (dropout included)", () => {
    const a = createMnistModel({ seed: 21, dropout: 0.3 });
    const b = createMnistModel({ seed: 21, dropout: 0.3 });
    const compiled = createTrainStep(a, { learningRate: 0.001, seed: 5 });
    const eager = createTrainStep(b, { learningRate: 0.001, seed: 5, mode: "eager" });
    expect(compiled.kind).toBe("compiled");
    expect(compiled.reason).toBeUndefined();
    const { xs, ys } = batch(16, [28, 28, 1], 10, 70);
    const r1 = compiled.run(xs, ys, 1);
    const r2 = eager.run(xs, ys, 1);
    expect(r1.loss).toBeCloseTo(r2.loss, 5);
    expect(r1.accuracy).toBe(r2.accuracy);
    expectSameAdamStep(a, b, 0.001);
    tf.dispose([xs, ys]);
    compiled.dispose();
    eager.dispose();
    a.dispose();
    b.dispose();
  });

  it("runs other supported architectures (frozen layer, dropout, same padding) like the eager step", () => {
    const a = oddModel();
    const b = oddModel();
    b.setWeights(a.getWeights());
    const compiled = createTrainStep(a, { learningRate: 0.01, seed: 8, mode: "compiled" });
    const eager = createTrainStep(b, { learningRate: 0.01, seed: 8, mode: "eager" });
    const frozenBefore = a.layers
      .find((l) => !l.trainable && l.weights.length > 0)!
      .getWeights()[0]!
      .dataSync()
      .slice();
    const { xs, ys } = batch(6, [15, 13, 3], 4, 75);
    const r1 = compiled.run(xs, ys, 1);
    const r2 = eager.run(xs, ys, 1);
    expect(r1.loss).toBeCloseTo(r2.loss, 5);
    a.weights.forEach((w, i) => expect(relDiff(w.read(), b.weights[i]!.read()), w.name).toBeLessThan(1e-5));
    expect(
      a.layers
        .find((l) => !l.trainable && l.weights.length > 0)!
        .getWeights()[0]!
        .dataSync(),
    ).toEqual(frozenBefore);
    tf.dispose([xs, ys]);
    compiled.dispose();
    eager.dispose();
    a.dispose();
    b.dispose();
  });

  it("falls back to the eager step, saying why, when the graph cannot be loaded", () => {
    const model = createMnistModel({ seed: 25 });
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = "/nonexistent/mlp-test-tmp"; // where the SavedModel would be written
    try {
      const step = createTrainStep(model, { learningRate: 0.001, seed: 5 });
      expect(step.kind).toBe("eager");
      expect(step.reason).toMatch(/^the compiled graph did not load: .*\/nonexistent\/mlp-test-tmp/);
      step.dispose();
      process.env.MLP_TRAIN_STEP = "compiled";
      expect(() => createTrainStep(model, { learningRate: 0.001, seed: 5 })).toThrow(/MLP_TRAIN_STEP=compiled, but the model cannot use it: the compiled graph did not load/);
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
    }
    model.dispose();
  });

  it("takes batches of any size (the last batch of an epoch is smaller)", () => {
    const model = createMnistModel({ seed: 22 });
    const step = createTrainStep(model, { learningRate: 0.001, seed: 5, mode: "compiled" });
    for (const [k, b] of [8, 3, 8].entries()) {
      const { xs, ys } = batch(b, [28, 28, 1], 10, 80 + k);
      const r = step.run(xs, ys, k + 1);
      expect(Number.isFinite(r.loss)).toBe(true);
      tf.dispose([xs, ys]);
    }
    step.dispose();
    model.dispose();
  });

  it("copies weights fed from JS arrays into the session's own memory (parameter-server runs assign them every step)", () => {
    // tfjs-node builds a tensor on a JS typed array's memory (when aligned). Had a session
    // variable kept that buffer, a later assign would release it on one of TensorFlow's
    // worker threads, running tfjs-node's N-API clean-up off the JS thread: heap corruption
    // (`free(): invalid pointer`, SIGABRT) every few hundred steps of a PS run. Probe: overwrite
    // the arrays after the weights went in; the session's gradients must not change. Every
    // offset within 64 bytes is tried, so one of them is aligned however the buffer lands.
    const model = createMnistModel({ seed: 26, dropout: 0 });
    const step = createTrainStep(model, { learningRate: 0.01, seed: 5, mode: "compiled" });
    const { xs, ys } = batch(4, [28, 28, 1], 10, 95);
    const start = step.variables.map((v) => v.dataSync().slice() as Float32Array);
    for (let offset = 0; offset < 64; offset += 4) {
      const arrays = step.variables.map((v, i) => {
        const a = new Float32Array(new ArrayBuffer(v.size * 4 + 64), offset, v.size);
        a.set(start[i]!);
        return a;
      });
      tf.tidy(() => step.variables.forEach((v, i) => v.assign(tf.tensor(arrays[i]!, v.shape))));
      const before = step.gradients(xs, ys, 1).grads;
      for (const a of arrays) a.fill(0.5);
      const after = step.gradients(xs, ys, 1).grads;
      before.forEach((g, i) => expect(after[i], `offset ${offset}, weight ${i}`).toEqual(g));
    }
    tf.dispose([xs, ys]);
    step.dispose();
    model.dispose();
  });

  it("keeps the optimizer state in tfjs Adam's layout and takes weights restored into the model", async () => {
    const model = createMnistModel({ seed: 23, dropout: 0 });
    const twin = createMnistModel({ seed: 23, dropout: 0 });
    const step = createTrainStep(model, { learningRate: 0.01, seed: 5, mode: "compiled" });
    const { xs, ys } = batch(8, [28, 28, 1], 10, 90);
    for (let i = 1; i <= 2; i++) step.run(xs, ys, i);
    const saved = await step.optimizer.getWeights();
    expect(saved.map((w) => w.name)).toEqual(["iter", ...weightsOf(model).map((w) => `${w.name}/m`), ...weightsOf(model).map((w) => `${w.name}/v`)]);
    expect(saved[0]!.tensor.dataSync()[0]).toBe(2);
    // The same state in a tfjs Adam on a copy of the weights: one more step each agrees.
    twin.setWeights(model.getWeights());
    const tfjs = tf.train.adam(0.01);
    await tfjs.setWeights(saved);
    const p = planNativeStep(twin);
    if (typeof p === "string") throw new Error(p);
    step.run(xs, ys, 3);
    tf.tidy(() => tfjs.applyGradients(lossAndGradients(p, xs, ys, noDropout).grads));
    expectSameAdamStep(model, twin, 0.01);
    // Restoring: weights set on the model and optimizer state set on the step are used next.
    const fresh = createMnistModel({ seed: 24, dropout: 0 });
    model.setWeights(fresh.getWeights());
    twin.setWeights(fresh.getWeights());
    await step.optimizer.setWeights(await tfjs.getWeights());
    step.run(xs, ys, 4);
    tf.tidy(() => tfjs.applyGradients(lossAndGradients(p, xs, ys, noDropout).grads));
    expectSameAdamStep(model, twin, 0.01);
    await expect(step.optimizer.setWeights(saved.slice(0, 3))).rejects.toThrow(/expected iter and two moments for each of 8 weights/);
    tf.dispose([xs, ys]);
    step.dispose();
    tfjs.dispose();
    [model, twin, fresh].forEach((m) => m.dispose());
  });
});
