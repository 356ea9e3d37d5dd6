/**
 * SavedModels from real TensorFlow, and TF Serving's text model config, end to end:
 *
 *  - a Keras model built, briefly trained and exported by Python TensorFlow 2.12.1 (the
 *    runtime's release; venv from scripts/setup-python-tf.sh) is served; TF Serving's own
 *    Python client (venv from scripts/setup-python-tools.sh) gets Keras's predictions
 *    within 1e-5 over gRPC, REST agrees, and the metadata is the SavedModel's SignatureDefs;
 *  - versions the runtime cannot load (an op it lacks; a graph from a newer TensorFlow)
 *    are refused with an error naming the version, the op or graph version, and the
 *    TensorFlow releases, while the good version keeps serving;
 *  - a text-format `--model_config_file` with two models and version labels: the Python
 *    client addresses each by name, version and label; edits are applied on the poll.
 *
 * Without the venvs these tests are skipped with the reason printed, except under CI=true,
 * where they fail instead.
 */
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseServeArgs } from "../src/commands/serve";
import { startServer, type RunningServer } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { fakeS3 } from "./fixtures/fake-s3-list";
import { mnistDense, mnistMetadata, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

const run = promisify(execFile);
const CACHE = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
const TF_PYTHON = path.join(CACHE, "venv-tf", "bin", "python");
const CLIENT_PYTHON = path.join(CACHE, "venv", "bin", "python");
const KERAS = path.join(__dirname, "fixtures", "keras_savedmodel.py");
const CLIENT = path.join(__dirname, "fixtures", "tfs_predict.py");
const missing = [
  [TF_PYTHON, "scripts/setup-python-tf.sh"],
  [CLIENT_PYTHON, "scripts/setup-python-tools.sh"],
].filter(([p]) => !existsSync(p!));
const skip = missing.length > 0 && process.env.CI !== "true";
if (skip) console.log(`serve-savedmodel: SKIPPING: ${missing.map(([p, s]) => `no ${p} (run ${s})`).join("; ")}`);

interface Prediction {
  model?: string;
  version?: number;
  outputs?: Record<string, { shape: number[]; values: number[] }>;
  error?: { code: string; details: string };
}

async function client(args: string[]): Promise<Prediction & Record<string, unknown>> {
  const { stdout } = await run(CLIENT_PYTHON, [CLIENT, ...args], { timeout: 60_000 });
  return JSON.parse(stdout) as Prediction & Record<string, unknown>;
}

function expectClose(got: readonly number[], want: readonly number[], tol: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThanOrEqual(tol);
}

let tf: Tf;
let dir: string;
let inputFile: string;
let keras: { tensorflow: string; outputs: Record<string, { shape: number[]; values: number[] }>; keras: { shape: number[]; values: number[] } };
const pixels = samplePixels(3, 4242);

beforeAll(async () => {
  if (skip) return;
  if (missing.length > 0) throw new Error(`CI=true and the Python venvs are missing: ${missing.map(([p, s]) => `${p} (${s})`).join("; ")}`);
  tf = loadBackend(() => {}).tf;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-savedmodel-"));
  inputFile = path.join(dir, "input.json");
  await fs.writeFile(inputFile, JSON.stringify({ input: "image", shape: [3, 28, 28, 1], values: Array.from(pixels) }));
  const predFile = path.join(dir, "keras.json");
  const out = path.join(dir, "export");
  await run(TF_PYTHON, [KERAS, "export", "--out", out, "--input", inputFile, "--predictions", predFile], { timeout: 180_000 });
  keras = JSON.parse(await fs.readFile(predFile, "utf8"));
  await run(TF_PYTHON, [KERAS, "break", "--src", out, "--out", path.join(dir, "broken-op"), "--mode", "unknown-op"], { timeout: 60_000 });
  await run(TF_PYTHON, [KERAS, "break", "--src", out, "--out", path.join(dir, "broken-newer"), "--mode", "newer-tf"], { timeout: 60_000 });
}, 300_000);

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(skip)("a Keras SavedModel", () => {
  let server: RunningServer;
  let base: string;

  beforeAll(async () => {
    base = path.join(dir, "keras");
    await fs.mkdir(base);
    await fs.cp(path.join(dir, "export"), path.join(base, "1"), { recursive: true });
    server = await startServer({ models: [{ name: "keras", basePath: base }], host: "127.0.0.1", grpcPort: 0, restPort: 0, pollIntervalMs: 0, log: () => {}, tf });
  });
  afterAll(async () => {
    await server?.stop(1000);
  });

  it("was exported by the runtime's TensorFlow release", () => {
    expect(keras.tensorflow).toBe((tf.backend() as unknown as { binding: { TF_Version: string } }).binding.TF_Version);
    // The exported signature and Keras itself agree (the reference is sound).
    expectClose(keras.outputs.probabilities!.values, keras.keras.values, 1e-6);
  });

  it("answers TF Serving's Python client with Keras's predictions (gRPC, within 1e-5)", async () => {
    const r = await client(["--server", `127.0.0.1:${server.grpcPort}`, "--model", "keras", "--input", inputFile]);
    expect(r.error).toBeUndefined();
    expect(r.version).toBe(1);
    expect(Object.keys(r.outputs!)).toEqual(["probabilities"]);
    expect(r.outputs!.probabilities!.shape).toEqual([3, 10]);
    expectClose(r.outputs!.probabilities!.values, keras.keras.values, 1e-5);
  });

  it("answers REST with the same predictions, without leaking tensors", async () => {
    const before = tf.memory().numTensors;
    const res = await fetch(`http://127.0.0.1:${server.restPort}/v1/models/keras:predict`, {
      method: "POST",
      body: JSON.stringify({
        inputs: { image: Array.from({ length: 3 }, (_, i) => Array.from({ length: 28 }, (_, y) => Array.from({ length: 28 }, (_, x) => [pixels[i * 784 + y * 28 + x]!]))) },
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: number[][] };
    expectClose(body.outputs.flat(), keras.keras.values, 1e-5);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("reports the SignatureDefs as metadata (gRPC through the Python client, and REST)", async () => {
    const r = (await client(["--server", `127.0.0.1:${server.grpcPort}`, "--model", "keras", "--metadata"])) as unknown as {
      version: number;
      signatures: Record<
        string,
        { inputs: Record<string, { name: string; dtype: string; shape: number[] }>; outputs: Record<string, { name: string; dtype: string; shape: number[] }>; method_name: string }
      >;
    };
    expect(r.version).toBe(1);
    const sig = r.signatures.serving_default!;
    expect(sig.method_name).toBe("tensorflow/serving/predict");
    expect(sig.inputs).toEqual({ image: { name: "serving_default_image:0", dtype: "DT_FLOAT", shape: [-1, 28, 28, 1] } });
    expect(sig.outputs.probabilities).toMatchObject({ dtype: "DT_FLOAT", shape: [-1, 10] });
    expect(sig.outputs.probabilities!.name).toMatch(/^StatefulPartitionedCall(_\d+)?:0$/);
    expect(Object.keys(r.signatures)).not.toContain("__saved_model_init_op");

    const res = await fetch(`http://127.0.0.1:${server.restPort}/v1/models/keras/metadata?include=mlplatform`);
    const body = (await res.json()) as {
      metadata: { signature_def: { signature_def: Record<string, unknown> }; mlplatform: { modelType: string; savedModel: { tensorflowVersion: string; runtime: string } } };
    };
    expect(body.metadata.signature_def.signature_def.serving_default).toMatchObject({ inputs: { image: { name: "serving_default_image:0", dtype: "DT_FLOAT" } } });
    expect(body.metadata.mlplatform.modelType).toBe("savedmodel");
    expect(body.metadata.mlplatform.savedModel.tensorflowVersion).toBe(keras.tensorflow);
  });

  it("refuses versions the runtime cannot load, naming version, op and TensorFlow releases, and keeps serving the good one", async () => {
    await fs.cp(path.join(dir, "broken-op"), path.join(base, "2"), { recursive: true });
    await fs.cp(path.join(dir, "broken-newer"), path.join(base, "3"), { recursive: true });
    await server.reconcile();
    const res = await fetch(`http://127.0.0.1:${server.restPort}/v1/models/keras`);
    const status = (await res.json()) as { model_version_status: { version: string; state: string; status: { error_code: string; error_message: string } }[] };
    const byVersion = new Map(status.model_version_status.map((s) => [s.version, s]));
    const runtime = keras.tensorflow;
    expect(byVersion.get("1")?.state).toBe("AVAILABLE");
    const op = byVersion.get("2")!;
    expect(op.state).toBe("END");
    expect(op.status.error_message).toContain("version 2");
    expect(op.status.error_message).toContain('op "MlpNoSuchOpForTests"');
    expect(op.status.error_message).toContain(`TensorFlow ${runtime}`);
    const newer = byVersion.get("3")!;
    expect(newer.state).toBe("END");
    expect(newer.status.error_message).toContain("version 3");
    expect(newer.status.error_message).toContain("GraphDef version 99999");
    expect(newer.status.error_message).toContain("written by TensorFlow 2.99.0");
    expect(newer.status.error_message).toContain(`this server's TensorFlow ${runtime}`);
    // The good version still answers, and is what "latest" means now.
    const r = await client(["--server", `127.0.0.1:${server.grpcPort}`, "--model", "keras", "--input", inputFile]);
    expect(r.version).toBe(1);
    expectClose(r.outputs!.probabilities!.values, keras.keras.values, 1e-5);
    const refused = await client(["--server", `127.0.0.1:${server.grpcPort}`, "--model", "keras", "--version", "2", "--input", inputFile]);
    expect(refused.error?.code).toBe("NOT_FOUND");
    // TF Serving's metric names: one successful load, two refused; model runs on the TF runtime.
    const text = await server.metrics.render();
    expect(text).toMatch(/^:tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]*\/keras",status="success"\} 1$/m);
    expect(text).toMatch(/^:tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]*\/keras",status="fail"\} 2$/m);
    expect(text).toMatch(/^:tensorflow:serving:runtime_latency_count\{model_name="keras",API="predict",runtime="TF"\} [1-9]\d*$/m);
    expect(text).toMatch(/^:tensorflow:serving:request_count\{model_name="keras",status="NOT_FOUND"\} 1$/m);
  });
});

describe.skipIf(skip)("a SavedModel from s3://", () => {
  const saved = { ...process.env };
  let s3: Awaited<ReturnType<typeof fakeS3>> | undefined;
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.stop(1000);
    if (s3) await new Promise((r) => s3!.server.close(r));
    for (const k of ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it("is copied down (variables/ included), loaded, and answers like Keras; the copy is removed", async () => {
    const objects = new Map<string, Buffer>();
    const walk = async (d: string, rel: string): Promise<void> => {
      for (const e of await fs.readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(path.join(d, e.name), `${rel}${e.name}/`);
        else objects.set(`models/keras/7/${rel}${e.name}`, await fs.readFile(path.join(d, e.name)));
      }
    };
    await walk(path.join(dir, "export"), "");
    expect([...objects.keys()].some((k) => k.startsWith("models/keras/7/variables/"))).toBe(true);
    s3 = await fakeS3("models", objects);
    Object.assign(process.env, { AWS_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test-secret", AWS_REGION: "us-east-1" });
    const tmpBefore = (await fs.readdir(os.tmpdir())).filter((f) => f.startsWith("mlp-serve-s3-")).length;
    server = await startServer({
      models: [{ name: "keras", basePath: "s3://models/models/keras" }],
      host: "127.0.0.1",
      grpcPort: 0,
      restPort: null,
      pollIntervalMs: 0,
      log: () => {},
      tf,
    });
    const r = await client(["--server", `127.0.0.1:${server.grpcPort}`, "--model", "keras", "--input", inputFile]);
    expect(r.version).toBe(7);
    expectClose(r.outputs!.probabilities!.values, keras.keras.values, 1e-5);
    expect((await fs.readdir(os.tmpdir())).filter((f) => f.startsWith("mlp-serve-s3-")).length).toBe(tmpBefore);
  });
});

describe.skipIf(skip)("a text-format --model_config_file with two models and version labels", () => {
  let server: RunningServer;
  let configFile: string;
  const models: TF.LayersModel[] = [];

  const config = (mnist: string, keras = true): string => `# two models, as tensorflow_model_server reads them
model_config_list {
  config {
    name: "mnist"
    base_path: "mnist"   # relative to this file
    model_platform: "tensorflow"
${mnist}
  }
${
  keras
    ? `  config {
    name: 'keras'
    base_path: "${path.join(dir, "cfg", "keras")}"
    model_platform: "tensorflow"
    version_labels { key: "stable" value: 1 }
  }`
    : ""
}
}
`;

  beforeAll(async () => {
    const cfg = path.join(dir, "cfg");
    await fs.mkdir(path.join(cfg, "keras"), { recursive: true });
    await fs.cp(path.join(dir, "export"), path.join(cfg, "keras", "1"), { recursive: true });
    for (const v of [1, 2]) {
      const m = mnistDense(tf, 100 * v);
      models.push(m);
      await publishVersion(tf, path.join(cfg, "mnist"), v, m, mnistMetadata("mnist", v));
    }
    configFile = path.join(cfg, "models.config");
    await fs.writeFile(
      configFile,
      config(`    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }`),
    );
    const { options } = await parseServeArgs(
      [
        `--model_config_file=${configFile}`,
        "--model_config_file_poll_wait_seconds=1",
        "--host=127.0.0.1",
        "--port=auto",
        "--rest_api_port=auto",
        "--file_system_poll_wait_seconds=0",
      ],
      {},
    );
    server = await startServer({ ...options, log: () => {}, tf });
  });
  afterAll(async () => {
    await server?.stop(1000);
    for (const m of models) m.dispose();
  });

  const predict = (...spec: string[]) => client(["--server", `127.0.0.1:${server.grpcPort}`, ...spec, "--input", inputFile]);

  it("addresses each model by name, version and label", async () => {
    const ref = models.map((m) => Array.from(referencePredict(tf, m, pixels)));
    for (const [args, version] of [
      [["--model", "mnist"], 2],
      [["--model", "mnist", "--version", "1"], 1],
      [["--model", "mnist", "--label", "stable"], 1],
      [["--model", "mnist", "--label", "canary"], 2],
    ] as const) {
      const r = await predict(...args);
      expect(r.error, args.join(" ")).toBeUndefined();
      expect(r.version).toBe(version);
      expectClose(r.outputs!.probabilities!.values, ref[version - 1]!, 1e-5);
    }
    const k = await predict("--model", "keras", "--label", "stable");
    expect(k.version).toBe(1);
    expectClose(k.outputs!.probabilities!.values, keras.keras.values, 1e-5);
    const bad = await predict("--model", "mnist", "--label", "nightly");
    expect(bad.error?.code).toBe("INVALID_ARGUMENT");
    expect(bad.error?.details).toContain("nightly");
  });

  it("applies an edited file on the next poll: new policy and labels, a removed model unloaded", async () => {
    await fs.writeFile(
      configFile,
      config(
        `    model_version_policy { specific { versions: 1 } }
    version_labels { key: "stable" value: 1 }`,
        false,
      ),
    );
    const deadline = Date.now() + 15_000;
    let versions: number[] = [];
    while (Date.now() < deadline) {
      versions = server.managers.get("mnist")?.availableVersions() ?? [];
      if (versions.join() === "1" && !server.managers.has("keras")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(versions).toEqual([1]);
    expect(server.managers.has("keras")).toBe(false);
    expect((await predict("--model", "mnist")).version).toBe(1);
    expect((await predict("--model", "mnist", "--label", "canary")).error?.code).toBe("INVALID_ARGUMENT");
    expect((await predict("--model", "keras")).error?.code).toBe("NOT_FOUND");
  });

  it("keeps the models it has when the file stops parsing", async () => {
    await fs.writeFile(configFile, 'model_config_list { config { name: "other" base_pth: "x" } }');
    await server.reloadModelConfig();
    expect([...server.managers.keys()]).toEqual(["mnist"]);
    expect(server.managers.get("mnist")?.availableVersions()).toEqual([1]);
    expect((await predict("--model", "mnist")).version).toBe(1);
  });
});
