/**
 * Alert rules, written once as Prometheus rule groups and rendered for each metrics stack:
 * a `PrometheusRule` (kube-prometheus-stack), GKE Managed Service for Prometheus's
 * `ClusterRules`, and Azure Monitor's `PrometheusRuleGroup` (see components/observability.ts).
 */
import { PENDING_GPU_REQUESTS } from "./dashboards/gpu";

/** Thresholds (config `observability.alerts`); defaults in config.ts. */
export interface AlertThresholds {
  /** Share of requests failing with a server-side code, over 5 minutes. */
  readonly servingErrorRatio: number;
  /** p99 request latency, seconds. */
  readonly servingP99Seconds: number;
  /** Minutes without a finished step before a running training replica counts as stalled. */
  readonly trainingStallMinutes: number;
  /** Average GPU utilisation (%) below which GPUs count as idle. */
  readonly gpuIdlePercent: number;
}

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  /** Prometheus duration the condition must hold, e.g. `10m`. */
  readonly for: string;
  readonly severity: "warning" | "critical";
  readonly summary: string;
  readonly description: string;
}

export interface RuleGroup {
  readonly name: string;
  readonly rules: readonly AlertRule[];
}

/**
 * Codes that are the server's fault. Client mistakes (INVALID_ARGUMENT, NOT_FOUND,
 * FAILED_PRECONDITION, OUT_OF_RANGE) are on the serving dashboard but do not page anyone.
 */
export const SERVER_ERROR_CODES = ["INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "DATA_LOSS", "UNIMPLEMENTED"] as const;

/** The platform's alert rules. GPU rules only on clusters with GPUs. */
export function alertGroups(t: AlertThresholds, o: { gpu: boolean }): RuleGroup[] {
  const codes = SERVER_ERROR_CODES.join("|");
  const groups: RuleGroup[] = [
    {
      name: "mlplatform.serving",
      rules: [
        {
          alert: "ModelServerErrorRate",
          expr:
            `sum by (namespace, model) (rate(mlp_serving_errors_total{code=~"${codes}"}[5m]))` +
            ` / sum by (namespace, model) (rate(mlp_serving_requests_total[5m])) > ${t.servingErrorRatio}`,
          for: "10m",
          severity: "critical",
          summary: "Model {{ $labels.model }} fails more than " + `${t.servingErrorRatio * 100}% of its requests`,
          description: "{{ $value | humanizePercentage }} of requests to {{ $labels.model }} in {{ $labels.namespace }} ended with a server-side error for 10 minutes.",
        },
        {
          alert: "ModelServerLatencyP99",
          expr:
            `histogram_quantile(0.99, sum by (namespace, model, le) (rate(mlp_serving_request_latency_seconds_bucket{api=~"predict|classify|regress"}[5m])))` +
            ` > ${t.servingP99Seconds}`,
          for: "10m",
          severity: "warning",
          summary: `Model {{ $labels.model }} p99 latency above ${t.servingP99Seconds}s`,
          description: "The 99th percentile of predict/classify/regress latency of {{ $labels.model }} in {{ $labels.namespace }} is {{ $value | humanizeDuration }}.",
        },
      ],
    },
    {
      name: "mlplatform.training",
      rules: [
        {
          alert: "TrainingStalled",
          expr: `time() - mlp_training_last_step_timestamp_seconds > ${t.trainingStallMinutes * 60} and mlp_training_in_progress == 1`,
          for: "5m",
          severity: "warning",
          summary: "Training replica {{ $labels.replica }} of {{ $labels.model }} has not finished a step in " + `${t.trainingStallMinutes} minutes`,
          description:
            "Pod {{ $labels.namespace }}/{{ $labels.pod }} is training but its last step ended {{ $value | humanizeDuration }} ago: " +
            "a replica waiting for a peer that is gone, a hung data read, or a GPU fault.",
        },
      ],
    },
  ];
  if (o.gpu) {
    groups.push({
      name: "mlplatform.gpu",
      rules: [
        {
          alert: "GpusIdleWhilePodsWait",
          expr: `(${PENDING_GPU_REQUESTS} > 0) and on () (avg(DCGM_FI_DEV_GPU_UTIL) < ${t.gpuIdlePercent})`,
          for: "15m",
          severity: "warning",
          summary: "Pods wait for GPUs while the GPUs in use sit idle",
          description:
            `GPU pods have been Pending for 15 minutes while the cluster's GPUs average under ${t.gpuIdlePercent}% utilisation: ` +
            "GPUs are held by idle pods (notebooks, finished but undeleted jobs), or the autoscaler cannot add GPU nodes.",
        },
      ],
    });
  }
  return groups;
}

/** Every alert expression, for checks. */
export function alertQueries(groups: readonly RuleGroup[]): string[] {
  return groups.flatMap((g) => g.rules.map((r) => r.expr));
}

/** `spec.groups` of a PrometheusRule (prometheus-operator) or ClusterRules (GKE): Prometheus's rule file format. */
export function prometheusRuleGroups(groups: readonly RuleGroup[]): Record<string, unknown>[] {
  return groups.map((g) => ({
    name: g.name,
    rules: g.rules.map((r) => ({
      alert: r.alert,
      expr: r.expr,
      for: r.for,
      labels: { severity: r.severity, platform: "mlplatform" },
      annotations: { summary: r.summary, description: r.description },
    })),
  }));
}

/** `10m` → `PT10M`, `1h` → `PT1H`: Azure's ISO 8601 durations. */
export function isoDuration(d: string): string {
  const m = /^(\d+)([smh])$/.exec(d);
  if (!m) throw new Error(`not a duration of seconds, minutes or hours: ${JSON.stringify(d)}`);
  return `PT${m[1]}${m[2]!.toUpperCase()}`;
}

/** Azure Monitor severities: 0 critical … 4 verbose. */
export function azureSeverity(s: AlertRule["severity"]): number {
  return s === "critical" ? 1 : 3;
}
