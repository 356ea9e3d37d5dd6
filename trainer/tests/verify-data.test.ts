/**
 * `mlp verify-data` on local IDX files and image folders: the summary it prints and writes,
 * and one clear message (naming the file) per kind of bad input. S3 over a real MinIO is in
 * publish-s3.test.ts; an unreachable endpoint is here.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { encodeIdxUint8 } from "../src/data/idx";
import { assignSet } from "../src/retrain/folder";
import { writeDigitFolder } from "./fixtures/image-folder";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { closedPort } from "./fixtures/fake-s3";
import { captureIo, tempDir } from "./fixtures/tmp";

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir("verify"));
});
afterAll(() => cleanup());

async function verify(args: string[], env: NodeJS.ProcessEnv = {}) {
  const c = captureIo(env);
  const code = await main(["verify-data", ...args], c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** Runs verify-data expecting exit 1 with `message`, as a message and not a stack trace. */
async function expectFailure(args: string[], message: string | RegExp, env: NodeJS.ProcessEnv = {}) {
  const r = await verify(args, env);
  expect(r.code, r.stderr).toBe(1);
  if (typeof message === "string") expect(r.stderr).toContain(`mlp verify-data: ${message}`);
  else expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe("");
}

describe("mlp verify-data on IDX files", () => {
  it("summarises a good dataset on stderr, stdout and in the result file", async () => {
    const data = path.join(dir, "idx");
    await writeMnistIdx(data, { train: 300, test: 100 });
    const result = path.join(dir, "out", "verify.json");
    const r = await verify(["--data", data, "--kind", "idx", "--result-file", result]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({
      kind: "idx",
      data,
      classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      train: { prefix: "train", count: 300, height: 28, width: 28, images: path.join(data, "train-images-idx3-ubyte") },
      test: { prefix: "t10k", count: 100, height: 28, width: 28 },
      warnings: [],
    });
    const perClass = summary.train.perClass as Record<string, number>;
    expect(Object.values(perClass).reduce((a, b) => a + b, 0)).toBe(300);
    expect(JSON.parse(await fs.readFile(result, "utf8"))).toEqual(summary);
    expect(r.stderr).toContain(`data ${data}: IDX, 10 classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)`);
    expect(r.stderr).toMatch(/ {2}train: 300 images of 28×28, 10 classes \(0: \d+, 1: \d+/);
    expect(r.stderr).toMatch(/ {2}t10k: 100 images of 28×28/);
  });

  it("detects gzipped IDX files without --kind", async () => {
    const data = path.join(dir, "gz");
    await writeMnistIdx(data, { train: 120, test: 40, gzip: true });
    const r = await verify(["--data", data]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ kind: "idx", train: { count: 120, images: path.join(data, "train-images-idx3-ubyte.gz") }, test: { count: 40 } });
  });

  it("a missing directory", async () => {
    const missing = path.join(dir, "nope");
    await expectFailure(["--data", missing], `${missing}: data directory does not exist`);
    await expectFailure(["--data", missing, "--kind", "idx"], `${missing}: data directory does not exist`);
  });

  it("an empty directory, or one with neither IDX files nor label folders", async () => {
    const empty = path.join(dir, "empty");
    await fs.mkdir(empty);
    await expectFailure(["--data", empty], `${empty}: neither IDX files (train-images-idx3-ubyte[.gz]) nor label folders (<label>/<image>) found; it is empty`);
    await fs.writeFile(path.join(empty, "README"), "hi");
    await expectFailure(["--data", empty], /found; it holds README$/m);
  });

  it("a missing test pair file", async () => {
    const half = path.join(dir, "half");
    await writeMnistIdx(half, { train: 50, test: 20 });
    await fs.rm(path.join(half, "t10k-labels-idx1-ubyte"));
    await expectFailure(["--data", half], `${half}/t10k-labels-idx1-ubyte: not found (nor t10k-labels-idx1-ubyte.gz)`);
  });

  it("a bad magic number, a truncated file, counts that disagree", async () => {
    const bad = path.join(dir, "bad");
    await writeMnistIdx(bad, { train: 50, test: 20 });
    const file = path.join(bad, "train-images-idx3-ubyte");
    const buf = await fs.readFile(file);
    buf[0] = 0x89;
    await fs.writeFile(file, buf);
    await expectFailure(["--data", bad, "--kind", "idx"], `${file}: not a valid IDX file: bad magic number 0x89000803`);

    const cut = path.join(dir, "cut");
    await writeMnistIdx(cut, { train: 50, test: 20 });
    await fs.truncate(path.join(cut, "t10k-images-idx3-ubyte"), 1000);
    await expectFailure(["--data", cut], `${cut}/t10k-images-idx3-ubyte: not a valid IDX file: truncated: dimensions [20, 28, 28] need 15696 bytes, file has 1000`);

    const a = path.join(dir, "mismatch");
    await writeMnistIdx(a, { train: 50, test: 20 });
    await fs.writeFile(path.join(a, "t10k-labels-idx1-ubyte"), encodeIdxUint8([19], new Uint8Array(19)));
    await expectFailure(["--data", a], `${a}/t10k-labels-idx1-ubyte: has 19 labels but ${a}/t10k-images-idx3-ubyte has 20 images`);
  });

  it("test images of another size than the training images", async () => {
    const d = path.join(dir, "sizes");
    await writeMnistIdx(d, { train: 50 });
    await fs.writeFile(path.join(d, "t10k-images-idx3-ubyte"), encodeIdxUint8([3, 14, 14], new Uint8Array(3 * 196)));
    await fs.writeFile(path.join(d, "t10k-labels-idx1-ubyte"), encodeIdxUint8([3], new Uint8Array([1, 2, 3])));
    await expectFailure(["--data", d], `${d}/t10k-images-idx3-ubyte: images are 14×14 but ${d}/train-images-idx3-ubyte has 28×28`);
  });

  it("training labels of a single class", async () => {
    const d = path.join(dir, "oneclass");
    await writeMnistIdx(d, { train: 50, test: 20 });
    await fs.writeFile(path.join(d, "train-labels-idx1-ubyte"), encodeIdxUint8([50], new Uint8Array(50).fill(4)));
    await expectFailure(["--data", d], `${d}/train-labels-idx1-ubyte: all 50 labels are 4; a classifier needs at least two classes`);
  });

  it("an unreachable S3 endpoint, naming the URL and endpoint", async () => {
    const port = await closedPort();
    await expectFailure(
      ["--data", "s3://data/mnist", "--s3-endpoint", `http://127.0.0.1:${port}`],
      new RegExp(`mlp verify-data: s3://data/mnist: cannot reach S3 at http://127.0.0.1:${port}: .*ECONNREFUSED`),
      { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" },
    );
  });

  it("bad usage exits 2", async () => {
    expect((await verify([])).code).toBe(2);
    const r = await verify(["--data", dir, "--kind", "csv"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`mlp verify-data: --kind must be one of idx, images, auto; got "csv"\nRun 'mlp verify-data --help' for its flags.\n`);
    const t = await verify(["--data", dir, "--validation-percent", "60", "--test-percent", "40"]);
    expect(t.code).toBe(2);
    expect(t.stderr).toBe(
      `mlp verify-data: --validation-percent plus --test-percent must leave room for training (< 100); got 60 + 40\nRun 'mlp verify-data --help' for its flags.\n`,
    );
  });
});

describe("mlp verify-data on image folders", () => {
  it("summarises labels, counts and the retrain split; all images decoded (PNG and RGB JPEG)", async () => {
    const images = path.join(dir, "images");
    await writeDigitFolder(images, { zero: 0, seven: 7 }, { perClass: 25, from: 5000 });
    await writeDigitFolder(images, { one: 1 }, { perClass: 25, from: 5000, format: "jpg" });
    await fs.writeFile(path.join(images, "notes.txt"), "ignored: not in a label folder");
    const r = await verify(["--data", images, "--result-file", path.join(dir, "images.json")]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ kind: "images", data: images, classes: ["one", "seven", "zero"], images: 75, perClass: { one: 25, seven: 25, zero: 25 } });
    // The split is retrain's: the same hash of <label>/<file>.
    const expected = { train: 0, validation: 0, test: 0 };
    for (const label of ["one", "seven", "zero"]) {
      for (const f of await fs.readdir(path.join(images, label))) expected[assignSet(label, f, 10, 10)]++;
    }
    expect(s.sets).toEqual(expected);
    expect(r.stderr).toContain(`data ${images}: image folders, 3 classes, 75 images (all decodable)`);
  });

  it("fewer than two label folders, or a label folder without images", async () => {
    const one = path.join(dir, "one-label");
    await writeDigitFolder(one, { zero: 0 }, { perClass: 3, from: 0 });
    await expectFailure(["--data", one, "--kind", "images"], `${one}: needs at least two label directories (<root>/<label>/*.jpg); found 1`);
    await fs.mkdir(path.join(one, "two"));
    await fs.writeFile(path.join(one, "two", "readme.md"), "no images here");
    await expectFailure(["--data", one, "--kind", "images"], `${path.join(one, "two")}: no images`);
  });

  it("an image that does not decode, naming the file", async () => {
    const broken = path.join(dir, "broken");
    await writeDigitFolder(broken, { a: 0, b: 1 }, { perClass: 4, from: 0 });
    const bad = path.join(broken, "b", "zz-broken.png");
    await fs.writeFile(bad, Buffer.from("definitely not a PNG"));
    await expectFailure(["--data", broken], new RegExp(`mlp verify-data: 1 of 9 images in ${broken} cannot be decoded: ${bad}: cannot decode image: `));
  });
});
