/**
 * The metrics stack of every stack kind under mocks (tests/harness.ts): what each registers,
 * that GPU stacks get GPU telemetry, that nothing is exposed, and that the generated Grafana
 * credentials stay secret.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import * as YAML from "yaml";
import {
  DASHBOARD_LABEL,
  GRAFANA_ADMIN_SECRET,
  GRAFANA_PORT,
  GRAFANA_SERVICE,
  KPS_RELEASE,
  PROMETHEUS_PORT,
  PROMETHEUS_SERVICE,
  dcgmValues,
  kubePrometheusStackValues,
  scrapeTargets,
  wantsDcgm,
} from "../components/observability";
import { ALL_DASHBOARDS, substituteVariables } from "../components/dashboards";
import { TRAINER_METRICS_PORT, tfJobManifest } from "../components/trainingOperator";
import { FIXTURE_KUBECONFIG, ofType, one, runStack, type RecordedResource, type StackRun } from "./harness";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const kind = { KUBECONFIG: FIXTURE_KUBECONFIG };
const CHART = "kubernetes:helm.sh/v4:Chart";

const charts = (r: StackRun, name: string) => ofType(r, CHART).filter((c) => c.name === name);
const crs = (r: StackRun, group: string, kindName: string) => ofType(r, `kubernetes:${group}:${kindName}`);
const byName = (rs: RecordedResource[]) => Object.fromEntries(rs.map((x) => [x.inputs.metadata.name, x.inputs]));

describe("dev (existing cluster): kube-prometheus-stack", () => {
  let run: StackRun;
  it("installs the pinned chart with ClusterIP UIs and generated, secret admin credentials", async () => {
    run = await runStack("dev", {}, kind);
    const [kps] = charts(run, "metrics-kps");
    expect(kps).toBeDefined();
    expect(kps!.inputs).toMatchObject({
      chart: "kube-prometheus-stack",
      version: "88.5.3",
      namespace: "monitoring",
      repositoryOpts: { repo: "https://prometheus-community.github.io/helm-charts" },
    });
    const v = kps!.inputs.values;
    expect(v.grafana.service.type).toBe("ClusterIP");
    expect(v.prometheus.service.type).toBe("ClusterIP");
    expect(v.alertmanager.service.type).toBe("ClusterIP");
    expect(v.grafana.admin).toEqual({ existingSecret: GRAFANA_ADMIN_SECRET, userKey: "admin-user", passwordKey: "admin-password" });
    expect(JSON.stringify(v)).not.toMatch(/adminPassword/);
    const secret = ofType(run, "kubernetes:core/v1:Secret").find((s) => s.inputs.metadata.name === GRAFANA_ADMIN_SECRET)!;
    // Both values reach the provider as secrets (Pulumi's secret wrapper), never in plaintext.
    expect(secret.inputs.stringData[SECRET_SIG]).toBeDefined();
    expect(secret.inputs.stringData.value).toEqual({ "admin-user": "admin-generated-metrics-grafana-user", "admin-password": "generated-metrics-grafana-password" });
    expect(ofType(run, "pulumi-nodejs:dynamic/mlplatform:GeneratedSecret").map((g) => g.name)).toEqual(
      expect.arrayContaining(["metrics-grafana-user", "metrics-grafana-password"]),
    );
    // No UI is ever exposed by its Service.
    expect(ofType(run, "kubernetes:networking.k8s.io/v1:Ingress").filter((i) => i.name.startsWith("metrics-"))).toEqual([]);
  });

  it("scrapes the model server, the trainers, Argo's controller and the Training Operator; rules and dashboards", () => {
    const monitors = byName(crs(run, "monitoring.coreos.com/v1", "PodMonitor"));
    expect(Object.keys(monitors).sort()).toEqual(["argo-workflow-controller", "model-server", "trainer", "training-operator"]);
    expect(monitors["model-server"]).toMatchObject({
      metadata: { namespace: "ml-serving" },
      spec: { podMetricsEndpoints: [{ port: "http", path: "/monitoring/prometheus/metrics" }] },
    });
    expect(monitors.trainer.metadata.namespace).toBe("ml-pipelines");
    expect(monitors.trainer.spec.podMetricsEndpoints[0].port).toBe("metrics");
    expect(monitors["training-operator"].spec.podMetricsEndpoints[0].portNumber).toBe(8080);
    const rule = one(run, "kubernetes:monitoring.coreos.com/v1:PrometheusRule").inputs;
    expect(rule.spec.groups.map((g: any) => g.name)).toEqual(["mlplatform.serving", "mlplatform.training"]);
    const dashboards = ofType(run, "kubernetes:core/v1:ConfigMap").filter((c) => c.inputs.metadata.labels?.grafana_dashboard === "1");
    expect(dashboards.map((d) => Object.keys(d.inputs.data)[0]).sort()).toEqual(["mlp-serving.json", "mlp-training.json"]);
    for (const d of dashboards) expect(JSON.parse(Object.values(d.inputs.data)[0] as string).panels.length).toBeGreaterThan(3);
    // CPU-only: no DCGM exporter, no GPU dashboard.
    expect(charts(run, "metrics-dcgm")).toEqual([]);
  });

  it("lets only the monitoring namespace reach the metrics ports in default-deny namespaces", () => {
    const policies = ofType(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy").filter((p) => p.inputs.metadata.name === "metrics-from-scraper");
    const ports = Object.fromEntries(policies.map((p) => [p.inputs.metadata.namespace, p.inputs.spec.ingress[0].ports[0].port]));
    expect(ports).toEqual({ "ml-serving": 8501, "ml-pipelines": TRAINER_METRICS_PORT });
    for (const p of policies) expect(p.inputs.spec.ingress[0].from).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }]);
  });

  it("gpu: nvidia adds the DCGM exporter on GPU nodes, the GPU dashboard and the GPU alert", async () => {
    const r = await runStack("dev", { "mlplatform:cluster": { provider: "existing", context: "kind-mlplatform", gpu: "nvidia" } }, kind);
    const [dcgm] = charts(r, "metrics-dcgm");
    expect(dcgm!.inputs).toMatchObject({ chart: "dcgm-exporter", version: "4.8.2", namespace: "monitoring" });
    expect(dcgm!.inputs.values.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(dcgm!.inputs.values.tolerations).toEqual([{ key: "nvidia.com/gpu", operator: "Equal", value: "present", effect: "NoSchedule" }]);
    expect(dcgm!.inputs.values.serviceMonitor).toMatchObject({ enabled: true, apiVersion: "monitoring.coreos.com/v1" });
    const rule = one(r, "kubernetes:monitoring.coreos.com/v1:PrometheusRule").inputs;
    expect(rule.spec.groups.map((g: any) => g.name)).toContain("mlplatform.gpu");
    expect(ofType(r, "kubernetes:core/v1:ConfigMap").some((c) => c.inputs.data?.["mlp-gpu.json"])).toBe(true);
  });

  it("local chart archives, ingress with auth, and the switch", async () => {
    const r = await runStack(
      "dev",
      {
        "mlplatform:observability": { chart: "/charts/kube-prometheus-stack-88.5.3.tgz", retention: "7d", storageSize: "20Gi" },
        "mlplatform:ingress": { grafana: { host: "grafana.example.com" }, prometheus: { host: "prometheus.example.com", authUrl: "https://auth.example.com/oauth2/auth" } },
      },
      kind,
    );
    const [kps] = charts(r, "metrics-kps");
    expect(kps!.inputs.chart).toBe("/charts/kube-prometheus-stack-88.5.3.tgz");
    expect(kps!.inputs.repositoryOpts).toBeUndefined();
    expect(kps!.inputs.values.prometheus.prometheusSpec.retention).toBe("7d");
    expect(kps!.inputs.values.prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec.resources.requests.storage).toBe("20Gi");
    const ing = byName(
      ofType(r, "kubernetes:networking.k8s.io/v1:Ingress")
        .filter((i) => i.name.startsWith("metrics-"))
        .map((i) => ({ ...i, inputs: { ...i.inputs, metadata: { ...i.inputs.metadata, name: i.name } } })),
    );
    expect(ing["metrics-grafana-ui"].spec.rules[0].http.paths[0].backend.service).toEqual({ name: "kube-prometheus-stack-grafana", port: { number: 80 } });
    expect(ing["metrics-prometheus-ui"].metadata.annotations["nginx.ingress.kubernetes.io/auth-url"]).toBe("https://auth.example.com/oauth2/auth");
    expect(ing["metrics-prometheus-ui"].spec.rules[0].http.paths[0].backend.service).toEqual({ name: "kube-prometheus-stack-prometheus", port: { number: 9090 } });

    const off = await runStack("dev", { "mlplatform:observability": { enabled: false } }, kind);
    expect(off.resources.filter((x) => x.type === "mlplatform:observability:Observability" || x.name.startsWith("metrics-"))).toEqual([]);
    await expect(runStack("dev", { "mlplatform:ingress": { prometheus: { host: "p.example.com" } } }, kind)).rejects.toThrow(/mlplatform:ingress.prometheus.authUrl is required/);
    await expect(runStack("dev", { "mlplatform:observability": { mode: "gke-managed" } }, kind)).rejects.toThrow(
      /mlplatform:observability.mode needs cluster.provider "gke" \(this stack's is "existing"\)/,
    );
  });
});

describe("gke: Managed Service for Prometheus", () => {
  it("turns on managed collection with GKE's DCGM and pod metrics; PodMonitorings and ClusterRules; no in-cluster stack", async () => {
    const r = await runStack("gke");
    expect(one(r, "gcp:container/cluster:Cluster").inputs.monitoringConfig).toEqual({
      managedPrometheus: { enabled: true },
      enableComponents: ["SYSTEM_COMPONENTS", "POD", "DCGM"],
    });
    const pm = byName(crs(r, "monitoring.googleapis.com/v1", "PodMonitoring"));
    expect(Object.keys(pm).sort()).toEqual(["argo-workflow-controller", "model-server", "trainer", "training-operator"]);
    expect(pm.trainer.spec.targetLabels.fromPod).toEqual([
      { from: "training.kubeflow.org/job-name", to: "tfjob" },
      { from: "training.kubeflow.org/replica-type", to: "replica_type" },
    ]);
    expect(pm["argo-workflow-controller"].spec.endpoints[0]).toMatchObject({ port: "metrics", scheme: "https", tls: { insecureSkipVerify: true } });
    const rules = one(r, "kubernetes:monitoring.googleapis.com/v1:ClusterRules").inputs;
    expect(rules.spec.groups.map((g: any) => g.name)).toEqual(["mlplatform.serving", "mlplatform.training", "mlplatform.gpu"]);
    expect(charts(r, "metrics-kps")).toEqual([]);
    // Dashboards: Cloud Monitoring dashboards in the cluster's project, the same PromQL per panel.
    const dashboards = ofType(r, "gcp:monitoring/dashboard:Dashboard").map((d) => d.inputs);
    expect(dashboards.map((d) => d.project)).toEqual(["my-ml-project", "my-ml-project", "my-ml-project"]);
    const byTitle = Object.fromEntries(dashboards.map((d) => JSON.parse(d.dashboardJson)).map((j) => [j.displayName, j]));
    for (const d of ALL_DASHBOARDS) {
      const tiles = byTitle[d.title].mosaicLayout.tiles;
      expect(tiles).toHaveLength(d.panels.length);
      const queries = tiles.map((t: any) =>
        (t.widget.xyChart?.dataSets ?? [{ timeSeriesQuery: t.widget.scorecard.timeSeriesQuery }]).map((s: any) => s.timeSeriesQuery.prometheusQuery),
      );
      expect(queries).toEqual(d.panels.map((p) => p.queries.map((q) => substituteVariables(q.expr, d))));
    }
    // GKE collects DCGM metrics itself.
    expect(charts(r, "metrics-dcgm")).toEqual([]);
    const policies = ofType(r, "kubernetes:networking.k8s.io/v1:NetworkPolicy").filter((p) => p.inputs.metadata.name === "metrics-from-scraper");
    for (const p of policies) expect(p.inputs.spec.ingress[0].from[0].namespaceSelector.matchLabels["kubernetes.io/metadata.name"]).toBe("gmp-system");
  });

  it("observability off: no managed collection", async () => {
    const r = await runStack("gke", { "mlplatform:observability": { enabled: false } });
    expect(one(r, "gcp:container/cluster:Cluster").inputs.monitoringConfig).toBeUndefined();
  });
});

describe("aks: Azure Monitor managed Prometheus and Azure Managed Grafana", () => {
  it("workspace, collection rule on the cluster, Grafana reading it, rule groups, add-on monitors and DCGM", async () => {
    const r = await runStack("aks");
    const aks = one(r, "azure-native:containerservice:ManagedCluster").inputs;
    expect(aks.azureMonitorProfile).toEqual({ metrics: { enabled: true } });
    one(r, "azure-native:monitor:AzureMonitorWorkspace");
    const dcr = one(r, "azure-native:monitor:DataCollectionRule").inputs;
    expect(dcr.dataSources.prometheusForwarder[0].streams).toEqual(["Microsoft-PrometheusMetrics"]);
    expect(dcr.destinations.monitoringAccounts[0].accountResourceId).toBe("metrics-amw-id");
    expect(one(r, "azure-native:monitor:DataCollectionRuleAssociation").inputs).toMatchObject({ resourceUri: "platform-aks-id", dataCollectionRuleId: "metrics-dcr-id" });
    const grafana = one(r, "azure-native:dashboard:Grafana").inputs;
    expect(grafana.properties.grafanaIntegrations.azureMonitorWorkspaceIntegrations).toEqual([{ azureMonitorWorkspaceResourceId: "metrics-amw-id" }]);
    expect(grafana.properties.apiKey).toBe("Disabled");
    const reader = ofType(r, "azure-native:authorization:RoleAssignment").find((x) => x.name === "metrics-grafana-reader")!.inputs;
    expect(reader.roleDefinitionId).toMatch(/roleDefinitions\/b0d8363b-8ddd-447d-831f-62ca05bff136$/);
    expect(reader.scope).toBe("metrics-amw-id");
    const groups = ofType(r, "azure-native:alertsmanagement:PrometheusRuleGroup").map((g) => g.inputs);
    expect(groups.map((g) => g.ruleGroupName).sort()).toEqual(["mlplatform-gpu", "mlplatform-serving", "mlplatform-training"]);
    const serving = groups.find((g) => g.ruleGroupName === "mlplatform-serving")!;
    expect(serving.rules[0]).toMatchObject({ alert: "ModelServerErrorRate", for: "PT10M", severity: 1, enabled: true });
    expect(serving.scopes).toEqual(["metrics-amw-id", "platform-aks-id"]);
    const pm = byName(crs(r, "azmonitoring.coreos.com/v1", "PodMonitor"));
    expect(Object.keys(pm).sort()).toEqual(["argo-workflow-controller", "model-server", "trainer", "training-operator"]);
    const [dcgm] = charts(r, "metrics-dcgm");
    expect(dcgm!.inputs.values.serviceMonitor.apiVersion).toBe("azmonitoring.coreos.com/v1");
    expect(dcgm!.inputs.values.nodeSelector).toEqual({ "mlplatform.io/accelerator": "nvidia" });
    expect(charts(r, "metrics-kps")).toEqual([]);
  });

  it("the in-cluster chart as the option: kube-prometheus-stack on AKS, no Azure monitoring resources", async () => {
    const r = await runStack("aks", { "mlplatform:observability": { mode: "kube-prometheus-stack" } });
    expect(charts(r, "metrics-kps")).toHaveLength(1);
    expect(one(r, "azure-native:containerservice:ManagedCluster").inputs.azureMonitorProfile).toBeUndefined();
    expect(r.resources.filter((x) => /^azure-native:(monitor|dashboard|alertsmanagement):/.test(x.type))).toEqual([]);
    expect(charts(r, "metrics-dcgm")[0]!.inputs.values.serviceMonitor.apiVersion).toBe("monitoring.coreos.com/v1");
  });
});

describe("pure parts", () => {
  it("DCGM: auto on AKS and existing GPU clusters, never without GPUs, not on GKE unless always", () => {
    const existing = { provider: "existing", inCluster: false, gpu: "nvidia" } as const;
    expect(wantsDcgm("auto", existing as any, true)).toBe(true);
    expect(wantsDcgm("auto", existing as any, false)).toBe(false);
    expect(wantsDcgm("always", existing as any, false)).toBe(false);
    expect(wantsDcgm("auto", { provider: "gke" } as any, true)).toBe(false);
    expect(wantsDcgm("always", { provider: "gke" } as any, true)).toBe(true);
    expect(wantsDcgm("never", { provider: "aks" } as any, true)).toBe(false);
  });

  it("targets follow the installed parts; the chart selects every monitor and rule", () => {
    expect(scrapeTargets({ serving: "s", pipelines: "p", argo: false, trainingOperator: false }).map((t) => t.name)).toEqual(["model-server", "trainer"]);
    const v = kubePrometheusStackValues({ retention: "15d" }) as any;
    expect(v.prometheus.prometheusSpec).toMatchObject({
      serviceMonitorSelectorNilUsesHelmValues: false,
      podMonitorSelectorNilUsesHelmValues: false,
      ruleSelectorNilUsesHelmValues: false,
    });
    expect(v.prometheus.prometheusSpec.storageSpec).toBeUndefined();
  });

  it("every TFJob replica serves metrics on the port the PodMonitor scrapes", () => {
    const job = tfJobManifest({ name: "j", namespace: "ml-pipelines", image: "i:1", args: ["train-mnist"], gpus: 0 });
    const c = job.spec.tfReplicaSpecs.Chief.template.spec.containers[0];
    expect(c.env).toContainEqual({ name: "MLP_METRICS_PORT", value: String(TRAINER_METRICS_PORT) });
    expect(c.ports).toEqual([{ name: "metrics", containerPort: TRAINER_METRICS_PORT, protocol: "TCP" }]);
  });
});

/**
 * The pinned charts rendered with our values by a real Helm (`helm template`, built by
 * scripts/tools/build-helm.sh), from the vendored archives in ../shared/charts: what the
 * Kubernetes provider's Helm engine would create.
 */
describe("the vendored charts render with our values (helm template)", () => {
  const charts = process.env.MLPLATFORM_CHARTS_DIR ?? path.join(__dirname, "..", "..", "shared", "charts");
  const tools = process.env.MLPLATFORM_TOOLS_DIR ?? path.join(os.homedir(), ".cache", "mlplatform", "tools");
  const helm = [path.join(tools, "bin", "helm")].find((f) => fs.existsSync(f)) ?? (spawnSync("sh", ["-c", "command -v helm"]).status === 0 ? "helm" : undefined);
  const render = (release: string, archive: string, values: unknown): any[] | undefined => {
    const file = path.join(charts, archive);
    const missing = !helm ? "helm (scripts/tools/build-helm.sh)" : !fs.existsSync(file) ? file : undefined;
    if (missing) {
      if (process.env.CI === "true") throw new Error(`${missing} is missing: CI needs it to render the metrics charts`);
      console.log(`SKIPPED rendering ${archive}: ${missing} is missing`);
      return undefined;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-render-"));
    try {
      fs.writeFileSync(path.join(dir, "values.json"), JSON.stringify(values));
      const out = execFileSync(helm!, ["template", release, file, "-n", "monitoring", "--kube-version", "1.33.0", "-f", path.join(dir, "values.json")], {
        encoding: "utf8",
        maxBuffer: 64 * 1024 * 1024,
      });
      return YAML.parseAllDocuments(out)
        .map((d) => d.toJS())
        .filter(Boolean);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  it("kube-prometheus-stack: ClusterIP only, admin credentials from our Secret, our dashboard label, every monitor and rule selected", () => {
    const docs = render(KPS_RELEASE, "kube-prometheus-stack-88.5.3.tgz", kubePrometheusStackValues({ retention: "15d" }));
    if (!docs) return;
    const services = docs.filter((d) => d.kind === "Service");
    expect(services.map((s) => s.spec.type ?? "ClusterIP").filter((t) => t !== "ClusterIP")).toEqual([]);
    const port = (name: string) => services.find((s) => s.metadata.name === name)?.spec.ports.map((p: any) => p.port);
    expect(port(GRAFANA_SERVICE)).toContain(GRAFANA_PORT);
    expect(port(PROMETHEUS_SERVICE)).toContain(PROMETHEUS_PORT);
    const grafana = docs.find((d) => d.kind === "Deployment" && d.metadata.name === GRAFANA_SERVICE)!.spec.template.spec.containers;
    const envOf = (name: string) => Object.fromEntries((grafana.find((c: any) => c.name === name)?.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));
    const env = envOf("grafana");
    expect(env.GF_SECURITY_ADMIN_USER).toEqual({ secretKeyRef: { name: GRAFANA_ADMIN_SECRET, key: "admin-user" } });
    expect(env.GF_SECURITY_ADMIN_PASSWORD).toEqual({ secretKeyRef: { name: GRAFANA_ADMIN_SECRET, key: "admin-password" } });
    const sidecar = envOf("grafana-sc-dashboard");
    expect([sidecar.LABEL, sidecar.LABEL_VALUE, sidecar.NAMESPACE]).toEqual([...Object.entries(DASHBOARD_LABEL)[0]!, "ALL"]);
    // The chart renders no Secret holding a Grafana password of its own.
    expect(docs.filter((d) => d.kind === "Secret").map((d) => d.metadata.name)).toEqual(["alertmanager-kube-prometheus-stack-alertmanager"]);
    const prom = docs.find((d) => d.kind === "Prometheus")!.spec;
    expect([prom.serviceMonitorSelector, prom.podMonitorSelector, prom.ruleSelector, prom.serviceMonitorNamespaceSelector, prom.podMonitorNamespaceSelector]).toEqual([
      {},
      {},
      {},
      {},
      {},
    ]);
    expect(prom.retention).toBe("15d");
  });

  it("dcgm-exporter: a DaemonSet on GPU nodes only, its ServiceMonitor in the group Azure's add-on reads", () => {
    const gpu = {
      nodeSelector: { "mlplatform.io/accelerator": "nvidia" },
      tolerations: [{ key: "nvidia.com/gpu", operator: "Equal" as const, value: "present", effect: "NoSchedule" as const }],
    };
    const docs = render("dcgm-exporter", "dcgm-exporter-4.8.2.tgz", dcgmValues(gpu, "azmonitoring.coreos.com/v1"));
    if (!docs) return;
    const ds = docs.find((d) => d.kind === "DaemonSet")!.spec.template.spec;
    expect(ds.nodeSelector).toEqual(gpu.nodeSelector);
    expect(ds.tolerations).toEqual(gpu.tolerations);
    expect(docs.filter((d) => d.kind === "ServiceMonitor").map((d) => d.apiVersion)).toEqual(["azmonitoring.coreos.com/v1"]);
  });
});
