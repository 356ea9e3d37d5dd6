/**
 * Pipeline runs on the deployed dev stack (the real node), shared by the cluster suite and by
 * `npx tsx tests/cluster/pipelineRuns.ts retrain|distributed|sweep` against a running
 * scripts/up-local.sh platform.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { run as submit } from "../../scripts/submit";
import { uploadImages, type ImagesUpload } from "../../scripts/dataset";
import { main as mlp } from "../../trainer/src/cli";
import { ModelServer, writeColourImages, writeGraphModel } from "../../trainer/tests/fixtures/base-models";
import { captureIo } from "../../trainer/tests/fixtures/tmp";
import { defaultWork, forward, prepareDevStack, serviceIp, stackOutputs, type DevStack } from "./devStack";
import { readEnvFile } from "./support";

export interface PipelineRun {
  readonly code: number;
  readonly workflow?: string;
  readonly seconds: number;
  readonly lines: string[];
}

/** `npm run submit -- <args>` in-process, its lines echoed to the console. */
export async function submitRun(args: string[]): Promise<PipelineRun> {
  const lines: string[] = [];
  const io = { out: (l: string) => (console.log(l), lines.push(l)), err: (l: string) => (console.log(l), lines.push(l)) };
  const t0 = Date.now();
  const code = await submit(args, io);
  return { code, workflow: /submitted workflow (\S+)/.exec(lines.join("\n"))?.[1], seconds: (Date.now() - t0) / 1000, lines };
}

/** Files written on the host into the shared volume belong to the pods' user (uid 1000). */
function chownShared(dir: string): void {
  execFileSync("chown", ["-R", "1000:1000", dir]);
}

/**
 * The retrain pipeline: coloured images put into the object store by `npm run dataset --
 * images` (through a forward of MinIO's Service), a smoke JPEG on the shared volume, a small
 * base model fetched into its cache by `mlp fetch-base` from a local HTTP server (the
 * pipeline's own fetch-base step then finds it there), the run submitted, and the published
 * `images` model asked from the host to classify the smoke image.
 */
export async function retrainRun(
  s: DevStack,
  stateDir: string,
  outputsFile: string,
): Promise<PipelineRun & { answer?: { top: { label: string }[]; version: number }; upload?: ImagesUpload }> {
  const shared = path.join(s.volumes, "shared");
  const images = path.join(s.work, "colours");
  fs.rmSync(images, { recursive: true, force: true });
  await writeColourImages(images, 30);
  const minio = forward(stateDir, "minio", await serviceIp(s.kube, "mlplatform", "minio"), 9000);
  const upload = await uploadImages({ kind: "images", from: images, bucket: "data", prefix: "colours", endpoint: `http://127.0.0.1:${minio}`, stack: "dev", outputsFile }, (l) =>
    console.log(l),
  );
  const smoke = path.join(shared, "datasets", "smoke-red.jpg");
  // A fresh stack's shared volume has no datasets/ yet (the images go to the object store).
  fs.mkdirSync(path.dirname(smoke), { recursive: true });
  const red = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < red.length; i += 3) red.set([215, 45, 40], i);
  await sharp(red, { raw: { width: 64, height: 64, channels: 3 } })
    .jpeg()
    .toFile(smoke);
  const served = path.join(s.work, "served-base");
  await writeGraphModel(path.join(served, "graph"));
  const server = new ModelServer(served);
  const origin = await server.start();
  try {
    const c = captureIo();
    const rc = await mlp(
      ["fetch-base", "--name", "tiny-colours", "--url", `${origin}/graph/model.json`, "--image-size", "8x8", "--base-models", path.join(shared, "base-models")],
      c.io,
    );
    if (rc !== 0) throw new Error(`mlp fetch-base: ${c.stderr()}`);
  } finally {
    await server.close();
  }
  chownShared(path.join(shared, "datasets"));
  chownShared(path.join(shared, "base-models"));

  const run = await submitRun([
    "retrain",
    "--outputs-file",
    outputsFile,
    "--set",
    "images=s3://data/colours",
    "--set",
    "base-model=tiny-colours",
    "--set",
    "smoke-image=/mnt/shared/datasets/smoke-red.jpg",
    "--set",
    "learning-rate=0.1",
    "--set",
    "steps=300",
    "--set",
    "batch-size=8",
    "--timeout",
    String(25 * 60),
  ]);
  if (run.code !== 0) return { ...run, upload };
  const grpcPort = forward(stateDir, "serving-grpc", await serviceIp(s.kube, "ml-serving", "model-server"), 8500);
  const c = captureIo();
  const rc = await mlp(["predict", "--server", `127.0.0.1:${grpcPort}`, "--model", "images", "--image", smoke, "--json"], c.io);
  if (rc !== 0) throw new Error(`mlp predict: ${c.stderr()}`);
  return { ...run, upload, answer: JSON.parse(c.stdout()) };
}

/** The MNIST pipeline as a two-replica TFJob (Chief + 1 Worker, synchronous all-reduce). */
export async function distributedRun(outputsFile: string): Promise<PipelineRun> {
  return submitRun(["pipeline", "--outputs-file", outputsFile, "--set", "workers=2", "--set", "steps=1000", "--timeout", String(30 * 60)]);
}

/**
 * The hyperparameter sweep: a 2 × 1 × 1 grid (two learning rates), each trial a TFJob of its
 * own, two at once (the dev stack's `sweepParallelism`); the best trial's version is published
 * as `mnist`. Short trials: the point is the fan-out, the choice and the publish, not accuracy.
 */
export async function sweepRun(outputsFile: string): Promise<PipelineRun> {
  return submitRun([
    "sweep",
    "--outputs-file",
    outputsFile,
    "--set",
    "learning-rates=0.001,0.003",
    "--set",
    "hidden-units=64",
    "--set",
    "batch-sizes=64",
    "--set",
    "steps=300",
    "--set",
    "accuracy-gate=0.8",
    "--timeout",
    String(30 * 60),
  ]);
}

async function cli(): Promise<number> {
  const what = process.argv[2];
  const state = process.env.MLPLATFORM_LOCAL_DIR ?? path.join(process.env.HOME ?? "/root", ".cache", "mlplatform", "local");
  const s = prepareDevStack(readEnvFile(path.join(state, "local.env")), defaultWork());
  const { file } = stackOutputs(s);
  if (what === "retrain") {
    const r = await retrainRun(s, state, file);
    console.log(JSON.stringify({ code: r.code, seconds: r.seconds, answer: r.answer }));
    return r.code;
  }
  if (what === "distributed") {
    const r = await distributedRun(file);
    console.log(JSON.stringify({ code: r.code, seconds: r.seconds }));
    return r.code;
  }
  if (what === "sweep") {
    const r = await sweepRun(file);
    console.log(JSON.stringify({ code: r.code, seconds: r.seconds }));
    return r.code;
  }
  console.error("usage: tsx tests/cluster/pipelineRuns.ts retrain|distributed|sweep");
  return 2;
}

if (require.main === module)
  cli().then(
    (c) => process.exit(c),
    (e) => (console.error(e), process.exit(1)),
  );
