/**
 * The training metrics server (src/train/metrics-server.ts) on 127.0.0.1:0, and the port
 * flag's parsing. The end-to-end check (a real `mlp train-mnist --metrics-port` scraped
 * while it trains, its names matched against the dashboards) is tests/observability.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { UsageError } from "../src/errors";
import { parseFlags } from "../src/util/flags";
import { METRICS_FLAGS, parseMetricsPort, replicaLabel, serveTrainingMetrics, TrainingMetrics, type MetricsServer } from "../src/train/metrics-server";

let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("training metrics", () => {
  it("serves steps, examples, loss, step time and the replica label on /metrics", async () => {
    let now = 1_700_000_000_000;
    const m = new TrainingMetrics({ replica: replicaLabel({ type: "worker", index: 2 }), model: "digits" }, () => now);
    server = await serveTrainingMetrics(m, { host: "127.0.0.1", port: 0 });
    await m.step({ step: 41, totalSteps: 100, loss: 0.5, accuracy: 0.75, seconds: 0.02, examples: 32 });
    now += 1000;
    await m.step({ step: 42, totalSteps: 100, loss: 0.25, accuracy: 0.875, seconds: 0.04, examples: 32 });
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    const labels = 'replica="worker-2",model="digits"';
    expect(text).toContain(`mlp_training_steps_total{${labels}} 2`);
    expect(text).toContain(`mlp_training_examples_total{${labels}} 64`);
    expect(text).toContain(`mlp_training_loss{${labels}} 0.25`);
    expect(text).toContain(`mlp_training_accuracy{${labels}} 0.875`);
    expect(text).toContain(`mlp_training_step{${labels}} 42`);
    expect(text).toContain(`mlp_training_target_steps{${labels}} 100`);
    expect(text).toContain(`mlp_training_last_step_timestamp_seconds{${labels}} 1700000001`);
    expect(text).toContain(`mlp_training_in_progress{${labels}} 1`);
    expect(text).toMatch(new RegExp(`mlp_training_step_duration_seconds_bucket\\{le="0.025",${labels}\\} 1\\n`));
    expect(text).toMatch(new RegExp(`mlp_training_step_duration_seconds_sum\\{${labels}\\} 0.06`));
    m.finish();
    expect(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()).toContain(`mlp_training_in_progress{${labels}} 0`);
  });

  it("the last step ends the run's in-progress flag; other paths are 404", async () => {
    const m = new TrainingMetrics({ replica: replicaLabel(undefined), model: "m" });
    server = await serveTrainingMetrics(m, { host: "127.0.0.1", port: 0 });
    await m.step({ step: 3, totalSteps: 3, loss: 1, accuracy: 0, seconds: 0.1, examples: 8 });
    expect(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()).toContain('mlp_training_in_progress{replica="local-0",model="m"} 0');
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "POST" })).status).toBe(404);
  });

  it("--metrics-port wins over $MLP_METRICS_PORT; neither means no server; bad values name the source", () => {
    expect(parseMetricsPort(parseFlags(METRICS_FLAGS, ["--metrics-port", "9102"])["metrics-port"], { MLP_METRICS_PORT: "1" })).toBe(9102);
    expect(parseMetricsPort(undefined, { MLP_METRICS_PORT: "9102" })).toBe(9102);
    expect(parseMetricsPort(undefined, {})).toBeUndefined();
    expect(parseMetricsPort(undefined, { MLP_METRICS_PORT: "" })).toBeUndefined();
    expect(() => parseFlags(METRICS_FLAGS, ["--metrics-port", "70000"])).toThrow(/^--metrics-port must be an integer in \[0, 65535\]; got "70000"$/);
    expect(() => parseMetricsPort(undefined, { MLP_METRICS_PORT: "http" })).toThrow(UsageError);
    expect(() => parseMetricsPort(undefined, { MLP_METRICS_PORT: "http" })).toThrow(/\$MLP_METRICS_PORT must be a port in \[0, 65535\]; got "http"/);
  });
});
