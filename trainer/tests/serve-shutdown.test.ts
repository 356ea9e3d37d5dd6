/**
 * `mlp serve` as a process (through the real CLI entry, src/cli.ts): SIGTERM turns health NOT_SERVING, requests already in flight
 * finish, new ones are refused, and the process exits 0 within the grace period.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clientConstructors } from "../src/serve/protos";
import { loadBackend, type Tf } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, samplePixels } from "./fixtures/serve-model";

const TRAINER = path.resolve(__dirname, "..");
let tf: Tf;
let base: string;
let child: ChildProcess | undefined;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-term-"));
  const model = mnistDense(tf, 7);
  await publishVersion(tf, path.join(base, "mnist"), 1, model, mnistMetadata("mnist", 1));
  model.dispose();
});

afterAll(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  if (child && child.exitCode === null) child.kill("SIGKILL");
  child = undefined;
});

/** Starts `mlp serve` in a child process; resolves once it logs its ports. */
function spawnServer(args: string[]): Promise<{ grpc: string; rest: string; log: () => string; exited: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", "serve", ...args], { cwd: TRAINER, stdio: ["ignore", "ignore", "pipe"] });
    child = c;
    let log = "";
    const exited = new Promise<number | null>((r) => c.on("exit", (code) => r(code)));
    const timer = setTimeout(() => reject(new Error(`serve did not start in 60 s:\n${log}`)), 60_000);
    c.stderr!.on("data", (d: Buffer) => {
      log += d.toString();
      const m = /listening: gRPC ([\d.]+:\d+), REST ([\d.]+:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ grpc: m[1]!, rest: m[2]!, log: () => log, exited });
      }
    });
    c.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening:\n${log}`));
    });
  });
}

describe("serve process", () => {
  it("drains in-flight requests on SIGTERM and exits 0 within the grace period", async () => {
    const s = await spawnServer([
      "--model_name=mnist",
      `--model_base_path=${path.join(base, "mnist")}`,
      "--host=127.0.0.1",
      "--port=auto",
      "--rest-api-port=auto",
      "--enable_batching",
      "--batch_timeout_micros=1500000",
      "--max_batch_size=64",
      "--shutdown_grace_seconds=8",
    ]);
    const { PredictionService, Health } = clientConstructors();
    const prediction = new PredictionService(s.grpc, grpc.credentials.createInsecure());
    const health = new Health(s.grpc, grpc.credentials.createInsecure());
    clients.push(prediction, health);

    // Watch health: SERVING now, NOT_SERVING once SIGTERM arrives.
    const healthSeen: string[] = [];
    const watch = (health as any).Watch({ service: "" });
    watch.on("data", (m: { status: string }) => healthSeen.push(m.status));
    watch.on("error", () => {});

    // Two requests that sit in the batch queue for 1.5 s: in flight when SIGTERM lands.
    const pixels = samplePixels(1);
    const grpcAnswer = new Promise<{ err: grpc.ServiceError | null; res: any }>((resolve) => {
      (prediction as any).Predict(
        { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, float_val: Array.from(pixels) } } },
        { deadline: Date.now() + 20_000 },
        (err: grpc.ServiceError | null, res: any) => resolve({ err, res }),
      );
    });
    const restAnswer = fetch(`http://${s.rest}/v1/models/mnist:predict`, { method: "POST", body: JSON.stringify({ instances: nestedImages(pixels) }) }).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as any,
    }));
    await new Promise((r) => setTimeout(r, 400));
    expect(healthSeen).toEqual(["SERVING"]);

    const t0 = Date.now();
    child!.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    // New work is refused while draining.
    const late = await fetch(`http://${s.rest}/v1/models/mnist:predict`, { method: "POST", body: "{}" }).then(
      (r) => r.status,
      () => "refused",
    );
    expect([503, "refused"]).toContain(late);

    const [g, r] = await Promise.all([grpcAnswer, restAnswer]);
    expect(g.err).toBeNull();
    expect(g.res.outputs.probabilities.float_val).toHaveLength(10);
    expect(r.status).toBe(200);
    expect(r.body.predictions[0]).toHaveLength(10);
    const code = await s.exited;
    const took = Date.now() - t0;
    expect(code).toBe(0);
    expect(took).toBeLessThan(8000);
    expect(healthSeen).toEqual(["SERVING", "NOT_SERVING"]);
    expect(s.log()).toMatch(/SIGTERM: draining/);
    expect(s.log()).toMatch(/stopped/);
  });

  it("exits 2 with a clear message on bad flags", async () => {
    await expect(spawnServer(["--model_name=m", "--model_version_policy=newest"])).rejects.toThrow(
      /exited with 2[\s\S]*mlp serve: --model_version_policy must be latest:N \(N ≥ 1\), all, or specific:V1,V2,...; got "newest"/,
    );
  });
});
