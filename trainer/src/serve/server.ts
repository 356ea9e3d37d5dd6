/**
 * The model server: model managers, the inference service, REST and gRPC front ends,
 * health and metrics, started and stopped together.
 */
import { promises as fs } from "node:fs";
import type { BatchingOptions } from "./batcher";
import { GrpcFrontEnd } from "./grpc";
import { HealthState } from "./health";
import { ModelManager, type ModelConfig, type VersionStatus } from "./manager";
import { ServingMetrics } from "./metrics";
import { parseModelConfig } from "./model-config";
import { HEALTH_SERVICE, MODEL_SERVICE, PREDICTION_SERVICE } from "./protos";
import { InFlight } from "./requests";
import { RestFrontEnd } from "./rest";
import { DEFAULT_SERVICE_OPTIONS, InferenceService } from "./service";
import { openStorage } from "./storage";
import { DEFAULT_TENSOR_LIMITS, type TensorLimits } from "./tensor";
import { loadBackend, type Tf } from "./tf";

export interface ServerOptions {
  readonly models: readonly ModelConfig[];
  /**
   * The file `models` came from (`--model_config_file`): re-read every
   * `modelConfigPollMs` and applied when it changes (models added, removed, their
   * policies and labels updated), as TF Serving's `--model_config_file_poll_wait_seconds`.
   */
  readonly modelConfigFile?: string;
  /** How often `modelConfigFile` is re-read, ms; 0 (default) reads it once. */
  readonly modelConfigPollMs?: number;
  /** Interface to bind. Default `0.0.0.0`; tests use `127.0.0.1`. */
  readonly host?: string;
  /** gRPC port; 0 picks one, `null` disables gRPC. Default 8500. */
  readonly grpcPort?: number | null;
  /** REST port; 0 picks one, `null` disables REST. Default 8501. */
  readonly restPort?: number | null;
  /** How often storage is checked for new versions, ms; 0 loads once. Default 1000. */
  readonly pollIntervalMs?: number;
  /** Server-side batching; off when undefined. */
  readonly batching?: BatchingOptions;
  /** Largest gRPC message, bytes (see `grpc.ts`). */
  readonly grpcMaxMessageBytes?: number;
  /** HTTP/2 receive window of each gRPC connection and stream, bytes. Default 1 MiB (see `grpc.ts`). */
  readonly grpcFlowControlWindowBytes?: number;
  /** Largest REST body, bytes. Default 64 MiB. */
  readonly restMaxBodyBytes?: number;
  /** REST request time limit, ms. Default 30 000. */
  readonly restRequestTimeoutMs?: number;
  /** Largest dimension 0 of one request. Default 4096. */
  readonly maxRequestBatch?: number;
  readonly tensorLimits?: Partial<TensorLimits>;
  /** How long a failed version waits before it is tried again, ms. Default 60 000. */
  readonly retryFailedMs?: number;
  readonly log?: (line: string) => void;
  /** The tf namespace; default: {@link loadBackend}. */
  readonly tf?: Tf;
}

export interface RunningServer {
  readonly grpcPort: number | undefined;
  readonly restPort: number | undefined;
  readonly service: InferenceService;
  readonly managers: ReadonlyMap<string, ModelManager>;
  readonly health: HealthState;
  readonly metrics: ServingMetrics;
  /** Runs one storage check of every model now (tests; `SIGHUP`). */
  reconcile(): Promise<void>;
  /**
   * Makes the served models those of `models`: new names get a manager (loaded before
   * this resolves), removed ones are unloaded once their requests finish, kept ones take
   * the new policy and labels (a changed base path replaces the manager).
   */
  applyModelConfig(models: readonly ModelConfig[]): Promise<void>;
  /** Re-reads `modelConfigFile` now and applies it (tests; what the poll does). */
  reloadModelConfig(): Promise<void>;
  /**
   * Graceful stop: health NOT_SERVING, refuse new requests, let in-flight ones finish
   * for up to `graceMs`, close both front ends, unload the models.
   */
  stop(graceMs?: number): Promise<void>;
}

const defaultLog = (line: string): void => {
  process.stderr.write(`${new Date().toISOString()} serve: ${line}\n`);
};

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.log ?? defaultLog;
  const tf = options.tf ?? loadBackend(log).tf;
  if (options.models.length === 0) throw new Error("serve: no models configured; give --model_name or --model_config_file");
  const names = new Set<string>();
  for (const m of options.models) {
    if (names.has(m.name)) throw new Error(`serve: model name "${m.name}" is configured twice`);
    names.add(m.name);
  }
  const metrics = new ServingMetrics();
  const health = new HealthState([PREDICTION_SERVICE, MODEL_SERVICE, HEALTH_SERVICE]);
  let stopping = false;
  const managers = new Map<string, ModelManager>();
  const updateHealth = (): void => {
    if (stopping) return;
    const ready = [...managers.values()].every((m) => m.ready());
    health.setAll(ready ? "SERVING" : "NOT_SERVING");
  };
  const onChange = (name: string, statuses: readonly VersionStatus[]): void => {
    // A replaced or removed manager's late events must not overwrite the current one's.
    if (!managers.has(name)) return;
    metrics.setVersionStates(name, statuses);
    updateHealth();
  };
  const onLoad = (name: string, _version: number, ok: boolean, seconds: number): void => {
    const basePath = managers.get(name)?.config.basePath ?? "";
    metrics.tfsLoadAttempts.inc({ model_path: basePath, status: ok ? "success" : "fail" });
    metrics.tfsLoadLatency.inc({ model_path: basePath }, seconds * 1e6);
  };
  const newManager = (m: ModelConfig): ModelManager => new ModelManager(tf, m, openStorage(m.basePath), { log, onChange, onLoad }, options.retryFailedMs);
  for (const m of options.models) managers.set(m.name, newManager(m));
  const pollMs = options.pollIntervalMs ?? 1000;
  const service = new InferenceService(managers, metrics, {
    maxRequestBatch: options.maxRequestBatch ?? DEFAULT_SERVICE_OPTIONS.maxRequestBatch,
    tensorLimits: { ...DEFAULT_TENSOR_LIMITS, ...options.tensorLimits },
    batching: options.batching,
  });
  const refreshMetrics = (): void => {
    metrics.tensors.set({}, tf.memory().numTensors);
    metrics.rss.set({}, process.memoryUsage.rss());
    metrics.queueDepth.set({}, service.batcher?.depth ?? 0);
  };

  const host = options.host ?? "0.0.0.0";
  // One count of requests in flight for both front ends: a drain waits for all of them.
  const requests = new InFlight(metrics.inflight);
  let grpc: GrpcFrontEnd | undefined;
  let rest: RestFrontEnd | undefined;
  let grpcPort: number | undefined;
  let restPort: number | undefined;
  try {
    await Promise.all([...managers.values()].map((m) => m.start(pollMs)));
    if (options.grpcPort !== null) {
      grpc = new GrpcFrontEnd(service, health, { maxMessageBytes: options.grpcMaxMessageBytes, flowControlWindowBytes: options.grpcFlowControlWindowBytes, log, requests });
      grpcPort = await grpc.bind(host, options.grpcPort ?? 8500);
    }
    if (options.restPort !== null) {
      rest = new RestFrontEnd(service, {
        maxBodyBytes: options.restMaxBodyBytes,
        requestTimeoutMs: options.restRequestTimeoutMs,
        log,
        refreshMetrics,
        requests,
      });
      restPort = await rest.listen(host, options.restPort ?? 8501);
    }
  } catch (err) {
    grpc?.server.forceShutdown();
    rest?.server.close();
    await Promise.all([...managers.values()].map((m) => m.stop()));
    throw err;
  }
  updateHealth();
  log(
    `listening: gRPC ${grpcPort === undefined ? "off" : `${host}:${grpcPort}`}, REST ${restPort === undefined ? "off" : `${host}:${restPort}`}; ` +
      `models: ${[...managers.values()].map((m) => `${m.name} [${m.availableVersions().join(",") || "no version yet"}]`).join(", ")}`,
  );

  // Config changes are applied one at a time, in order.
  let applying: Promise<void> = Promise.resolve();
  const applyModelConfig = (models: readonly ModelConfig[]): Promise<void> => {
    const step = async (): Promise<void> => {
      if (stopping) return;
      const seen = new Set<string>();
      for (const m of models) {
        if (seen.has(m.name)) throw new Error(`serve: model name "${m.name}" is configured twice`);
        seen.add(m.name);
      }
      const started: Promise<void>[] = [];
      const retired: ModelManager[] = [];
      for (const m of models) {
        const old = managers.get(m.name);
        if (old && old.config.basePath === m.basePath) {
          old.reconfigure(m);
          started.push(old.reconcile());
          continue;
        }
        // New, or moved: the new manager serves once loaded; the old one drains.
        const fresh = newManager(m);
        if (!old) managers.set(m.name, fresh);
        started.push(
          fresh.start(pollMs).then(() => {
            if (old) retired.push(old);
            managers.set(m.name, fresh);
            fresh.reconcile().catch(() => undefined);
            metrics.setVersionStates(m.name, fresh.status());
          }),
        );
        if (!old) log(`model config: serving new model ${m.name} from ${m.basePath}`);
        else log(`model config: model ${m.name} moves from ${old.config.basePath} to ${m.basePath}`);
      }
      await Promise.all(started);
      for (const [name, mgr] of managers) {
        if (seen.has(name)) continue;
        log(`model config: model ${name} removed; unloading it`);
        managers.delete(name);
        metrics.forgetModel(name);
        retired.push(mgr);
      }
      await Promise.all(retired.map((m) => m.stop()));
      updateHealth();
    };
    applying = applying.then(step, step);
    return applying;
  };
  let lastConfigText: string | undefined;
  const reloadModelConfig = async (): Promise<void> => {
    const file = options.modelConfigFile;
    if (!file) return;
    let text: string;
    try {
      text = await fs.readFile(file, "utf8");
    } catch (e) {
      log(`model config: cannot read ${file}: ${(e as Error).message}; keeping the current models`);
      return;
    }
    if (text === lastConfigText) return;
    let models: ModelConfig[];
    try {
      models = parseModelConfig(file, text);
    } catch (e) {
      log(`model config: ${(e as Error).message}; keeping the current models`);
      return;
    }
    lastConfigText = text;
    log(`model config: ${file} changed; applying ${models.length} model(s)`);
    await applyModelConfig(models);
  };
  let configTimer: NodeJS.Timeout | undefined;
  if (options.modelConfigFile) {
    lastConfigText = await fs.readFile(options.modelConfigFile, "utf8").catch(() => undefined);
    const every = options.modelConfigPollMs ?? 0;
    if (every > 0) {
      const tick = (): void => {
        configTimer = setTimeout(() => {
          void reloadModelConfig().finally(() => {
            if (!stopping) tick();
          });
        }, every);
        configTimer.unref();
      };
      tick();
    }
  }

  let stopped: Promise<void> | undefined;
  return {
    grpcPort,
    restPort,
    service,
    managers,
    health,
    metrics,
    reconcile: async () => {
      await Promise.all([...managers.values()].map((m) => m.reconcile()));
    },
    applyModelConfig,
    reloadModelConfig,
    stop(graceMs = 10_000) {
      stopped ??= (async () => {
        stopping = true;
        if (configTimer) clearTimeout(configTimer);
        await applying.catch(() => undefined);
        health.setAll("NOT_SERVING");
        await Promise.all([grpc?.shutdown(graceMs), rest?.shutdown(graceMs)]);
        await Promise.all([...managers.values()].map((m) => m.stop()));
      })();
      return stopped;
    },
  };
}
