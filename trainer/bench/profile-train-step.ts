/**
 * Where a training step of the MNIST CNN spends its time on the native backend: the
 * trainer's own step (`src/train/step.ts`: forward, loss, accuracy, gradients, Adam) with
 * every TensorFlow op the binding executes eagerly timed and aggregated by op name and output
 * shape (the ops tfjs kernels run internally as well as the eager native step's direct calls;
 * the compiled step is one session run per step, so it shows only its total).
 *
 *   npx tsx trainer/bench/profile-train-step.ts [--batch-size 64] [--steps 20] [--step compiled|eager|autograd] [--top 30]
 */
import { parseArgs } from "node:util";
import type { NodeJSKernelBackend } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import { createMnistModel } from "../src/model/mnist";
import { createTrainStep, type StepKind } from "../src/train/step";
import { tf, type Tensor1D } from "../src/tf";

async function main() {
  const { values } = parseArgs({ options: { "batch-size": { type: "string" }, steps: { type: "string" }, step: { type: "string" }, top: { type: "string" } } });
  const b = Number(values["batch-size"] ?? 64);
  const steps = Number(values.steps ?? 20);
  const mode = (values.step ?? "eager") as StepKind;
  const model = createMnistModel({ seed: 1 });
  const trainStep = createTrainStep(model, { learningRate: 0.001, seed: 1, mode });
  const xs = tf.randomUniform([b, 28, 28, 1]);
  const ys = tf.oneHot(tf.randomUniform([b], 0, 10, "int32") as Tensor1D, 10).toFloat();
  let n = 0;
  const run = () => trainStep.run(xs, ys, ++n);
  for (let i = 0; i < 10; i++) run();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) run();
  const plain = (performance.now() - t0) / steps;

  // Time every op the binding executes (synchronous on the CPU).
  const be = tf.backend() as NodeJSKernelBackend;
  const binding = be.binding;
  const execute = binding.executeOp.bind(binding);
  const agg = new Map<string, { n: number; ms: number; cpuMs: number }>();
  let ops = 0;
  // The binding object is frozen: put a timed executeOp in front of it.
  be.binding = Object.create(binding) as typeof binding;
  Object.defineProperty(be.binding, "executeOp", {
    value: (name: string, attrs: never, ids: number[], outs: number) => {
      const c = process.cpuUsage();
      const s = performance.now();
      const r = execute(name, attrs, ids, outs);
      const ms = performance.now() - s;
      const cu = process.cpuUsage(c);
      const cpuMs = (cu.user + cu.system) / 1000;
      const key = `${name} ${JSON.stringify(r.map((o: { shape: number[] }) => o.shape))}`;
      const e = agg.get(key) ?? { n: 0, ms: 0, cpuMs: 0 };
      e.n++;
      e.ms += ms;
      e.cpuMs += cpuMs;
      agg.set(key, e);
      ops++;
      return r;
    },
  });
  const t1 = performance.now();
  const cpu1 = process.cpuUsage();
  for (let r = 0; r < steps; r++) run();
  const timed = (performance.now() - t1) / steps;
  const cpuAll = process.cpuUsage(cpu1);
  const cpuPerStep = (cpuAll.user + cpuAll.system) / 1000 / steps;
  be.binding = binding;
  const inOps = [...agg.values()].reduce((s, e) => s + e.ms, 0) / steps;
  const cpuInOps = [...agg.values()].reduce((s, e) => s + e.cpuMs, 0) / steps;

  console.log(
    `batch ${b}, ${trainStep.kind} step${trainStep.reason ? ` (${trainStep.reason})` : ""}: ${plain.toFixed(1)} ms/step (${((b * 1000) / plain).toFixed(0)} img/s); ` +
      (ops === 0
        ? `one session run per step (its ops are not seen one by one); CPU ${cpuPerStep.toFixed(1)} ms/step`
        : `${ops / steps} TensorFlow ops/step taking ${inOps.toFixed(1)} of ${timed.toFixed(1)} ms (rest: JavaScript); ` +
          `CPU ${cpuPerStep.toFixed(1)} ms/step, ${cpuInOps.toFixed(1)} of it in ops (timed with per-op CPU clocks, which add overhead)`),
  );
  console.log("   ms/step  CPU ms  calls  op [output shapes]");
  [...agg.entries()]
    .sort((x, y) => y[1].ms - x[1].ms)
    .slice(0, Number(values.top ?? 30))
    .forEach(([k, v]) =>
      console.log(`${(v.ms / steps).toFixed(2).padStart(10)} ${(v.cpuMs / steps).toFixed(2).padStart(7)} ${String(v.n / steps).padStart(6)}  ${k.slice(0, 120)}`),
    );
  tf.dispose([xs, ys]);
  trainStep.dispose();
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
