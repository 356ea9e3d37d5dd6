import { spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { writeMnistIdx } from "./fixtures/mnist-idx";
import { closedPort } from "./fixtures/fake-s3";
import { captureIo, list, tempDir } from "./fixtures/tmp";

describe("mlp", () => {
  it("lists its commands and shows a command's usage", async () => {
    const c = captureIo();
    expect(await main(["--help"], c.io)).toBe(0);
    expect(c.stdout()).toMatch(/Usage: mlp <command>[\s\S]*train-mnist +train the MNIST-style CNN/);
    const u = captureIo();
    expect(await main(["train-mnist", "--help"], u.io)).toBe(0);
    expect(u.stdout()).toMatch(/--checkpoint-dir <dir>/);
  });

  it("exits 2 on an unknown command, flag, or a bad value, naming it once", async () => {
    const cases: [string[], string][] = [
      [["train-mnist", "--data", "x", "--model-base", "y", "--bogus"], "mlp train-mnist: unknown flag --bogus\nRun 'mlp train-mnist --help' for its flags.\n"],
      [
        ["train-mnist", "--data", "x", "--model-base", "y", "--batch-size", "0"],
        "mlp train-mnist: --batch-size must be an integer in [1, 65536]; got \"0\"\nRun 'mlp train-mnist --help' for its flags.\n",
      ],
      [["train-mnist", "--model-base", "y"], "mlp train-mnist: --data is required: directory or S3 prefix with the IDX files\nRun 'mlp train-mnist --help' for its flags.\n"],
      [
        ["train-mnist", "--data", "x", "--model-base", "y", "--steps", "5", "--epochs", "1"],
        "mlp train-mnist: give --steps or --epochs, not both\nRun 'mlp train-mnist --help' for its flags.\n",
      ],
      [
        ["train-mnist", "--data", "x", "--model-base", "y", "--ps-mode", "asnyc"],
        "mlp train-mnist: --ps-mode must be one of sync, async; got \"asnyc\"; did you mean async?\nRun 'mlp train-mnist --help' for its flags.\n",
      ],
      [
        ["retrain", "--images", "i", "--base-model", "b", "--model-base", "m", "--range", "1,0"],
        'mlp retrain: --range must be "lo,hi" with lo < hi, e.g. 0,1 or -1,1; got "1,0"\nRun \'mlp retrain --help\' for its flags.\n',
      ],
      [
        ["retrain", "--images", "i", "--base-model", "b", "--model-base", "m", "--metrics-prot", "1"],
        "mlp retrain: unknown flag --metrics-prot; did you mean --metrics-port?\nRun 'mlp retrain --help' for its flags.\n",
      ],
    ];
    for (const [argv, stderr] of cases) {
      const c = captureIo();
      expect(await main(argv, c.io), argv.join(" ")).toBe(2);
      expect(c.stderr()).toBe(stderr);
    }
    expect(await main([], captureIo().io)).toBe(2);
  });

  it("shows every flag of a command's table in its usage, once", async () => {
    const { COMMANDS } = await import("../src/commands");
    for (const entry of COMMANDS) {
      const command = await entry.load();
      if (!command.flags) throw new Error(`${entry.name} has no flag table`);
      for (const flag of Object.keys(command.flags)) {
        expect(command.usage.match(new RegExp(`^  --${flag}(?= |$)`, "gm")), `${entry.name} --${flag}`).toHaveLength(1);
      }
    }
  });

  it("prints its version, and a command's usage for `mlp help <command>`", async () => {
    const pkg = JSON.parse(await fs.readFile(path.resolve(__dirname, "../package.json"), "utf8")) as { version: string };
    const v = captureIo();
    expect(await main(["--version"], v.io)).toBe(0);
    expect(v.stdout()).toBe(`mlp ${pkg.version}\n`);
    const viaHelp = captureIo();
    expect(await main(["help", "publish"], viaHelp.io)).toBe(0);
    const viaFlag = captureIo();
    expect(await main(["publish", "--help"], viaFlag.io)).toBe(0);
    expect(viaHelp.stdout()).toBe(viaFlag.stdout());
    expect(viaHelp.stdout()).toMatch(/^Usage: mlp publish --from <dir\|s3:\/\/…> --model-base <dir\|s3:\/\/…> --name <model> \[flags\]\n/);
    const overview = captureIo();
    expect(await main(["help"], overview.io)).toBe(0);
    expect(overview.stdout()).toMatch(/^Usage: mlp <command>/);
  });

  it("suggests the closest command or flag, and prefixes each message once", async () => {
    const cases: [string[], string][] = [
      [["trian"], "mlp: unknown command \"trian\"; did you mean train-mnist?\nRun 'mlp --help' for the list of commands.\n"],
      [["help", "serv"], "mlp: unknown command \"serv\"; did you mean serve?\nRun 'mlp --help' for the list of commands.\n"],
      [["deploy"], "mlp: unknown command \"deploy\"\nRun 'mlp --help' for the list of commands.\n"],
      [["--versoin"], "mlp: unknown flag --versoin; did you mean --version?\nRun 'mlp --help' for the list of commands.\n"],
      [["--data", "x"], "mlp: unknown flag --data: give a command first\nRun 'mlp --help' for the list of commands.\n"],
      [["publish", "--form", "x"], "mlp publish: unknown flag --form; did you mean --from?\nRun 'mlp publish --help' for its flags.\n"],
      [
        ["publish", "--from", "x", "--name", "m"],
        "mlp publish: --model-base is required: root of published models; a missing directory is created\nRun 'mlp publish --help' for its flags.\n",
      ],
    ];
    for (const [argv, stderr] of cases) {
      const c = captureIo();
      expect(await main(argv, c.io), argv.join(" ")).toBe(2);
      expect(c.stderr()).toBe(stderr);
      expect(c.stdout()).toBe("");
    }
  });

  it("says which TensorFlow package is missing instead of a stack trace", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", "train-mnist", "--data", "x", "--model-base", "y"], {
      cwd: path.resolve(__dirname, ".."),
      env: { ...process.env, MLP_TFJS_BACKEND: "gpu" },
      encoding: "utf8",
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("mlp train-mnist: MLP_TFJS_BACKEND=gpu, but @tensorflow/tfjs-node-gpu is not installed");
  });
});

describe("mlp train-mnist on bad input publishes nothing", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let models: string;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("cli"));
    models = path.join(dir, "models");
  });
  afterAll(() => cleanup());

  async function expectFailure(args: string[], message: string | RegExp, env: NodeJS.ProcessEnv = {}) {
    const c = captureIo(env);
    const code = await main(["train-mnist", "--model-base", models, "--steps", "5", "--progress", "none", ...args], c.io);
    expect(code, c.stderr()).toBe(1);
    if (typeof message === "string") expect(c.stderr()).toContain(message);
    else expect(c.stderr()).toMatch(message);
    expect(c.stderr()).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(await list(path.join(models, "mnist"))).toEqual([]);
  }

  it("a missing directory or file", async () => {
    const missing = path.join(dir, "nope");
    await expectFailure(["--data", missing], `mlp train-mnist: ${missing}/train-images-idx3-ubyte: not found (nor train-images-idx3-ubyte.gz)`);
    const half = path.join(dir, "half");
    await writeMnistIdx(half, { train: 50 });
    await fs.rm(path.join(half, "train-labels-idx1-ubyte"));
    await expectFailure(["--data", half], `${half}/train-labels-idx1-ubyte: not found`);
  });

  it("a file with a bad magic number", async () => {
    const bad = path.join(dir, "bad");
    await writeMnistIdx(bad, { train: 50 });
    const file = path.join(bad, "train-images-idx3-ubyte");
    const buf = await fs.readFile(file);
    buf[0] = 0x89;
    await fs.writeFile(file, buf);
    await expectFailure(["--data", bad], `${file}: not a valid IDX file: bad magic number 0x89000803`);
  });

  it("a truncated file", async () => {
    const cut = path.join(dir, "cut");
    await writeMnistIdx(cut, { train: 50 });
    const file = path.join(cut, "train-images-idx3-ubyte");
    await fs.truncate(file, 1000);
    await expectFailure(["--data", cut], `${file}: not a valid IDX file: truncated: dimensions [50, 28, 28] need 39216 bytes, file has 1000`);
  });

  it("image and label counts that disagree", async () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    await writeMnistIdx(a, { train: 50 });
    await writeMnistIdx(b, { train: 40 });
    await fs.copyFile(path.join(b, "train-labels-idx1-ubyte"), path.join(a, "train-labels-idx1-ubyte"));
    await expectFailure(["--data", a], `${a}/train-labels-idx1-ubyte: has 40 labels but ${a}/train-images-idx3-ubyte has 50 images`);
  });

  it("an unreachable S3 endpoint", async () => {
    const port = await closedPort();
    await expectFailure(
      ["--data", "s3://data/mnist", "--s3-endpoint", `http://127.0.0.1:${port}`],
      new RegExp(`s3://data/mnist/train-(images|labels)-idx[13]-ubyte: cannot read at http://127.0.0.1:${port}: .*ECONNREFUSED`),
      { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" },
    );
  });

  it("an inconsistent TF_CONFIG, before touching the data", async () => {
    const tfConfig = JSON.stringify({ cluster: { chief: ["a:1", "b:1"] }, task: { type: "chief", index: 0 } });
    await expectFailure(["--data", path.join(dir, "nope")], /TF_CONFIG.cluster.chief lists 2 replicas; a TFJob has at most one Chief/, { TF_CONFIG: tfConfig });
  });

  it("accuracy below --min-accuracy", async () => {
    const good = path.join(dir, "good");
    await writeMnistIdx(good, { train: 200, test: 100 });
    await expectFailure(["--data", good, "--min-accuracy", "0.99"], /test accuracy 0\.\d+ is below --min-accuracy 0.99; no version was published/);
  });
});
