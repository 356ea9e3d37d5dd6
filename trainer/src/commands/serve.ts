/**
 * `mlp serve`: the TensorFlow-Serving-compatible model server. Flags use TF Serving's
 * names (`--port`, `--rest_api_port`, `--model_name`, `--model_base_path`, ...; dashes
 * work too), so a Deployment written for `tensorflow_model_server` needs few changes.
 *
 * SIGTERM/SIGINT: health turns NOT_SERVING, in-flight requests finish, the process exits
 * within `--shutdown_grace_seconds`. A second signal exits at once.
 */
import * as path from "node:path";
import { UsageError } from "../errors";
import type { BatchingOptions } from "../serve/batcher";
import { DEFAULT_BATCHING } from "../serve/batcher";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../serve/grpc";
import type { ModelConfig, VersionPolicy } from "../serve/manager";
import { ModelConfigError, policyFromString, readModelConfigFile } from "../serve/model-config";
import { DEFAULT_REST_MAX_BODY_BYTES, DEFAULT_REST_TIMEOUT_MS } from "../serve/rest";
import { startServer, type ServerOptions } from "../serve/server";
import { DEFAULT_SERVICE_OPTIONS } from "../serve/service";
import { commandUsage, defineFlags, parseFlags } from "../util/flags";
import type { Command, CommandIo } from "./command";

const MODEL_SECTION = "Model (one of --model_name or --model_config_file):";

/** TF Serving's flag names (dashes work too, see {@link underscoreFlags}). */
export const SERVE_FLAGS = defineFlags({
  model_name: { kind: "string", arg: "NAME", help: "model name clients use", defaultHelp: "$MODEL_NAME", section: MODEL_SECTION },
  model_base_path: {
    kind: "string",
    arg: "DIR",
    help: "the model's directory, holding version dirs: a path or s3://bucket/prefix (endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)",
    defaultHelp: "${MODEL_BASE_PATH:-/models}/NAME",
  },
  model_version_policy: {
    kind: "parsed",
    arg: "P",
    help: "latest:N | all | specific:V1,V2",
    defaultHelp: "latest:1",
    parse: (raw: string, flag: string) => parseVersionPolicy(flag, raw),
  },
  version_labels: { kind: "parsed", arg: "L=V,...", help: "version labels, e.g. stable=1,canary=2", parse: (raw: string, flag: string) => parseVersionLabels(flag, raw) },
  model_config_file: {
    kind: "string",
    arg: "FILE",
    help: `several models: TF Serving's text format (model_config_list { config { name base_path model_platform model_version_policy version_labels } }) or JSON {"models": [{"name", "basePath", "versionPolicy"?, "versionLabels"?}]}`,
  },
  model_config_file_poll_wait_seconds: { kind: "int", min: 0, arg: "N", default: 0, help: "re-read the config file this often and apply changes (0: read once)" },
  host: { kind: "string", arg: "ADDR", default: "0.0.0.0", help: "interface to bind", section: "Network:" },
  port: { kind: "parsed", arg: "N", default: 8500, help: 'gRPC port ("auto" picks a free one)', parse: (raw: string, flag: string) => portFlag(flag, raw, false) },
  rest_api_port: { kind: "parsed", arg: "N", default: 8501, help: 'REST port (0 disables; "auto" picks one)', parse: (raw: string, flag: string) => portFlag(flag, raw, true) },
  grpc_max_message_bytes: { kind: "int", min: 1024, arg: "N", default: DEFAULT_MAX_MESSAGE_BYTES, help: "largest gRPC message" },
  rest_api_max_body_bytes: { kind: "int", min: 1024, arg: "N", default: DEFAULT_REST_MAX_BODY_BYTES, help: "largest REST body" },
  rest_api_timeout_in_ms: { kind: "int", min: 1, arg: "N", default: DEFAULT_REST_TIMEOUT_MS, help: "REST request time limit" },
  file_system_poll_wait_seconds: { kind: "int", min: 0, arg: "N", default: 1, help: "storage check interval (0: load once)", section: "Behaviour:" },
  enable_batching: { kind: "boolean", help: "batch concurrent requests server-side" },
  max_batch_size: { kind: "int", min: 1, arg: "N", default: DEFAULT_BATCHING.maxBatchSize, help: "examples per batch" },
  batch_timeout_micros: { kind: "int", min: 0, arg: "N", default: DEFAULT_BATCHING.batchTimeoutMicros, help: "wait for more requests" },
  max_enqueued_requests: { kind: "int", min: 1, arg: "N", default: DEFAULT_BATCHING.maxQueuedRequests, help: "queue bound before RESOURCE_EXHAUSTED" },
  max_request_batch: { kind: "int", min: 1, arg: "N", default: DEFAULT_SERVICE_OPTIONS.maxRequestBatch, help: "largest dimension 0 of one request" },
  shutdown_grace_seconds: { kind: "int", min: 0, arg: "N", default: 20, help: "drain time on SIGTERM" },
});

const HELP = {
  synopsis: "[flags]",
  about: `Serves the versions under <model_base_path>/<version>/ over gRPC (TF Serving's
PredictionService, ModelService, grpc.health.v1) and REST (/v1/models/...), reloading
when new versions appear. Image inputs (float32 [batch,h,w,c]) also take JPEG or PNG
bytes as a DT_STRING tensor (REST: {"b64": ...}), decoded per the model's preprocessing.
Prometheus metrics (TF Serving's names and mlp_serving_*) on
/monitoring/prometheus/metrics.

A version directory holds a tfjs model (model.json + metadata.json) or a TensorFlow
SavedModel (saved_model.pb + variables/), told apart per version.`,
  notes: "Flags are TF Serving's names; --rest-api-port works as well as --rest_api_port.",
};

/** `latest:2`, `all`, `specific:1,3` → a policy; `where` names the flag or file in errors. */
export function parseVersionPolicy(where: string, raw: string): VersionPolicy {
  const p = policyFromString(raw);
  if (!p) throw new UsageError(`${where} must be latest:N (N ≥ 1), all, or specific:V1,V2,...; got ${JSON.stringify(raw)}`);
  return p;
}

/** `stable=1,canary=2` → `{ stable: 1, canary: 2 }`. */
export function parseVersionLabels(where: string, raw: string): Record<string, number> {
  const labels: Record<string, number> = {};
  for (const part of raw.split(",").filter((p) => p !== "")) {
    const m = /^([A-Za-z0-9_.-]+)=([1-9][0-9]*)$/.exec(part.trim());
    if (!m) throw new UsageError(`${where} must be LABEL=VERSION[,LABEL=VERSION...]; got ${JSON.stringify(part)}`);
    labels[m[1]!] = Number(m[2]);
  }
  return labels;
}

/** A port: 1-65535, "auto" (0: the system picks), or 0 to disable where `zeroDisables`. */
function portFlag(flag: string, raw: string, zeroDisables: boolean): number | null {
  if (raw === "auto") return 0;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535 || (n === 0 && !zeroDisables)) {
    throw new UsageError(`${flag} must be in [${zeroDisables ? 0 : 1}, 65535] or "auto"${zeroDisables ? " (0 disables)" : ""}; got ${JSON.stringify(raw)}`);
  }
  return n === 0 ? null : n;
}

async function readConfig(file: string): Promise<ModelConfig[]> {
  try {
    return await readModelConfigFile(file);
  } catch (e) {
    if (e instanceof ModelConfigError) throw new UsageError(e.message);
    throw e;
  }
}

/** `<base>/<name>` for a path or an `s3://` URL. */
function joinBase(base: string, name: string): string {
  return base.includes("://") ? `${base.replace(/\/+$/, "")}/${name}` : path.join(base, name);
}

/** Normalises `--rest-api-port` to `--rest_api_port` (TF Serving spells flags with underscores). */
function underscoreFlags(args: string[]): string[] {
  return args.map((a) => (a.startsWith("--") ? a.replace(/^--([^=]+)/, (_m, name: string) => `--${name.replace(/-/g, "_")}`) : a));
}

/** Parses the command line into server options (no I/O except `--model_config_file`). */
export async function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): Promise<{ options: ServerOptions; graceMs: number }> {
  const f = parseFlags(SERVE_FLAGS, underscoreFlags(args));
  let models: ModelConfig[];
  if (f.model_config_file) {
    if (f.model_name || f.model_base_path) throw new UsageError("--model_config_file cannot be combined with --model_name/--model_base_path");
    models = await readConfig(f.model_config_file);
  } else {
    const name = f.model_name ?? env.MODEL_NAME;
    if (!name) throw new UsageError("give --model_name (or MODEL_NAME) or --model_config_file");
    models = [
      {
        name,
        basePath: f.model_base_path ?? joinBase(env.MODEL_BASE_PATH ?? "/models", name),
        versionPolicy: f.model_version_policy,
        versionLabels: f.version_labels,
      },
    ];
  }
  const batching: BatchingOptions | undefined = f.enable_batching
    ? { maxBatchSize: f.max_batch_size, batchTimeoutMicros: f.batch_timeout_micros, maxQueuedRequests: f.max_enqueued_requests }
    : undefined;
  if (f.model_config_file_poll_wait_seconds > 0 && !f.model_config_file) throw new UsageError("--model_config_file_poll_wait_seconds needs --model_config_file");
  return {
    options: {
      models,
      modelConfigFile: f.model_config_file ? path.resolve(f.model_config_file) : undefined,
      modelConfigPollMs: f.model_config_file_poll_wait_seconds * 1000,
      host: f.host,
      // The table's defaults are ports, never "disabled".
      grpcPort: f.port!,
      restPort: f.rest_api_port,
      pollIntervalMs: f.file_system_poll_wait_seconds * 1000,
      batching,
      grpcMaxMessageBytes: f.grpc_max_message_bytes,
      restMaxBodyBytes: f.rest_api_max_body_bytes,
      restRequestTimeoutMs: f.rest_api_timeout_in_ms,
      maxRequestBatch: f.max_request_batch,
    },
    graceMs: f.shutdown_grace_seconds * 1000,
  };
}

/**
 * Runs the server until SIGTERM/SIGINT, then drains and resolves to the exit code.
 * `handleSignals: false` (tests) leaves the process's signal handlers alone.
 */
export async function run(args: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }, handleSignals = true): Promise<number> {
  const { options, graceMs } = await parseServeArgs(args, io.env);
  const log = (line: string): void => {
    io.stderr.write(`${new Date().toISOString()} serve: ${line}\n`);
  };
  const server = await startServer({ ...options, log });
  if (!handleSignals) return 0;
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (signalled) {
        log(`${sig} again: exiting now`);
        process.exit(1);
      }
      signalled = true;
      log(`${sig}: draining (grace ${graceMs} ms)`);
      const hardStop = setTimeout(() => {
        log("grace period over: exiting");
        process.exit(1);
      }, graceMs + 2000);
      hardStop.unref();
      server.stop(graceMs).then(
        () => {
          log("stopped");
          // Whatever still holds the event loop (idle sockets, native threads) must not
          // keep the pod past its grace period.
          setTimeout(() => process.exit(0), 1000).unref();
          resolve(0);
        },
        (e: unknown) => {
          log(`error while stopping: ${(e as Error)?.stack ?? String(e)}`);
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    // SIGHUP: re-read the model config file (if any) and check storage now.
    process.on("SIGHUP", () => void server.reloadModelConfig().then(() => server.reconcile()));
  });
}

export const command: Command = {
  name: "serve",
  flags: SERVE_FLAGS,
  usage: commandUsage("serve", SERVE_FLAGS, HELP),
  run: (args, io) => run(args, io),
};
