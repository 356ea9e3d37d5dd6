/**
 * Encoded images as DT_STRING inputs (as TF Serving's Inception client sends them): JPEG
 * and PNG bytes for a pixel input are decoded and resized by the server per the model's
 * preprocessing metadata, and give the same answer as the float pixels; malformed bytes
 * are INVALID_ARGUMENT and the server keeps serving.
 *
 * The model classifies which of ten horizontal bands of a 28×28 greyscale image is
 * bright (a dense layer with set weights), so its answer is robust to JPEG's loss and to
 * resizing, yet wrong for an image decoded transposed, flipped or in the wrong range.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clientConstructors } from "../src/serve/protos";
import { startServer, type RunningServer } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { mnistMetadata, publishVersion } from "./fixtures/serve-model";

let tf: Tf;
let base: string;
let model: TF.LayersModel;
let server: RunningServer | undefined;
let client: grpc.Client | undefined;

const bandOf = (row: number): number => Math.floor((row * 10) / 28);

/** Flatten → dense(10, softmax): logit k is the mean brightness of band k, times 20. */
function bandModel(): TF.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.flatten({ inputShape: [28, 28, 1] }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax" }));
  const w = new Float32Array(784 * 10);
  const rows = Array.from({ length: 10 }, (_, k) => Array.from({ length: 28 }, (_, r) => r).filter((r) => bandOf(r) === k).length);
  for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) w[(r * 28 + c) * 10 + bandOf(r)] = 20 / (rows[bandOf(r)]! * 28);
  m.layers[1]!.setWeights([tf.tensor2d(w, [784, 10]), tf.zeros([10])]);
  return m;
}

/** 8-bit greyscale image of `size`² with band `k` (of the 28-row grid, scaled) bright over noise. */
function bandImage(k: number, size = 28, seed = k + 1): Buffer {
  const px = Buffer.alloc(size * size);
  let s = seed * 2654435761;
  for (let r = 0; r < size; r++) {
    const bright = bandOf(Math.floor((r * 28) / size)) === k;
    for (let c = 0; c < size; c++) {
      s = (s * 1103515245 + 12345) >>> 0;
      px[r * size + c] = bright ? 200 + (s % 40) : 20 + (s % 40);
    }
  }
  return px;
}

const encode = (raw: Buffer, size: number, format: "png" | "jpeg"): Promise<Buffer> => {
  const img = sharp(raw, { raw: { width: size, height: size, channels: 1 } });
  return (format === "png" ? img.png() : img.jpeg({ quality: 85 })).toBuffer();
};

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-images-"));
  model = bandModel();
  await publishVersion(tf, path.join(base, "bands"), 1, model, mnistMetadata("bands", 1));
});

afterAll(async () => {
  model.dispose();
  await fs.rm(base, { recursive: true, force: true });
});

afterEach(async () => {
  client?.close();
  client = undefined;
  await server?.stop(1000);
  server = undefined;
});

async function start(): Promise<void> {
  server = await startServer({
    models: [{ name: "bands", basePath: path.join(base, "bands") }],
    host: "127.0.0.1",
    grpcPort: 0,
    restPort: 0,
    pollIntervalMs: 0,
    log: () => {},
    tf,
  });
  const C = clientConstructors().PredictionService;
  client = new C(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
}

type Tensor = { dtype: string; tensor_shape: { dim: { size: number }[] }; float_val?: number[]; string_val?: Buffer[] };

function predict(inputs: Record<string, Tensor>): Promise<[grpc.ServiceError | null, { outputs: Record<string, { float_val: number[] }> } | undefined]> {
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, r?: never) => void) => void>).Predict!({ model_spec: { name: "bands" }, inputs }, (e, r) =>
      resolve([e, r]),
    );
  });
}

const strings = (bytes: Buffer[], shape = [bytes.length]): Tensor => ({ dtype: "DT_STRING", tensor_shape: { dim: shape.map((size) => ({ size })) }, string_val: bytes });
const floats = (raw: Buffer[]): Tensor => ({
  dtype: "DT_FLOAT",
  tensor_shape: { dim: [raw.length, 28, 28, 1].map((size) => ({ size })) },
  float_val: raw.flatMap((r) => Array.from(r, (v) => v / 255)),
});
const argmax = (v: number[], row: number): number => {
  const r = v.slice(row * 10, row * 10 + 10);
  return r.indexOf(Math.max(...r));
};

describe("DT_STRING image inputs", () => {
  it("decodes PNG bytes to exactly the float path's answer (a batch of three)", async () => {
    await start();
    const raws = [2, 5, 9].map((k) => bandImage(k));
    const pngs = await Promise.all(raws.map((r) => encode(r, 28, "png")));
    const [e1, fromFloat] = await predict({ image: floats(raws) });
    const [e2, fromPng] = await predict({ image: strings(pngs) });
    expect(e1).toBeNull();
    expect(e2).toBeNull();
    const f = fromFloat!.outputs.probabilities!.float_val;
    const p = fromPng!.outputs.probabilities!.float_val;
    expect(p.length).toBe(30);
    for (let i = 0; i < p.length; i++) expect(Math.abs(p[i]! - f[i]!)).toBeLessThan(1e-6);
    expect([0, 1, 2].map((i) => argmax(p, i))).toEqual([2, 5, 9]);
  });

  it("gives JPEG bytes, at the model's size or larger (resized), the float path's top class", async () => {
    await start();
    const before = tf.memory().numTensors;
    for (let k = 0; k < 10; k++) {
      const raw = bandImage(k);
      const [, fromFloat] = await predict({ image: floats([raw]) });
      const top = argmax(fromFloat!.outputs.probabilities!.float_val, 0);
      expect(top).toBe(k);
      const jpegs = [await encode(raw, 28, "jpeg"), await encode(bandImage(k, 84, 99), 84, "jpeg")];
      // [batch, 1] is accepted as well as [batch].
      const [err, r] = await predict({ image: strings(jpegs, [2, 1]) });
      expect(err).toBeNull();
      const p = r!.outputs.probabilities!.float_val;
      expect([argmax(p, 0), argmax(p, 1)]).toEqual([top, top]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes REST {"b64": ...} instances for the image input', async () => {
    await start();
    const jpeg = await encode(bandImage(7), 28, "jpeg");
    const res = await fetch(`http://127.0.0.1:${server!.restPort}/v1/models/bands:predict`, {
      method: "POST",
      body: JSON.stringify({ instances: [{ b64: jpeg.toString("base64") }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { predictions: number[][] };
    expect(argmax(body.predictions[0]!, 0)).toBe(7);
  });

  it("classifies examples whose image feature is a bytes_list of one encoded image (gRPC Classify)", async () => {
    await start();
    const jpegs = await Promise.all([4, 8].map((k) => encode(bandImage(k), 28, "jpeg")));
    const r = await new Promise<[grpc.ServiceError | null, { result: { classifications: { classes: { label: string; score: number }[] }[] } } | undefined]>((resolve) =>
      (client as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, r?: never) => void) => void>).Classify!(
        {
          model_spec: { name: "bands", signature_name: "classify" },
          input: { example_list: { examples: jpegs.map((b) => ({ features: { feature: { image: { bytes_list: { value: [b] } } } } })) } },
        },
        (e, res) => resolve([e, res]),
      ),
    );
    expect(r[0]).toBeNull();
    const tops = r[1]!.result.classifications.map((c) => {
      const best = c.classes.reduce((a, b) => (b.score > a.score ? b : a));
      return best.label;
    });
    expect(tops).toEqual(["four", "eight"]);
  });

  it("answers INVALID_ARGUMENT for bytes that are not a JPEG or PNG image, and keeps serving", async () => {
    await start();
    const jpeg = await encode(bandImage(3), 28, "jpeg");
    const gif = await sharp(bandImage(3), { raw: { width: 28, height: 28, channels: 1 } })
      .gif()
      .toBuffer();
    const before = tf.memory().numTensors;
    for (const [what, bytes] of [
      ["random bytes", Buffer.from(Array.from({ length: 500 }, (_, i) => (i * 37) & 255))],
      ["a truncated JPEG", jpeg.subarray(0, Math.floor(jpeg.length / 2))],
      ["an empty string", Buffer.alloc(0)],
      ["a GIF", gif],
    ] as const) {
      const [err] = await predict({ image: strings([jpeg, bytes]) });
      expect(err?.code, what).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err?.details, what).toMatch(/input "image"\[1\]: cannot decode the image/);
    }
    const [err] = await predict({ image: strings([jpeg], [1, 1, 1]) });
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    // Many tiny images would decode to more floats than a tensor may hold: refused before decoding.
    await server!.stop(1000);
    server = await startServer({
      models: [{ name: "bands", basePath: path.join(base, "bands") }],
      host: "127.0.0.1",
      grpcPort: 0,
      restPort: null,
      pollIntervalMs: 0,
      log: () => {},
      tf,
      tensorLimits: { maxElements: 784 * 3 },
    });
    client!.close();
    client = new (clientConstructors().PredictionService)(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
    const [big] = await predict({ image: strings([jpeg, jpeg, jpeg, jpeg]) });
    expect(big?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(big?.details).toMatch(/4 images of 28×28×1 exceed the limit of 2352 values/);
    const [ok, r] = await predict({ image: strings([jpeg]) });
    expect(ok).toBeNull();
    expect(argmax(r!.outputs.probabilities!.float_val, 0)).toBe(3);
    expect(tf.memory().numTensors).toBe(before);
  });
});
