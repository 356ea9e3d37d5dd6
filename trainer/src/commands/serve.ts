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
import { startServer, type ServerOptions } from "../serve/server";
import { intFlag, parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const USAGE = `Usage: mlp serve [flags]

Serves the versions under <model_base_path>/<version>/ over gRPC (TF Serving's
PredictionService, ModelService, grpc.health.v1) and REST (/v1/models/...), reloading
when new versions appear. Image inputs (float32 [batch,h,w,c]) also take JPEG or PNG
bytes as a DT_STRING tensor (REST: {"b64": ...}), decoded per the model's preprocessing.
Prometheus metrics (TF Serving's names and mlp_serving_*) on
/monitoring/prometheus/metrics.

Model (one of):
  --model_name NAME              model name clients use (env MODEL_NAME)
  --model_base_path DIR          the model's directory, holding version dirs: a path
                                 or s3://bucket/prefix (endpoint and credentials from
                                 AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)
                                 (default \${MODEL_BASE_PATH:-/models}/NAME)
  --model_version_policy P       latest:N | all | specific:V1,V2  (default latest:1)
  --version_labels L=V,...       version labels, e.g. stable=1,canary=2
  --model_config_file FILE       several models: TF Serving's text format
                                 (model_config_list { config { name base_path
                                 model_platform model_version_policy version_labels } })
                                 or JSON {"models": [{"name", "basePath",
                                 "versionPolicy"?, "versionLabels"?}]}
  --model_config_file_poll_wait_seconds N
                                 re-read the config file this often and apply changes
                                 (default 0: read once)

A version directory holds a tfjs model (model.json + metadata.json) or a TensorFlow
SavedModel (saved_model.pb + variables/), told apart per version.

Network:
  --host ADDR                    interface to bind (default 0.0.0.0)
  --port N                       gRPC port (default 8500; "auto" picks a free one)
  --rest_api_port N              REST port (default 8501; 0 disables; "auto" picks one)
  --grpc_max_message_bytes N     largest gRPC message (default ${DEFAULT_MAX_MESSAGE_BYTES})
  --rest_api_max_body_bytes N    largest REST body (default 67108864)
  --rest_api_timeout_in_ms N     REST request time limit (default 30000)

Behaviour:
  --file_system_poll_wait_seconds N   storage check interval (default 1; 0 = load once)
  --enable_batching              batch concurrent requests server-side
  --max_batch_size N             examples per batch (default ${DEFAULT_BATCHING.maxBatchSize})
  --batch_timeout_micros N       wait for more requests (default ${DEFAULT_BATCHING.batchTimeoutMicros})
  --max_enqueued_requests N      queue bound before RESOURCE_EXHAUSTED (default ${DEFAULT_BATCHING.maxQueuedRequests})
  --max_request_batch N          largest dimension 0 of one request (default 4096)
  --shutdown_grace_seconds N     drain time on SIGTERM (default 20)`;

const FLAGS = {
  model_name: { type: "string" },
  model_base_path: { type: "string" },
  model_version_policy: { type: "string" },
  version_labels: { type: "string" },
  model_config_file: { type: "string" },
  model_config_file_poll_wait_seconds: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  rest_api_port: { type: "string" },
  grpc_max_message_bytes: { type: "string" },
  rest_api_max_body_bytes: { type: "string" },
  rest_api_timeout_in_ms: { type: "string" },
  file_system_poll_wait_seconds: { type: "string" },
  enable_batching: { type: "boolean" },
  max_batch_size: { type: "string" },
  batch_timeout_micros: { type: "string" },
  max_enqueued_requests: { type: "string" },
  max_request_batch: { type: "string" },
  shutdown_grace_seconds: { type: "string" },
} as const;

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

function port(flag: string, raw: string | undefined, fallback: number, zeroDisables: boolean): number | null {
  if (raw === undefined) return fallback;
  if (raw === "auto") return 0;
  const n = intFlag(flag, raw, 0, 65535)!;
  if (n === 0) {
    if (zeroDisables) return null;
    throw new UsageError(`--${flag} must be in [1, 65535] or "auto"; got 0`);
  }
  return n;
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
  const f = parseFlags("serve", underscoreFlags(args), FLAGS);
  let models: ModelConfig[];
  if (f.model_config_file) {
    if (f.model_name || f.model_base_path) throw new UsageError("--model_config_file cannot be combined with --model_name/--model_base_path");
    models = await readConfig(f.model_config_file);
  } else {
    const name = f.model_name ?? env.MODEL_NAME;
    if (!name) throw new UsageError("give --model_name (or MODEL_NAME) or --model_config_file (see mlp serve --help)");
    models = [
      {
        name,
        basePath: f.model_base_path ?? joinBase(env.MODEL_BASE_PATH ?? "/models", name),
        versionPolicy: f.model_version_policy ? parseVersionPolicy("--model_version_policy", f.model_version_policy) : undefined,
        versionLabels: f.version_labels ? parseVersionLabels("--version_labels", f.version_labels) : undefined,
      },
    ];
  }
  const batching: BatchingOptions | undefined = f.enable_batching
    ? {
        maxBatchSize: intFlag("max_batch_size", f.max_batch_size, 1) ?? DEFAULT_BATCHING.maxBatchSize,
        batchTimeoutMicros: intFlag("batch_timeout_micros", f.batch_timeout_micros, 0) ?? DEFAULT_BATCHING.batchTimeoutMicros,
        maxQueuedRequests: intFlag("max_enqueued_requests", f.max_enqueued_requests, 1) ?? DEFAULT_BATCHING.maxQueuedRequests,
      }
    : undefined;
  const poll = intFlag("file_system_poll_wait_seconds", f.file_system_poll_wait_seconds, 0) ?? 1;
  const configPoll = intFlag("model_config_file_poll_wait_seconds", f.model_config_file_poll_wait_seconds, 0) ?? 0;
  if (configPoll > 0 && !f.model_config_file) throw new UsageError("--model_config_file_poll_wait_seconds needs --model_config_file");
  return {
    options: {
      models,
      modelConfigFile: f.model_config_file ? path.resolve(f.model_config_file) : undefined,
      modelConfigPollMs: configPoll * 1000,
      host: f.host ?? "0.0.0.0",
      grpcPort: port("port", f.port, 8500, false),
      restPort: port("rest_api_port", f.rest_api_port, 8501, true),
      pollIntervalMs: poll * 1000,
      batching,
      grpcMaxMessageBytes: intFlag("grpc_max_message_bytes", f.grpc_max_message_bytes, 1024),
      restMaxBodyBytes: intFlag("rest_api_max_body_bytes", f.rest_api_max_body_bytes, 1024),
      restRequestTimeoutMs: intFlag("rest_api_timeout_in_ms", f.rest_api_timeout_in_ms, 1),
      maxRequestBatch: intFlag("max_request_batch", f.max_request_batch, 1),
    },
    graceMs: (intFlag("shutdown_grace_seconds", f.shutdown_grace_seconds, 0) ?? 20) * 1000,
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
  summary: "serve model versions over TF-Serving-compatible gRPC and REST APIs, hot-reloading new versions",
  usage: USAGE,
  run: (args, io) => run(args, io),
};

if (require.main === module) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Whatever still holds the event loop (keep-alive sockets, tf threads) must not delay exit.
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e: unknown) => {
      process.stderr.write(`mlp serve: ${e instanceof UsageError ? e.message : ((e as Error)?.stack ?? String(e))}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
