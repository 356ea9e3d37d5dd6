/**
 * Prometheus metrics in the text exposition format (0.0.4), written by hand: a handful
 * of counters, gauges and histograms keyed by label values. Label values come from
 * configured model names and loaded versions only, never from raw request fields, so a
 * client cannot grow the series without bound.
 */

type Labels = Readonly<Record<string, string>>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelString(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

interface Metric {
  readonly name: string;
  readonly help: string;
  render(out: string[]): void;
}

abstract class Keyed<T> implements Metric {
  protected readonly series = new Map<string, { labels: Labels; value: T }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
  ) {}

  protected get(labels: Labels, init: () => T): T {
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, value: init() }));
    return s.value;
  }

  /** Drops every series whose labels include all of `match` (an unloaded version's). */
  remove(match: Labels): void {
    for (const [k, s] of this.series) if (Object.entries(match).every(([mk, mv]) => s.labels[mk] === mv)) this.series.delete(k);
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    for (const s of this.series.values()) this.renderSeries(out, s.labels, s.value);
  }

  protected abstract renderSeries(out: string[], labels: Labels, value: T): void;
}

export class Counter extends Keyed<{ v: number }> {
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
  inc(labels: Labels, by = 1): void {
    this.get(labels, () => ({ v: 0 })).v += by;
  }
  value(labels: Labels): number {
    return this.series.get(JSON.stringify(labels))?.value.v ?? 0;
  }
  protected renderSeries(out: string[], labels: Labels, value: { v: number }): void {
    out.push(`${this.name}${labelString(labels)} ${formatValue(value.v)}`);
  }
}

export class Gauge extends Keyed<{ v: number }> {
  constructor(name: string, help: string) {
    super(name, help, "gauge");
  }
  set(labels: Labels, v: number): void {
    this.get(labels, () => ({ v: 0 })).v = v;
  }
  protected renderSeries(out: string[], labels: Labels, value: { v: number }): void {
    out.push(`${this.name}${labelString(labels)} ${formatValue(value.v)}`);
  }
}

interface HistogramValue {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Keyed<HistogramValue> {
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
  ) {
    super(name, help, "histogram");
  }
  observe(labels: Labels, v: number): void {
    const h = this.get(labels, () => ({ counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) h.counts[i]!++;
    h.sum += v;
    h.count++;
  }
  protected renderSeries(out: string[], labels: Labels, h: HistogramValue): void {
    this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelString(labels, ["le", formatValue(b)])} ${h.counts[i]}`));
    out.push(`${this.name}_bucket${labelString(labels, ["le", "+Inf"])} ${h.count}`);
    out.push(`${this.name}_sum${labelString(labels)} ${formatValue(h.sum)}`);
    out.push(`${this.name}_count${labelString(labels)} ${h.count}`);
  }
}

/** Every metric the model server exports. */
export class ServingMetrics {
  readonly requests = new Counter(
    "mlp_serving_requests_total",
    "Requests handled, by model, version, API (predict, classify, metadata, status), protocol (grpc, rest) and canonical code.",
  );
  readonly errors = new Counter("mlp_serving_errors_total", "Requests that failed, by model, version and canonical code.");
  readonly latency = new Histogram(
    "mlp_serving_request_latency_seconds",
    "Time from receiving a request to sending its answer, by model, API and protocol.",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  readonly batchSize = new Histogram(
    "mlp_serving_batch_size",
    "Examples per model run (dimension 0 of the inputs), by model and version.",
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  );
  readonly loadedVersions = new Gauge("mlp_serving_loaded_versions", "Versions AVAILABLE, by model.");
  readonly versionState = new Gauge(
    "mlp_serving_model_version_state",
    "1 for the current state of each known version (START, LOADING, AVAILABLE, UNLOADING, END).",
  );
  readonly queueDepth = new Gauge("mlp_serving_batch_queue_depth", "Requests waiting in the batching queue.");
  readonly tensors = new Gauge("mlp_serving_tf_tensors", "Live TensorFlow.js tensors (tf.memory().numTensors).");
  readonly rss = new Gauge("mlp_serving_process_resident_memory_bytes", "Resident set size of the server process.");

  private readonly all: Metric[] = [
    this.requests,
    this.errors,
    this.latency,
    this.batchSize,
    this.loadedVersions,
    this.versionState,
    this.queueDepth,
    this.tensors,
    this.rss,
  ];

  /** The exposition text; `refresh` updates sampled gauges first. */
  render(refresh?: () => void): string {
    refresh?.();
    const out: string[] = [];
    for (const m of this.all) m.render(out);
    return `${out.join("\n")}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
