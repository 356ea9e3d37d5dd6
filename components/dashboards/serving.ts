/**
 * Model serving: requests, errors, latency percentiles and batch sizes, from `mlp serve`'s
 * own metrics (trainer/src/serve/metrics.ts), per model.
 */
import type { Dashboard } from "./model";

const sel = `model=~"$model"`;
const quantile = (q: number) => ({
  expr: `histogram_quantile(${q}, sum by (le, model) (rate(mlp_serving_request_latency_seconds_bucket{${sel}, api=~"predict|classify|regress"}[5m])))`,
  legend: `p${Math.round(q * 100)} {{model}}`,
});

export const servingDashboard: Dashboard = {
  uid: "mlp-serving",
  title: "mlplatform / Model serving",
  description: "Requests, errors, latency and batching of the model servers (mlp serve).",
  tags: ["mlplatform", "serving"],
  variables: [{ name: "model", label: "Model", metric: "mlp_serving_loaded_versions", labelName: "model" }],
  panels: [
    {
      title: "Requests per second",
      description: "By model and canonical status code, both protocols.",
      unit: "reqps",
      queries: [{ expr: `sum by (model, code) (rate(mlp_serving_requests_total{${sel}}[5m]))`, legend: "{{model}} {{code}}" }],
    },
    {
      title: "Error ratio",
      description: "Failed requests over all requests, by model (client errors included).",
      unit: "percentunit",
      queries: [
        {
          expr: `sum by (model) (rate(mlp_serving_errors_total{${sel}}[5m])) / sum by (model) (rate(mlp_serving_requests_total{${sel}}[5m]))`,
          legend: "{{model}}",
        },
      ],
    },
    {
      title: "Latency percentiles (predict, classify, regress)",
      description: "Time from receiving a request to answering it.",
      unit: "s",
      queries: [quantile(0.5), quantile(0.9), quantile(0.99)],
    },
    {
      title: "Model run latency p99",
      description: "Time spent in the model itself (TF Serving's runtime_latency, reported in microseconds).",
      unit: "s",
      queries: [
        {
          expr: `histogram_quantile(0.99, sum by (le, model_name) (rate(:tensorflow:serving:runtime_latency_bucket{model_name=~"$model"}[5m]))) / 1e6`,
          legend: "{{model_name}}",
        },
      ],
    },
    {
      title: "Batch size",
      description: "Examples per model run: median, p90 and mean (server-side batching merges requests).",
      unit: "short",
      queries: [
        { expr: `histogram_quantile(0.5, sum by (le, model) (rate(mlp_serving_batch_size_bucket{${sel}}[5m])))`, legend: "p50 {{model}}" },
        { expr: `histogram_quantile(0.9, sum by (le, model) (rate(mlp_serving_batch_size_bucket{${sel}}[5m])))`, legend: "p90 {{model}}" },
        {
          expr: `sum by (model) (rate(mlp_serving_batch_size_sum{${sel}}[5m])) / sum by (model) (rate(mlp_serving_batch_size_count{${sel}}[5m]))`,
          legend: "mean {{model}}",
        },
      ],
    },
    {
      title: "In-flight requests and batching queue",
      description: "Per server pod: requests being handled, and requests waiting for a batch.",
      unit: "short",
      queries: [
        { expr: "sum by (pod) (mlp_serving_inflight_requests)", legend: "in flight {{pod}}" },
        { expr: "sum by (pod) (mlp_serving_batch_queue_depth)", legend: "queued {{pod}}" },
      ],
    },
    {
      title: "Versions available",
      description: "Model versions AVAILABLE, by model and pod.",
      unit: "short",
      kind: "stat",
      queries: [{ expr: `min by (model) (mlp_serving_loaded_versions{${sel}})`, legend: "{{model}}" }],
    },
    {
      title: "Server memory",
      description: "Resident memory of each server process.",
      unit: "decmbytes",
      queries: [{ expr: "mlp_serving_process_resident_memory_bytes / 1048576", legend: "{{pod}}" }],
    },
  ],
};
