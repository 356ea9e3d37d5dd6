/**
 * Distributed training throughput on this machine (not a timed test): the MNIST CNN of
 * `src/model/mnist.ts`, batch `--batch-size` (64) per replica, each replica a process
 * limited to one intra-op and one inter-op TensorFlow thread (TF_NUM_INTRAOP_THREADS=1,
 * TF_NUM_INTEROP_THREADS=1, OMP_NUM_THREADS=1), all on 127.0.0.1 with TF_CONFIG as the
 * Training Operator sets it.
 *
 *   npx tsx trainer/bench/distributed.ts [--reps 2] [--steps 60] [--warmup 10] [--batch-size 64] [--only "fused,4 replicas"]
 *
 * Cases: one replica with the fused compiled step (what a local run does) and with the step
 * split at the gradients (what every distributed replica runs: the cost of the split);
 * all-reduce at 2 and 4 replicas; the exchange alone at 2 and 4 replicas (gradient-sized
 * all-reduce rounds with no compute: the pure communication cost); parameter servers
 * (2 PS, sync) with 2 and 4 workers.
 *
 * Per case: global images/s from the median step time, bytes each replica sends + receives
 * per step, and the share of step time spent in the reducer (transfer plus waiting for the
 * slowest replica), medians over replicas and repetitions. Writes JSON (machine, versions,
 * load average, every replica's numbers) to bench/results/distributed-<date>.json.
 *
 * Goal: communication ≤ 10% of step time for the MNIST CNN at 4 replicas on loopback. Two
 * cores cannot run 4 single-threaded replicas at once: expect flat throughput past 2.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { tf } from "../src/tf";
import { freePorts, tfConfig } from "../tests/fixtures/distributed-cluster";
import { writeMnistIdx } from "../tests/fixtures/mnist-idx";

interface ReplicaResult {
  rank: number;
  replicas: number;
  kind: string;
  reducer: string;
  stepMs: number[];
  commMs: number[];
  wallMs: number;
  cpuMs: number;
  bytesPerStep: number;
}

interface Case {
  readonly name: string;
  readonly trainers: number;
  readonly ps: number;
  readonly extra: readonly string[];
}

const CASES: readonly Case[] = [
  { name: "1 replica, fused step", trainers: 1, ps: 0, extra: [] },
  { name: "1 replica, split step", trainers: 1, ps: 0, extra: ["--split"] },
  { name: "all-reduce, 2 replicas", trainers: 2, ps: 0, extra: [] },
  { name: "all-reduce, 4 replicas", trainers: 4, ps: 0, extra: [] },
  { name: "exchange only, 2 replicas", trainers: 2, ps: 0, extra: ["--comm-only"] },
  { name: "exchange only, 4 replicas", trainers: 4, ps: 0, extra: ["--comm-only"] },
  { name: "2 PS (sync), 2 workers", trainers: 2, ps: 2, extra: [] },
  { name: "2 PS (sync), 4 workers", trainers: 4, ps: 2, extra: [] },
];

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function run(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: path.resolve(__dirname, ".."), env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function runCase(c: Case, data: string, a: { steps: number; warmup: number; batchSize: number }): Promise<ReplicaResult[]> {
  const ports = await freePorts(c.trainers + c.ps);
  const cluster: Record<string, string[]> = { worker: ports.slice(0, c.trainers).map((p) => `127.0.0.1:${p}`) };
  if (c.ps) cluster.ps = ports.slice(c.trainers).map((p) => `127.0.0.1:${p}`);
  const env = (type: string, index: number): NodeJS.ProcessEnv => ({
    ...process.env,
    TF_NUM_INTRAOP_THREADS: "1",
    TF_NUM_INTEROP_THREADS: "1",
    OMP_NUM_THREADS: "1",
    ...(c.trainers > 1 || c.ps ? { TF_CONFIG: tfConfig(cluster, type, index) } : {}),
  });
  const common = ["--data", data, "--batch-size", String(a.batchSize), "--warmup", String(a.warmup), "--steps", String(a.steps), ...c.extra];
  const servers = Array.from({ length: c.ps }, (_, i) => run(["src/cli.ts", "train-mnist", "--data", data, "--model-base", "/nonexistent", "--progress", "none"], env("ps", i)));
  const outs = await Promise.all(Array.from({ length: c.trainers }, (_, i) => run(["bench/distributed-replica.ts", ...common], env("worker", i))));
  await Promise.all(servers);
  return outs.map((o) => JSON.parse(o.trim().split("\n").pop()!) as ReplicaResult);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: "string", default: "2" },
      steps: { type: "string", default: "60" },
      warmup: { type: "string", default: "10" },
      "batch-size": { type: "string", default: "64" },
      only: { type: "string" },
    },
  });
  const a = { steps: Number(values.steps), warmup: Number(values.warmup), batchSize: Number(values["batch-size"]) };
  const reps = Number(values.reps);
  // --only: comma-separated substrings of case names.
  const only = values.only?.split(",");
  const cases = only ? CASES.filter((c) => only.some((o) => c.name.includes(o))) : CASES;
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-bench-dist-"));
  const load0 = os.loadavg();
  const raw: { case: string; rep: number; replicas: ReplicaResult[] }[] = [];
  try {
    const data = path.join(work, "mnist");
    await writeMnistIdx(data, { train: 8000, test: 2000 });
    for (let rep = 0; rep < reps; rep++) {
      for (const c of cases) {
        process.stderr.write(`rep ${rep + 1}/${reps}: ${c.name}\n`);
        raw.push({ case: c.name, rep, replicas: await runCase(c, data, a) });
      }
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }

  const rows = cases.map((c) => {
    const runs = raw.filter((r) => r.case === c.name);
    const reps = runs.map((r) => r.replicas);
    const all = reps.flat();
    // Per repetition: the slowest replica's median step (they run in lock-step), its communication share.
    const stepMs = median(reps.map((rs) => Math.max(...rs.map((r) => median(r.stepMs)))));
    const share = median(all.map((r) => r.commMs.reduce((x, y) => x + y, 0) / r.wallMs));
    const commMs = median(all.map((r) => median(r.commMs)));
    const globalBatch = a.batchSize * c.trainers;
    return {
      case: c.name,
      trainers: c.trainers,
      parameterServers: c.ps,
      stepKind: all[0]!.kind,
      medianStepMs: Number(stepMs.toFixed(2)),
      imagesPerSec: c.extra.includes("--comm-only") ? null : Math.round((globalBatch * 1000) / stepMs),
      medianCommunicationMs: Number(commMs.toFixed(2)),
      communicationShare: c.extra.includes("--comm-only") ? null : Number(share.toFixed(3)),
      bytesPerStepPerReplica: Math.round(median(all.map((r) => r.bytesPerStep))),
      cpuPerWall: Number(median(all.map((r) => r.cpuMs / r.wallMs)).toFixed(2)),
    };
  });
  const base = rows.find((r) => r.case === "1 replica, fused step")?.imagesPerSec;
  console.log("\n| case | step kind | median step ms | global img/s | speed-up vs 1 fused | comm ms/step | comm share | bytes/step/replica | CPU/wall per replica |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const speed = r.imagesPerSec && base ? `${(r.imagesPerSec / base).toFixed(2)}×` : "–";
    console.log(
      `| ${r.case} | ${r.stepKind} | ${r.medianStepMs} | ${r.imagesPerSec ?? "–"} | ${speed} | ${r.medianCommunicationMs} | ${r.communicationShare === null ? "–" : `${(100 * r.communicationShare).toFixed(1)}%`} | ${(r.bytesPerStepPerReplica / 1e6).toFixed(2)} MB | ${r.cpuPerWall} |`,
    );
  }
  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      loadAverage1m: { before: load0[0], after: os.loadavg()[0] },
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    },
    versions: {
      node: process.versions.node,
      tfjs: tf.version.tfjs,
      tfjsNode: (tf.version as Record<string, string>)["tfjs-node"],
      libtensorflow: backend.binding?.TF_Version,
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- the installed package's version, read at run time
      grpcJs: (require("@grpc/grpc-js/package.json") as { version: string }).version,
    },
    settings: { ...a, reps, threadsPerReplica: 1, goal: "communication ≤ 10% of step time at 4 replicas" },
    results: rows,
    raw,
  };
  const outDir = path.join(__dirname, "results");
  await fs.mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `distributed-${result.date.replace(/[:.]/g, "-")}.json`);
  await fs.writeFile(file, JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
