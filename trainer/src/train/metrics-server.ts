/**
 * Training metrics for Prometheus, served over HTTP while a run trains
 * (`--metrics-port N`, or `$MLP_METRICS_PORT`): step time, examples, loss and accuracy,
 * labelled with the replica (`chief-0`, `worker-1`, `local-0`) and the model name.
 *
 * Why pull (a port Prometheus scrapes) and not push (a Pushgateway):
 *  - a TFJob replica is an ordinary pod with the Training Operator's labels
 *    (`training.kubeflow.org/replica-type`, `…/job-name`), so a PodMonitor (or GKE's
 *    PodMonitoring) finds every replica of every run with no per-run configuration;
 *  - Prometheus's own `up` series then tells a crashed or unreachable trainer from a slow
 *    one, and a finished pod's series end with it. A Pushgateway keeps the last pushed
 *    values forever, so a "training stalled" alert would fire for every run that ended,
 *    and it is one more service to run, secure and reach through the NetworkPolicies;
 *  - the trainer needs no address of anything and no credentials.
 * The cost: samples between the last scrape and the process exit are lost (the final
 * metrics are in the published version's metadata.json and the TensorBoard events anyway).
 *
 * Label values come from TF_CONFIG's task and the model name only (fixed per process).
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { UsageError } from "../errors";
import { defineFlags } from "../util/flags";
import type { TfTask } from "./tfconfig";

/** Path of the exposition text (Prometheus's default `metrics_path`). */
export const TRAINING_METRICS_PATH = "/metrics";
/** Environment variable that turns the server on when the flag is absent (set by the platform's TFJobs). */
export const METRICS_PORT_ENV = "MLP_METRICS_PORT";

/** One finished optimizer step, as the training loops report it. */
export interface StepSample {
  /** Step number after this step (1-based, counting steps of a resumed run's earlier runs). */
  readonly step: number;
  /** Total steps of the run. */
  readonly totalSteps: number;
  /** Loss and accuracy of the step's (global) batch. */
  readonly loss: number;
  readonly accuracy: number;
  /** Wall time of the step, seconds (distributed: including the wait for other replicas). */
  readonly seconds: number;
  /** Examples this replica trained on in the step. */
  readonly examples: number;
}

/**
 * What the training loops call after every step; the loops know nothing of Prometheus.
 * The loops await the result: a step runs synchronously, so without this pause a scrape
 * could not be answered until the whole run ended.
 */
export interface StepObserver {
  step(sample: StepSample): void | Promise<void>;
}

/** `chief-0`, `worker-2`, `local-0` (no TF_CONFIG): short and fixed per process. */
export function replicaLabel(task: Pick<TfTask, "type" | "index"> | undefined): string {
  return task ? `${task.type}-${task.index}` : "local-0";
}

/** Every metric a training process exports. */
export class TrainingMetrics implements StepObserver {
  readonly registry = new Registry();
  private readonly registers = [this.registry];

  readonly steps = new Counter({ name: "mlp_training_steps_total", help: "Optimizer steps this process has run.", registers: this.registers });
  readonly examples = new Counter({ name: "mlp_training_examples_total", help: "Examples this replica has trained on (rate() is examples/s).", registers: this.registers });
  readonly stepDuration = new Histogram({
    name: "mlp_training_step_duration_seconds",
    help: "Wall time of one optimizer step on this replica, including the wait for other replicas in distributed runs.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: this.registers,
  });
  readonly loss = new Gauge({ name: "mlp_training_loss", help: "Training loss of the latest step's batch.", registers: this.registers });
  readonly accuracy = new Gauge({ name: "mlp_training_accuracy", help: "Training accuracy of the latest step's batch.", registers: this.registers });
  readonly currentStep = new Gauge({ name: "mlp_training_step", help: "Step number reached (a resumed run counts from its checkpoint).", registers: this.registers });
  readonly targetSteps = new Gauge({ name: "mlp_training_target_steps", help: "Total steps of the run.", registers: this.registers });
  readonly lastStep = new Gauge({
    name: "mlp_training_last_step_timestamp_seconds",
    help: "Unix time of the latest finished step (a stalled run stops moving it).",
    registers: this.registers,
  });
  readonly inProgress = new Gauge({ name: "mlp_training_in_progress", help: "1 from the first step until the last, else 0.", registers: this.registers });

  constructor(
    labels: { readonly replica: string; readonly model: string },
    private readonly now: () => number = Date.now,
  ) {
    this.registry.setDefaultLabels({ replica: labels.replica, model: labels.model });
  }

  /** Records the step, then lets pending I/O (scrapes) run before the next one. */
  step(s: StepSample): Promise<void> {
    this.record(s);
    return new Promise((resolve) => setImmediate(resolve));
  }

  private record(s: StepSample): void {
    this.steps.inc();
    this.examples.inc(s.examples);
    this.stepDuration.observe(s.seconds);
    this.loss.set(s.loss);
    this.accuracy.set(s.accuracy);
    this.currentStep.set(s.step);
    this.targetSteps.set(s.totalSteps);
    this.lastStep.set(this.now() / 1000);
    this.inProgress.set(s.step < s.totalSteps ? 1 : 0);
  }

  /** The run ended (finished or failed): it is no longer in progress. */
  finish(): void {
    this.inProgress.set(0);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A running metrics server. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `metrics` on `GET /metrics`; everything else is 404. Port 0 picks a free one. */
export async function serveTrainingMetrics(metrics: TrainingMetrics, o: { host?: string; port: number }): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method !== "GET" || url.pathname !== TRAINING_METRICS_PATH) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`only GET ${TRAINING_METRICS_PATH} is served here\n`);
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${(e as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "0.0.0.0", () => resolve());
  });
  // Scrapes must never keep a finished run alive.
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The flags every training command takes, spread into its flag table. */
/** `--metrics-port`, declared once for the training commands (spread into their tables). */
export const METRICS_FLAGS = defineFlags({
  "metrics-port": {
    kind: "int",
    min: 0,
    max: 65535,
    arg: "<n>",
    help: `serve Prometheus metrics (step time, examples, loss, replica) on :n${TRAINING_METRICS_PATH} while training`,
    defaultHelp: `$${METRICS_PORT_ENV}; unset: off`,
    section: "Metrics",
  },
});

/** `--metrics-port`, else `$MLP_METRICS_PORT`, else undefined (no server). */
export function parseMetricsPort(flag: number | undefined, env: NodeJS.ProcessEnv): number | undefined {
  if (flag !== undefined) return flag;
  const raw = env[METRICS_PORT_ENV];
  if (raw === undefined || raw === "") return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`$${METRICS_PORT_ENV} must be a port in [0, 65535]; got ${JSON.stringify(raw)}`);
  return port;
}

/**
 * Starts the metrics server of a training command when a port is asked for. `say` reports
 * where it listens. Returns the observer to hand the loop, and a `close` for the end of the run.
 */
export async function startTrainingMetrics(
  port: number | undefined,
  labels: { replica: string; model: string },
  say: (m: string) => void,
): Promise<{ observer: StepObserver | undefined; close: () => Promise<void> }> {
  if (port === undefined) return { observer: undefined, close: async () => {} };
  const metrics = new TrainingMetrics(labels);
  const server = await serveTrainingMetrics(metrics, { port });
  say(`metrics: http://0.0.0.0:${server.port}${TRAINING_METRICS_PATH} (replica ${labels.replica})`);
  return {
    observer: metrics,
    close: async () => {
      metrics.finish();
      await server.close();
    },
  };
}
