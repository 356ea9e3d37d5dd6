/**
 * Model server benchmark: p50/p99 latency and throughput at concurrency 1, 8 and 32 over
 * gRPC and REST, with and without server-side batching, beside raw in-process
 * `model.predict` in the same run. The servers run as child processes (`mlp serve`), so
 * client and server do not share an event loop.
 *
 *   npx tsx bench/serve-bench.ts [--seconds 4] [--hidden 256] [--out bench/serve-bench-results.json]
 *
 * Prints a table and writes JSON with the machine, versions and every measurement.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, promises as fs, readFileSync } from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import { clientConstructors } from "../src/serve/protos";
import { loadBackend } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, samplePixels } from "../tests/fixtures/serve-model";

const TRAINER = path.resolve(__dirname, "..");

interface Row {
  readonly target: string;
  readonly batching: boolean | null;
  readonly concurrency: number;
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly throughput: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `call` from `concurrency` loops for `seconds` (after a short warm-up). */
async function measure(target: string, batching: boolean | null, concurrency: number, seconds: number, call: () => Promise<void>): Promise<Row> {
  const warmEnd = Date.now() + 500;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < warmEnd) await call().catch(() => {});
  }));
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
  latencies.sort((a, b) => a - b);
  return {
    target,
    batching,
    concurrency,
    requests: latencies.length,
    errors,
    seconds: Number(elapsed.toFixed(2)),
    throughput: Number((latencies.length / elapsed).toFixed(1)),
    p50Ms: Number(percentile(latencies, 50).toFixed(3)),
    p99Ms: Number(percentile(latencies, 99).toFixed(3)),
  };
}

function spawnServer(modelDir: string, batching: boolean): Promise<{ child: ChildProcess; grpc: string; rest: string; log: () => string }> {
  const args = ["--import", "tsx", "src/commands/serve.ts", "--model_name=mnist", `--model_base_path=${modelDir}`, "--host=127.0.0.1", "--port=auto", "--rest_api_port=auto", "--file_system_poll_wait_seconds=0"];
  if (batching) args.push("--enable_batching", "--max_batch_size=32", "--batch_timeout_micros=1000", "--max_enqueued_requests=4096");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: TRAINER, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log += d.toString();
      const m = /listening: gRPC ([\d.]+:\d+), REST ([\d.]+:\d+)/.exec(log);
      if (m) resolve({ child, grpc: m[1]!, rest: m[2]!, log: () => log });
    });
    child.on("exit", (code) => reject(new Error(`serve exited with ${code}:\n${log}`)));
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

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: { seconds: { type: "string", default: "4" }, hidden: { type: "string", default: "256" }, out: { type: "string", default: path.join(TRAINER, "bench", "serve-bench-results.json") } },
  });
  const seconds = Number(flags.seconds);
  const hidden = Number(flags.hidden);
  const backend = loadBackend();
  const tf = backend.tf;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-bench-"));
  const model: TF.LayersModel = mnistDense(tf, 1, hidden);
  await publishVersion(tf, path.join(dir, "mnist"), 1, model, mnistMetadata("mnist", 1));
  const parameters = model.countParams();
  const pixels = samplePixels(1, 3);
  const rows: Row[] = [];
  const concurrencies = [1, 8, 32];

  // In-process: model.predict on one image (concurrency is moot on one thread), and on
  // batches of 32 for the ceiling that batching can approach.
  const x1 = tf.tensor4d(pixels, [1, 28, 28, 1]);
  rows.push(await measure("in-process predict (batch 1)", null, 1, seconds, async () => {
    const y = model.predict(x1) as TF.Tensor;
    await y.data();
    y.dispose();
  }));
  const x32 = tf.tensor4d(samplePixels(32, 5), [32, 28, 28, 1]);
  const b32 = await measure("in-process predict (batch 32)", null, 1, seconds, async () => {
    const y = model.predict(x32) as TF.Tensor;
    await y.data();
    y.dispose();
  });
  rows.push({ ...b32, target: "in-process predict (batch 32), examples/s", throughput: Number((b32.throughput * 32).toFixed(1)) });
  x1.dispose();
  x32.dispose();

  const body = JSON.stringify({ instances: nestedImages(pixels) });
  const tensor = { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, tensor_content: Buffer.from(pixels.buffer) };
  for (const batching of [false, true]) {
    const srv = await spawnServer(path.join(dir, "mnist"), batching);
    try {
      const { PredictionService } = clientConstructors();
      const client = new PredictionService(srv.grpc, grpc.credentials.createInsecure());
      const grpcCall = (): Promise<void> =>
        new Promise((resolve, reject) => {
          (client as any).Predict({ model_spec: { name: "mnist" }, inputs: { image: tensor } }, { deadline: Date.now() + 30_000 }, (err: grpc.ServiceError | null) =>
            err ? reject(err) : resolve(),
          );
        });
      for (const c of concurrencies) rows.push(await measure("gRPC Predict", batching, c, seconds, grpcCall));
      client.close();
      for (const c of concurrencies) {
        const agent = new http.Agent({ keepAlive: true, maxSockets: c });
        const [host, port] = srv.rest.split(":");
        const restCall = (): Promise<void> =>
          new Promise((resolve, reject) => {
            const req = http.request({ host, port: Number(port), method: "POST", path: "/v1/models/mnist:predict", agent, headers: { "Content-Type": "application/json" } }, (res) => {
              res.resume();
              res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
            });
            req.on("error", reject);
            req.end(body);
          });
        rows.push(await measure("REST :predict", batching, c, seconds, restCall));
        agent.destroy();
      }
      if (batching && !/AVAILABLE/.test(srv.log())) throw new Error(`server log lacks AVAILABLE:\n${srv.log()}`);
    } finally {
      srv.child.kill("SIGTERM");
      await new Promise((r) => srv.child.once("exit", r));
    }
  }
  model.dispose();
  await fs.rm(dir, { recursive: true, force: true });

  const header = ["target", "batching", "conc", "requests", "errors", "req/s", "p50 ms", "p99 ms"];
  const table = rows.map((r) => [r.target, r.batching === null ? "-" : r.batching ? "on" : "off", String(r.concurrency), String(r.requests), String(r.errors), String(r.throughput), String(r.p50Ms), String(r.p99Ms)]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const t of table) console.log(line(t));

  const result = {
    benchmark: "serve-bench",
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
      platform: `${os.platform()} ${os.release()}`,
      loadAverageAtEnd: os.loadavg(),
      note: "shared CPU: other builds may have been running",
    },
    versions: {
      node: process.version,
      tfjs: tf.version.tfjs,
      backend: `${backend.package} (${tf.getBackend()})`,
      grpcJs: pkgVersion("@grpc/grpc-js"),
      protoLoader: pkgVersion("@grpc/proto-loader"),
    },
    model: { kind: "dense MNIST-shaped", input: [1, 28, 28, 1], hidden, parameters },
    settings: { secondsPerRow: seconds, batching: { maxBatchSize: 32, batchTimeoutMicros: 1000 }, grpcEncoding: "tensor_content", restForm: "row (instances)" },
    rows,
  };
  await fs.writeFile(flags.out!, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${flags.out}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
