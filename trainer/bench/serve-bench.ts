/**
 * Model server benchmark: p50/p99 latency and throughput at concurrency 1, 8 and 32 over
 * gRPC and REST, with and without server-side batching, beside raw in-process inference
 * in the same run. The servers run as child processes (`mlp serve`), so client and server
 * do not share an event loop.
 *
 *   npx tsx bench/serve-bench.ts [--seconds 3] [--rounds 5] [--hidden 256]
 *        [--baseline-rev HEAD | --baseline DIR] [--out bench/serve-bench-results.json]
 *
 * `--baseline-rev REV` (or `--baseline DIR`, a trainer tree) runs that version's server
 * too, "before" beside this tree's "after", in the same rounds: each round runs every
 * row of both, alternating which goes first, and the table shows the median of the rounds.
 * On a shared machine a single run says little; rounds interleaved in time share the noise.
 *
 * Per row it also records what the server itself measured (its request-latency histogram,
 * as bucket bounds) and how late the bench's own event loop ran: when the client-side p99
 * is far above the server-side one, the time went to transport or to the client.
 *
 * Prints a table and writes JSON with the machine, load averages, versions and every
 * measurement.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, promises as fs, readFileSync } from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import { clientConstructors } from "../src/serve/protos";
import { loadBackend } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, samplePixels } from "../tests/fixtures/serve-model";

const TRAINER = path.resolve(__dirname, "..");
const REPO = path.resolve(TRAINER, "..");
const CONCURRENCIES = [1, 8, 32];
const BATCHING = { maxBatchSize: 32, batchTimeoutMicros: 1000, maxEnqueuedRequests: 4096 };

type Variant = "before" | "after";

interface Row {
  readonly target: string;
  /** Which server tree; null for in-process rows. */
  readonly variant: Variant | null;
  readonly batching: boolean | null;
  readonly concurrency: number;
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly throughput: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The server's own request latency (handler start to answer), upper bucket bounds. */
  readonly serverP50Ms?: number;
  readonly serverP99Ms?: number;
  /** How late the bench's event loop ran (a stalled client inflates its latencies). */
  readonly clientLoopDelayP99Ms: number;
}

interface Round {
  readonly round: number;
  readonly order: Variant[];
  readonly loadAverageStart: number[];
  readonly loadAverageEnd: number[];
  readonly rows: Row[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const round3 = (x: number): number => Number(x.toFixed(3));

/** Runs `call` from `concurrency` loops for `seconds` (after a short warm-up). */
async function measure(
  target: string,
  variant: Variant | null,
  batching: boolean | null,
  concurrency: number,
  seconds: number,
  call: () => Promise<void>,
  serverLatency?: () => Promise<Histogram>,
): Promise<Row> {
  const warmEnd = Date.now() + 500;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < warmEnd) await call().catch(() => {});
    }),
  );
  const before = await serverLatency?.();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const latencies: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        try {
          await call();
          latencies.push(performance.now() - s);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  loop.disable();
  const after = await serverLatency?.();
  latencies.sort((a, b) => a - b);
  const server = before && after ? histogramDelta(before, after) : undefined;
  return {
    target,
    variant,
    batching,
    concurrency,
    requests: latencies.length,
    errors,
    seconds: Number(elapsed.toFixed(2)),
    throughput: Number((latencies.length / elapsed).toFixed(1)),
    p50Ms: round3(percentile(latencies, 50)),
    p99Ms: round3(percentile(latencies, 99)),
    serverP50Ms: server && round3(histogramQuantile(server, 0.5) * 1000),
    serverP99Ms: server && round3(histogramQuantile(server, 0.99) * 1000),
    clientLoopDelayP99Ms: round3(loop.percentile(99) / 1e6),
  };
}

/**
 * In-process `call` timed alone, after `idleMs` of idle event loop each time: what one
 * request costs a server at concurrency 1, which is idle between requests. TensorFlow's
 * worker threads go to sleep when idle, and waking them costs (a lot, on a busy machine);
 * back-to-back calls never pay it.
 */
async function measureAfterIdle(target: string, idleMs: number, seconds: number, call: () => void): Promise<Row> {
  const latencies: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, idleMs));
    const s = performance.now();
    call();
    latencies.push(performance.now() - s);
  }
  loop.disable();
  latencies.sort((a, b) => a - b);
  return {
    target,
    variant: null,
    batching: null,
    concurrency: 1,
    requests: latencies.length,
    errors: 0,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
    throughput: NaN,
    p50Ms: round3(percentile(latencies, 50)),
    p99Ms: round3(percentile(latencies, 99)),
    clientLoopDelayP99Ms: round3(loop.percentile(99) / 1e6),
  };
}

/** Cumulative bucket counts (upper bound in seconds → count) of one latency series. */
type Histogram = Map<number, number>;

function histogramDelta(a: Histogram, b: Histogram): Histogram {
  return new Map([...b].map(([le, n]) => [le, n - (a.get(le) ?? 0)]));
}

/** Upper bound of the bucket holding quantile `q` (Prometheus-style, no interpolation). */
function histogramQuantile(h: Histogram, q: number): number {
  const total = h.get(Infinity) ?? 0;
  if (total === 0) return NaN;
  for (const [le, n] of [...h].sort((x, y) => x[0] - y[0])) if (n >= q * total) return le;
  return Infinity;
}

/** The server's predict latency histogram for one protocol, from its metrics page. */
function scrapeLatency(rest: string, protocol: "grpc" | "rest"): () => Promise<Histogram> {
  return async () => {
    const text = await (await fetch(`http://${rest}/monitoring/prometheus/metrics`)).text();
    const h: Histogram = new Map();
    const re = new RegExp(`^mlp_serving_request_latency_seconds_bucket\\{model="mnist",api="predict",protocol="${protocol}",le="([^"]+)"\\} (\\d+)$`, "gm");
    for (const m of text.matchAll(re)) h.set(m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2]));
    return h;
  };
}

function spawnServer(trainerDir: string, modelDir: string, batching: boolean): Promise<{ child: ChildProcess; grpc: string; rest: string; log: () => string }> {
  const args = [
    "--import",
    "tsx",
    "src/commands/serve.ts",
    "--model_name=mnist",
    `--model_base_path=${modelDir}`,
    "--host=127.0.0.1",
    "--port=auto",
    "--rest_api_port=auto",
    "--file_system_poll_wait_seconds=0",
  ];
  if (batching) {
    args.push(
      "--enable_batching",
      `--max_batch_size=${BATCHING.maxBatchSize}`,
      `--batch_timeout_micros=${BATCHING.batchTimeoutMicros}`,
      `--max_enqueued_requests=${BATCHING.maxEnqueuedRequests}`,
    );
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: trainerDir, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log += d.toString();
      const m = /listening: gRPC ([\d.]+:\d+), REST ([\d.]+:\d+)/.exec(log);
      if (m) resolve({ child, grpc: m[1]!, rest: m[2]!, log: () => log });
    });
    child.on("exit", (code) => reject(new Error(`serve (${trainerDir}) exited with ${code}:\n${log}`)));
  });
}

/** Version of an installed package: the nearest package.json above its entry point with its name. */
function pkgVersion(name: string): string {
  try {
    let dir = path.dirname(require.resolve(name));
    for (;;) {
      const file = path.join(dir, "package.json");
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? "unknown";
      }
      const up = path.dirname(dir);
      if (up === dir) return "unknown";
      dir = up;
    }
  } catch {
    return "unknown";
  }
}

/**
 * A trainer tree of `rev` in a temporary directory (`git archive`, read-only on the repo),
 * resolving packages from this checkout's node_modules. Returns the trainer dir.
 */
async function checkoutBaseline(rev: string, into: string): Promise<string> {
  const archive = execFileSync("git", ["-C", REPO, "archive", rev, "trainer/src", "trainer/proto", "trainer/package.json", "trainer/tsconfig.json"], { maxBuffer: 256 * 2 ** 20 });
  await fs.mkdir(into, { recursive: true });
  execFileSync("tar", ["-x", "-C", into], { input: archive });
  await fs.symlink(path.join(REPO, "node_modules"), path.join(into, "node_modules"));
  if (existsSync(path.join(TRAINER, "node_modules"))) await fs.symlink(path.join(TRAINER, "node_modules"), path.join(into, "trainer", "node_modules"));
  return path.join(into, "trainer");
}

function gitDescribe(): string {
  try {
    const head = execFileSync("git", ["-C", REPO, "rev-parse", "--short", "HEAD"]).toString().trim();
    const dirty = execFileSync("git", ["-C", REPO, "status", "--porcelain", "--", "trainer/src"]).toString().trim() !== "";
    return dirty ? `${head} + working tree changes in trainer/src` : head;
  } catch {
    return "unknown";
  }
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      seconds: { type: "string", default: "3" },
      rounds: { type: "string", default: "3" },
      hidden: { type: "string", default: "256" },
      baseline: { type: "string" },
      "baseline-rev": { type: "string" },
      out: { type: "string", default: path.join(TRAINER, "bench", "serve-bench-results.json") },
    },
  });
  const seconds = Number(flags.seconds);
  const rounds = Number(flags.rounds);
  const hidden = Number(flags.hidden);
  const backend = loadBackend();
  const tf = backend.tf;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-bench-"));
  const trees: Partial<Record<Variant, string>> = { after: TRAINER };
  if (flags["baseline-rev"]) trees.before = await checkoutBaseline(flags["baseline-rev"], path.join(dir, "baseline"));
  else if (flags.baseline) trees.before = path.resolve(flags.baseline);
  const variants = (["before", "after"] as Variant[]).filter((v) => trees[v]);

  const model: TF.LayersModel = mnistDense(tf, 1, hidden);
  await publishVersion(tf, path.join(dir, "mnist"), 1, model, mnistMetadata("mnist", 1));
  const parameters = model.countParams();
  const pixels = samplePixels(1, 3);
  const outputNames = model.outputs.map((o) => o.name);
  const body = JSON.stringify({ instances: nestedImages(pixels) });
  const tensor = { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, tensor_content: Buffer.from(pixels.buffer) };

  const roundsOut: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    const loadAverageStart = os.loadavg().map((x) => Number(x.toFixed(2)));
    const rows: Row[] = [];
    // In-process: `model.predict` on one image (what the first version of this bench called
    // raw predict), `model.execute` + dataSync (what the server now runs), and batches of
    // 32 for the ceiling that batching can approach.
    const x1 = tf.tensor4d(pixels, [1, 28, 28, 1]);
    rows.push(
      await measure("in-process predict (batch 1)", null, null, 1, seconds, async () => {
        const y = model.predict(x1) as TF.Tensor;
        await y.data();
        y.dispose();
      }),
    );
    rows.push(
      await measure("in-process execute+dataSync (batch 1)", null, null, 1, seconds, async () => {
        const [y] = model.execute(x1, outputNames) as TF.Tensor[];
        y!.dataSync();
        y!.dispose();
      }),
    );
    rows.push(
      await measureAfterIdle("in-process execute+dataSync (batch 1, 1 ms idle before each)", 1, seconds, () => {
        const [y] = model.execute(x1, outputNames) as TF.Tensor[];
        y!.dataSync();
        y!.dispose();
      }),
    );
    const x32 = tf.tensor4d(samplePixels(32, 5), [32, 28, 28, 1]);
    const b32 = await measure("in-process predict (batch 32)", null, null, 1, seconds, async () => {
      const y = model.predict(x32) as TF.Tensor;
      await y.data();
      y.dispose();
    });
    rows.push({ ...b32, target: "in-process predict (batch 32), examples/s", throughput: Number((b32.throughput * 32).toFixed(1)) });
    x1.dispose();
    x32.dispose();

    for (const variant of order) {
      for (const batching of [false, true]) {
        const srv = await spawnServer(trees[variant]!, path.join(dir, "mnist"), batching);
        try {
          const { PredictionService } = clientConstructors();
          const client = new PredictionService(srv.grpc, grpc.credentials.createInsecure());
          const grpcCall = (): Promise<void> =>
            new Promise((resolve, reject) => {
              (client as any).Predict({ model_spec: { name: "mnist" }, inputs: { image: tensor } }, { deadline: Date.now() + 30_000 }, (err: grpc.ServiceError | null) =>
                err ? reject(err) : resolve(),
              );
            });
          for (const c of CONCURRENCIES) rows.push(await measure("gRPC Predict", variant, batching, c, seconds, grpcCall, scrapeLatency(srv.rest, "grpc")));
          client.close();
          for (const c of CONCURRENCIES) {
            const agent = new http.Agent({ keepAlive: true, maxSockets: c });
            const [host, port] = srv.rest.split(":");
            const restCall = (): Promise<void> =>
              new Promise((resolve, reject) => {
                const req = http.request(
                  { host, port: Number(port), method: "POST", path: "/v1/models/mnist:predict", agent, headers: { "Content-Type": "application/json" } },
                  (res) => {
                    res.resume();
                    res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
                  },
                );
                req.on("error", reject);
                req.end(body);
              });
            rows.push(await measure("REST :predict", variant, batching, c, seconds, restCall, scrapeLatency(srv.rest, "rest")));
            agent.destroy();
          }
          if (!/AVAILABLE/.test(srv.log())) throw new Error(`server log lacks AVAILABLE:\n${srv.log()}`);
        } finally {
          srv.child.kill("SIGTERM");
          await new Promise((res) => srv.child.once("exit", res));
        }
      }
    }
    const loadAverageEnd = os.loadavg().map((x) => Number(x.toFixed(2)));
    roundsOut.push({ round: r + 1, order, loadAverageStart, loadAverageEnd, rows });
    console.error(`round ${r + 1}/${rounds} done (${order.join(" then ")}); load average ${loadAverageStart.join(" ")} -> ${loadAverageEnd.join(" ")}`);
  }
  model.dispose();
  await fs.rm(dir, { recursive: true, force: true });

  // Medians over rounds, per row identity.
  const key = (r: Row): string => `${r.target}|${r.variant}|${r.batching}|${r.concurrency}`;
  const groups = new Map<string, Row[]>();
  for (const rd of roundsOut) for (const row of rd.rows) groups.set(key(row), [...(groups.get(key(row)) ?? []), row]);
  const medians: Row[] = [...groups.values()].map((rs) => ({
    ...rs[0]!,
    requests: Math.round(median(rs.map((x) => x.requests))),
    errors: rs.reduce((s, x) => s + x.errors, 0),
    seconds: round3(median(rs.map((x) => x.seconds))),
    throughput: Number(median(rs.map((x) => x.throughput)).toFixed(1)),
    p50Ms: round3(median(rs.map((x) => x.p50Ms))),
    p99Ms: round3(median(rs.map((x) => x.p99Ms))),
    serverP50Ms: rs[0]!.serverP50Ms === undefined ? undefined : round3(median(rs.map((x) => x.serverP50Ms!))),
    serverP99Ms: rs[0]!.serverP99Ms === undefined ? undefined : round3(median(rs.map((x) => x.serverP99Ms!))),
    clientLoopDelayP99Ms: round3(median(rs.map((x) => x.clientLoopDelayP99Ms))),
  }));
  const find = (target: string, variant: Variant | null, batching: boolean | null, c: number): Row | undefined =>
    medians.find((r) => r.target === target && r.variant === variant && r.batching === batching && r.concurrency === c);

  // The table: in-process rows, then each server row with before and after side by side.
  const fmt = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "-" : String(x));
  const header = ["target", "batching", "conc", ...variants.flatMap((v) => [`${v} p50`, `${v} p99`, `${v} req/s`, `${v} srv p99`])];
  const table: string[][] = [];
  for (const r of medians.filter((m) => m.variant === null)) table.push([r.target, "-", "1", ...variants.flatMap(() => [fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.throughput), "-"])]);
  for (const target of ["gRPC Predict", "REST :predict"]) {
    for (const batching of [false, true]) {
      for (const c of CONCURRENCIES) {
        const cells = variants.flatMap((v) => {
          const r = find(target, v, batching, c);
          return [fmt(r?.p50Ms), fmt(r?.p99Ms), fmt(r?.throughput), fmt(r?.serverP99Ms)];
        });
        table.push([target, batching ? "on" : "off", String(c), ...cells]);
      }
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`medians of ${rounds} rounds, ${seconds} s per row; latencies in ms ("srv p99": the server's own histogram, bucket bound)`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const t of table) console.log(line(t));

  // The goals, per variant.
  const rawPredict = find("in-process predict (batch 1)", null, null, 1)!.p50Ms;
  const rawExecute = find("in-process execute+dataSync (batch 1)", null, null, 1)!.p50Ms;
  const goals = Object.fromEntries(
    variants.map((v) => {
      const g1 = find("gRPC Predict", v, false, 1)!.p50Ms;
      const ratio = (target: string): number => Number((find(target, v, true, 32)!.throughput / find(target, v, false, 32)!.throughput).toFixed(2));
      return [
        v,
        {
          grpcC1P50Ms: g1,
          grpcC1OverRawPredictMs: round3(g1 - rawPredict),
          grpcC1OverRawExecuteMs: round3(g1 - rawExecute),
          grpcC1GoalMet: g1 - rawPredict <= 1,
          grpcBatchingSpeedupC32: ratio("gRPC Predict"),
          restBatchingSpeedupC32: ratio("REST :predict"),
          batchingGoalMet: ratio("gRPC Predict") >= 2,
        },
      ];
    }),
  );
  console.log("\ngoals (gRPC c=1 p50 adds ≤ 1 ms over raw predict; batching ≥ 2× throughput at c=32):");
  console.log(JSON.stringify(goals, null, 2));
  const loads = roundsOut.flatMap((r) => [r.loadAverageStart[0]!, r.loadAverageEnd[0]!]);
  console.log(`1-minute load average during the run: ${Math.min(...loads)} to ${Math.max(...loads)} (${os.cpus().length} CPUs)`);

  const result = {
    benchmark: "serve-bench",
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
      platform: `${os.platform()} ${os.release()}`,
      loadAverage: roundsOut.map((r) => ({ round: r.round, start: r.loadAverageStart, end: r.loadAverageEnd })),
      note: "shared CPU: other builds and tests were running; compare variants within this run, not across runs",
    },
    versions: {
      node: process.version,
      tfjs: tf.version.tfjs,
      backend: `${backend.package} (${tf.getBackend()})`,
      grpcJs: pkgVersion("@grpc/grpc-js"),
      protoLoader: pkgVersion("@grpc/proto-loader"),
      after: gitDescribe(),
      before: flags["baseline-rev"] ?? flags.baseline ?? null,
    },
    model: { kind: "dense MNIST-shaped", input: [1, 28, 28, 1], hidden, parameters },
    settings: {
      secondsPerRow: seconds,
      rounds,
      batching: BATCHING,
      grpcEncoding: "tensor_content",
      restForm: "row (instances)",
      client: "one grpc-js channel; keep-alive http.Agent with maxSockets = concurrency",
    },
    goals,
    medians,
    rounds: roundsOut,
  };
  await fs.writeFile(flags.out!, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${flags.out}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
