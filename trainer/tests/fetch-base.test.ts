/**
 * `mlp fetch-base` against a real HTTP server on 127.0.0.1 serving small base models made
 * here (a tfjs Layers model saved by tfjs, a tfjs Graph model written as a TF Hub feature
 * vector is laid out), and `mlp retrain` consuming what it fetched.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { parseMetadata } from "../src/metadata";
import { loadBaseModel } from "../src/retrain/base-model";
import { bottlenecks } from "../src/retrain/bottlenecks";
import { fetchBaseModel, formatBytes, siblingUrl, weightPaths } from "../src/retrain/fetch-base";
import { loadServable } from "../src/serve/servable";
import { LocalStorage } from "../src/serve/storage";
import { tf } from "../src/tf";
import { ModelServer, writeColourImages, writeGraphModel, writeLayersModel } from "./fixtures/base-models";
import { captureIo, list, tempDir } from "./fixtures/tmp";

/** sha256 of model.json followed by its weight files in manifest order. */
async function digestOf(dir: string): Promise<string> {
  const json = await fs.readFile(path.join(dir, "model.json"));
  const h = createHash("sha256").update(json);
  for (const p of weightPaths(dir, JSON.parse(json.toString("utf8")))) h.update(await fs.readFile(path.join(dir, p)));
  return h.digest("hex");
}

describe("mlp fetch-base", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let server: ModelServer;
  let origin: string;
  let root: string;
  const fetchBase = async (...args: string[]) => {
    const c = captureIo();
    const code = await main(["fetch-base", "--base-models", root, ...args], c.io);
    return { code, out: c.stdout(), err: c.stderr() };
  };
  /** Files under the cache root's `name` directory, recursively, relative to it. */
  const cacheFiles = async (name: string) => ((await fs.readdir(path.join(root, name), { recursive: true }).catch(() => [])) as string[]).sort();

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("fetch-base"));
    await writeLayersModel(path.join(dir, "served", "layers"));
    await writeGraphModel(path.join(dir, "served", "graph"));
  });
  afterAll(() => cleanup());

  beforeAll(async () => {
    server = new ModelServer(path.join(dir, "served"));
    origin = await server.start();
  });
  afterAll(() => server?.close());
  let n = 0;
  beforeEach(() => {
    // Every test starts from an empty cache and an untampered server.
    root = path.join(dir, `cache-${n++}`);
    server.truncate.clear();
    server.gzip.clear();
    server.requests.length = 0;
  });

  it("fetches a model, verifies its digest, records it, and a second fetch downloads nothing", async () => {
    const url = `${origin}/layers/model.json`;
    const sha = await digestOf(path.join(dir, "served", "layers"));
    const first = await fetchBase("--name", "tiny", "--url", url, "--sha256", sha);
    expect(first.err).toContain("digest verified");
    expect(first.code).toBe(0);
    const r = JSON.parse(first.out);
    expect(r).toMatchObject({ name: "tiny", sha256: sha, dir: path.join(root, "tiny", sha), cached: false, recorded: false });
    expect(server.requests).toEqual(["/layers/model.json", "/layers/weights.bin"]);
    expect(await cacheFiles("tiny")).toEqual([sha, `${sha}/base-model.json`, `${sha}/model.json`, `${sha}/weights.bin`, "current"]);
    expect(await digestOf(r.dir)).toBe(sha);
    expect((await fs.readFile(path.join(root, "tiny", "current"), "utf8")).trim()).toBe(sha);

    server.requests.length = 0;
    const again = await fetchBase("--name", "tiny", "--url", url, "--sha256", sha);
    expect(again.code).toBe(0);
    expect(again.err).toMatch(/already in .*; nothing to fetch/);
    expect(JSON.parse(again.out)).toMatchObject({ sha256: sha, cached: true, bytes: 0 });
    expect(server.requests).toEqual([]);

    // Named without --url (as the retrain pipeline's fetch-base step names it): the cached
    // model, no network; a different --sha256 is not silently accepted.
    const byName = await fetchBase("--name", "tiny");
    expect(byName.code, byName.err).toBe(0);
    expect(JSON.parse(byName.out)).toMatchObject({ name: "tiny", sha256: sha, dir: path.join(root, "tiny", sha), cached: true, bytes: 0 });
    expect(server.requests).toEqual([]);
    const other = await fetchBase("--name", "tiny", "--sha256", "ab".repeat(32));
    expect(other.code).toBe(2);
    expect(other.err).toContain('unknown base model "tiny"');
  });

  it("without a digest records the first one, and later fetches must match it", async () => {
    const url = `${origin}/graph/model.json?tfjs-format=file`;
    const first = await fetchBase("--name", "g", "--url", url, "--image-size", "8x8");
    expect(first.code).toBe(0);
    expect(first.err).toContain("this one is recorded");
    const sha = JSON.parse(first.out).sha256;
    expect(sha).toBe(await digestOf(path.join(dir, "served", "graph")));
    // Shards are fetched relative to model.json with its query kept (TF Hub serves files so).
    expect(server.requests).toEqual(["/graph/model.json?tfjs-format=file", "/graph/group1-shard1of2.bin?tfjs-format=file", "/graph/group1-shard2of2.bin?tfjs-format=file"]);
    expect(JSON.parse(await fs.readFile(path.join(root, "g", sha, "base-model.json"), "utf8"))).toMatchObject({ format: "graph", input: { height: 8, width: 8 }, url });

    server.requests.length = 0;
    expect((await fetchBase("--name", "g", "--url", url)).err).toContain("nothing to fetch");
    expect(server.requests).toEqual([]);

    // The published model changes: the recorded digest no longer matches.
    const copy = path.join(dir, "served", "graph2");
    await fs.cp(path.join(dir, "served", "graph"), copy, { recursive: true });
    await fs.appendFile(path.join(copy, "group1-shard2of2.bin"), new Uint8Array(4));
    await fs.rm(path.join(root, "g", sha), { recursive: true });
    const changed = await fetchBase("--name", "g", "--url", `${origin}/graph2/model.json`);
    expect(changed.code).toBe(1);
    expect(changed.err).toMatch(
      /but the digest recorded by the first fetch .* is [0-9a-f]{64}; nothing was cached\. The published model changed: pass --sha256 [0-9a-f]{64} to accept it/,
    );
    expect(await cacheFiles("g")).toEqual(["current"]);
  });

  it("hashes what tfjs reads: a gzip-encoded response is verified decoded", async () => {
    server.gzip.add("/graph/model.json");
    server.gzip.add("/graph/group1-shard2of2.bin");
    const sha = await digestOf(path.join(dir, "served", "graph"));
    const r = await fetchBase("--name", "g", "--url", `${origin}/graph/model.json`, "--sha256", sha, "--image-size", "8x8");
    expect(r.err).toContain("digest verified");
    expect(await fs.readFile(path.join(root, "g", sha, "model.json"))).toEqual(await fs.readFile(path.join(dir, "served", "graph", "model.json")));
  });

  it("a digest mismatch is an error and leaves nothing in the cache", async () => {
    const wrong = "0".repeat(64);
    const r = await fetchBase("--name", "tiny", "--url", `${origin}/layers/model.json`, "--sha256", wrong);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`content sha256 is [0-9a-f]{64}, but --sha256 is ${wrong}; nothing was cached`));
    expect(await cacheFiles("tiny")).toEqual([]);
    const again = await fetchBase("--name", "tiny", "--url", `${origin}/layers/model.json`, "--sha256", "xyz");
    expect(again.code).toBe(2);
    expect(again.err).toContain("--sha256 must be 64 hex digits");
  });

  it("an interrupted download (the server closes mid-body) leaves no cache entry", async () => {
    server.truncate.add("/graph/group1-shard2of2.bin");
    const r = await fetchBase("--name", "g", "--url", `${origin}/graph/model.json`, "--image-size", "8x8");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/group1-shard2of2\.bin: download interrupted after \d+ bytes of 48|got \d+ bytes, Content-Length said 48/);
    expect(await cacheFiles("g")).toEqual([]);
    // What a killed fetch leaves (a hidden temporary directory) goes once it is a day old; a younger one may be a fetch under way.
    const old = path.join(root, "g", ".tmp-fetch-1-dead");
    const young = path.join(root, "g", ".tmp-fetch-2-busy");
    await fs.mkdir(old);
    await fs.mkdir(young);
    const dayAgo = new Date(Date.now() - 25 * 3600 * 1000);
    await fs.utimes(old, dayAgo, dayAgo);
    server.truncate.clear();
    const cleaned = await fetchBase("--name", "g", "--url", `${origin}/graph/model.json`, "--image-size", "8x8");
    expect(cleaned.code).toBe(0);
    expect(cleaned.err).toContain(`removed ${old}, left by an interrupted fetch`);
    expect((await fs.readdir(path.join(root, "g"))).sort()).toEqual([".tmp-fetch-2-busy", "current", JSON.parse(cleaned.out).sha256].sort());
    await fs.rm(path.join(root, "g"), { recursive: true });
    // A missing file is an error too, naming the URL.
    const missing = await fetchBase("--name", "g", "--url", `${origin}/nothing/model.json`);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`GET ${origin}/nothing/model.json: HTTP 404`);
    expect(await cacheFiles("g")).toEqual([]);
  });

  it("reports bytes and total at a bounded rate", async () => {
    const lines: string[] = [];
    let t = 0;
    await fetchBaseModel({
      name: "g",
      url: `${origin}/graph/model.json`,
      root,
      log: (l) => lines.push(l),
      progressEveryMs: 1000,
      now: () => (t += 600), // each chunk "takes" 0.6 s: a line every other chunk at most
    });
    const progress = lines.filter((l) => / of /.test(l));
    const jsonBytes = (await fs.stat(path.join(dir, "served", "graph", "model.json"))).size;
    // One line: after model.json and the first shard (8 bytes of int32 axes); 48 bytes of weights to go.
    expect(progress).toHaveLength(1);
    expect(progress[0]).toMatch(/^g: .* at .*B\/s, group1-shard1of2\.bin$/);
    expect(progress[0]!.startsWith(`g: ${formatBytes(jsonBytes + 8)} of ${formatBytes(jsonBytes + 56)} (`)).toBe(true);
  });

  it("rejects unknown catalogue names, a --url without --name, and weight paths leaving the entry", async () => {
    expect((await fetchBase("--name", "nope")).err).toContain('unknown base model "nope"; catalogue: inception-v3, mobilenet-v2');
    expect((await fetchBase("--url", `${origin}/layers/model.json`)).err).toContain("--url needs --name");
    expect((await fetchBase("--name", "inception-v3", "--url", `${origin}/layers/model.json`)).err).toContain("is a catalogue model");
    expect(() => weightPaths("m", { weightsManifest: [{ paths: ["../evil.bin"] }] })).toThrow(/not a plain relative file name/);
    expect(siblingUrl("https://h/a/b/model.json?tfjs-format=file", "group1-shard1of2.bin")).toBe("https://h/a/b/group1-shard1of2.bin?tfjs-format=file");
    const list = await fetchBase("--list");
    expect(
      list.out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).name),
    ).toEqual(["inception-v3", "mobilenet-v2", "mobilenet-v1-0.25"]);
  });

  it("retrain takes a fetched Graph base by name, end to end, and the server loads the result", async () => {
    await writeColourImages(path.join(dir, "images"), 12);
    const fetched = await fetchBase("--name", "hub-like", "--url", `${origin}/graph/model.json`, "--image-size", "8x8");
    expect(fetched.code).toBe(0);
    const models = path.join(dir, "models-graph");
    const c = captureIo();
    const code = await main(
      [
        "retrain",
        "--images",
        path.join(dir, "images"),
        "--base-model",
        "hub-like",
        "--base-models",
        root,
        "--model-base",
        models,
        "--name",
        "colours",
        "--cache-dir",
        path.join(dir, "bottlenecks"),
        "--steps",
        "150",
        "--learning-rate",
        "0.1",
        "--batch-size",
        "8",
        "--hidden-units",
        "6",
        "--validation-percent",
        "0",
        "--test-percent",
        "25",
        "--progress",
        "none",
      ],
      c.io,
    );
    expect(c.stderr()).toMatch(/cut at feature_vector → features \[4\], input 8×8×3/);
    expect(code).toBe(0);
    const out = JSON.parse(c.stdout());
    expect(out.labels).toEqual(["blue", "green", "red"]);
    expect(out.metrics.testAccuracy).toBeGreaterThanOrEqual(0.9);
    const meta = parseMetadata("m", JSON.parse(await fs.readFile(path.join(out.dir, "metadata.json"), "utf8")));
    expect(meta.modelType).toBe("graph");
    expect(meta.training?.baseModel).toBe(JSON.parse(fetched.out).dir);

    // The model server's own loader: one red, one blue image, classified by the combined graph.
    const servable = await loadServable(tf, new LocalStorage(path.join(models, "colours")), "colours", out.version);
    try {
      const px = new Float32Array(2 * 8 * 8 * 3);
      for (let i = 0; i < 64; i++) {
        px.set([0.9, 0.1, 0.1], i * 3);
        px.set([0.1, 0.1, 0.9], 192 + i * 3);
      }
      const y = await servable.run("", { images: { dtype: "float32", shape: [2, 8, 8, 3], values: px } });
      const p = y.probabilities!.values as Float32Array;
      expect(y.probabilities!.shape).toEqual([2, 3]);
      expect(p[2]!).toBeGreaterThan(0.5); // red
      expect(p[3]!).toBeGreaterThan(0.5); // blue
    } finally {
      servable.dispose();
    }
  });

  it("retrain takes a fetched Layers base by name (bottleneck: the input of its last layer), and extraction leaks no tensors", async () => {
    await writeColourImages(path.join(dir, "images"), 12);
    const fetched = await fetchBase("--name", "small", "--url", `${origin}/layers/model.json`);
    expect(fetched.code).toBe(0);
    const baseDir = JSON.parse(fetched.out).dir as string;
    const before = tf.memory().numTensors;
    const base = await loadBaseModel(baseDir);
    const files = (await list(path.join(dir, "images", "red"))).map((f) => path.join(dir, "images", "red", f));
    const bn = await bottlenecks(files, base, path.join(dir, "bn-layers"));
    expect(bn.features[0]!.length).toBe(6);
    expect(base.bottleneckLayer).toBe("features");
    base.dispose();
    expect(tf.memory().numTensors).toBe(before);

    // A bottleneck recorded by fetch-base (as the catalogue's Layers entry records one) is retrain's default.
    const cut = await fetchBaseModel({ name: "cut", url: `${origin}/layers/model.json`, root, bottleneckLayer: "conv", log: () => {} });
    const cutBase = await loadBaseModel(cut.dir);
    expect([cutBase.bottleneckLayer, cutBase.featureShape]).toEqual(["conv", [6, 6, 6]]);
    cutBase.dispose();

    const c = captureIo();
    const code = await main(
      [
        "retrain",
        "--images",
        path.join(dir, "images"),
        "--base-model",
        "small",
        "--base-models",
        root,
        "--model-base",
        path.join(dir, "models-layers"),
        "--name",
        "colours",
        "--cache-dir",
        path.join(dir, "bottlenecks"),
        "--steps",
        "20",
        "--validation-percent",
        "0",
        "--test-percent",
        "25",
        "--progress",
        "none",
      ],
      c.io,
    );
    expect(c.stderr()).toContain(`base ${baseDir}`);
    expect(code).toBe(0);
    expect(parseMetadata("m", JSON.parse(await fs.readFile(path.join(JSON.parse(c.stdout()).dir, "metadata.json"), "utf8"))).modelType).toBe("layers");

    const unknown = captureIo();
    expect(await main(["retrain", "--images", path.join(dir, "images"), "--base-model", "never-fetched", "--base-models", root, "--model-base", dir], unknown.io)).toBe(2);
    expect(unknown.stderr()).toContain("fetch it first: mlp fetch-base --name never-fetched");
  });
});
