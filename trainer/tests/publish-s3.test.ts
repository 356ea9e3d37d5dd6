/**
 * The pipeline steps against a real MinIO on 127.0.0.1 (scripts/localcluster/up.sh --only
 * minio, in its own state directory): verify-data and evaluate reading s3://, and publish
 * writing s3:// — metadata.json last so a polling server (serve/storage.ts S3Storage) never
 * lists a half-uploaded version, conditional claims so concurrent publishers (in this process
 * and in others) get distinct numbers, and nothing left behind by a failed publish.
 *
 * Skipped, saying why, when the minio binary is not installed (scripts/tools/build.sh minio).
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { publishModelVersion } from "../src/export/publish";
import { resolveS3Options } from "../src/data/source";
import { createMnistModel } from "../src/model/mnist";
import { S3Location } from "../src/pipeline/location";
import { CLAIM_FILE, publishS3 } from "../src/pipeline/publish";
import { S3Storage } from "../src/serve/storage";
import { writeDigitFolder } from "./fixtures/image-folder";
import { haveMinio, minioClient, minioEnv, startMinio, stopMinio, TOOLS_BIN, uploadDir } from "./fixtures/minio";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { captureIo, tempDir } from "./fixtures/tmp";

const TRAINER = path.resolve(__dirname, "..");
if (!haveMinio) console.log(`SKIPPED publish-s3 tests: no minio binary in ${TOOLS_BIN} or PATH (scripts/tools/build.sh minio)`);

let dir: string;
let cleanup: () => Promise<void>;
let stateDir: string;
let env: Record<string, string>;
let s3: S3Client;
let staged: string;
let stagedFiles: Record<string, Buffer>;

function upload(bucket: string, prefix: string, localDir: string): Promise<void> {
  return uploadDir(s3, bucket, prefix, localDir);
}

async function run(args: string[]) {
  const c = captureIo(env);
  const code = await main(args, c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

function s3Options() {
  return resolveS3Options({}, env);
}

describe.skipIf(!haveMinio)("pipeline steps against a real MinIO", () => {
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("publish-s3"));
    stateDir = path.join(dir, "minio-state");
    env = minioEnv(startMinio(stateDir));
    s3 = minioClient(env);
    for (const b of ["data", "models"]) await s3.send(new CreateBucketCommand({ Bucket: b }));
    await writeMnistIdx(path.join(dir, "idx"), { train: 300, test: 200 });
    await upload("data", "mnist", path.join(dir, "idx"));
    await writeDigitFolder(path.join(dir, "images"), { "0": 0, "1": 1, "7": 7 }, { perClass: 30, from: 6000 });
    await upload("data", "images", path.join(dir, "images"));
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "images/smoke.jpg", Body: "a stray root file, not a label folder" }));

    const model = createMnistModel({ hiddenUnits: 8, filters: [2, 2], seed: 5 });
    staged = (
      await publishModelVersion({
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
          preprocessing: { kind: "image", height: 28, width: 28, channels: 1, range: [0, 1] },
          labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        },
      })
    ).dir;
    model.dispose();
    stagedFiles = {};
    for (const f of await fs.readdir(staged)) stagedFiles[f] = await fs.readFile(path.join(staged, f));
  });

  afterAll(async () => {
    s3?.destroy();
    if (stateDir) stopMinio(stateDir);
    await cleanup?.();
  });

  /** Every file of version `v` of `name` in s3://models equals the staged copy (metadata rewritten). */
  async function expectCompleteVersion(name: string, v: number): Promise<void> {
    const storage = new S3Storage(`s3://models/${name}`, s3Options());
    for (const [f, bytes] of Object.entries(stagedFiles)) {
      const got = await storage.readFile(v, f);
      if (f === "metadata.json") expect(JSON.parse(got.toString("utf8"))).toEqual({ ...JSON.parse(bytes.toString("utf8")), name, version: v });
      else expect(got.equals(bytes), `${name}/${v}/${f}`).toBe(true);
    }
  }

  describe("verify-data and evaluate read s3://", () => {
    it("verify-data: IDX files and image folders in S3", async () => {
      const idx = await run(["verify-data", "--data", "s3://data/mnist"]);
      expect(idx.code, idx.stderr).toBe(0);
      expect(JSON.parse(idx.stdout)).toMatchObject({
        kind: "idx",
        data: "s3://data/mnist",
        train: { count: 300, images: "s3://data/mnist/train-images-idx3-ubyte" },
        test: { count: 200 },
      });
      const images = await run(["verify-data", "--data", "s3://data/images"]);
      expect(images.code, images.stderr).toBe(0);
      expect(JSON.parse(images.stdout)).toMatchObject({ kind: "images", data: "s3://data/images", classes: ["0", "1", "7"], images: 90 });
    });

    it("verify-data: a missing prefix, a missing bucket, an undecodable image, each named by URL", async () => {
      const where = ` at ${env.AWS_ENDPOINT_URL_S3}`;
      let r = await run(["verify-data", "--data", "s3://data/nothing-here"]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n").pop()).toBe(`mlp verify-data: s3://data/nothing-here: no objects under this prefix${where}`);
      r = await run(["verify-data", "--data", "s3://no-such-bucket/mnist"]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n").pop()).toBe(`mlp verify-data: s3://no-such-bucket/mnist: bucket no-such-bucket does not exist${where}`);
      r = await run(["verify-data", "--data", "s3://data/mnist", "--test-prefix", "t20k"]);
      // Images and labels are read at once: either may be the one reported.
      expect(r.stderr.trim().split("\n").pop()).toMatch(/^mlp verify-data: s3:\/\/data\/mnist\/t20k-(images-idx3|labels-idx1)-ubyte: not found \(nor t20k-\1-ubyte\.gz\)$/);
      await upload("data", "broken-images", path.join(dir, "images"));
      await s3.send(new PutObjectCommand({ Bucket: "data", Key: "broken-images/7/bad.png", Body: "not a png" }));
      r = await run(["verify-data", "--data", "s3://data/broken-images"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("mlp verify-data: 1 of 91 images in s3://data/broken-images cannot be decoded: s3://data/broken-images/7/bad.png: cannot decode image");
    });

    it("evaluate: data and the model version in S3 give the same result as local copies", async () => {
      const local = await run(["evaluate", "--model", staged, "--data", path.join(dir, "idx"), "--gate", "0"]);
      expect(local.code, local.stderr).toBe(0);
      const fromS3 = await run(["evaluate", "--model", staged, "--data", "s3://data/mnist", "--gate", "0"]);
      expect(fromS3.code, fromS3.stderr).toBe(0);
      expect(JSON.parse(fromS3.stdout)).toMatchObject({ ...JSON.parse(local.stdout), data: "s3://data/mnist/t10k-images-idx3-ubyte" });
      const pub = await run(["publish", "--from", staged, "--model-base", "s3://models/eval", "--name", "m"]);
      expect(pub.code, pub.stderr).toBe(0);
      const modelInS3 = await run(["evaluate", "--model", "s3://models/eval/m/1", "--data", "s3://data/mnist", "--gate", "0"]);
      expect(modelInS3.code, modelInS3.stderr).toBe(0);
      expect(JSON.parse(modelInS3.stdout)).toMatchObject({ accuracy: JSON.parse(local.stdout).accuracy, model: "s3://models/eval/m/1", name: "m", version: 1 });
      const images = await run(["evaluate", "--model", staged, "--data", "s3://data/images", "--gate", "0", "--test-percent", "30"]);
      expect(images.code, images.stderr).toBe(0);
      expect(JSON.parse(images.stdout)).toMatchObject({ kind: "images", data: "s3://data/images" });
      const missing = await run(["evaluate", "--model", "s3://models/eval/m/9", "--data", "s3://data/mnist", "--gate", "0"]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain("mlp evaluate: s3://models/eval/m/9: no model version there (no objects)");
    });
  });

  describe("publish writes s3://", () => {
    it("--from s3:// (a sweep trial's version) publishes into a fresh local model base, claim file left out", async () => {
      const trial = await run(["publish", "--from", staged, "--model-base", "s3://models/sweeps/run-1/trial-0", "--name", "mnist"]);
      expect(trial.code, trial.stderr).toBe(0);
      const from = JSON.parse(trial.stdout).uri as string;
      expect(from).toBe("s3://models/sweeps/run-1/trial-0/mnist/1");
      const base = path.join(dir, "fresh-shared", "models");
      const best = await run(["publish", "--from", from, "--model-base", base, "--name", "mnist"]);
      expect(best.code, best.stderr).toBe(0);
      expect(JSON.parse(best.stdout)).toEqual({ version: 1, uri: path.join(base, "mnist", "1"), name: "mnist" });
      expect((await fs.readdir(path.join(base, "mnist", "1"))).sort()).toEqual(Object.keys(stagedFiles).sort());
      for (const f of Object.keys(stagedFiles).filter((f) => f !== "metadata.json")) {
        expect((await fs.readFile(path.join(base, "mnist", "1", f))).equals(stagedFiles[f]!), f).toBe(true);
      }
      expect(JSON.parse(await fs.readFile(path.join(base, "mnist", "1", "metadata.json"), "utf8"))).toMatchObject({ name: "mnist", version: 1 });
      const nothing = await run(["publish", "--from", "s3://models/sweeps/run-1/trial-9/mnist/1", "--model-base", base, "--name", "mnist"]);
      expect(nothing.code).toBe(1);
      expect(nothing.stderr).toContain("--from s3://models/sweeps/run-1/trial-9/mnist/1: no objects there");
    });

    it("uploads the version with metadata.json last; the server lists it only when complete", async () => {
      const loc = new S3Location("s3://models", s3Options());
      const storage = new S3Storage("s3://models/digits", s3Options());
      const order: string[] = [];
      const listedDuring: number[][] = [];
      const result = await publishS3(loc, {
        from: staged,
        name: "digits",
        concurrency: 1,
        onStep: async (what) => {
          order.push(what);
          listedDuring.push(await storage.listVersions());
        },
      });
      await loc.close();
      expect(result).toEqual({ version: 1, uri: "s3://models/digits/1", name: "digits" });
      expect(order.sort()).toEqual(
        Object.keys(stagedFiles)
          .filter((f) => f !== "metadata.json")
          .map((f) => `uploaded ${f}`)
          .sort(),
      );
      // While model.json and the weights were there but metadata.json was not, nothing was listed.
      expect(listedDuring.every((l) => l.length === 0)).toBe(true);
      expect(await storage.listVersions()).toEqual([1]);
      await expectCompleteVersion("digits", 1);
      const claim = JSON.parse((await new S3Location("s3://models/digits/1", s3Options()).read(CLAIM_FILE)).toString("utf8"));
      expect(claim).toMatchObject({ pid: process.pid, from: staged });

      const resultFile = path.join(dir, "published.json");
      const cli = await run(["publish", "--from", staged, "--model-base", "s3://models", "--name", "digits", "--result-file", resultFile]);
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout)).toEqual({ version: 2, uri: "s3://models/digits/2", name: "digits" });
      expect(JSON.parse(await fs.readFile(resultFile, "utf8"))).toEqual({ version: 2, uri: "s3://models/digits/2" });
      await expectCompleteVersion("digits", 2);
    });

    it("a polling reader never sees a half-written version while several publish at once", async () => {
      const storage = new S3Storage("s3://models/polled", s3Options());
      let done = false;
      let polls = 0;
      const problems: string[] = [];
      const seen = new Set<number>();
      const reader = (async () => {
        for (let last = false; !last;) {
          last = done;
          for (const v of await storage.listVersions()) {
            seen.add(v);
            for (const f of Object.keys(stagedFiles)) {
              const got = await storage.readFile(v, f).catch((e: Error) => e);
              if (got instanceof Error) problems.push(`version ${v}: ${f}: ${got.message}`);
            }
          }
          polls++;
        }
      })();
      const pause = () => new Promise<void>((r) => setTimeout(r, 40));
      const locs = [1, 2, 3].map(() => new S3Location("s3://models", s3Options()));
      const results = await Promise.all(locs.map((loc) => publishS3(loc, { from: staged, name: "polled", concurrency: 1, onStep: pause })));
      done = true;
      await reader;
      await Promise.all(locs.map((l) => l.close()));
      expect(problems).toEqual([]);
      expect(polls).toBeGreaterThan(3);
      expect(results.map((r) => r.version).sort()).toEqual([1, 2, 3]);
      expect([...seen].sort()).toEqual([1, 2, 3]);
      for (const v of [1, 2, 3]) await expectCompleteVersion("polled", v);
    });

    it("publishers in this process and in two others get distinct versions", async () => {
      const runFile = promisify(execFile);
      const children = [1, 2].map(() =>
        runFile(process.execPath, ["--import", "tsx", "src/cli.ts", "publish", "--from", staged, "--model-base", "s3://models", "--name", "racing"], {
          cwd: TRAINER,
          env: { ...process.env, ...env },
        }),
      );
      const locs = [1, 2, 3, 4].map(() => new S3Location("s3://models", s3Options()));
      const here = await Promise.all(locs.map((loc) => publishS3(loc, { from: staged, name: "racing" })));
      const there = (await Promise.all(children)).map((c) => JSON.parse(c.stdout) as { version: number });
      await Promise.all(locs.map((l) => l.close()));
      const versions = [...here, ...there].map((r) => r.version).sort((a, b) => a - b);
      expect(versions).toEqual([1, 2, 3, 4, 5, 6]);
      for (const v of versions) await expectCompleteVersion("racing", v);
    });

    it("a publisher working from a stale listing cannot write into a claimed version", async () => {
      const first = new S3Location("s3://models", s3Options());
      await publishS3(first, { from: staged, name: "stale" });
      // A second publisher that listed before version 1 existed.
      class StaleListing extends S3Location {
        override async list(): Promise<string[]> {
          return [];
        }
      }
      const stale = new StaleListing("s3://models", s3Options());
      const r = await publishS3(stale, { from: staged, name: "stale" });
      expect(r.version).toBe(2);
      await Promise.all([first.close(), stale.close()]);
      await expectCompleteVersion("stale", 1);
      await expectCompleteVersion("stale", 2);
    });

    it("a failure part-way removes what was uploaded and publishes nothing", async () => {
      const loc = new S3Location("s3://models", s3Options());
      let uploads = 0;
      const err = await publishS3(loc, {
        from: staged,
        name: "broken",
        concurrency: 1,
        onStep: () => {
          if (++uploads === 1) throw new Error("network went away");
        },
      }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe("s3://models/broken/1: cannot publish: network went away; nothing was published");
      expect(await loc.list("broken")).toEqual([]);
      // The number is free again.
      expect((await publishS3(loc, { from: staged, name: "broken" })).version).toBe(1);
      await loc.close();
    });

    it("a missing bucket: exit 1 naming it", async () => {
      const r = await run(["publish", "--from", staged, "--model-base", "s3://no-such-bucket/models", "--name", "digits"]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n").pop()).toBe(
        `mlp publish: s3://no-such-bucket/models/digits: bucket no-such-bucket does not exist at ${env.AWS_ENDPOINT_URL_S3}; nothing was published`,
      );
    });
  });
});
