/**
 * Observability: every dashboard and alert query names only metrics (and labels) that
 * something really emits.
 *
 *  - Our exporters, for real: `mlp train-mnist --metrics-port 0` is started on MNIST digits
 *    and scraped while it trains; the version it publishes is then served by
 *    `mlp serve` (127.0.0.1, batching on), which gets predictions and a bad request and is
 *    scraped. Both are the CLI the images run (tsx trainer/src/cli.ts).
 *  - Named exporters: the DCGM exporter's default counters, read from the pinned chart
 *    archive itself; kube-state-metrics and the Training Operator, as listed below with
 *    their sources (the Training Operator's list is checked against its v1.9.2 source when the
 *    Go module is in the tools cache).
 *
 * Every query is parsed with Prometheus's own PromQL grammar (@prometheus-io/lezer-promql):
 * a query that does not parse fails, and the metric names are the parse tree's selectors.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alertGroups, alertQueries, isoDuration, prometheusRuleGroups } from "../components/alerts";
import { ALL_DASHBOARDS, dashboardQueries, grafanaDashboard, substituteVariables } from "../components/dashboards";
import { manifests } from "../components/versions";
import { ROOT } from "./harness";

const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
const CLI = path.join(ROOT, "trainer", "src", "cli.ts");
const CHARTS_DIR = process.env.MLPLATFORM_CHARTS_DIR ?? path.join(ROOT, "..", "shared", "charts");

/**
 * kube-state-metrics series the queries use (kube-state-metrics v2 documentation,
 * docs/metrics/workload/pod-metrics.md: `kube_pod_status_phase` with label `phase`,
 * `kube_pod_container_resource_requests` with labels `resource` (`nvidia_com_gpu` for
 * `nvidia.com/gpu`) and `unit`). GKE's POD metrics package exports the same names.
 */
const KUBE_STATE_METRICS: Record<string, string[]> = {
  kube_pod_status_phase: ["namespace", "pod", "uid", "phase"],
  kube_pod_container_resource_requests: ["namespace", "pod", "uid", "container", "node", "resource", "unit"],
};

/** The Training Operator's counters (kubeflow/training-operator v1.9.2, pkg/common/metrics.go), labels job_namespace and framework. */
const TRAINING_OPERATOR_METRICS: Record<string, string[]> = Object.fromEntries(
  ["created", "deleted", "successful", "failed", "restarted"].map((k) => [`training_operator_jobs_${k}_total`, ["job_namespace", "framework"]]),
);

/** Labels Prometheus (or the managed collectors) put on every scraped series: target labels and our relabelings. */
const TARGET_LABELS = ["namespace", "pod", "container", "job", "instance", "endpoint", "service", "tfjob", "replica_type"];
/** Labels of the DCGM exporter's series (its default `Hostname`, `gpu`, `UUID`, `device`, `modelName`). */
const DCGM_LABELS = ["Hostname", "gpu", "UUID", "device", "modelName", "pci_bus_id"];

/** Exposition text → sample name → label names seen. Histograms give `_bucket` (with `le`), `_sum`, `_count`. */
function samples(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels = out.get(m[1]!) ?? new Set<string>();
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]!);
    out.set(m[1]!, labels);
  }
  return out;
}

/** Metric names, label-matcher names and grouping labels of a PromQL expression; throws if it does not parse. */
export function promqlNames(expr: string): { metrics: string[]; matchers: { metric: string; label: string }[]; grouping: string[] } {
  const tree = parser.parse(expr);
  const metrics: string[] = [];
  const matchers: { metric: string; label: string }[] = [];
  const grouping: string[] = [];
  const errors: number[] = [];
  const text = (from: number, to: number) => expr.slice(from, to);
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) errors.push(n.from);
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        const metric = id ? text(id.from, id.to) : "";
        if (id) metrics.push(metric);
        const lm = n.node.getChild("LabelMatchers");
        for (const c of lm ? lm.getChildren("UnquotedLabelMatcher") : []) {
          const ln = c.getChild("LabelName");
          if (ln) matchers.push({ metric, label: text(ln.from, ln.to) });
        }
      }
      if (n.name === "GroupingLabels") for (const c of n.node.getChildren("LabelName")) grouping.push(text(c.from, c.to));
    },
  });
  if (errors.length > 0) throw new Error(`PromQL does not parse at offset ${errors[0]}: ${expr}`);
  return { metrics, matchers, grouping };
}

/** Reads one member of a vendored chart archive. */
function chartMember(archive: string, member: string): string {
  const file = path.join(CHARTS_DIR, archive);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: the test needs the vendored charts (MLPLATFORM_CHARTS_DIR; see ../shared/charts/README.md)`);
  return execFileSync("tar", ["-xzOf", file, member], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

/** The DCGM exporter's default counters: uncommented `DCGM_FI_*` lines of the chart's metrics ConfigMap. */
function dcgmDefaultCounters(): string[] {
  const text = chartMember("dcgm-exporter-4.8.2.tgz", "dcgm-exporter/templates/metrics-configmap.yaml");
  return [...text.matchAll(/^\s*(DCGM_FI_[A-Z0-9_]+)\s*,/gm)].map((m) => m[1]!);
}

/**
 * A CLI process whose stderr is collected; resolves `waitFor(re)` when a line matches. It runs
 * in a process group of its own: tsx starts the CLI as a child, which killing tsx alone would
 * leave running.
 */
class Cli {
  readonly child: ChildProcess;
  stderr = "";
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.child = spawn(TSX, [CLI, ...args], { cwd: ROOT, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.child.stdout!.resume();
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
  }
  async waitFor(re: RegExp, ms: number): Promise<RegExpExecArray> {
    const t0 = Date.now();
    for (;;) {
      const m = re.exec(this.stderr);
      if (m) return m;
      if (this.child.exitCode !== null || Date.now() - t0 > ms) throw new Error(`no ${re} in the output (exit ${this.child.exitCode}):\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      // The group is gone already.
    }
    await this.exited;
  }
}

let work: string;
let trainerText = "";
let trainerWhileTraining = false;
let serverText = "";
const procs: Cli[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-observability-"));
  const { writeMnistIdx } = await import("../trainer/tests/fixtures/mnist-idx");
  await writeMnistIdx(path.join(work, "data"), { train: 2000, test: 200 });

  // Train, scraping the metrics port until a scrape lands mid-run.
  const train = new Cli([
    "train-mnist",
    "--data",
    path.join(work, "data"),
    "--model-base",
    path.join(work, "models"),
    "--name",
    "mnist",
    "--steps",
    "300",
    "--batch-size",
    "32",
    "--hidden-units",
    "32",
    "--progress",
    "none",
    "--metrics-port",
    "0",
  ]);
  procs.push(train);
  const port = Number((await train.waitFor(/metrics: http:\/\/0\.0\.0\.0:(\d+)\/metrics/, 60_000))[1]);
  while (train.child.exitCode === null) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (/^mlp_training_in_progress\{[^}]*\} 1$/m.test(text) && /^mlp_training_step_duration_seconds_count\{[^}]*\} [1-9]/m.test(text)) {
        trainerText = text;
        trainerWhileTraining = true;
      }
    } catch {
      // Not listening yet, or the run just ended.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(await train.exited, train.stderr).toBe(0);

  // Serve the version it published; predictions, one bad request, then scrape.
  const serve = new Cli([
    "serve",
    "--model_name",
    "mnist",
    "--model_base_path",
    path.join(work, "models", "mnist"),
    "--host",
    "127.0.0.1",
    "--port",
    "auto",
    "--rest_api_port",
    "auto",
    "--enable_batching",
    "--file_system_poll_wait_seconds",
    "0",
  ]);
  procs.push(serve);
  const rest = Number((await serve.waitFor(/REST 127\.0\.0\.1:(\d+)/, 60_000))[1]);
  const url = `http://127.0.0.1:${rest}`;
  const image = Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0.5]));
  for (let i = 0; i < 3; i++) {
    const ok = await fetch(`${url}/v1/models/mnist:predict`, { method: "POST", body: JSON.stringify({ instances: [image, image] }) });
    expect(ok.status, await ok.text()).toBe(200);
  }
  const bad = await fetch(`${url}/v1/models/mnist:predict`, { method: "POST", body: JSON.stringify({ instances: [[1, 2, 3]] }) });
  expect(bad.status).toBe(400);
  serverText = await (await fetch(`${url}/monitoring/prometheus/metrics`)).text();
}, 240_000);

afterAll(async () => {
  for (const p of procs) await p.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("dashboards and alerts query only what is emitted", () => {
  it("the trainer was scraped mid-run and the server after real requests", () => {
    expect(trainerWhileTraining).toBe(true);
    expect(trainerText).toMatch(/^mlp_training_loss\{replica="local-0",model="mnist"\} \d/m);
    expect(serverText).toMatch(/^mlp_serving_requests_total\{model="mnist",version="1",api="predict",protocol="rest",code="OK"\} 3$/m);
    expect(serverText).toMatch(/^mlp_serving_errors_total\{model="mnist",version="[^"]*",code="INVALID_ARGUMENT"\} 1$/m);
  });

  it("every query parses, and every metric and label it names is emitted", () => {
    const emitted = new Map<string, Set<string>>();
    const add = (name: string, labels: Iterable<string>) => emitted.set(name, new Set([...(emitted.get(name) ?? []), ...labels]));
    for (const [n, l] of [...samples(trainerText), ...samples(serverText)]) add(n, l);
    for (const n of dcgmDefaultCounters()) add(n, DCGM_LABELS);
    for (const [n, l] of Object.entries({ ...KUBE_STATE_METRICS, ...TRAINING_OPERATOR_METRICS })) add(n, l);

    const queries = [
      ...ALL_DASHBOARDS.flatMap((d) => dashboardQueries(d).map((q) => [`dashboard ${d.uid}`, substituteVariables(q, d)] as const)),
      ...alertQueries(alertGroups({ servingErrorRatio: 0.05, servingP99Seconds: 0.5, trainingStallMinutes: 15, gpuIdlePercent: 10 }, { gpu: true })).map(
        (q) => ["alert", q] as const,
      ),
    ];
    expect(queries.length).toBeGreaterThan(25);
    const problems: string[] = [];
    for (const [where, q] of queries) {
      const { metrics, matchers, grouping } = promqlNames(q);
      if (metrics.length === 0) problems.push(`${where}: ${q} names no metric`);
      const known = new Set<string>(["le", ...TARGET_LABELS]);
      for (const m of metrics) {
        const labels = emitted.get(m);
        if (!labels) problems.push(`${where}: ${m} is emitted by nothing we run or name`);
        for (const l of labels ?? []) known.add(l);
      }
      for (const { metric, label } of matchers) {
        if (!(emitted.get(metric)?.has(label) || TARGET_LABELS.includes(label))) problems.push(`${where}: ${metric} has no label ${label}`);
      }
      for (const g of grouping) if (!known.has(g)) problems.push(`${where}: groups by ${g}, which none of ${metrics.join(", ")} carries`);
    }
    expect(problems).toEqual([]);
  });

  it("the checker fails on what it must catch", () => {
    expect(() => promqlNames("sum(rate(mlp_serving_requests_total[5m]) by (model)")).toThrow(/does not parse/);
    expect(promqlNames('sum by (model) (rate(:tensorflow:serving:request_count{model_name="m"}[5m]))')).toEqual({
      metrics: [":tensorflow:serving:request_count"],
      matchers: [{ metric: ":tensorflow:serving:request_count", label: "model_name" }],
      grouping: ["model"],
    });
    expect(samples(serverText).has("mlp_serving_request_latency_seconds_bucket")).toBe(true);
    expect(samples(serverText).has("mlp_training_loss")).toBe(false);
  });

  it("the Training Operator counters are the ones its pinned release's source defines", () => {
    const tools = process.env.MLPLATFORM_TOOLS_DIR ?? path.join(os.homedir(), ".cache", "mlplatform", "tools");
    const src = path.join(tools, "go", "mod", "github.com", "kubeflow", `training-operator@${manifests.trainingOperator.version}`, "pkg", "common", "metrics.go");
    if (!fs.existsSync(src)) throw new Error(`${src} is missing: scripts/tools/fetch-manifests.sh downloads the Training Operator module`);
    const defined = [...fs.readFileSync(src, "utf8").matchAll(/Name:\s*"([a-z_]+)"/g)].map((m) => m[1]!);
    expect(defined.sort()).toEqual(Object.keys(TRAINING_OPERATOR_METRICS).sort());
  });

  it("the DCGM counters come from the pinned chart and include what the GPU dashboard needs", () => {
    const counters = dcgmDefaultCounters();
    expect(counters).toEqual(expect.arrayContaining(["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE"]));
    // Commented-out counters are not collected by default and must not be counted.
    expect(counters).not.toContain("DCGM_FI_DEV_POWER_VIOLATION");
  });
});

describe("rendering", () => {
  it("Grafana JSON: unique uids, a datasource variable, every panel's queries as targets", () => {
    const uids = ALL_DASHBOARDS.map((d) => d.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const d of ALL_DASHBOARDS) {
      const g = grafanaDashboard(d) as any;
      expect(g.uid).toBe(d.uid);
      expect(g.templating.list[0]).toMatchObject({ name: "datasource", type: "datasource", query: "prometheus" });
      expect(g.panels.map((p: any) => p.targets.map((t: any) => t.expr))).toEqual(d.panels.map((p) => p.queries.map((q) => q.expr)));
      for (const p of g.panels) expect(p.datasource).toEqual({ type: "prometheus", uid: "${datasource}" });
    }
    expect(() => grafanaDashboard({ ...ALL_DASHBOARDS[0]!, uid: "has space" })).toThrow(/uid must be/);
  });

  it("alert groups: serving, training, and GPU only with GPUs; thresholds from config; Azure durations", () => {
    const t = { servingErrorRatio: 0.02, servingP99Seconds: 0.25, trainingStallMinutes: 20, gpuIdlePercent: 5 };
    expect(alertGroups(t, { gpu: false }).map((g) => g.name)).toEqual(["mlplatform.serving", "mlplatform.training"]);
    const groups = prometheusRuleGroups(alertGroups(t, { gpu: true })) as any[];
    const rules = Object.fromEntries(groups.flatMap((g) => g.rules).map((r: any) => [r.alert, r]));
    expect(Object.keys(rules)).toEqual(["ModelServerErrorRate", "ModelServerLatencyP99", "TrainingStalled", "GpusIdleWhilePodsWait"]);
    expect(rules.ModelServerErrorRate.expr).toMatch(/> 0\.02$/);
    expect(rules.ModelServerLatencyP99.expr).toMatch(/> 0\.25$/);
    expect(rules.TrainingStalled.expr).toContain("> 1200");
    expect(rules.GpusIdleWhilePodsWait.expr).toMatch(/< 5\)$/);
    expect(rules.TrainingStalled.labels).toEqual({ severity: "warning", platform: "mlplatform" });
    expect([isoDuration("10m"), isoDuration("1h"), isoDuration("30s")]).toEqual(["PT10M", "PT1H", "PT30S"]);
    expect(() => isoDuration("1d")).toThrow(/not a duration/);
  });
});
