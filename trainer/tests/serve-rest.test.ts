/**
 * The REST API against a real server on 127.0.0.1:0: model status, metadata, predict in
 * both JSON forms, classify, errors with TF Serving's statuses, metrics, no tensor leaks.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { DIGIT_LABELS, mnistDense, mnistMetadata, nestedImages, publishVersion, referencePredict, samplePixels, twoHeaded, TWO_HEADED_SIGNATURE } from "./fixtures/serve-model";

let tf: Tf;
let base: string;
let model: TF.LayersModel;
let two: TF.LayersModel;
let server: RunningServer | undefined;

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  base = await fs.mkdtemp(path.join(os.tmpdir(), "serve-rest-"));
  model = mnistDense(tf, 7);
  two = twoHeaded(tf, 3);
  await publishVersion(tf, path.join(base, "mnist"), 1, model, mnistMetadata("mnist", 1));
  await publishVersion(tf, path.join(base, "two"), 4, two, {
    ...mnistMetadata("two", 4),
    signatures: { serving_default: TWO_HEADED_SIGNATURE },
    preprocessing: undefined,
    labels: undefined,
  });
});

afterAll(async () => {
  model.dispose();
  two.dispose();
  await fs.rm(base, { recursive: true, force: true });
});

afterEach(async () => {
  await server?.stop(1000);
  server = undefined;
});

async function start(extra: Partial<Parameters<typeof startServer>[0]> = {}): Promise<string> {
  server = await startServer({
    models: [
      { name: "mnist", basePath: path.join(base, "mnist"), versionLabels: { stable: 1, future: 9 } },
      { name: "two", basePath: path.join(base, "two") },
    ],
    host: "127.0.0.1",
    grpcPort: null,
    restPort: 0,
    pollIntervalMs: 0,
    log: () => {},
    tf,
    ...extra,
  });
  return `http://127.0.0.1:${server.restPort}`;
}

async function post(url: string, body: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(url, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

async function get(url: string): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(url);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

function expectClose(actual: number[], expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
}

describe("REST model status and metadata", () => {
  it("reports versions as TF Serving does", async () => {
    const url = await start();
    const ok = { version: "1", state: "AVAILABLE", status: { error_code: "OK", error_message: "" } };
    expect((await get(`${url}/v1/models/mnist`)).json).toEqual({ model_version_status: [ok] });
    expect((await get(`${url}/v1/models/mnist/versions/1`)).json).toEqual({ model_version_status: [ok] });
    expect((await get(`${url}/v1/models/mnist/labels/stable`)).json).toEqual({ model_version_status: [ok] });

    const missingVersion = await get(`${url}/v1/models/mnist/versions/2`);
    expect(missingVersion.status).toBe(404);
    expect(missingVersion.json.error).toBe("Could not find version 2 of model mnist");
    const missingModel = await get(`${url}/v1/models/nope`);
    expect(missingModel.status).toBe(404);
    expect(missingModel.json.error).toBe("Could not find any versions of model nope");
    const badLabel = await get(`${url}/v1/models/mnist/labels/canary`);
    expect(badLabel.status).toBe(400);
    expect(badLabel.json.error).toBe("Unrecognized servable version label: canary");
  });

  it("returns the signature_def map in proto3 JSON", async () => {
    const url = await start();
    const { status, json } = await get(`${url}/v1/models/mnist/metadata`);
    expect(status).toBe(200);
    expect(json.model_spec).toEqual({ name: "mnist", signature_name: "", version: "1" });
    const def = json.metadata.signature_def.signature_def.serving_default;
    expect(def.method_name).toBe("tensorflow/serving/predict");
    expect(def.inputs.image).toEqual({
      name: "image",
      dtype: "DT_FLOAT",
      tensor_shape: { dim: ["-1", "28", "28", "1"].map((size) => ({ size, name: "" })), unknown_rank: false },
    });
    expect(def.outputs.probabilities.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(["-1", "10"]);
    expect(json.metadata.mlplatform).toBeUndefined();
    const ext = await get(`${url}/v1/models/mnist/versions/1/metadata?include=mlplatform`);
    expect(ext.json.metadata.mlplatform.labels).toEqual(DIGIT_LABELS);
  });
});

describe("REST predict", () => {
  it("answers the row form with predictions equal to in-process model.predict", async () => {
    const url = await start();
    const pixels = samplePixels(3, 11);
    const expected = referencePredict(tf, model, pixels);
    const { status, json } = await post(`${url}/v1/models/mnist:predict`, { instances: nestedImages(pixels) });
    expect(status).toBe(200);
    expect(json.predictions).toHaveLength(3);
    expectClose(json.predictions.flat(), expected);

    // Named instances, a version in the path, a label in the path: the same answer.
    const named = await post(`${url}/v1/models/mnist/versions/1:predict`, {
      signature_name: "serving_default",
      instances: nestedImages(pixels).map((image) => ({ image })),
    });
    expect(named.json).toEqual(json);
    expect((await post(`${url}/v1/models/mnist/labels/stable:predict`, { instances: nestedImages(pixels) })).json).toEqual(json);
  });

  it("answers the columnar form with outputs", async () => {
    const url = await start();
    const pixels = samplePixels(2, 5);
    const expected = referencePredict(tf, model, pixels);
    const bare = await post(`${url}/v1/models/mnist:predict`, { inputs: nestedImages(pixels) });
    expect(bare.status).toBe(200);
    expectClose(bare.json.outputs.flat(), expected);
    const named = await post(`${url}/v1/models/mnist:predict`, { inputs: { image: nestedImages(pixels) } });
    expect(named.json).toEqual(bare.json);
  });

  it("shapes several outputs as TF Serving does", async () => {
    const url = await start();
    const a = [
      [1, 2, 3],
      [0.5, -1, 2],
    ];
    const b = [
      [0, 1],
      [2, 2],
    ];
    const ref = tf.tidy(() => (two.predict([tf.tensor2d(a), tf.tensor2d(b)]) as TF.Tensor[]).map((t) => t.arraySync() as number[][]));
    const rows = await post(`${url}/v1/models/two:predict`, {
      instances: [
        { a: a[0], b: b[0] },
        { a: a[1], b: b[1] },
      ],
    });
    expect(rows.status).toBe(200);
    expect(Object.keys(rows.json.predictions[0])).toEqual(["sum", "mix"]);
    rows.json.predictions.forEach((p: { sum: number[]; mix: number[] }, i: number) => {
      expect(p.sum[0]).toBeCloseTo(ref[0]![i]![0]!, 5);
      expect(p.mix[1]).toBeCloseTo(ref[1]![i]![1]!, 5);
    });
    const cols = await post(`${url}/v1/models/two:predict`, { inputs: { a, b } });
    expect(cols.status).toBe(200);
    expect(cols.json.outputs.sum).toHaveLength(2);
    expect(cols.json.outputs.mix[1][0]).toBeCloseTo(ref[1]![1]![0]!, 5);
  });

  it("classifies examples into labelled scores", async () => {
    const url = await start();
    const pixels = samplePixels(2, 9);
    const expected = referencePredict(tf, model, pixels);
    const examples = [0, 1].map((i) => ({ image: Array.from(pixels.subarray(i * 784, (i + 1) * 784)) }));
    const { status, json } = await post(`${url}/v1/models/mnist:classify`, { signature_name: "classify", examples });
    expect(status).toBe(200);
    expect(json.results).toHaveLength(2);
    expect(json.results[0].map((c: [string, number]) => c[0])).toEqual(DIGIT_LABELS);
    expectClose(
      json.results.flatMap((r: [string, number][]) => r.map((c) => c[1])),
      expected,
    );
  });
});

describe("REST errors", () => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ["malformed JSON", "mnist", "{not json", 400, /^JSON Parse error/],
    ["not an object", "mnist", [1, 2], 400, /must be a JSON object/],
    ["both forms", "mnist", { instances: [1], inputs: [1] }, 400, /only one of 'inputs' or 'instances'/],
    ["neither form", "mnist", { foo: 1 }, 400, /Missing 'inputs' or 'instances' key/],
    ["empty instances", "mnist", { instances: [] }, 400, /empty list/],
    ["wrong shape", "mnist", { instances: [[1, 2, 3]] }, 400, /expected a list|must have shape/],
    ["wrong dtype", "mnist", { inputs: { image: [[[["x"]]]] } }, 400, /expected a number/],
    ["non-finite", "mnist", { inputs: [[[[1e39]]]] }, 400, /not a finite float32|must have shape/],
    ["unknown input", "mnist", { inputs: { pixels: [1] } }, 400, /"pixels" is not an input/],
    ["unknown signature", "mnist", { signature_name: "nope", instances: [1] }, 400, /Serving signature key "nope" not found/],
    ["bad signature type", "mnist", { signature_name: 3, instances: [1] }, 400, /signature_name/],
    ["unknown model", "nope", { instances: [1] }, 404, /Servable not found for request: Latest\(nope\)/],
    ["ragged", "two", { inputs: { a: [[1, 2, 3], [1]], b: [[1, 2]] } }, 400, /ragged/],
    ["missing input", "two", { instances: [{ a: [1, 2, 3] }] }, 400, /missing input "b"/],
  ];
  it.each(cases)("%s", async (_what, name, body, status, message) => {
    const url = await start();
    const r = await post(`${url}/v1/models/${name}:predict`, body);
    expect(r.status).toBe(status);
    expect(Object.keys(r.json)).toEqual(["error"]);
    expect(r.json.error).toMatch(message);
  });

  it("rejects unknown versions, labels, paths and oversized bodies", async () => {
    const url = await start({ restMaxBodyBytes: 50_000 });
    const body = { instances: nestedImages(samplePixels(1)) };
    const v = await post(`${url}/v1/models/mnist/versions/3:predict`, body);
    expect([v.status, v.json.error]).toEqual([404, "Servable not found for request: Specific(mnist, 3)"]);
    const l = await post(`${url}/v1/models/mnist/labels/future:predict`, body);
    expect([l.status, l.json.error]).toEqual([404, "Servable not found for request: Specific(mnist, 9)"]);
    const p = await post(`${url}/v1/models/mnist:explode`, body);
    expect([p.status, p.json.error]).toEqual([400, "Malformed request: POST /v1/models/mnist:explode"]);
    const g = await get(`${url}/v2/anything`);
    expect(g.status).toBe(400);
    const big = await post(`${url}/v1/models/mnist:predict`, { instances: nestedImages(samplePixels(4)) });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatch(/larger than the limit/);
  });
});

describe("REST metrics and memory", () => {
  it("exports Prometheus metrics and leaks no tensors", async () => {
    const url = await start();
    const body = { instances: nestedImages(samplePixels(2)) };
    await post(`${url}/v1/models/mnist:predict`, body);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      await post(`${url}/v1/models/mnist:predict`, body);
      await post(`${url}/v1/models/mnist:predict`, { instances: [[1]] });
    }
    expect(tf.memory().numTensors).toBe(before);
    const res = await fetch(`${url}/monitoring/prometheus/metrics`);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^mlp_serving_requests_total\{model="mnist",version="1",api="predict",protocol="rest",code="OK"\} 21$/m);
    expect(text).toMatch(/^mlp_serving_errors_total\{model="mnist",version="",code="INVALID_ARGUMENT"\} 20$/m);
    expect(text).toMatch(/^mlp_serving_request_latency_seconds_bucket\{le="\+Inf",model="mnist",api="predict",protocol="rest"\} 41$/m);
    expect(text).toMatch(/^mlp_serving_batch_size_bucket\{le="2",model="mnist",version="1"\} 21$/m);
    expect(text).toMatch(/^mlp_serving_loaded_versions\{model="mnist"\} 1$/m);
    expect(text).toMatch(/^mlp_serving_model_version_state\{model="mnist",version="1",state="AVAILABLE"\} 1$/m);
    // TF Serving's names: 21 OK and 20 refused predicts, latencies in microseconds.
    expect(text).toMatch(/^:tensorflow:serving:request_count\{model_name="mnist",status="OK"\} 21$/m);
    expect(text).toMatch(/^:tensorflow:serving:request_count\{model_name="mnist",status="INVALID_ARGUMENT"\} 20$/m);
    expect(text).toMatch(/^:tensorflow:serving:request_latency_count\{model_name="mnist",API="predict",entrypoint="REST"\} 41$/m);
    expect(text).toMatch(/^:tensorflow:serving:runtime_latency_count\{model_name="mnist",API="predict",runtime="TFJS"\} 21$/m);
    const latencySum = Number(/^:tensorflow:serving:request_latency_sum\{model_name="mnist",API="predict",entrypoint="REST"\} (\S+)$/m.exec(text)?.[1]);
    const runtimeSum = Number(/^:tensorflow:serving:runtime_latency_sum\{model_name="mnist",API="predict",runtime="TFJS"\} (\S+)$/m.exec(text)?.[1]);
    expect(runtimeSum).toBeGreaterThan(0);
    expect(latencySum).toBeGreaterThan(runtimeSum);
    expect(text).toMatch(/^:tensorflow:serving:request_example_counts_count\{model_name="mnist"\} 21$/m);
    expect(text).toMatch(/^:tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]+",status="success"\} 1$/m);
    expect(text).toMatch(/^mlp_serving_inflight_requests 1$/m);
  });
});
