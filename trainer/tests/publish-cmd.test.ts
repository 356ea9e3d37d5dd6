/**
 * `mlp publish` into a local (or mounted) model base: the copy, the rewritten metadata, bad
 * inputs that publish nothing, concurrent publishers (in one process and in several), and a
 * reader polling like the model server that must never see a half-written version.
 * Publishing to S3 (a real MinIO) is in publish-s3.test.ts; an unreachable endpoint is here.
 */
import { execFile, spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { publishModelVersion } from "../src/export/publish";
import { createMnistModel } from "../src/model/mnist";
import { publishLocal } from "../src/pipeline/publish";
import { LocalStorage } from "../src/serve/storage";
import { closedPort } from "./fixtures/fake-s3";
import { captureIo, list, tempDir } from "./fixtures/tmp";

const TRAINER = path.resolve(__dirname, "..");

let dir: string;
let cleanup: () => Promise<void>;
/** An exported version in a staging area, as train-mnist leaves it. */
let staged: string;
let stagedFiles: Record<string, Buffer>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir("publish-cmd"));
  const model = createMnistModel({ hiddenUnits: 8, filters: [2, 2], seed: 1 });
  const v = await publishModelVersion({
    modelBase: path.join(dir, "staging"),
    name: "staged",
    model,
    metadata: {
      modelType: "layers",
      signatures: {
        serving_default: {
          methodName: "tensorflow/serving/predict",
          inputs: { images: { dtype: "float32", shape: [-1, 28, 28, 1] } },
          outputs: { probabilities: { dtype: "float32", shape: [-1, 10] } },
        },
      },
      labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
      metrics: { testAccuracy: 0.97 },
    },
  });
  model.dispose();
  staged = v.dir;
  stagedFiles = {};
  for (const f of await fs.readdir(staged)) stagedFiles[f] = await fs.readFile(path.join(staged, f));
});
afterAll(() => cleanup());

async function publish(args: string[], env: NodeJS.ProcessEnv = {}) {
  const c = captureIo(env);
  const code = await main(["publish", ...args], c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** Checks that `<versionDir>` is a complete copy of the staged version, published as `name`/`version`. */
async function expectCompleteCopy(versionDir: string, name: string, version: number) {
  expect((await list(versionDir)).sort()).toEqual(Object.keys(stagedFiles).sort());
  for (const [f, bytes] of Object.entries(stagedFiles)) {
    const got = await fs.readFile(path.join(versionDir, f));
    if (f === "metadata.json") {
      const want = { ...JSON.parse(bytes.toString("utf8")), name, version };
      expect(JSON.parse(got.toString("utf8"))).toEqual(want);
    } else {
      expect(got.equals(bytes), `${versionDir}/${f}`).toBe(true);
    }
  }
}

describe("mlp publish to a local model base", () => {
  it("copies the version to the next number, rewriting metadata.json's name and version", async () => {
    const base = path.join(dir, "models");
    await fs.mkdir(base);
    const resultFile = path.join(dir, "out", "published.json");
    const r1 = await publish(["--from", staged, "--model-base", base, "--name", "digits", "--result-file", resultFile]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(JSON.parse(r1.stdout)).toEqual({ version: 1, uri: path.join(base, "digits", "1"), name: "digits" });
    expect(JSON.parse(await fs.readFile(resultFile, "utf8"))).toEqual({ version: 1, uri: path.join(base, "digits", "1") });
    expect(r1.stderr).toContain(`published ${staged} as digits version 1: ${path.join(base, "digits", "1")}`);
    await expectCompleteCopy(path.join(base, "digits", "1"), "digits", 1);
    const r2 = await publish(["--from", staged, "--model-base", base, "--name", "digits"]);
    expect(JSON.parse(r2.stdout).version).toBe(2);
    await expectCompleteCopy(path.join(base, "digits", "2"), "digits", 2);
    expect((await list(path.join(base, "digits"))).sort()).toEqual(["1", "2"]);
    expect(await new LocalStorage(path.join(base, "digits")).listVersions()).toEqual([1, 2]);
  });

  it("a missing model base is created (a fresh shared volume has no models/ yet); a bad --from creates nothing", async () => {
    const fresh = path.join(dir, "fresh-volume", "models");
    const bad = await publish(["--from", path.join(dir, "no-such-version"), "--model-base", fresh, "--name", "digits"]);
    expect(bad.code).toBe(1);
    expect(await list(path.join(dir, "fresh-volume"))).toEqual([]);
    const r = await publish(["--from", staged, "--model-base", fresh, "--name", "digits"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`created the model base ${fresh}`);
    expect(JSON.parse(r.stdout)).toEqual({ version: 1, uri: path.join(fresh, "digits", "1"), name: "digits" });
    await expectCompleteCopy(path.join(fresh, "digits", "1"), "digits", 1);
  });

  it("a model base that is a file: exit 1, nothing published", async () => {
    const file = path.join(dir, "a-file");
    await fs.writeFile(file, "x");
    const f = await publish(["--from", staged, "--model-base", file, "--name", "digits"]);
    expect(f.code).toBe(1);
    expect(f.stderr).toContain(`model base ${file} is not a directory; nothing was published`);
  });

  it("an unwritable model base: exit 1 naming it, nothing left behind", async (ctx) => {
    const base = path.join(dir, "read-only");
    await fs.mkdir(base);
    // Root ignores permission bits; the immutable attribute stops root too.
    let undo: () => void;
    if (process.getuid?.() === 0) {
      if (spawnSync("chattr", ["+i", base]).status !== 0) {
        console.log("SKIPPED unwritable base: running as root and chattr +i is not available");
        return ctx.skip();
      }
      undo = () => spawnSync("chattr", ["-i", base]);
    } else {
      await fs.chmod(base, 0o555);
      undo = () => spawnSync("chmod", ["755", base]);
    }
    try {
      const r = await publish(["--from", staged, "--model-base", base, "--name", "digits"]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^mlp publish: ${path.join(base, "digits")}: cannot publish a new version: (EACCES|EPERM): .*; nothing was published$`));
      expect(await list(base)).toEqual([]);
    } finally {
      undo();
    }
  });

  it("an incomplete or invalid source version: exit 1, nothing published", async () => {
    const base = path.join(dir, "models-bad-source");
    await fs.mkdir(base);
    const src = path.join(dir, "bad-source");
    const expectRefused = async (message: string) => {
      const r = await publish(["--from", src, "--model-base", base, "--name", "digits"]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`mlp publish: ${message}`);
      expect(await list(path.join(base, "digits"))).toEqual([]);
    };
    await expectRefused(`--from ${src}: not a directory; give a version directory such as <model-base>/<name>/1`);
    await fs.cp(staged, src, { recursive: true });
    await fs.rm(path.join(src, "metadata.json"));
    await expectRefused(`${src}/metadata.json: not found; --from must be a version directory with model.json and metadata.json`);
    await fs.writeFile(path.join(src, "metadata.json"), JSON.stringify({ format: "mlplatform.model/v1", name: "x", version: 0 }));
    await expectRefused(`${src}/metadata.json: invalid model metadata: version must be a positive integer; got 0`);
    await fs.writeFile(path.join(src, "metadata.json"), stagedFiles["metadata.json"]!);
    await fs.rm(path.join(src, "weights.bin"));
    await expectRefused(`${src}/model.json: names weights file weights.bin, which is missing from ${src}`);
  });

  it("an unreachable S3 model base: exit 1 naming the endpoint", async () => {
    const port = await closedPort();
    const r = await publish(["--from", staged, "--model-base", "s3://models", "--name", "digits", "--s3-endpoint", `http://127.0.0.1:${port}`], {
      AWS_ACCESS_KEY_ID: "k",
      AWS_SECRET_ACCESS_KEY: "s",
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(new RegExp(`^mlp publish: s3://models/digits: cannot reach S3 at http://127.0.0.1:${port}: .*ECONNREFUSED.*; nothing was published$`));
  });

  it("bad usage exits 2", async () => {
    const r = await publish(["--from", staged, "--model-base", dir, "--name", "../evil"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--name must match");
    expect((await publish(["--from", staged, "--name", "x"])).stderr).toBe(
      "mlp publish: --model-base is required: root of published models; a missing directory is created\nRun 'mlp publish --help' for its flags.\n",
    );
  });
});

describe("concurrent publishers and readers (local)", () => {
  it("publishers in one process get distinct versions and leave no temporary directory", async () => {
    const base = path.join(dir, "concurrent");
    await fs.mkdir(base);
    const results = await Promise.all(Array.from({ length: 6 }, () => publishLocal(base, { from: staged, name: "digits" })));
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const r of results) await expectCompleteCopy(r.uri, "digits", r.version);
    expect((await list(path.join(base, "digits"))).sort()).toEqual(["1", "2", "3", "4", "5", "6"]);
  });

  it("publishers in separate processes get distinct versions", async () => {
    const base = path.join(dir, "processes");
    await fs.mkdir(base);
    const run = promisify(execFile);
    const outs = await Promise.all(
      [1, 2, 3].map(() => run(process.execPath, ["--import", "tsx", "src/cli.ts", "publish", "--from", staged, "--model-base", base, "--name", "digits"], { cwd: TRAINER })),
    );
    const versions = outs.map((o) => JSON.parse(o.stdout).version as number).sort();
    expect(versions).toEqual([1, 2, 3]);
    for (const v of versions) await expectCompleteCopy(path.join(base, "digits", String(v)), "digits", v);
  });

  it("a server-like reader never sees a half-written version", async () => {
    const base = path.join(dir, "reader");
    await fs.mkdir(base);
    const storage = new LocalStorage(path.join(base, "digits"));
    let done = false;
    let polls = 0;
    const seen = new Set<number>();
    const problems: string[] = [];
    const reader = (async () => {
      // The pass that starts after the publishers finished is the last one.
      for (let last = false; !last;) {
        last = done;
        for (const v of await storage.listVersions()) {
          seen.add(v);
          for (const [f, bytes] of Object.entries(stagedFiles)) {
            const got = await storage.readFile(v, f).catch((e: Error) => e);
            if (got instanceof Error) problems.push(`version ${v}: ${f}: ${got.message}`);
            else if (f !== "metadata.json" && !got.equals(bytes)) problems.push(`version ${v}: ${f} differs`);
            else if (f === "metadata.json" && JSON.parse(got.toString("utf8")).version !== v) problems.push(`version ${v}: metadata says ${got.toString("utf8")}`);
          }
        }
        polls++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    // Pauses widen the window in which a non-atomic publisher would be caught.
    const pause = () => new Promise<void>((r) => setTimeout(r, 30));
    await Promise.all(Array.from({ length: 4 }, () => publishLocal(base, { from: staged, name: "digits", onStep: pause })));
    done = true;
    await reader;
    expect(problems).toEqual([]);
    expect(polls).toBeGreaterThan(10);
    expect([...seen].sort()).toEqual([1, 2, 3, 4]);
  });
});
