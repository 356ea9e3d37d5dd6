/**
 * `mlp predict`: asks a model server (ours or TF Serving) to classify one image or one
 * IDX sample and prints the top-k labels; 28×28 inputs are drawn in ASCII beside the answer.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { openSource, readWithGzFallback } from "../data/source";
import { UsageError } from "../errors";
import { DEFAULT_SIGNATURE } from "../metadata";
import { openClient, PredictError, type ModelChoice } from "../predict/client";
import { imageInput, labelFromIdx, pixelsFromIdx, pixelsFromImage, toInputTensor, type Pixels } from "../predict/preprocess";
import { asciiImage, formatTop, sideBySide, topK, type Scored } from "../predict/render";
import { intFlag, parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";
import * as grpc from "@grpc/grpc-js";

const USAGE = `Usage: mlp predict --model NAME (--image FILE | --idx FILE --index N) [flags]

Sends one input to a TensorFlow-Serving-compatible server and prints the top labels.

  --server HOST:PORT   server address (default localhost:8500, or localhost:8501 with --rest)
  --rest               use the REST API instead of gRPC
  --model NAME         model name
  --version N          a specific version (default: the latest the server has)
  --label L            a version label, e.g. stable
  --signature S        signature name (default ${DEFAULT_SIGNATURE})
  --image FILE         an image (PNG, JPEG, WebP, ...): decoded, resized, normalised per
                       the model's metadata
  --idx FILE           an IDX image file ([count, rows, cols] uint8, .gz allowed); like
                       --image and --idx-labels, a local path or an s3://bucket/key URL
  --index N            which sample of --idx (default 0)
  --idx-labels FILE    the matching IDX label file, to print the true label
  --invert             invert pixels (dark ink on light paper → MNIST style)
  --top-k K            how many labels to print (default 3)
  --deadline-ms MS     give up after MS milliseconds (default 10000)
  --json               print the result as JSON`;

const FLAGS = {
  server: { type: "string" },
  rest: { type: "boolean" },
  model: { type: "string" },
  version: { type: "string" },
  label: { type: "string" },
  signature: { type: "string" },
  image: { type: "string" },
  idx: { type: "string" },
  index: { type: "string" },
  "idx-labels": { type: "string" },
  invert: { type: "boolean" },
  "top-k": { type: "string" },
  "deadline-ms": { type: "string" },
  json: { type: "boolean" },
} as const;

export interface PredictResult {
  readonly model: string;
  readonly version: number;
  readonly top: Scored[];
  readonly trueLabel?: string;
}

/**
 * A local path for an input given as a path or an `s3://bucket/key` URL: objects are fetched
 * (with the `.gz` fallback IDX files get) into a temporary file, so pipeline steps can point
 * straight at the dataset in the object store.
 */
export async function localInput(pathOrUri: string, tmpDir: () => Promise<string>): Promise<string> {
  if (!pathOrUri.startsWith("s3://")) return pathOrUri;
  const slash = pathOrUri.lastIndexOf("/");
  const name = pathOrUri.slice(slash + 1);
  if (slash < "s3://".length || name === "") throw new UsageError(`not an S3 object URL: ${pathOrUri}`);
  const { data, location } = await readWithGzFallback(openSource(pathOrUri.slice(0, slash)), name);
  const file = path.join(await tmpDir(), path.basename(location));
  await fs.writeFile(file, data);
  return file;
}

/** Runs `mlp predict`; resolves to the exit code (errors are thrown as MlpErrors). */
export async function run(args: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const f = parseFlags("predict", args, FLAGS);
  if (!f.model) throw new UsageError("--model is required (see mlp predict --help)");
  if (!!f.image === !!f.idx) throw new UsageError("give exactly one of --image FILE or --idx FILE");
  if (f.version !== undefined && f.label !== undefined) throw new UsageError("give --version or --label, not both");
  if (f.index !== undefined && !f.idx) throw new UsageError("--index goes with --idx");
  const protocol = f.rest ? "rest" : "grpc";
  const server = f.server ?? (f.rest ? "localhost:8501" : "localhost:8500");
  let tmp: string | undefined;
  const tmpDir = async () => (tmp ??= await fs.mkdtemp(path.join(os.tmpdir(), "mlp-predict-")));
  try {
    if (f.image) f.image = await localInput(f.image, tmpDir);
    if (f.idx) f.idx = await localInput(f.idx, tmpDir);
    if (f["idx-labels"]) f["idx-labels"] = await localInput(f["idx-labels"], tmpDir);
    return await predictWith(f, protocol, server, io);
  } finally {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function predictWith(
  f: ReturnType<typeof parseFlags<typeof FLAGS>>,
  protocol: "grpc" | "rest",
  server: string,
  io: CommandIo,
): Promise<number> {
  const choice: ModelChoice = { name: f.model!, version: intFlag("version", f.version, 1), label: f.label };
  const deadlineMs = intFlag("deadline-ms", f["deadline-ms"], 1) ?? 10_000;
  const k = intFlag("top-k", f["top-k"], 1) ?? 3;
  const signatureName = f.signature ?? DEFAULT_SIGNATURE;
  const client = openClient(protocol, server);
  try {
    const remote = await client.describe(choice, deadlineMs);
    const sig = remote.signatures[signatureName];
    if (!sig) {
      throw new PredictError(
        `model "${remote.name}" version ${remote.version} has no signature "${signatureName}"; it has: ${Object.keys(remote.signatures).join(", ")}`,
        grpc.status.FAILED_PRECONDITION,
      );
    }
    const input = imageInput(signatureName, sig, remote.metadata?.preprocessing);
    const index = intFlag("index", f.index, 0) ?? 0;
    const px: Pixels = f.image ? await pixelsFromImage(f.image, input.preprocessing) : await pixelsFromIdx(f.idx!, index, input.preprocessing);
    const tensor = toInputTensor(px, input, f.invert ?? false);
    // Pin the version we described, so metadata and answer belong together.
    const answer = await client.predict({ name: remote.name, version: remote.version || choice.version, label: remote.version ? undefined : choice.label }, signatureName, { [input.inputName]: tensor }, deadlineMs);
    const outNames = Object.keys(answer.outputs);
    const outName = ["scores", "probabilities"].find((n) => n in answer.outputs) ?? (outNames.length === 1 ? outNames[0] : undefined);
    if (!outName) throw new PredictError(`the answer has outputs ${outNames.join(", ")}; cannot tell which holds the class scores`, grpc.status.FAILED_PRECONDITION);
    const scores = answer.outputs[outName]!.values as Float32Array;
    const labels = remote.metadata?.labels;
    const result: PredictResult = {
      model: remote.name,
      version: answer.version || remote.version,
      top: topK(scores, labels && labels.length === scores.length ? labels : undefined, k),
      trueLabel: f["idx-labels"] ? await labelFromIdx(f["idx-labels"], index).then((l) => labels?.[l] ?? String(l)) : undefined,
    };
    if (f.json) {
      io.stdout.write(`${JSON.stringify(result)}\n`);
      return 0;
    }
    const title = `${result.model} v${result.version} via ${protocol} ${server}${result.trueLabel !== undefined ? ` (true label: ${result.trueLabel})` : ""}`;
    const block = formatTop(result.top, title);
    const lines =
      px.channels === 1 && px.width === 28 && px.height === 28
        ? sideBySide(asciiImage(f.invert ? px.data.map((v) => 255 - v) : px.data, px.width, px.height), block)
        : block;
    io.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export const command: Command = {
  name: "predict",
  summary: "classify an image or IDX sample with a model server (gRPC or REST) and print the top labels",
  usage: USAGE,
  run: (args, io) => run(args, io),
};
