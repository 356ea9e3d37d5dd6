/**
 * Where a training step of the MNIST CNN spends its time on the native backend: the
 * trainer's step (forward, loss, accuracy, Adam via `optimizer.minimize`, as in
 * src/train/loop.ts) under `tf.profile`, kernels aggregated by name and input shapes.
 * Kernel times are inclusive: a kernel that tfjs-node implements with other ops (e.g. `Step`)
 * also shows those ops on their own lines.
 *
 *   npx tsx trainer/bench/profile-train-step.ts [--batch-size 64] [--steps 10] [--fast-step]
 *   TF_ENABLE_ONEDNN_OPTS=1 npx tsx trainer/bench/profile-train-step.ts
 */
import { parseArgs } from "node:util";
import { createMnistModel } from "../src/model/mnist";
import { tf, type Scalar, type Tensor, type Tensor1D, type Variable } from "../src/tf";
import { installFastStepKernel } from "./fast-step-kernel";

async function main() {
  const { values } = parseArgs({ options: { "batch-size": { type: "string" }, steps: { type: "string" }, "fast-step": { type: "boolean" }, top: { type: "string" } } });
  const b = Number(values["batch-size"] ?? 64);
  const steps = Number(values.steps ?? 10);
  if (values["fast-step"]) installFastStepKernel();
  const model = createMnistModel({ seed: 1 });
  const vars = model.trainableWeights.map((w) => w.read() as Variable);
  const optimizer = tf.train.adam(0.001);
  const xs = tf.randomUniform([b, 28, 28, 1]);
  const ys = tf.oneHot(tf.randomUniform([b], 0, 10, "int32") as Tensor1D, 10).toFloat();
  const step = () =>
    tf.tidy(() => {
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
      cost.dataSync();
      acc!.dataSync();
    });
  for (let i = 0; i < 10; i++) step();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  const plain = (performance.now() - t0) / steps;

  const agg = new Map<string, { n: number; ms: number }>();
  let count = 0;
  for (let r = 0; r < steps; r++) {
    const info = await tf.profile(() => step());
    for (const k of info.kernels) {
      const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
      const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
      const e = agg.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += ms;
      agg.set(key, e);
      count++;
    }
  }
  console.log(
    `batch ${b}: ${plain.toFixed(1)} ms/step (${((b * 1000) / plain).toFixed(0)} img/s) unprofiled; ${count / steps} kernels/step; ` +
      `TF_ENABLE_ONEDNN_OPTS=${process.env.TF_ENABLE_ONEDNN_OPTS ?? "unset"}${values["fast-step"] ? ", fast Step kernel" : ""}`,
  );
  console.log("   ms/step  calls  kernel [input shapes]");
  [...agg.entries()]
    .sort((x, y) => y[1].ms - x[1].ms)
    .slice(0, Number(values.top ?? 25))
    .forEach(([k, v]) => console.log(`${(v.ms / steps).toFixed(2).padStart(10)} ${String(v.n / steps).padStart(6)}  ${k.slice(0, 120)}`));
  tf.dispose([xs, ys]);
  optimizer.dispose();
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
