/**
 * The model server: model managers, the inference service, REST and gRPC front ends,
 * health and metrics, started and stopped together.
 */
import type { BatchingOptions } from "./batcher";
import { GrpcFrontEnd } from "./grpc";
import { HealthState } from "./health";
import { ModelManager, type ModelConfig, type VersionStatus } from "./manager";
import { ServingMetrics } from "./metrics";
import { HEALTH_SERVICE, MODEL_SERVICE, PREDICTION_SERVICE } from "./protos";
import { RestFrontEnd } from "./rest";
import { DEFAULT_SERVICE_OPTIONS, InferenceService } from "./service";
import { openStorage } from "./storage";
import { DEFAULT_TENSOR_LIMITS, type TensorLimits } from "./tensor";
import { loadBackend, type Tf } from "./tf";

export interface ServerOptions {
  readonly models: readonly ModelConfig[];
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
    const ready = [...managers.values()].every((m) => m.latest() !== undefined);
    health.setAll(ready ? "SERVING" : "NOT_SERVING");
  };
  const onChange = (name: string, statuses: readonly VersionStatus[]): void => {
    metrics.loadedVersions.set({ model: name }, statuses.filter((s) => s.state === "AVAILABLE").length);
    metrics.versionState.remove({ model: name });
    for (const s of statuses) metrics.versionState.set({ model: name, version: String(s.version), state: s.state }, 1);
    updateHealth();
  };
  for (const m of options.models) {
    managers.set(m.name, new ModelManager(tf, m, openStorage(m.basePath), { log, onChange }, options.retryFailedMs));
  }
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
  let grpc: GrpcFrontEnd | undefined;
  let rest: RestFrontEnd | undefined;
  let grpcPort: number | undefined;
  let restPort: number | undefined;
  try {
    await Promise.all([...managers.values()].map((m) => m.start(options.pollIntervalMs ?? 1000)));
    if (options.grpcPort !== null) {
      grpc = new GrpcFrontEnd(service, health, { maxMessageBytes: options.grpcMaxMessageBytes, flowControlWindowBytes: options.grpcFlowControlWindowBytes, log });
      grpcPort = await grpc.bind(host, options.grpcPort ?? 8500);
    }
    if (options.restPort !== null) {
      rest = new RestFrontEnd(service, {
        maxBodyBytes: options.restMaxBodyBytes,
        requestTimeoutMs: options.restRequestTimeoutMs,
        log,
        refreshMetrics,
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
    stop(graceMs = 10_000) {
      stopped ??= (async () => {
        stopping = true;
        health.setAll("NOT_SERVING");
        await Promise.all([grpc?.shutdown(graceMs), rest?.shutdown(graceMs)]);
        await Promise.all([...managers.values()].map((m) => m.stop()));
      })();
      return stopped;
    },
  };
}
