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
import { imageInput, pixelsOf, readIdxInput, readIdxInputs, readImageInput, toInputTensor, type LocalInput, type Pixels } from "../predict/preprocess";
import { asciiImage, formatTop, sideBySide, topK, type Scored } from "../predict/render";
import { commandUsage, defineFlags, givenFlags, parseFlags, type FlagValues } from "../util/flags";
import type { Command, CommandIo } from "./command";
import * as grpc from "@grpc/grpc-js";

export const PREDICT_FLAGS = defineFlags({
  server: { kind: "string", arg: "HOST:PORT", help: "server address", defaultHelp: "localhost:8500, or localhost:8501 with --rest" },
  rest: { kind: "boolean", help: "use the REST API instead of gRPC" },
  model: { kind: "string", arg: "NAME", help: "model name", required: true },
  version: { kind: "int", min: 1, arg: "N", help: "a specific version", defaultHelp: "the latest the server has" },
  label: { kind: "string", arg: "L", help: "a version label, e.g. stable" },
  signature: { kind: "string", arg: "S", default: DEFAULT_SIGNATURE, help: "signature name" },
  image: { kind: "string", arg: "FILE", help: "an image (PNG, JPEG, WebP, ...): decoded, resized, normalised per the model's metadata" },
  idx: {
    kind: "string",
    arg: "FILE",
    help: "an IDX image file ([count, rows, cols] uint8, .gz allowed); like --image and --idx-labels, a local path or an s3://bucket/key URL",
  },
  index: { kind: "int", min: 0, arg: "N", default: 0, help: "which sample of --idx" },
  count: {
    kind: "int",
    min: 1,
    arg: "N",
    default: 1,
    help: "classify N samples of --idx from --index on, --batch per request; with --idx-labels, print the accuracy",
  },
  batch: { kind: "int", min: 1, max: 4096, arg: "B", default: 100, help: "samples per request with --count" },
  "idx-labels": { kind: "string", arg: "FILE", help: "the matching IDX label file, to print the true label" },
  invert: { kind: "boolean", help: "invert pixels (dark ink on light paper → MNIST style)" },
  "top-k": { kind: "int", min: 1, arg: "K", default: 3, help: "how many labels to print" },
  "deadline-ms": { kind: "int", min: 1, arg: "MS", default: 10_000, help: "give up after MS milliseconds" },
  json: { kind: "boolean", help: "print the result as JSON" },
});

type PredictFlags = FlagValues<typeof PREDICT_FLAGS>;

const HELP = {
  synopsis: "--model NAME (--image FILE | --idx FILE [--index N] [--count N]) [flags]",
  about: `Sends one input to a TensorFlow-Serving-compatible server and prints the top labels. The
input is read and checked before the server is contacted.`,
};

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
  const f = parseFlags(PREDICT_FLAGS, args);
  if (!!f.image === !!f.idx) throw new UsageError("give exactly one of --image FILE or --idx FILE");
  if (f.version !== undefined && f.label !== undefined) throw new UsageError("give --version or --label, not both");
  if (givenFlags(f).has("index") && !f.idx) throw new UsageError("--index goes with --idx");
  if (f["idx-labels"] && !f.idx) throw new UsageError("--idx-labels goes with --idx");
  if (givenFlags(f).has("count") && !f.idx) throw new UsageError("--count goes with --idx");
  if (givenFlags(f).has("batch") && f.count === 1) throw new UsageError("--batch goes with --count");
  const protocol = f.rest ? "rest" : "grpc";
  const server = f.server ?? (f.rest ? "localhost:8501" : "localhost:8500");
  let tmp: string | undefined;
  const tmpDir = async () => (tmp ??= await fs.mkdtemp(path.join(os.tmpdir(), "mlp-predict-")));
  try {
    // The local input first: a missing file or a bad index is reported without a server.
    if (f.count > 1) {
      const samples = await readIdxInputs(await localInput(f.idx!, tmpDir), f.index, f.count, f["idx-labels"] ? await localInput(f["idx-labels"], tmpDir) : undefined);
      return await predictMany(f, samples, protocol, server, io);
    }
    const input: LocalInput = f.image
      ? await readImageInput(await localInput(f.image, tmpDir))
      : await readIdxInput(await localInput(f.idx!, tmpDir), f.index, f["idx-labels"] ? await localInput(f["idx-labels"], tmpDir) : undefined);
    return await predictWith(f, input, protocol, server, io);
  } finally {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function predictWith(f: PredictFlags, local: LocalInput, protocol: "grpc" | "rest", server: string, io: CommandIo): Promise<number> {
  const choice: ModelChoice = { name: f.model, version: f.version, label: f.label };
  const deadlineMs = f["deadline-ms"];
  const k = f["top-k"];
  const signatureName = f.signature;
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
    const px: Pixels = await pixelsOf(local, input.preprocessing);
    const tensor = toInputTensor(px, input, f.invert);
    // Pin the version we described, so metadata and answer belong together.
    const answer = await client.predict(
      { name: remote.name, version: remote.version || choice.version, label: remote.version ? undefined : choice.label },
      signatureName,
      { [input.inputName]: tensor },
      deadlineMs,
    );
    const outNames = Object.keys(answer.outputs);
    const outName = ["scores", "probabilities"].find((n) => n in answer.outputs) ?? (outNames.length === 1 ? outNames[0] : undefined);
    if (!outName) throw new PredictError(`the answer has outputs ${outNames.join(", ")}; cannot tell which holds the class scores`, grpc.status.FAILED_PRECONDITION);
    const scores = answer.outputs[outName]!.values as Float32Array;
    const labels = remote.metadata?.labels;
    const result: PredictResult = {
      model: remote.name,
      version: answer.version || remote.version,
      top: topK(scores, labels && labels.length === scores.length ? labels : undefined, k),
      trueLabel: local.kind === "idx" && local.label !== undefined ? (labels?.[local.label] ?? String(local.label)) : undefined,
    };
    if (f.json) {
      io.stdout.write(`${JSON.stringify(result)}\n`);
      return 0;
    }
    const title = `${result.model} v${result.version} via ${protocol} ${server}${result.trueLabel !== undefined ? ` (true label: ${result.trueLabel})` : ""}`;
    const block = formatTop(result.top, title);
    const lines =
      px.channels === 1 && px.width === 28 && px.height === 28 ? sideBySide(asciiImage(f.invert ? px.data.map((v) => 255 - v) : px.data, px.width, px.height), block) : block;
    io.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** `--count N`: the samples in batches of --batch, one request each; the accuracy when the labels are known. */
async function predictMany(f: PredictFlags, samples: LocalInput[], protocol: "grpc" | "rest", server: string, io: CommandIo): Promise<number> {
  const choice: ModelChoice = { name: f.model, version: f.version, label: f.label };
  const client = openClient(protocol, server);
  const t0 = Date.now();
  try {
    const remote = await client.describe(choice, f["deadline-ms"]);
    const sig = remote.signatures[f.signature];
    if (!sig) throw new PredictError(`model "${remote.name}" version ${remote.version} has no signature "${f.signature}"`, grpc.status.FAILED_PRECONDITION);
    const input = imageInput(f.signature, sig, remote.metadata?.preprocessing);
    const labels = remote.metadata?.labels;
    const predicted: number[] = [];
    let requests = 0;
    for (let at = 0; at < samples.length; at += f.batch) {
      const batch = samples.slice(at, at + f.batch);
      const tensors = [];
      for (const s of batch) tensors.push(toInputTensor(await pixelsOf(s, input.preprocessing), input, f.invert));
      const per = tensors[0]!.values.length;
      const values = new Float32Array(per * tensors.length);
      tensors.forEach((t, i) => values.set(t.values as Float32Array, i * per));
      const tensor = { ...tensors[0]!, shape: [tensors.length, ...tensors[0]!.shape.slice(1)], values };
      const version = remote.version || choice.version;
      const answer = await client.predict({ name: remote.name, version, label: version ? undefined : choice.label }, f.signature, { [input.inputName]: tensor }, f["deadline-ms"]);
      requests++;
      const outName = ["scores", "probabilities"].find((n) => n in answer.outputs) ?? Object.keys(answer.outputs)[0]!;
      const scores = answer.outputs[outName]!.values as Float32Array;
      const classes = scores.length / tensors.length;
      for (let i = 0; i < tensors.length; i++) {
        let best = 0;
        for (let c = 1; c < classes; c++) if (scores[i * classes + c]! > scores[i * classes + best]!) best = c;
        predicted.push(best);
      }
      if (samples.length > 1000) io.stderr.write(`predict: ${predicted.length}/${samples.length}\n`);
    }
    const truth = samples.map((s) => (s.kind === "idx" ? s.label : undefined));
    const known = truth.every((t) => t !== undefined);
    const correct = known ? predicted.filter((p, i) => p === truth[i]).length : undefined;
    const seconds = (Date.now() - t0) / 1000;
    const result = {
      model: remote.name,
      version: remote.version,
      count: samples.length,
      requests,
      seconds,
      correct,
      accuracy: correct === undefined ? undefined : correct / samples.length,
    };
    if (f.json) {
      io.stdout.write(`${JSON.stringify({ ...result, predicted: known ? undefined : predicted.map((p) => labels?.[p] ?? String(p)) })}\n`);
      return 0;
    }
    if (correct !== undefined) {
      io.stdout.write(
        `${remote.name} v${remote.version} via ${protocol} ${server}: ${correct} of ${samples.length} correct (${((100 * correct) / samples.length).toFixed(2)}%), ${requests} requests in ${seconds.toFixed(1)} s\n`,
      );
    } else {
      predicted.forEach((p, i) => io.stdout.write(`${f.index + i}\t${labels?.[p] ?? p}\n`));
    }
    return 0;
  } finally {
    client.close();
  }
}

export const command: Command = {
  name: "predict",
  flags: PREDICT_FLAGS,
  usage: commandUsage("predict", PREDICT_FLAGS, HELP),
  run: (args, io) => run(args, io),
};
