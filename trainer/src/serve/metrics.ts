/**
 * Prometheus metrics (prom-client, text exposition format) on
 * `/monitoring/prometheus/metrics`, TF Serving's path, under two sets of names:
 *
 *  - TF Serving's own (`:tensorflow:serving:request_count`, `...:request_latency`,
 *    `...:runtime_latency`, `...:request_example_counts`, `:tensorflow:cc:saved_model:
 *    load_attempt_count`, `...:load_latency`), with its label names and microsecond
 *    latencies, so dashboards and alerts written for `tensorflow_model_server` work;
 *  - ours (`mlp_serving_*`): per-protocol request counts, version states, batch sizes,
 *    queue depth, in-flight requests, tensors and memory.
 *
 * Label values come from configured model names, loaded versions and fixed sets (API,
 * protocol, code) only, never from raw request fields, so a client cannot grow the series.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Latency buckets in microseconds (TF Serving reports latencies in µs). */
const MICROSECOND_BUCKETS = [100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/** Every metric the model server exports. */
export class ServingMetrics {
  readonly registry = new Registry();
  private readonly registers = [this.registry];

  // --- TF Serving's names ---------------------------------------------------------------
  readonly tfsRequestCount = new Counter({
    name: ":tensorflow:serving:request_count",
    help: "The number of requests, by model and status (canonical code name).",
    labelNames: ["model_name", "status"] as const,
    registers: this.registers,
  });
  readonly tfsRequestLatency = new Histogram({
    name: ":tensorflow:serving:request_latency",
    help: "Distribution of wall time (in microseconds) of requests, by model, API and entry point (GRPC, REST).",
    labelNames: ["model_name", "API", "entrypoint"] as const,
    buckets: MICROSECOND_BUCKETS,
    registers: this.registers,
  });
  readonly tfsRuntimeLatency = new Histogram({
    name: ":tensorflow:serving:runtime_latency",
    help: "Distribution of wall time (in microseconds) of model runs, by model, API and runtime (TF for SavedModels, TFJS for tfjs models).",
    labelNames: ["model_name", "API", "runtime"] as const,
    buckets: MICROSECOND_BUCKETS,
    registers: this.registers,
  });
  readonly tfsRequestExampleCounts = new Histogram({
    name: ":tensorflow:serving:request_example_counts",
    help: "The number of examples (dimension 0 of the inputs) per request, by model.",
    labelNames: ["model_name"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    registers: this.registers,
  });
  readonly tfsLoadAttempts = new Counter({
    name: ":tensorflow:cc:saved_model:load_attempt_count",
    help: "The number of times a model version was loaded, by base path and status (success, fail).",
    labelNames: ["model_path", "status"] as const,
    registers: this.registers,
  });
  readonly tfsLoadLatency = new Counter({
    name: ":tensorflow:cc:saved_model:load_latency",
    help: "Total time (in microseconds) spent loading model versions, by base path.",
    labelNames: ["model_path"] as const,
    registers: this.registers,
  });

  // --- ours --------------------------------------------------------------------------------
  readonly requests = new Counter({
    name: "mlp_serving_requests_total",
    help: "Requests handled, by model, version, API (predict, classify, metadata, status), protocol (grpc, rest) and canonical code.",
    labelNames: ["model", "version", "api", "protocol", "code"] as const,
    registers: this.registers,
  });
  readonly errors = new Counter({
    name: "mlp_serving_errors_total",
    help: "Requests that failed, by model, version and canonical code.",
    labelNames: ["model", "version", "code"] as const,
    registers: this.registers,
  });
  readonly latency = new Histogram({
    name: "mlp_serving_request_latency_seconds",
    help: "Time from receiving a request to sending its answer, by model, API and protocol.",
    labelNames: ["model", "api", "protocol"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: this.registers,
  });
  readonly batchSize = new Histogram({
    name: "mlp_serving_batch_size",
    help: "Examples per model run (dimension 0 of the inputs), by model and version.",
    labelNames: ["model", "version"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: this.registers,
  });
  readonly loadedVersions = new Gauge({
    name: "mlp_serving_loaded_versions",
    help: "Versions AVAILABLE, by model.",
    labelNames: ["model"] as const,
    registers: this.registers,
  });
  readonly versionState = new Gauge({
    name: "mlp_serving_model_version_state",
    help: "1 for the current state of each known version (START, LOADING, AVAILABLE, UNLOADING, END).",
    labelNames: ["model", "version", "state"] as const,
    registers: this.registers,
  });
  readonly queueDepth = new Gauge({ name: "mlp_serving_batch_queue_depth", help: "Requests waiting in the batching queue.", registers: this.registers });
  readonly inflight = new Gauge({
    name: "mlp_serving_inflight_requests",
    help: "Requests being handled now (both protocols); the load signal a GPU server's autoscaler uses.",
    registers: this.registers,
  });
  readonly tensors = new Gauge({ name: "mlp_serving_tf_tensors", help: "Live TensorFlow.js tensors (tf.memory().numTensors).", registers: this.registers });
  readonly rss = new Gauge({ name: "mlp_serving_process_resident_memory_bytes", help: "Resident set size of the server process.", registers: this.registers });

  /** Version states of every model, re-rendered on each change (one model's entries replaced). */
  private readonly states = new Map<string, readonly { version: number; state: string }[]>();

  /** Replaces one model's version-state series (and its loaded-versions count). */
  setVersionStates(model: string, statuses: readonly { version: number; state: string }[]): void {
    this.states.set(model, statuses);
    this.renderStates();
  }

  /** Drops a model's series (it left the model config). */
  forgetModel(model: string): void {
    this.states.delete(model);
    this.loadedVersions.remove({ model });
    this.renderStates();
  }

  private renderStates(): void {
    this.versionState.reset();
    for (const [model, statuses] of this.states) {
      this.loadedVersions.set({ model }, statuses.filter((s) => s.state === "AVAILABLE").length);
      for (const s of statuses) this.versionState.set({ model, version: String(s.version), state: s.state }, 1);
    }
  }

  /** The exposition text; `refresh` updates sampled gauges first. */
  async render(refresh?: () => void): Promise<string> {
    refresh?.();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
