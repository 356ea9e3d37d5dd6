/**
 * The same network served as a TensorFlow SavedModel and as a tfjs model, side by side in
 * one run: p50/p99 latency of gRPC Predict at concurrency 1 (one `mlp serve` child process
 * serving both models from one text-format model config) and of the model run alone,
 * in-process (`Servable.run`: the SavedModel session vs tfjs-node's layers executor).
 *
 *   scripts/setup-python-tf.sh && npx tsx trainer/bench/serve-savedmodel-bench.ts \
 *        [--seconds 3] [--rounds 5] [--hidden 256] [--batches 1,32]
 *
 * The network (flatten → dense(hidden, relu) → dense(10, softmax)) is built and briefly
 * trained by Keras (TensorFlow 2.12.1, the runtime's release) and exported as a
 * SavedModel; its weights are loaded into the tfjs fixture of the same shape and
 * published as a tfjs version, and both must agree to 1e-5 before anything is timed. Each
 * round measures every row of both formats, alternating which goes first, and the table
 * shows medians over rounds. Goal: the SavedModel within 10% of tfjs.
 *
 * Prints a table and writes JSON (machine, load averages, every round) to
 * trainer/bench/results/serve-savedmodel-<time>.json.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { clientConstructors } from "../src/serve/protos";
import { loadServable, type Servable } from "../src/serve/servable";
import { LocalStorage } from "../src/serve/storage";
import { loadBackend } from "../src/serve/tf";
import { mnistDense, mnistMetadata, publishVersion, samplePixels } from "../tests/fixtures/serve-model";

const run = promisify(execFile);
const TRAINER = path.resolve(__dirname, "..");
const CACHE = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
const TF_PYTHON = path.join(CACHE, "venv-tf", "bin", "python");
const FORMATS = ["savedmodel", "tfjs"] as const;
type Format = (typeof FORMATS)[number];

interface Row {
  readonly round: number;
  readonly format: Format;
  readonly path: "grpc" | "in-process";
  readonly batch: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const r3 = (x: number): number => Number(x.toFixed(3));

/** Sequential calls for `seconds` after a 0.5 s warm-up; latencies in ms. */
async function measure(seconds: number, call: () => Promise<unknown>): Promise<{ requests: number; p50Ms: number; p99Ms: number }> {
  const warm = performance.now() + 500;
  while (performance.now() < warm) await call();
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    await call();
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  return { requests: lat.length, p50Ms: r3(percentile(lat, 50)), p99Ms: r3(percentile(lat, 99)) };
}

function spawnServer(configFile: string): Promise<{ child: ChildProcess; grpc: string }> {
  const args = [
    "--import",
    "tsx",
    "src/commands/serve.ts",
    `--model_config_file=${configFile}`,
    "--host=127.0.0.1",
    "--port=auto",
    "--rest_api_port=0",
    "--file_system_poll_wait_seconds=0",
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: TRAINER, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log += d.toString();
      const m = /listening: gRPC ([\d.]+:\d+)/.exec(log);
      if (m) resolve({ child, grpc: m[1]! });
    });
    child.on("exit", (code) => reject(new Error(`serve exited with ${code}:\n${log}`)));
  });
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      seconds: { type: "string", default: "3" },
      rounds: { type: "string", default: "5" },
      hidden: { type: "string", default: "256" },
      batches: { type: "string", default: "1,32" },
    },
  });
  const seconds = Number(flags.seconds);
  const rounds = Number(flags.rounds);
  const hidden = Number(flags.hidden);
  const batches = flags.batches!.split(",").map(Number);
  const tf = loadBackend().tf;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-savedmodel-bench-"));
  let server: { child: ChildProcess; grpc: string } | undefined;
  const servables: Partial<Record<Format, Servable>> = {};
  try {
    // The network, from Keras: a SavedModel, and its weights for the tfjs copy.
    const probe = samplePixels(4, 9);
    await fs.writeFile(path.join(dir, "probe.json"), JSON.stringify({ shape: [4, 28, 28, 1], values: Array.from(probe) }));
    process.stderr.write(`exporting the Keras model (hidden ${hidden}) with ${TF_PYTHON}...\n`);
    await run(
      TF_PYTHON,
      [
        path.join(TRAINER, "tests", "fixtures", "keras_savedmodel.py"),
        "export",
        "--arch",
        "mnist-dense",
        "--hidden",
        String(hidden),
        "--out",
        path.join(dir, "savedmodel", "1"),
        "--input",
        path.join(dir, "probe.json"),
        "--predictions",
        path.join(dir, "keras.json"),
        "--weights",
        path.join(dir, "weights.json"),
      ],
      { timeout: 300_000, maxBuffer: 1 << 30 },
    );
    const weights = JSON.parse(await fs.readFile(path.join(dir, "weights.json"), "utf8")) as { shape: number[]; values: number[] }[];
    const model = mnistDense(tf, 1, hidden);
    model.setWeights(weights.map((w) => tf.tensor(w.values, w.shape)));
    await publishVersion(tf, path.join(dir, "tfjs"), 1, model, mnistMetadata("tfjs", 1));
    model.dispose();

    for (const f of FORMATS) servables[f] = await loadServable(tf, new LocalStorage(path.join(dir, f)), f, 1);
    const keras = JSON.parse(await fs.readFile(path.join(dir, "keras.json"), "utf8")) as { keras: { values: number[] } };
    const agree: Record<string, number> = {};
    for (const f of FORMATS) {
      const out = await servables[f]!.run("serving_default", { image: { dtype: "float32", shape: [4, 28, 28, 1], values: probe } });
      const got = Object.values(out)[0]!.values as Float32Array;
      if (got.length !== keras.keras.values.length) throw new Error(`${f} returned ${got.length} values; Keras ${keras.keras.values.length}`);
      agree[f] = Math.max(...keras.keras.values.map((v, i) => Math.abs(v - got[i]!)));
      // NaN fails too.
      if (!(agree[f]! <= 1e-5)) throw new Error(`${f} differs from Keras by ${agree[f]}; not the same network`);
    }

    const configFile = path.join(dir, "models.config");
    await fs.writeFile(
      configFile,
      `model_config_list {\n${FORMATS.map((f) => `  config { name: "${f}" base_path: "${path.join(dir, f)}" model_platform: "tensorflow" }`).join("\n")}\n}\n`,
    );
    server = await spawnServer(configFile);
    const C = clientConstructors().PredictionService;
    const client = new C(server.grpc, grpc.credentials.createInsecure());
    const predict = (name: Format, req: object): Promise<void> =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null) => void) => void>).Predict!({ model_spec: { name }, ...req }, (e) =>
          e ? reject(e) : resolve(),
        ),
      );

    const rows: Row[] = [];
    const loads: number[][] = [];
    for (let round = 0; round < rounds; round++) {
      loads.push(os.loadavg().map((x) => Number(x.toFixed(2))));
      const order = round % 2 === 0 ? FORMATS : ([...FORMATS].reverse() as unknown as typeof FORMATS);
      for (const batch of batches) {
        const pixels = samplePixels(batch, 100 + round);
        const req = {
          inputs: {
            image: {
              dtype: "DT_FLOAT",
              tensor_shape: { dim: [batch, 28, 28, 1].map((size) => ({ size })) },
              tensor_content: Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength),
            },
          },
        };
        const host = { image: { dtype: "float32" as const, shape: [batch, 28, 28, 1], values: pixels } };
        for (const format of order) {
          const g = await measure(seconds, () => predict(format, req));
          rows.push({ round, format, path: "grpc", batch, ...g });
          const s = servables[format]!;
          const p = await measure(seconds, () => s.run("serving_default", host));
          rows.push({ round, format, path: "in-process", batch, ...p });
          process.stderr.write(`round ${round + 1}/${rounds} batch ${batch} ${format}: gRPC p50 ${g.p50Ms} ms, in-process p50 ${p.p50Ms} ms\n`);
        }
      }
    }
    client.close();

    const table: Record<string, unknown>[] = [];
    for (const batch of batches) {
      for (const p of ["grpc", "in-process"] as const) {
        const pick = (f: Format, k: "p50Ms" | "p99Ms") => r3(median(rows.filter((r) => r.format === f && r.path === p && r.batch === batch).map((r) => r[k])));
        const sm50 = pick("savedmodel", "p50Ms");
        const tj50 = pick("tfjs", "p50Ms");
        const sm99 = pick("savedmodel", "p99Ms");
        const tj99 = pick("tfjs", "p99Ms");
        table.push({ batch, path: p, savedmodelP50Ms: sm50, tfjsP50Ms: tj50, p50Ratio: r3(sm50 / tj50), savedmodelP99Ms: sm99, tfjsP99Ms: tj99, p99Ratio: r3(sm99 / tj99) });
      }
    }
    console.table(table);
    const result = {
      bench: "serve-savedmodel",
      command: `npx tsx trainer/bench/serve-savedmodel-bench.ts --seconds ${seconds} --rounds ${rounds} --hidden ${hidden} --batches ${batches.join(",")}`,
      machine: {
        date: new Date().toISOString(),
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        node: process.version,
        tensorflow: (tf.backend() as unknown as { binding?: { TF_Version: string } }).binding?.TF_Version,
        loadAverageByRound: loads,
        loadAverageEnd: os.loadavg(),
      },
      network: { layers: `flatten → dense(${hidden}, relu) → dense(10, softmax)`, maxAbsDiffFromKeras: agree },
      goal: "SavedModel p50 and p99 within 10% of tfjs (ratio ≤ 1.10)",
      summary: table,
      rows,
    };
    const out = path.join(TRAINER, "bench", "results", `serve-savedmodel-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    await fs.mkdir(path.dirname(out), { recursive: true });
    await fs.writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${path.relative(process.cwd(), out)}`);
  } finally {
    server?.child.kill("SIGTERM");
    for (const s of Object.values(servables)) s?.dispose();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error((e as Error)?.stack ?? String(e));
  process.exit(1);
});
