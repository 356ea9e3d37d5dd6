/**
 * One replica of bench/distributed.ts (a child process): the MNIST CNN trained by the
 * trainer's step and reducer for `--warmup` + `--steps` steps with TF_CONFIG from the
 * environment (none: one replica, fused or split step), timing every step. Prints one JSON
 * line. Not meant to be run by hand.
 *
 *   TF_CONFIG=… npx tsx trainer/bench/distributed-replica.ts --data <idx dir> --batch-size 64 \
 *     --warmup 10 --steps 60 [--split] [--ps-mode sync|async]
 */
import { parseArgs } from "node:util";
import { BatchIterator, splitTrainValidation } from "../src/data/batches";
import { loadIdxPair } from "../src/data/images";
import { LocalSource } from "../src/data/source";
import { batchTensors } from "../src/data/tensors";
import { createReducer } from "../src/distributed";
import { createMnistModel } from "../src/model/mnist";
import { reducedStep } from "../src/train/loop";
import { LocalReducer, type Reducer } from "../src/train/reducer";
import { createTrainStep } from "../src/train/step";
import { parseTfConfig } from "../src/train/tfconfig";
import { tf } from "../src/tf";

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      data: { type: "string" },
      "batch-size": { type: "string", default: "64" },
      warmup: { type: "string", default: "10" },
      steps: { type: "string", default: "60" },
      split: { type: "boolean", default: false },
      "ps-mode": { type: "string", default: "sync" },
      "comm-only": { type: "boolean", default: false },
    },
  });
  const b = Number(a["batch-size"]);
  const warmup = Number(a.warmup);
  const steps = Number(a.steps);
  const data = await loadIdxPair(new LocalSource(a.data!), "train");
  const split = splitTrainValidation(data.count, 0.05, 42);
  const model = createMnistModel({ seed: 42 });
  const trainStep = createTrainStep(model, { learningRate: 0.001, seed: 42 });
  const task = parseTfConfig(process.env.TF_CONFIG);
  const timingOpts = { timeoutMs: 120_000, startupTimeoutMs: 300_000, psMode: a["ps-mode"] as "sync" | "async" };
  const reducer: Reducer | undefined = (await createReducer(task, timingOpts, () => undefined)) ?? (a.split ? new LocalReducer() : undefined);
  const replicas = reducer?.replicas ?? 1;
  if (reducer) await reducer.start({ model, trainStep, state: { step: 0 }, config: { b, steps, warmup } });
  const batches = new BatchIterator(split.train, b * replicas, 42);
  const zeros = trainStep.variables.map((v) => new Float32Array(v.size));
  const stepMs: number[] = [];
  const commMs: number[] = [];
  let cpu0 = process.cpuUsage();
  let bytes0 = reducer?.stats() ?? { bytesSent: 0, bytesReceived: 0 };
  for (let t = 1; t <= warmup + steps; t++) {
    if (t === warmup + 1) {
      cpu0 = process.cpuUsage();
      bytes0 = reducer?.stats() ?? bytes0;
    }
    const t0 = performance.now();
    const timing = { communication: 0, gradients: 0 };
    const idx = batches.next();
    if (reducer && a["comm-only"]) {
      // The exchange alone: gradients of the right sizes, no compute, no update.
      await reducer.reduce(t, { loss: 0, accuracy: 0, count: b, grads: zeros });
      timing.communication = performance.now() - t0;
    } else if (reducer) await reducedStep(trainStep, reducer, idx, t, (i) => batchTensors(data, i), timing);
    else {
      const { xs, ys } = batchTensors(data, idx);
      trainStep.run(xs, ys, t);
      tf.dispose([xs, ys]);
    }
    if (t > warmup) {
      stepMs.push(performance.now() - t0);
      commMs.push(timing.communication);
    }
  }
  const cpu = process.cpuUsage(cpu0);
  const bytes = reducer?.stats() ?? bytes0;
  await reducer?.finish();
  trainStep.dispose();
  const wallMs = stepMs.reduce((x, y) => x + y, 0);
  console.log(
    JSON.stringify({
      rank: reducer?.rank ?? 0,
      replicas,
      kind: trainStep.kind,
      reducer: reducer?.description ?? "none (fused step)",
      stepMs,
      commMs,
      wallMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      bytesPerStep: (bytes.bytesSent - bytes0.bytesSent + bytes.bytesReceived - bytes0.bytesReceived) / steps,
    }),
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
