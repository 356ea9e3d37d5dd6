/**
 * Version management: hot reload under load (zero failed requests, answers switch to the
 * new version), version policies, labels, failed and removed versions.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import type * as TF from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clientConstructors } from "../src/serve/protos";
import { aspiredVersions } from "../src/serve/manager";
import { startServer, type RunningServer, type ServerOptions } from "../src/serve/server";
import { loadBackend, type Tf } from "../src/serve/tf";
import { mnistDense, mnistMetadata, nestedImages, publishVersion, referencePredict, samplePixels } from "./fixtures/serve-model";

let tf: Tf;
let root: string;
const models: TF.LayersModel[] = [];
let server: RunningServer | undefined;
let client: grpc.Client | undefined;

beforeAll(async () => {
  tf = loadBackend(() => {}).tf;
  root = await fs.mkdtemp(path.join(os.tmpdir(), "serve-reload-"));
  for (const seed of [7, 99, 1234]) models.push(mnistDense(tf, seed));
});

afterAll(async () => {
  for (const m of models) m.dispose();
  await fs.rm(root, { recursive: true, force: true });
});

afterEach(async () => {
  client?.close();
  client = undefined;
  await server?.stop(2000);
  server = undefined;
});

async function modelDir(tag: string, versions: number[]): Promise<string> {
  const dir = path.join(root, tag);
  for (const v of versions) await publishVersion(tf, dir, v, models[v - 1]!, mnistMetadata("m", v));
  return dir;
}

async function start(dir: string, extra: Partial<ServerOptions["models"][number]> = {}, opts: Partial<ServerOptions> = {}): Promise<RunningServer> {
  server = await startServer({
    models: [{ name: "m", basePath: dir, ...extra }],
    host: "127.0.0.1",
    grpcPort: 0,
    restPort: 0,
    pollIntervalMs: 0,
    log: () => {},
    tf,
    ...opts,
  });
  return server;
}

function versions(s: RunningServer): { version: number; state: string }[] {
  return s.managers
    .get("m")!
    .status()
    .map(({ version, state }) => ({ version, state }));
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("version policy", () => {
  it("picks versions as TF Serving's policies do", () => {
    expect(aspiredVersions({ kind: "latest", numVersions: 1 }, [1, 2, 5])).toEqual([5]);
    expect(aspiredVersions({ kind: "latest", numVersions: 2 }, [1, 2, 5])).toEqual([2, 5]);
    expect(aspiredVersions({ kind: "latest", numVersions: 9 }, [1, 2])).toEqual([1, 2]);
    expect(aspiredVersions({ kind: "all" }, [1, 2, 5])).toEqual([1, 2, 5]);
    expect(aspiredVersions({ kind: "specific", versions: [2, 7] }, [1, 2, 5])).toEqual([2]);
    expect(aspiredVersions({ kind: "latest", numVersions: 1 }, [])).toEqual([]);
  });

  it("serves the highest version by default, and exactly the versions a policy names", async () => {
    const dir = await modelDir("policy", [1, 2, 3]);
    let s = await start(dir);
    expect(versions(s)).toEqual([{ version: 3, state: "AVAILABLE" }]);
    await s.stop();
    s = await start(dir, { versionPolicy: { kind: "latest", numVersions: 2 } });
    expect(s.managers.get("m")!.availableVersions()).toEqual([2, 3]);
    await s.stop();
    s = await start(dir, { versionPolicy: { kind: "specific", versions: [1, 3] }, versionLabels: { stable: 1, canary: 3 } });
    expect(s.managers.get("m")!.availableVersions()).toEqual([1, 3]);

    const pixels = samplePixels(1, 4);
    const url = `http://127.0.0.1:${s.restPort}/v1/models/m`;
    const predict = async (suffix: string): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${url}${suffix}:predict`, { method: "POST", body: JSON.stringify({ instances: nestedImages(pixels) }) });
      return { status: res.status, body: await res.json() };
    };
    const byVersion = (v: number): Float32Array => referencePredict(tf, models[v - 1]!, pixels);
    const latest = await predict("");
    latest.body.predictions[0].forEach((p: number, i: number) => expect(p).toBeCloseTo(byVersion(3)[i]!, 6));
    const stable = await predict("/labels/stable");
    stable.body.predictions[0].forEach((p: number, i: number) => expect(p).toBeCloseTo(byVersion(1)[i]!, 6));
    expect((await predict("/versions/2")).status).toBe(404);
  });
});

describe("health with several models", () => {
  it("a model with nothing published does not hold the others back; one whose versions all fail does", async () => {
    const dir = await modelDir("health-good", [1]);
    const broken = path.join(root, "health-broken", "1");
    await fs.mkdir(broken, { recursive: true });
    await fs.writeFile(path.join(broken, "model.json"), "{}");
    await fs.writeFile(path.join(broken, "metadata.json"), "{}");
    const opts = { host: "127.0.0.1", grpcPort: 0, restPort: null, pollIntervalMs: 0, log: () => {}, tf } as const;
    server = await startServer({
      ...opts,
      models: [
        { name: "m", basePath: dir },
        { name: "unpublished", basePath: path.join(root, "health-none") },
      ],
    });
    expect(server.health.get("")).toBe("SERVING");
    await server.stop(1000);
    server = await startServer({
      ...opts,
      models: [
        { name: "m", basePath: dir },
        { name: "broken", basePath: path.join(root, "health-broken") },
      ],
    });
    expect(server.health.get("")).toBe("NOT_SERVING");
    // Once the unpublished model gets a version it is loaded, and health stays SERVING.
    await server.stop(1000);
    server = await startServer({
      ...opts,
      models: [
        { name: "m", basePath: dir },
        { name: "late", basePath: path.join(root, "health-late") },
      ],
    });
    expect(server.health.get("")).toBe("SERVING");
    await publishVersion(tf, path.join(root, "health-late"), 2, models[1]!, mnistMetadata("late", 2));
    await server.reconcile();
    expect(server.managers.get("late")!.availableVersions()).toEqual([2]);
    expect(server.health.get("")).toBe("SERVING");
  });
});

describe("hot reload", () => {
  it("switches to a newly published version under load without failing a request", async () => {
    const dir = await modelDir("hot", [1]);
    const s = await start(dir, {}, { pollIntervalMs: 100 });
    const target = `127.0.0.1:${s.grpcPort}`;
    const rest = `http://127.0.0.1:${s.restPort}/v1/models/m:predict`;
    const { PredictionService } = clientConstructors();
    client = new PredictionService(target, grpc.credentials.createInsecure());
    const pixels = samplePixels(1, 21);
    const ref = [referencePredict(tf, models[0]!, pixels), referencePredict(tf, models[1]!, pixels)];
    const which = (values: number[]): number => {
      const d = ref.map((r) => Math.max(...values.map((v, i) => Math.abs(v - r[i]!))));
      return d[0]! < 1e-5 ? 1 : d[1]! < 1e-5 ? 2 : -1;
    };
    const tensor = { dtype: "DT_FLOAT", tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size })) }, float_val: Array.from(pixels) };
    const body = JSON.stringify({ instances: nestedImages(pixels) });

    interface Outcome {
      start: number;
      end: number;
      version: number;
      error?: string;
    }
    const outcomes: Outcome[] = [];
    let firstV2At = Infinity;
    const viaGrpc = (): Promise<Outcome> =>
      new Promise((resolve) => {
        const t = performance.now();
        (client as any).Predict({ model_spec: { name: "m" }, inputs: { image: tensor } }, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: any) => {
          if (err) return resolve({ start: t, end: performance.now(), version: 0, error: `${grpc.status[err.code]}: ${err.details}` });
          const v = Number(res.model_spec.version.value);
          const seen = which(res.outputs.probabilities.float_val);
          resolve({ start: t, end: performance.now(), version: seen === v ? v : -1, error: seen === v ? undefined : `version ${v} answered like ${seen}` });
        });
      });
    const viaRest = async (): Promise<Outcome> => {
      const t = performance.now();
      try {
        const res = await fetch(rest, { method: "POST", body });
        const json: any = await res.json();
        if (res.status !== 200) return { start: t, end: performance.now(), version: 0, error: `HTTP ${res.status} ${JSON.stringify(json)}` };
        return { start: t, end: performance.now(), version: which(json.predictions[0]) };
      } catch (e) {
        return { start: t, end: performance.now(), version: 0, error: String(e) };
      }
    };
    const stopAt = Date.now() + 20_000;
    let afterSwitch = 0;
    const worker = async (call: () => Promise<Outcome>): Promise<void> => {
      while (Date.now() < stopAt && afterSwitch < 60) {
        const o = await call();
        outcomes.push(o);
        if (o.version === 2) {
          firstV2At = Math.min(firstV2At, o.end);
          afterSwitch++;
        }
      }
    };
    const load = Promise.all([worker(viaGrpc), worker(viaGrpc), worker(viaRest), worker(viaRest)]);
    await waitFor("some v1 answers", () => outcomes.length >= 20);
    await publishVersion(tf, dir, 2, models[1]!, mnistMetadata("m", 2));
    await load;

    const failures = outcomes.filter((o) => o.error !== undefined || o.version < 1);
    expect(failures).toEqual([]);
    expect(outcomes.some((o) => o.version === 1)).toBe(true);
    expect(afterSwitch).toBeGreaterThanOrEqual(60);
    // Every request sent after the first v2 answer was answered by v2.
    expect(outcomes.filter((o) => o.start > firstV2At && o.version !== 2)).toEqual([]);
    await waitFor("v1 unloaded", () => versions(s).some((v) => v.version === 1 && v.state === "END"));
    expect(versions(s)).toEqual([
      { version: 2, state: "AVAILABLE" },
      { version: 1, state: "END" },
    ]);
  });

  it("keeps serving the old version when a new one fails to load, and reports why", async () => {
    const dir = await modelDir("broken", [1]);
    const s = await start(dir);
    await fs.mkdir(path.join(dir, "2"));
    await fs.writeFile(path.join(dir, "2", "model.json"), "{ not json");
    await fs.writeFile(path.join(dir, "2", "metadata.json"), JSON.stringify(mnistMetadata("m", 2)));
    await s.reconcile();
    const st = s.managers.get("m")!.status();
    expect(st.map((v) => [v.version, v.state])).toEqual([
      [2, "END"],
      [1, "AVAILABLE"],
    ]);
    expect(st[0]!.errorMessage).toMatch(/model.json is not valid JSON/);
    const res = await fetch(`http://127.0.0.1:${s.restPort}/v1/models/m/versions/2`);
    const json: any = await res.json();
    expect(json.model_version_status[0].status.error_code).toBe("UNKNOWN");
    expect(s.managers.get("m")!.latest()).toBe(1);
  });

  it("unloads a version removed from storage and frees its tensors", async () => {
    const baseline = tf.memory().numTensors;
    const dir = await modelDir("removed", [1, 2]);
    const s = await start(dir, { versionPolicy: { kind: "all" } });
    expect(s.managers.get("m")!.availableVersions()).toEqual([1, 2]);
    const loaded = tf.memory().numTensors;
    expect(loaded).toBeGreaterThan(baseline);
    await fs.rm(path.join(dir, "2"), { recursive: true });
    await s.reconcile();
    await waitFor("v2 unloaded", () => s.managers.get("m")!.status()[0]!.state === "END");
    expect(s.managers.get("m")!.availableVersions()).toEqual([1]);
    expect(tf.memory().numTensors).toBe(baseline + (loaded - baseline) / 2);
    await s.stop();
    server = undefined;
    expect(tf.memory().numTensors).toBe(baseline);
  });
});
