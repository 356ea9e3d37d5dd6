/**
 * The gRPC API against a real server on 127.0.0.1:0: Predict, Classify, GetModelMetadata,
 * GetModelStatus and Health, error codes, malformed protobuf, deadlines, message limits.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GrpcServingClient } from "../src/predict/client";
import { clientConstructors, servingRoot, unpackAny } from "../src/serve/protos";
import { startServer, type RunningServer, type ServerOptions } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { DIGIT_LABELS, mnistDense, mnistMetadata, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

let tf: Tf;
let base: string;
let model: TF.LayersModel;
let server: RunningServer | undefined;
const clients: grpc.Client[] = [];
let typed: GrpcServingClient | undefined;

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-grpc-"));
  model = mnistDense(tf, 7);
  await publishVersion(tf, path.join(base, "mnist"), 1, model, mnistMetadata("mnist", 1));
});

afterAll(async () => {
  model.dispose();
  await fs.rm(base, { recursive: true, force: true });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  typed?.close();
  typed = undefined;
  await server?.stop(1000);
  server = undefined;
});

async function start(extra: Partial<ServerOptions> = {}): Promise<string> {
  server = await startServer({
    models: [{ name: "mnist", basePath: path.join(base, "mnist"), versionLabels: { stable: 1 } }],
    host: "127.0.0.1",
    grpcPort: 0,
    restPort: null,
    pollIntervalMs: 0,
    log: () => {},
    tf,
    ...extra,
  });
  return `127.0.0.1:${server.grpcPort}`;
}

type Cb = (err: grpc.ServiceError | null, res?: any) => void;

/** Calls a method of a generic client; resolves to [error, response]. */
function call(client: grpc.Client, method: string, req: unknown, deadlineMs = 10_000): Promise<[grpc.ServiceError | null, any]> {
  return new Promise((resolve) => {
    (client as any)[method](req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, ((err, res) => resolve([err, res])) as Cb);
  });
}

function generic(target: string): { prediction: grpc.Client; models: grpc.Client; health: grpc.Client } {
  const c = clientConstructors();
  const make = (C: grpc.ServiceClientConstructor): grpc.Client => {
    const client = new C(target, grpc.credentials.createInsecure());
    clients.push(client);
    return client;
  };
  return { prediction: make(c.PredictionService), models: make(c.ModelService), health: make(c.Health) };
}

/** Sends raw bytes to a method (for malformed protobuf). */
function raw(target: string, method: string, bytes: Buffer): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  clients.push(client);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      { deadline: Date.now() + 10_000 },
      (err) => resolve(err),
    );
  });
}

function imageTensor(pixels: Float32Array, content = false): object {
  const n = pixels.length / 784;
  const shape = { dim: [n, 28, 28, 1].map((size) => ({ size })) };
  return content
    ? { dtype: "DT_FLOAT", tensor_shape: shape, tensor_content: Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength) }
    : { dtype: "DT_FLOAT", tensor_shape: shape, float_val: Array.from(pixels) };
}

describe("gRPC PredictionService", () => {
  it("predicts the same as in-process model.predict (float_val and tensor_content)", async () => {
    const target = await start();
    const { prediction } = generic(target);
    const pixels = samplePixels(4, 3);
    const expected = referencePredict(tf, model, pixels);
    for (const content of [false, true]) {
      const [err, res] = await call(prediction, "Predict", { model_spec: { name: "mnist" }, inputs: { image: imageTensor(pixels, content) } });
      expect(err).toBeNull();
      expect(res.model_spec).toMatchObject({ name: "mnist", version: { value: "1" }, signature_name: "serving_default" });
      const out = res.outputs.probabilities;
      expect(out.dtype).toBe("DT_FLOAT");
      expect(out.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(["4", "10"]);
      out.float_val.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected[i]!, 6));
    }
  });

  it("resolves version, label and output_filter", async () => {
    const target = await start();
    const { prediction } = generic(target);
    const inputs = { image: imageTensor(samplePixels(1)) };
    const [e1, byVersion] = await call(prediction, "Predict", { model_spec: { name: "mnist", version: { value: 1 } }, inputs });
    const [e2, byLabel] = await call(prediction, "Predict", { model_spec: { name: "mnist", version_label: "stable" }, inputs });
    expect([e1, e2]).toEqual([null, null]);
    expect(byLabel.outputs).toEqual(byVersion.outputs);
    const [e3, filtered] = await call(prediction, "Predict", { model_spec: { name: "mnist" }, inputs, output_filter: ["probabilities"] });
    expect(e3).toBeNull();
    expect(Object.keys(filtered.outputs)).toEqual(["probabilities"]);
  });

  it("classifies tf.Examples", async () => {
    const target = await start();
    const { prediction } = generic(target);
    const pixels = samplePixels(2, 8);
    const expected = referencePredict(tf, model, pixels);
    const examples = [0, 1].map((i) => ({ features: { feature: { image: { float_list: { value: Array.from(pixels.subarray(i * 784, (i + 1) * 784)) } } } } }));
    const [err, res] = await call(prediction, "Classify", { model_spec: { name: "mnist", signature_name: "classify" }, input: { example_list: { examples } } });
    expect(err).toBeNull();
    expect(res.model_spec.signature_name).toBe("classify");
    const cls = res.result.classifications;
    expect(cls).toHaveLength(2);
    expect(cls[1].classes.map((c: { label: string }) => c.label)).toEqual(DIGIT_LABELS);
    cls.flatMap((c: { classes: { score: number }[] }) => c.classes.map((k) => k.score)).forEach((s: number, i: number) => expect(s).toBeCloseTo(expected[i]!, 5));
  });

  it("returns the SignatureDefMap packed in Any, and our metadata on request", async () => {
    const target = await start();
    const { prediction } = generic(target);
    const [err, res] = await call(prediction, "GetModelMetadata", { model_spec: { name: "mnist" }, metadata_field: ["signature_def"] });
    expect(err).toBeNull();
    expect(res.model_spec.version.value).toBe("1");
    expect(Object.keys(res.metadata)).toEqual(["signature_def"]);
    expect(res.metadata.signature_def.type_url).toBe("type.googleapis.com/tensorflow.serving.SignatureDefMap");
    const defs = unpackAny(res.metadata.signature_def) as any;
    expect(defs.signature_def.serving_default.inputs.image.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(["-1", "28", "28", "1"]);
    typed = new GrpcServingClient(target);
    const described = await typed.describe({ name: "mnist" }, 5000);
    expect(described.metadata?.labels).toEqual(DIGIT_LABELS);
    expect(described.signatures.serving_default!.outputs.probabilities).toEqual({ dtype: "float32", shape: [-1, 10] });
  });
});

describe("gRPC ModelService and Health", () => {
  it("reports version status and health", async () => {
    const target = await start();
    const { models, health } = generic(target);
    const [err, res] = await call(models, "GetModelStatus", { model_spec: { name: "mnist" } });
    expect(err).toBeNull();
    expect(res.model_version_status).toEqual([{ version: "1", state: "AVAILABLE", status: { error_code: "OK", error_message: "" } }]);
    const [nf] = await call(models, "GetModelStatus", { model_spec: { name: "mnist", version: { value: 5 } } });
    expect([nf?.code, nf?.details]).toEqual([grpc.status.NOT_FOUND, "Could not find version 5 of model mnist"]);
    for (const service of ["", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"]) {
      const [e, h] = await call(health, "Check", { service });
      expect(e).toBeNull();
      expect(h.status).toBe("SERVING");
    }
    const [unknown] = await call(health, "Check", { service: "nope.Service" });
    expect(unknown?.code).toBe(grpc.status.NOT_FOUND);
  });
});

describe("gRPC errors", () => {
  const pixels = samplePixels(1);
  const cases: [string, object, grpc.status, RegExp][] = [
    ["no model_spec", { inputs: {} }, grpc.status.INVALID_ARGUMENT, /Missing ModelSpec/],
    ["unknown model", { model_spec: { name: "nope" } }, grpc.status.NOT_FOUND, /Servable not found for request: Latest\(nope\)/],
    ["unknown version", { model_spec: { name: "mnist", version: { value: 2 } } }, grpc.status.NOT_FOUND, /Specific\(mnist, 2\)/],
    ["unknown label", { model_spec: { name: "mnist", version_label: "x" } }, grpc.status.INVALID_ARGUMENT, /Unrecognized servable version label: x/],
    ["unknown signature", { model_spec: { name: "mnist", signature_name: "s" } }, grpc.status.FAILED_PRECONDITION, /signature key "s" not found/],
    ["missing input", { model_spec: { name: "mnist" }, inputs: {} }, grpc.status.INVALID_ARGUMENT, /missing input "image"/],
    ["extra input", { model_spec: { name: "mnist" }, inputs: { image: imageTensor(pixels), x: imageTensor(pixels) } }, grpc.status.INVALID_ARGUMENT, /"x" is not an input/],
    [
      "wrong dtype",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_INT32", tensor_shape: { dim: [{ size: 1 }] }, int_val: [1] } } },
      grpc.status.INVALID_ARGUMENT,
      /must be DT_FLOAT; got DT_INT32/,
    ],
    [
      "unsupported dtype",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_DOUBLE", double_val: [1] } } },
      grpc.status.INVALID_ARGUMENT,
      /DT_DOUBLE is not supported/,
    ],
    [
      "wrong shape",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [{ size: 1 }, { size: 784 }] }, float_val: Array.from(pixels) } } },
      grpc.status.INVALID_ARGUMENT,
      /must have shape \[\?,28,28,1\]/,
    ],
    [
      "count mismatch",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, float_val: [1, 2] } } },
      grpc.status.INVALID_ARGUMENT,
      /float_val has 2 values; the shape needs 784/,
    ],
    [
      "NaN",
      { model_spec: { name: "mnist" }, inputs: { image: { ...imageTensor(pixels), float_val: [NaN, ...Array.from(pixels).slice(1)] } } },
      grpc.status.INVALID_ARGUMENT,
      /not finite/,
    ],
    [
      "Inf in content",
      {
        model_spec: { name: "mnist" },
        inputs: {
          image: imageTensor(
            Float32Array.from(pixels, (v, i) => (i === 5 ? Infinity : v)),
            true,
          ),
        },
      },
      grpc.status.INVALID_ARGUMENT,
      /flat index 5 is not finite/,
    ],
    [
      "content size",
      { model_spec: { name: "mnist" }, inputs: { image: { ...imageTensor(pixels, true), tensor_content: Buffer.alloc(7) } } },
      grpc.status.INVALID_ARGUMENT,
      /tensor_content has 7 bytes/,
    ],
    [
      "empty batch",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [0, 28, 28, 1].map((size) => ({ size })) } } } },
      grpc.status.INVALID_ARGUMENT,
      /batch is empty/,
    ],
    [
      "negative dim",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [{ size: -1 }, { size: 28 }] } } } },
      grpc.status.INVALID_ARGUMENT,
      /integers ≥ 0/,
    ],
    [
      "huge dims",
      { model_spec: { name: "mnist" }, inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [{ size: "9007199254740991" }, { size: 28 }, { size: 28 }, { size: 1 }] } } } },
      grpc.status.INVALID_ARGUMENT,
      /exceeds the limit/,
    ],
    [
      "bad output_filter",
      { model_spec: { name: "mnist" }, inputs: { image: imageTensor(pixels) }, output_filter: ["nope"] },
      grpc.status.INVALID_ARGUMENT,
      /output tensor alias not found in signature: nope/,
    ],
  ];
  it.each(cases)("%s", async (_what, req, code, details) => {
    const target = await start();
    const { prediction } = generic(target);
    const [err] = await call(prediction, "Predict", req);
    expect(err?.code).toBe(code);
    expect(err?.details).toMatch(details);
  });

  it("turns unexpected failures into INTERNAL with a generic message, the stack in the log (gRPC and REST)", async () => {
    const logged: string[] = [];
    const target = await start({ restPort: 0, log: (l) => logged.push(l) });
    const lease = server!.managers.get("mnist")!.acquire({});
    (lease.servable as { run: unknown }).run = async () => {
      throw new TypeError("secret internal detail");
    };
    lease.release();
    const { prediction } = generic(target);
    const [err] = await call(prediction, "Predict", { model_spec: { name: "mnist" }, inputs: { image: imageTensor(samplePixels(1)) } });
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toBe("Internal error while serving the request; see the server log");
    const res = await fetch(`http://127.0.0.1:${server!.restPort}/v1/models/mnist:predict`, {
      method: "POST",
      body: JSON.stringify({ inputs: [Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0]))] }),
    });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "Internal error while serving the request; see the server log" });
    expect(logged.filter((l) => /failed unexpectedly: TypeError: secret internal detail\n\s+at /.test(l))).toHaveLength(2);
  });

  it("answers malformed protobuf with INVALID_ARGUMENT", async () => {
    const target = await start();
    for (const method of ["/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.ModelService/GetModelStatus", "/tensorflow.serving.PredictionService/Classify"]) {
      const err = await raw(target, method, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err?.details).toMatch(/Could not parse the request as protobuf/);
    }
    // A well-formed message still works on the same server afterwards.
    const bytes = servingRoot()
      .lookupType("tensorflow.serving.GetModelStatusRequest")
      .encode({ model_spec: { name: "mnist" } })
      .finish();
    expect(await raw(target, "/tensorflow.serving.ModelService/GetModelStatus", Buffer.from(bytes))).toBeNull();
  });

  it("refuses messages over the size limit with RESOURCE_EXHAUSTED", async () => {
    const target = await start({ grpcMaxMessageBytes: 100_000 });
    const { prediction } = generic(target);
    const [err] = await call(prediction, "Predict", { model_spec: { name: "mnist" }, inputs: { image: imageTensor(samplePixels(40), true) } });
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it("accepts a 1 MB float32 Inception-sized message by default", async () => {
    const target = await start();
    const { prediction } = generic(target);
    const big = new Float32Array(299 * 299 * 3);
    const [err] = await call(prediction, "Predict", {
      model_spec: { name: "mnist" },
      inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 299, 299, 3].map((size) => ({ size })) }, tensor_content: Buffer.from(big.buffer) } },
    });
    // Past the size limit, the shape check speaks: the message itself got through.
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/must have shape/);
  });

  it("honours deadlines: a request still queued at its deadline is dropped, not run", async () => {
    const target = await start({ batching: { maxBatchSize: 64, batchTimeoutMicros: 400_000, maxQueuedRequests: 8 } });
    const { prediction } = generic(target);
    const req = { model_spec: { name: "mnist" }, inputs: { image: imageTensor(samplePixels(1)) } };
    const [[late], [onTime, res]] = await Promise.all([call(prediction, "Predict", req, 100), call(prediction, "Predict", req, 5000)]);
    expect(late?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(onTime).toBeNull();
    expect(res.outputs.probabilities.float_val).toHaveLength(10);
    // Only the request still wanted ran: one batch of one example.
    const text = await server!.metrics.render();
    expect(text).toMatch(/^mlp_serving_batch_size_count\{model="mnist",version="1"\} 1$/m);
    expect(text).toMatch(/^mlp_serving_batch_size_sum\{model="mnist",version="1"\} 1$/m);
  });
});
