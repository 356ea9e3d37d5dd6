/** `mlp serve` flag parsing: TF Serving's flag names, policies, labels, config files. */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseServeArgs, parseVersionLabels, parseVersionPolicy } from "../src/commands/serve";

describe("serve flags", () => {
  it("takes TF Serving's flag names, with dashes or underscores", async () => {
    const { options, graceMs } = await parseServeArgs(
      [
        "--model_name=mnist",
        "--model-base-path",
        "/srv/m",
        "--port",
        "9000",
        "--rest-api-port=0",
        "--enable_batching",
        "--max_batch_size=16",
        "--model_version_policy=latest:2",
        "--version_labels=stable=1,canary=2",
        "--shutdown-grace-seconds=3",
      ],
      {},
    );
    expect(options.models).toEqual([{ name: "mnist", basePath: "/srv/m", versionPolicy: { kind: "latest", numVersions: 2 }, versionLabels: { stable: 1, canary: 2 } }]);
    expect(options.grpcPort).toBe(9000);
    expect(options.restPort).toBeNull();
    expect(options.batching).toEqual({ maxBatchSize: 16, batchTimeoutMicros: 2000, maxQueuedRequests: 1024 });
    expect(graceMs).toBe(3000);
  });

  it("defaults like the TF Serving image: MODEL_NAME, MODEL_BASE_PATH, ports 8500/8501", async () => {
    const { options } = await parseServeArgs([], { MODEL_NAME: "digits", MODEL_BASE_PATH: "s3://models/prod/" });
    expect(options.models[0]!.basePath).toBe("s3://models/prod/digits");
    expect([options.grpcPort, options.restPort, options.pollIntervalMs, options.batching]).toEqual([8500, 8501, 1000, undefined]);
    expect((await parseServeArgs(["--model_name=a"], {})).options.models[0]!.basePath).toBe(path.join("/models", "a"));
  });

  it("reads TF Serving's text-format config file, with its poll interval", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-args-"));
    const file = path.join(dir, "models.config");
    await fs.writeFile(file, 'model_config_list { config { name: "a" base_path: "a" version_labels { key: "stable" value: 2 } } }');
    const { options } = await parseServeArgs([`--model_config_file=${file}`, "--model_config_file_poll_wait_seconds=30"], {});
    expect(options.models).toEqual([{ name: "a", basePath: path.join(dir, "a"), versionPolicy: undefined, versionLabels: { stable: 2 } }]);
    expect(options.modelConfigFile).toBe(file);
    expect(options.modelConfigPollMs).toBe(30_000);
    expect((await parseServeArgs([`--model_config_file=${file}`], {})).options.modelConfigPollMs).toBe(0);
    await fs.writeFile(file, 'model_config_list { config { name: "a" }');
    await expect(parseServeArgs([`--model_config_file=${file}`], {})).rejects.toThrow(/^--model_config_file .*models\.config:1:\d+: missing "}"$/);
    await expect(parseServeArgs(["--model_name=a", "--model_config_file_poll_wait_seconds=5"], {})).rejects.toThrow(
      "--model_config_file_poll_wait_seconds needs --model_config_file",
    );
    await fs.rm(dir, { recursive: true });
  });

  it("reads several models from a JSON config file", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "serve-args-"));
    const file = path.join(dir, "models.json");
    await fs.writeFile(
      file,
      JSON.stringify({
        models: [
          { name: "a", basePath: "a" },
          { name: "b", basePath: "s3://x/b", versionPolicy: "specific:1,3", versionLabels: { stable: 3 } },
        ],
      }),
    );
    const { options } = await parseServeArgs([`--model_config_file=${file}`], {});
    expect(options.models).toEqual([
      { name: "a", basePath: path.join(dir, "a"), versionPolicy: undefined, versionLabels: undefined },
      { name: "b", basePath: "s3://x/b", versionPolicy: { kind: "specific", versions: [1, 3] }, versionLabels: { stable: 3 } },
    ]);
    await fs.writeFile(file, JSON.stringify({ models: [{ name: "a" }] }));
    await expect(parseServeArgs([`--model_config_file=${file}`], {})).rejects.toThrow("models[0].basePath must be a non-empty string");
    await fs.rm(dir, { recursive: true });
  });

  it("names the flag and the bad value in errors", async () => {
    expect(parseVersionPolicy("p", "all")).toEqual({ kind: "all" });
    expect(parseVersionPolicy("p", "latest")).toEqual({ kind: "latest", numVersions: 1 });
    expect(() => parseVersionPolicy("--model_version_policy", "latest:0")).toThrow('--model_version_policy must be latest:N (N ≥ 1), all, or specific:V1,V2,...; got "latest:0"');
    expect(() => parseVersionLabels("--version_labels", "stable=x")).toThrow('--version_labels must be LABEL=VERSION[,LABEL=VERSION...]; got "stable=x"');
    await expect(parseServeArgs([], {})).rejects.toThrow("give --model_name (or MODEL_NAME) or --model_config_file");
    await expect(parseServeArgs(["--model_name=a", "--port=0"], {})).rejects.toThrow('--port must be in [1, 65535] or "auto"; got "0"');
    await expect(parseServeArgs(["--model_name=a", "--rest_api_port=-1"], {})).rejects.toThrow('--rest_api_port must be in [0, 65535] or "auto" (0 disables); got "-1"');
    await expect(parseServeArgs(["--model_name=a", "--bogus"], {})).rejects.toThrow(/^unknown flag --bogus$/);
    await expect(parseServeArgs(["--model_name=a", "--rest-api-prot=1"], {})).rejects.toThrow(/^unknown flag --rest_api_prot; did you mean --rest_api_port\?$/);
    await expect(parseServeArgs(["--model_name=a", "--max_batch_size=0"], {})).rejects.toThrow(/^--max_batch_size must be an integer ≥ 1; got "0"$/);
  });
});
