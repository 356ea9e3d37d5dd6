/**
 * scripts/pipeline-local.ts end to end: MinIO on 127.0.0.1, verify-data → train-mnist →
 * evaluate → publish → serve → predict, every step a real `mlp` process. The run must end
 * with the served model naming the true label of the held-out digit, served from the version
 * it published; a run below the gate must stop at evaluate and publish nothing.
 *
 * Skipped, saying why, when the minio binary is missing (scripts/tools/build.sh minio).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, missingTools, startLocal, stopLocal } from "../integration/support";

const missing = missingTools(["minio"]);
if (missing.length > 0) console.log(`SKIPPED pipeline-local e2e: missing ${missing.join(", ")} (scripts/tools/build.sh minio)`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the script as `npm run pipeline:local` would (tsx), with `env` added. */
function runScript(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), [path.join(ROOT, "scripts", "pipeline-local.ts"), ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    child.on("error", reject);
    child.on("close", (code) => {
      console.log(`pipeline-local ${args.join(" ")} → exit ${code}\n${stdout.slice(-3000)}`);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

function portOpen(hostPort: string): Promise<boolean> {
  const [host, port] = hostPort.split(":");
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host!, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

describe.skipIf(missing.length > 0)("scripts/pipeline-local.ts", () => {
  let work: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-e2e-pipeline-"));
  });
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("trains, gates, publishes, serves, and the served version names the held-out digit correctly", async () => {
    const workDir = path.join(work, "happy");
    const resultFile = path.join(work, "happy.json");
    const r = await runScript(["--work-dir", workDir, "--result-file", resultFile, "--index", "3"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const outcome = JSON.parse(fs.readFileSync(resultFile, "utf8"));
    expect(outcome.ok).toBe(true);
    expect(outcome.steps.map((s: { name: string; ok: boolean }) => s.name)).toEqual([
      "minio",
      "buckets",
      "upload",
      "verify-data",
      "train",
      "evaluate",
      "publish",
      "serve",
      "predict-grpc",
      "predict-rest",
    ]);
    expect(outcome.steps.every((s: { ok: boolean }) => s.ok)).toBe(true);

    // The digit's true label, read here from the IDX file the script generated and uploaded.
    const labels = fs.readFileSync(path.join(workDir, "dataset", "t10k-labels-idx1-ubyte"));
    const trueLabel = String(labels[8 + 3]);
    const p = outcome.prediction;
    expect(p).toMatchObject({ index: 3, trueLabel, correct: true });
    expect(p.grpc.label).toBe(trueLabel);
    expect(p.rest.label).toBe(trueLabel);
    expect(p.rest.score).toBeGreaterThan(0.5);
    expect(Math.abs(p.grpc.score - p.rest.score)).toBeLessThan(1e-3);

    // Served = published into the shared volume's models/, which a fresh volume does not have
    // (the cluster's publish step meets the same), so version 1; and the gate held.
    expect(outcome.published).toEqual({ version: 1, uri: path.join(workDir, "shared", "models", "mnist", "1") });
    expect(fs.readdirSync(path.join(workDir, "shared", "models", "mnist"))).toEqual(["1"]);
    // TensorBoard's view: the run's scalars under logs/<run>.
    const logs = path.join(workDir, "shared", "logs", outcome.run);
    expect(fs.readdirSync(logs).sort()).toEqual(["train", "validation"]);
    expect(fs.readdirSync(path.join(logs, "train")).some((f) => f.startsWith("events.out.tfevents."))).toBe(true);
    expect(outcome.served.version).toBe(outcome.published.version);
    expect(p.grpc.version).toBe(outcome.published.version);
    expect(p.rest.version).toBe(outcome.published.version);
    expect(outcome.evaluation).toMatchObject({ gate: 0.9, passed: true, examples: 2000 });
    expect(outcome.evaluation.accuracy).toBeGreaterThanOrEqual(0.9);

    // What a person sees: each step with its time, the drawing and the answer.
    expect(r.stdout).toMatch(/\[5\/10\] train: train-mnist, 300 steps/);
    expect(r.stdout).toMatch(/✓ evaluate \(\d+\.\d s\): accuracy 0\.\d+ ≥ gate 0\.9/);
    expect(r.stdout).toMatch(new RegExp(`mnist v1 via grpc 127\\.0\\.0\\.1:\\d+ \\(true label: ${trueLabel}\\)`));
    expect(r.stdout).toMatch(new RegExp(`answer: ${trueLabel} \\(\\d+\\.\\d%\\)`));
    expect(r.stdout).toMatch(/@@/); // the ASCII drawing
    expect(r.stdout).toMatch(new RegExp(`true label ${trueLabel}: correct`));
    expect(r.stdout).toMatch(/timings: minio [\d.]+ s, buckets .* total [\d.]+ s/);
    expect(r.stdout).not.toContain("NodeVersionSupportWarning");

    // Everything it started is stopped: the server's ports are closed, MinIO's state purged.
    expect(await portOpen(outcome.served.grpc)).toBe(false);
    expect(await portOpen(outcome.served.rest)).toBe(false);
    expect(await portOpen(outcome.s3Endpoint.replace(/^http:\/\//, ""))).toBe(false);
    expect(fs.existsSync(path.join(workDir, "minio"))).toBe(false);
  });

  describe("below the gate", () => {
    let state: string;
    let vars: Record<string, string>;
    beforeAll(() => {
      state = path.join(work, "minio");
      vars = startLocal(state, "minio");
    });
    afterAll(() => {
      if (state) stopLocal(state);
    });

    it("stops at evaluate with a non-zero exit and publishes nothing", async () => {
      const env = { AWS_ACCESS_KEY_ID: vars.AWS_ACCESS_KEY_ID!, AWS_SECRET_ACCESS_KEY: vars.AWS_SECRET_ACCESS_KEY! };
      const resultFile = path.join(work, "gated.json");
      const workDir = path.join(work, "gated");
      const r = await runScript(
        ["--s3-endpoint", vars.MINIO_ENDPOINT!, "--gate", "0.999", "--steps", "20", "--name", "gated", "--work-dir", workDir, "--result-file", resultFile],
        env,
      );
      expect(r.code).not.toBe(0);
      expect(r.code).toBe(3);
      expect(r.stdout).toMatch(/pipeline failed at step evaluate: mlp evaluate: accuracy 0\.\d+ is below the gate 0\.999: not publishing/);
      expect(r.stdout).toContain("nothing was published");
      const outcome = JSON.parse(fs.readFileSync(resultFile, "utf8"));
      expect(outcome).toMatchObject({ ok: false, failedStep: "evaluate", exitCode: 3, evaluation: { gate: 0.999, passed: false } });
      expect(outcome.steps.map((s: { name: string }) => s.name)).toEqual(["buckets", "upload", "verify-data", "train", "evaluate"]);
      expect(outcome.published).toBeUndefined();
      expect(fs.existsSync(path.join(workDir, "shared", "models"))).toBe(false);

      const s3 = new S3Client({
        endpoint: vars.MINIO_ENDPOINT,
        forcePathStyle: true,
        region: "us-east-1",
        credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
      });
      try {
        const models = await s3.send(new ListObjectsV2Command({ Bucket: "models" }));
        expect(models.Contents ?? []).toEqual([]);
        // The data did arrive (the run got as far as training on it).
        const data = await s3.send(new ListObjectsV2Command({ Bucket: "data", Prefix: `${outcome.run}/` }));
        expect((data.Contents ?? []).map((o) => o.Key!.split("/").pop()).sort()).toEqual([
          "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte",
          "train-images-idx3-ubyte",
          "train-labels-idx1-ubyte",
        ]);
      } finally {
        s3.destroy();
      }
    });
  });
});
