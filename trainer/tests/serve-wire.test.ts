/**
 * The Predict fast path: the direct codec (`src/serve/wire.ts`) against proto-loader's
 * generic one on the same bytes, zero-copy tensor views, the HTTP/2 windows the server
 * opens, cancellation without AbortControllers, and `execute` on batches past 32.
 */
import { promises as fs } from "node:fs";
import * as http2 from "node:http2";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import * as protobuf from "protobufjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { modelRef, DEFAULT_FLOW_CONTROL_WINDOW_BYTES } from "../src/serve/grpc";
import { clientConstructors, PREDICTION_SERVICE, servingPackageDefinition, type PredictRequest } from "../src/serve/protos";
import { startServer, type RunningServer, type ServerOptions } from "../src/serve/server";
import { RunTurns } from "../src/serve/service";
import { fromTensorProto, toTensorProto, type HostTensor } from "../src/serve/tensor";
import { loadBackend, type Tf } from "../src/serve/tf";
import { decodePredictRequest, encodePredictResponse } from "../src/serve/wire";
import { mnistDense, mnistMetadata, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

const method = (servingPackageDefinition()[PREDICTION_SERVICE] as Record<string, any>).Predict;
/** proto-loader's generic codec, the reference. */
const generic = {
  encodeRequest: (o: object): Buffer => method.requestSerialize(o),
  decodeRequest: (b: Buffer): PredictRequest => method.requestDeserialize(b),
  decodeResponse: (b: Buffer): any => method.responseDeserialize(b),
  encodeResponse: (o: object): Buffer => method.responseSerialize(o),
};

/** mulberry32. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the server makes of a request: the model ref and host tensors (or the error), the output filter. */
function meaning(req: PredictRequest): unknown {
  const r = (f: () => unknown): unknown => {
    try {
      return f();
    } catch (e) {
      return `error: ${(e as Error).message}`;
    }
  };
  const inputs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(req.inputs ?? {})) {
    inputs[k] = r(() => {
      const t = fromTensorProto(`input "${k}"`, v);
      return { ...t, values: Array.isArray(t.values) ? t.values.map((b) => Buffer.from(b).toString("hex")) : Array.from(t.values) };
    });
  }
  return { ref: r(() => modelRef(req.model_spec)), inputs, outputFilter: req.output_filter ?? [] };
}

function randomRequest(rand: () => number): object {
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)]!;
  const spec: Record<string, unknown> = {};
  if (rand() < 0.9) spec.name = pick(["mnist", "", "m.x-1"]);
  if (rand() < 0.3) spec.version = { value: pick([0, 1, 7, 2 ** 40]) };
  // eslint-disable-next-line no-dupe-else-if -- a second draw of rand(), not the same test
  else if (rand() < 0.3) spec.version_label = pick(["stable", ""]);
  if (rand() < 0.3) spec.signature_name = pick(["serving_default", "classify"]);
  const inputs: Record<string, unknown> = {};
  for (let i = int(3); i >= 0; i--) {
    const shape = Array.from({ length: int(4) }, () => int(4));
    const n = shape.reduce((a, b) => a * b, 1);
    const dim = shape.map((size) => (rand() < 0.2 ? { size, name: "d" } : { size }));
    const dtype = pick(["DT_FLOAT", "DT_FLOAT", "DT_INT32", "DT_BOOL", "DT_STRING", "DT_DOUBLE", "DT_INT64"]);
    const t: Record<string, unknown> = { dtype, tensor_shape: { dim, unknown_rank: rand() < 0.05 } };
    const count = rand() < 0.8 ? n : pick([1, n + 1, 0]);
    if (dtype === "DT_FLOAT") {
      const vals = Array.from({ length: count }, () => Math.fround(rand() * 10 - 5));
      if (rand() < 0.5) t.float_val = vals;
      else {
        // tensor_content at every alignment: the server must copy when unaligned.
        const pad = int(4);
        const b = Buffer.alloc(pad + vals.length * 4);
        vals.forEach((v, j) => b.writeFloatLE(v, pad + j * 4));
        t.tensor_content = b.subarray(pad);
      }
    } else if (dtype === "DT_INT32") t.int_val = Array.from({ length: count }, () => int(2 ** 31) - 2 ** 30);
    else if (dtype === "DT_BOOL") t.bool_val = Array.from({ length: count }, () => rand() < 0.5);
    else if (dtype === "DT_STRING") t.string_val = Array.from({ length: count }, () => Buffer.from(Array.from({ length: int(5) }, () => int(256))));
    else t.double_val = [1.5];
    inputs[pick(["image", "a", "b", ""])] = t;
  }
  const req: Record<string, unknown> = { inputs };
  if (rand() < 0.9) req.model_spec = spec;
  if (rand() < 0.3) req.output_filter = [pick(["probabilities", "x"])];
  return req;
}

describe("Predict codec (wire.ts) against proto-loader", () => {
  it("decodes 2000 random requests to what the generic path means", () => {
    const rand = rng(42);
    for (let i = 0; i < 2000; i++) {
      const bytes = generic.encodeRequest(randomRequest(rand));
      expect(meaning(decodePredictRequest(bytes)), `request ${i}`).toEqual(meaning(generic.decodeRequest(bytes)));
    }
  });

  it("model_spec's oneof: the member seen last wins, as in every protobuf runtime", () => {
    const versionThenLabel = protobuf.Writer.create();
    versionThenLabel.uint32(10).fork().uint32(10).string("m").uint32(18).fork().uint32(8).int64(3).ldelim().uint32(34).string("stable").ldelim();
    const labelThenVersion = protobuf.Writer.create();
    labelThenVersion.uint32(10).fork().uint32(10).string("m").uint32(34).string("stable").uint32(18).fork().uint32(8).int64(3).ldelim().ldelim();
    const [a, b] = [versionThenLabel, labelThenVersion].map((w) => Buffer.from(w.finish()));
    expect(decodePredictRequest(a).model_spec).toMatchObject({ version: null, version_label: "stable", version_choice: "version_label" });
    expect(decodePredictRequest(b).model_spec).toMatchObject({ version: { value: "3" }, version_label: "", version_choice: "version" });
    // Spec ("the last member seen is used") and TF Serving's C++ parser agree. proto-loader
    // (protobufjs) keeps both values and names the label whenever one is present, whatever
    // the order: it agrees on the first message and differs on the second, which no real
    // client sends (a client sets one member).
    expect(modelRef(decodePredictRequest(a).model_spec)).toEqual({ name: "m", version: undefined, label: "stable", signatureName: "" });
    expect(modelRef(decodePredictRequest(b).model_spec)).toEqual({ name: "m", version: 3, label: undefined, signatureName: "" });
    expect(meaning(decodePredictRequest(a))).toEqual(meaning(generic.decodeRequest(a)));
    expect(modelRef(generic.decodeRequest(b).model_spec).label).toBe("stable");
  });

  it("reads float_val unpacked, packed, and both mixed, in order", () => {
    const w = protobuf.Writer.create();
    w.uint32(18).fork(); // inputs entry
    w.uint32(10).string("x");
    w.uint32(18).fork(); // TensorProto
    w.uint32(8).int32(1);
    w.uint32(18).fork().uint32(18).fork().uint32(8).int64(5).ldelim().ldelim();
    w.uint32(45).float(1); // unpacked
    w.uint32(42).fork().float(2).float(3).ldelim(); // packed
    w.uint32(45).float(4);
    w.uint32(45).float(5);
    w.ldelim().ldelim();
    const bytes = Buffer.from(w.finish());
    const mine = fromTensorProto("x", decodePredictRequest(bytes).inputs!.x!);
    expect(Array.from(mine.values as Float32Array)).toEqual([1, 2, 3, 4, 5]);
    expect(meaning(decodePredictRequest(bytes))).toEqual(meaning(generic.decodeRequest(bytes)));
  });

  it("skips unknown fields of every wire type", () => {
    const known = generic.encodeRequest({ model_spec: { name: "mnist" }, inputs: { x: { dtype: "DT_FLOAT", tensor_shape: { dim: [{ size: 2 }] }, float_val: [1, 2] } } });
    const w = protobuf.Writer.create();
    w.uint32((20 << 3) | 0).uint64(123);
    w.uint32((21 << 3) | 1).fixed64(7);
    w.uint32((22 << 3) | 2).string("ignored");
    w.uint32((23 << 3) | 5).fixed32(9);
    const bytes = Buffer.concat([Buffer.from(w.finish()), known]);
    expect(meaning(decodePredictRequest(bytes))).toEqual(meaning(generic.decodeRequest(known)));
  });

  it.each([
    ["a bad wire type", [0x0f]],
    ["a length past the end", [0x12, 0xff, 0xff, 0x03]],
    ["a truncated varint", [0x0a, 0x85]],
    ["a group tag on output_filter", [0x1b]],
    ["a field running past the end of the message it is in", [0x0a, 0x02, 0x0a, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65]],
    ["a packed float run that is not whole floats", [0x12, 0x09, 0x12, 0x07, 0x08, 0x01, 0x2a, 0x03, 0x00, 0x00, 0x80]],
  ])("refuses %s", (_what, bytes) => {
    expect(() => decodePredictRequest(Buffer.from(bytes))).toThrow();
  });

  it("views aligned tensor_content and float_val in place, copies unaligned ones", () => {
    const vals = Float32Array.from([1.5, -2, 3.25, 4]);
    for (const pad of [0, 1, 2, 3, 4]) {
      const content = Buffer.alloc(pad + 16);
      Buffer.from(vals.buffer).copy(content, pad);
      const t = fromTensorProto("x", { dtype: "DT_FLOAT", tensor_shape: { dim: [{ size: 4 }] }, tensor_content: content.subarray(pad) });
      expect(Array.from(t.values as Float32Array)).toEqual(Array.from(vals));
      const aligned = (content.byteOffset + pad) % 4 === 0;
      expect((t.values as Float32Array).buffer === content.buffer).toBe(aligned);
    }
  });

  it("encodes responses that generic clients decode to what the generic encoder gave", () => {
    const outputs: Record<string, HostTensor> = {
      probabilities: { dtype: "float32", shape: [2, 3], values: Float32Array.from([0.1, 0.2, 0.7, -1e-7, 3e38, 0]) },
      classes: { dtype: "int32", shape: [2], values: Int32Array.from([-5, 2 ** 31 - 1]) },
      flags: { dtype: "bool", shape: [3], values: Uint8Array.from([1, 0, 1]) },
      names: { dtype: "string", shape: [2], values: [Buffer.from("a"), new Uint8Array([0, 255])] },
      empty: { dtype: "float32", shape: [0, 4], values: new Float32Array(0) },
      scalar: { dtype: "float32", shape: [], values: Float32Array.of(2) },
    };
    const mine = generic.decodeResponse(encodePredictResponse({ modelName: "mnist", version: 12, signatureName: "serving_default", outputs }));
    const protos: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(outputs)) protos[k] = toTensorProto(t);
    const theirs = generic.decodeResponse(generic.encodeResponse({ model_spec: { name: "mnist", version: { value: "12" }, signature_name: "serving_default" }, outputs: protos }));
    expect(mine).toEqual(theirs);
    expect(mine.outputs.probabilities.float_val).toHaveLength(6);
    expect(mine.outputs.probabilities.tensor_content).toHaveLength(0);
  });
});

describe("RunTurns", () => {
  const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

  it("lets one model run per event-loop turn, first come first served", async () => {
    const turns = new RunTurns();
    const order: string[] = [];
    const runs = ["a", "b", "c"].map((n) => turns.take().then(() => order.push(n)));
    await runs[0];
    expect(order).toEqual(["a"]);
    // b runs in the turn after a's, c in the turn after b's.
    await nextTurn();
    expect(order).toEqual(["a", "b"]);
    await Promise.all(runs);
    expect(order).toEqual(["a", "b", "c"]);
  });

  it("costs no turn when the previous run was in an earlier turn", async () => {
    const turns = new RunTurns();
    await turns.take();
    await nextTurn();
    let ran = false;
    void turns.take().then(() => (ran = true));
    for (let i = 0; i < 3; i++) await Promise.resolve();
    expect(ran).toBe(true);
  });
});

describe("Predict fast path on a real server", () => {
  let tf: Tf;
  let base: string;
  let model: TF.LayersModel;
  let server: RunningServer | undefined;
  const closers: (() => void)[] = [];

  beforeAll(async () => {
    tf = loadBackend(() => {}).tf;
    base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-wire-"));
    model = mnistDense(tf, 11);
    await publishVersion(tf, path.join(base, "mnist"), 1, model, mnistMetadata("mnist", 1));
  });

  afterAll(async () => {
    model.dispose();
    await fs.rm(base, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const c of closers.splice(0)) c();
    await server?.stop(1000);
    server = undefined;
  });

  async function start(extra: Partial<ServerOptions> = {}): Promise<string> {
    server = await startServer({
      models: [{ name: "mnist", basePath: path.join(base, "mnist") }],
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

  function client(target: string): any {
    const c = new (clientConstructors().PredictionService)(target, grpc.credentials.createInsecure());
    closers.push(() => c.close());
    return c;
  }

  const predict = (c: any, req: object, deadlineMs = 10_000): Promise<[grpc.ServiceError | null, any]> =>
    new Promise((resolve) => c.Predict(req, { deadline: Date.now() + deadlineMs }, (e: grpc.ServiceError | null, r: any) => resolve([e, r])));

  /** The server's SETTINGS and connection window as a raw HTTP/2 client sees them. */
  async function windows(target: string): Promise<{ initialWindowSize: number | undefined; connectionWindow: number }> {
    const session = http2.connect(`http://${target}`);
    closers.push(() => session.destroy());
    const settings = await new Promise<http2.Settings>((resolve) =>
      session
        .on("remoteSettings", (s) => {
          if ((s.initialWindowSize ?? 65535) !== 65535) resolve(s);
        })
        .setTimeout(2000, () => resolve(session.remoteSettings)),
    );
    await new Promise((r) => setTimeout(r, 50));
    return { initialWindowSize: settings.initialWindowSize, connectionWindow: session.state.remoteWindowSize ?? 0 };
  }

  it("opens 1 MiB HTTP/2 windows (per stream and per connection), or the size asked for", async () => {
    expect(await windows(await start())).toEqual({ initialWindowSize: DEFAULT_FLOW_CONTROL_WINDOW_BYTES, connectionWindow: DEFAULT_FLOW_CONTROL_WINDOW_BYTES });
    await server!.stop(1000);
    expect(await windows(await start({ grpcFlowControlWindowBytes: 256 * 1024 }))).toEqual({ initialWindowSize: 256 * 1024, connectionWindow: 256 * 1024 });
  });

  it("runs a batch past 32 in one go, with the model's own predictions, and leaks no tensor", async () => {
    const target = await start();
    const c = client(target);
    const pixels = samplePixels(100, 9);
    const before = tf.memory().numTensors;
    const [err, res] = await predict(c, {
      model_spec: { name: "mnist" },
      inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [100, 28, 28, 1].map((size) => ({ size })) }, float_val: Array.from(pixels) } },
    });
    expect(err).toBeNull();
    const expected = referencePredict(tf, model, pixels);
    expect(res.outputs.probabilities.float_val).toHaveLength(1000);
    res.outputs.probabilities.float_val.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected[i]!, 6));
    expect(tf.memory().numTensors).toBe(before);
    expect(await server!.metrics.render()).toMatch(/^mlp_serving_batch_size_count\{model="mnist",version="1"\} 1$/m);
  });

  it("a request its client cancels while it waits for a batch is not run, and counts as CANCELLED", async () => {
    const target = await start({ batching: { maxBatchSize: 64, batchTimeoutMicros: 300_000, maxQueuedRequests: 8 } });
    const c = client(target);
    const req = {
      model_spec: { name: "mnist" },
      inputs: { image: { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, tensor_content: Buffer.from(samplePixels(1).buffer) } },
    };
    const call = c.Predict(req, { deadline: Date.now() + 10_000 }, () => {});
    call.on("error", () => {});
    await new Promise((r) => setTimeout(r, 100));
    call.cancel();
    await new Promise((r) => setTimeout(r, 400));
    const text = await server!.metrics.render();
    expect(text).toMatch(/^mlp_serving_requests_total\{model="mnist",version="",api="predict",protocol="grpc",code="CANCELLED"\} 1$/m);
    // The batch came up empty: nothing ran.
    expect(text).not.toMatch(/^mlp_serving_batch_size_count/m);
    // Calls that finish normally are not counted as cancelled afterwards.
    const [err] = await predict(c, req);
    expect(err).toBeNull();
    expect(await server!.metrics.render()).toMatch(/code="CANCELLED"\} 1$/m);
  });
});
