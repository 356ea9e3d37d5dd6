/**
 * Observability: a metrics stack per cluster kind, scrape targets for the platform's own
 * workloads, GPU telemetry, dashboards and alert rules. Switchable (`observability.enabled`)
 * and per kind (`observability.mode`):
 *
 *  - `kube-prometheus-stack` (existing clusters; optional elsewhere): Prometheus Operator,
 *    Prometheus, Alertmanager, Grafana, kube-state-metrics and node-exporter from the pinned
 *    chart. Targets are PodMonitors/ServiceMonitors, alerts a PrometheusRule, dashboards
 *    ConfigMaps labelled for Grafana's dashboard sidecar. Grafana and Prometheus are
 *    ClusterIP; Grafana's admin credentials are generated and live only in a Secret.
 *  - `gke-managed`: Google Cloud Managed Service for Prometheus. Managed collection is turned
 *    on in the cluster (components/gkeCluster.ts, with GKE's own DCGM and pod metrics);
 *    targets are PodMonitorings, alerts ClusterRules evaluated by the managed rule evaluator,
 *    dashboards Cloud Monitoring dashboards with the same PromQL.
 *  - `azure-managed`: Azure Monitor managed Prometheus (an Azure Monitor workspace, a data
 *    collection endpoint and rule associated with the cluster, the cluster's metrics add-on)
 *    and Azure Managed Grafana linked to the workspace. Targets are the add-on's own
 *    `azmonitoring.coreos.com` PodMonitors/ServiceMonitors, alerts Prometheus rule groups.
 *
 * GPU metrics: the DCGM exporter (pinned chart) on GPU nodes where the cloud does not
 * collect them (AKS; existing clusters with GPUs). Dashboards and alerts are written once
 * (components/dashboards/, components/alerts.ts).
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { ClusterConfig, IngressConfig, ObservabilityConfig, ObservabilityMode } from "../config";
import { observabilityMode } from "../config";
import { alertGroups, azureSeverity, isoDuration, prometheusRuleGroups, type RuleGroup } from "./alerts";
import { ARGO_NAMESPACE, ARGO_RELEASE } from "./argoWorkflows";
import type { Placement } from "./cluster";
import { cloudMonitoringDashboard, grafanaDashboard, platformDashboards, type Dashboard } from "./dashboards";
import { GeneratedSecret } from "./generatedSecret";
import { METRICS_PATH, REST_PORT } from "./modelServing";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels } from "./namespaces";
import { TRAINER_METRICS_PORT, TRAINER_METRICS_PORT_NAME } from "./trainingOperator";
import { createUiIngress } from "./uiIngress";
import { chartSource, charts } from "./versions";

type CrArgs = k8s.apiextensions.CustomResourceArgs;

/** Helm release of kube-prometheus-stack; its Services are named after it. */
export const KPS_RELEASE = "kube-prometheus-stack";
/** Grafana's Service (the chart's grafana subchart: `<release>-grafana`, port 80). */
export const GRAFANA_SERVICE = `${KPS_RELEASE}-grafana`;
export const GRAFANA_PORT = 80;
/** Prometheus's Service (`<release>-prometheus`, port 9090). */
export const PROMETHEUS_SERVICE = `${KPS_RELEASE}-prometheus`;
export const PROMETHEUS_PORT = 9090;
/** Label (and value) kube-prometheus-stack's Grafana sidecar loads dashboards from. */
export const DASHBOARD_LABEL = { grafana_dashboard: "1" } as const;
/** Namespace and pod labels of the Training Operator (its v1.9 kustomize manifests). */
export const TRAINING_OPERATOR_NAMESPACE = "kubeflow";
export const TRAINING_OPERATOR_POD_LABELS = { "control-plane": "kubeflow-training-operator" } as const;
export const TRAINING_OPERATOR_METRICS_PORT = 8080;
/** DCGM exporter's metrics port (chart default). */
export const DCGM_PORT = 9400;

/** Where the scrapers run, per mode: NetworkPolicies let only them reach the metrics ports. */
export function scraperNamespace(mode: ObservabilityMode, monitoringNamespace: string): string {
  switch (mode) {
    case "kube-prometheus-stack":
      return monitoringNamespace;
    case "gke-managed":
      return "gmp-system"; // GMP's collectors
    case "azure-managed":
      return "kube-system"; // the ama-metrics add-on
  }
}

/** Whether the DCGM exporter is installed (config `observability.dcgm.install`). */
export function wantsDcgm(install: "auto" | "always" | "never", cluster: ClusterConfig, hasGpu: boolean): boolean {
  if (install === "never" || !hasGpu) return false;
  if (install === "always") return true;
  // GKE runs its own DCGM collection (monitoringConfig DCGM); AKS and existing clusters do not.
  return cluster.provider !== "gke";
}

/** One thing to scrape, independent of the CR kind that expresses it. */
export interface ScrapeTarget {
  /** Object name. */
  readonly name: string;
  readonly namespace: string;
  /** Pod label selector. */
  readonly selector: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: "Exists" }[] };
  /** Container port name (or number) serving metrics. */
  readonly port: string | number;
  readonly path: string;
  readonly scheme: "http" | "https";
  /** The target's certificate is self-signed (Argo's controller). */
  readonly insecureSkipVerify?: boolean;
  /** Pod labels copied onto every series, pod label → series label. */
  readonly podLabels?: Record<string, string>;
  readonly interval: string;
}

/** What the platform scrapes besides the DCGM exporter (whose chart brings its own ServiceMonitor). */
export function scrapeTargets(o: { serving: string; pipelines: string; argo: boolean; trainingOperator: boolean }): ScrapeTarget[] {
  const targets: ScrapeTarget[] = [
    {
      name: "model-server",
      namespace: o.serving,
      selector: { matchLabels: { "app.kubernetes.io/name": "model-server" } },
      port: "http",
      path: METRICS_PATH,
      scheme: "http",
      interval: "30s",
    },
    {
      // Every TFJob replica (the Training Operator labels its pods); the trainer serves
      // metrics while it trains (trainer/src/train/metrics-server.ts says why pull).
      name: "trainer",
      namespace: o.pipelines,
      selector: { matchExpressions: [{ key: "training.kubeflow.org/replica-type", operator: "Exists" }] },
      port: TRAINER_METRICS_PORT_NAME,
      path: "/metrics",
      scheme: "http",
      podLabels: { "training.kubeflow.org/job-name": "tfjob", "training.kubeflow.org/replica-type": "replica_type" },
      interval: "15s",
    },
  ];
  if (o.argo) {
    targets.push({
      name: "argo-workflow-controller",
      namespace: ARGO_NAMESPACE,
      selector: { matchLabels: { "app.kubernetes.io/component": "workflow-controller", "app.kubernetes.io/instance": ARGO_RELEASE } },
      // The chart names the controller's metrics port `metrics` (9090). Argo serves metrics
      // over TLS with a self-signed certificate unless metricsConfig.secure is false.
      port: "metrics",
      path: "/metrics",
      scheme: "https",
      insecureSkipVerify: true,
      interval: "30s",
    });
  }
  if (o.trainingOperator) {
    targets.push({
      name: "training-operator",
      namespace: TRAINING_OPERATOR_NAMESPACE,
      selector: { matchLabels: { ...TRAINING_OPERATOR_POD_LABELS } },
      // The operator's container port 8080 has no name in its manifests.
      port: TRAINING_OPERATOR_METRICS_PORT,
      path: "/metrics",
      scheme: "http",
      interval: "30s",
    });
  }
  return targets;
}

/** `relabelings` that copy pod labels onto the series (prometheus-operator syntax). */
function podLabelRelabelings(t: ScrapeTarget): Record<string, unknown>[] {
  return Object.entries(t.podLabels ?? {}).map(([from, to]) => ({
    sourceLabels: [`__meta_kubernetes_pod_label_${from.replace(/[^a-zA-Z0-9_]/g, "_")}`],
    targetLabel: to,
  }));
}

/**
 * A PodMonitor for the Prometheus Operator (`monitoring.coreos.com/v1`) or for Azure's
 * metrics add-on (`azmonitoring.coreos.com/v1`, the same schema under Azure's group).
 */
export function podMonitor(t: ScrapeTarget, group: "monitoring.coreos.com" | "azmonitoring.coreos.com"): Record<string, any> {
  const relabelings = podLabelRelabelings(t);
  return {
    apiVersion: `${group}/v1`,
    kind: "PodMonitor",
    metadata: { name: t.name, namespace: t.namespace, labels: { ...PLATFORM_LABELS } },
    spec: {
      selector: t.selector,
      namespaceSelector: { matchNames: [t.namespace] },
      podMetricsEndpoints: [
        {
          // An unnamed container port is given by number (`portNumber`, prometheus-operator ≥ v0.80).
          ...(typeof t.port === "number" ? { portNumber: t.port } : { port: t.port }),
          path: t.path,
          scheme: t.scheme,
          interval: t.interval,
          ...(t.insecureSkipVerify ? { tlsConfig: { insecureSkipVerify: true } } : {}),
          ...(relabelings.length > 0 ? { relabelings } : {}),
        },
      ],
    },
  };
}

/** GKE Managed Service for Prometheus: a PodMonitoring (`monitoring.googleapis.com/v1`). */
export function podMonitoring(t: ScrapeTarget): Record<string, any> {
  return {
    apiVersion: "monitoring.googleapis.com/v1",
    kind: "PodMonitoring",
    metadata: { name: t.name, namespace: t.namespace, labels: { ...PLATFORM_LABELS } },
    spec: {
      selector: t.selector,
      endpoints: [
        {
          port: t.port,
          path: t.path,
          scheme: t.scheme,
          interval: t.interval,
          ...(t.insecureSkipVerify ? { tls: { insecureSkipVerify: true } } : {}),
        },
      ],
      ...(t.podLabels ? { targetLabels: { fromPod: Object.entries(t.podLabels).map(([from, to]) => ({ from, to })) } } : {}),
    },
  };
}

/** A ConfigMap kube-prometheus-stack's Grafana sidecar turns into a dashboard. */
export function dashboardConfigMap(d: Dashboard, namespace: string): Record<string, any> {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: `dashboard-${d.uid}`, namespace, labels: { ...PLATFORM_LABELS, ...DASHBOARD_LABEL } },
    data: { [`${d.uid}.json`]: JSON.stringify(grafanaDashboard(d), null, 1) },
  };
}

/** A PrometheusRule holding the platform's alert groups. */
export function prometheusRule(groups: readonly RuleGroup[], namespace: string): Record<string, any> {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name: "mlplatform-alerts", namespace, labels: { ...PLATFORM_LABELS } },
    spec: { groups: prometheusRuleGroups(groups) },
  };
}

/** GKE's managed rule evaluator: ClusterRules (cluster-scoped, every namespace's series). */
export function clusterRules(groups: readonly RuleGroup[]): Record<string, any> {
  return {
    apiVersion: "monitoring.googleapis.com/v1",
    kind: "ClusterRules",
    metadata: { name: "mlplatform-alerts", labels: { ...PLATFORM_LABELS } },
    spec: { groups: prometheusRuleGroups(groups) },
  };
}

/** Name of the Secret holding Grafana's generated admin credentials (keys admin-user, admin-password). */
export const GRAFANA_ADMIN_SECRET = "grafana-admin";

/** kube-prometheus-stack values: ClusterIP UIs, the generated admin Secret, every monitor and rule in the cluster selected. */
export function kubePrometheusStackValues(o: { retention: string; storageSize?: string }): Record<string, unknown> {
  return {
    // Control-plane components are not reachable as pods on managed or kind clusters; the
    // chart's scrapes of them would only ever be down (and fire its TargetDown alerts).
    kubeControllerManager: { enabled: false },
    kubeScheduler: { enabled: false },
    kubeEtcd: { enabled: false },
    kubeProxy: { enabled: false },
    windowsMonitoring: { enabled: false },
    "prometheus-windows-exporter": { prometheus: { monitor: { enabled: false } } },
    prometheus: {
      service: { type: "ClusterIP" },
      prometheusSpec: {
        retention: o.retention,
        // Select every ServiceMonitor, PodMonitor and PrometheusRule, not only the chart's
        // own (release label): ours live in the serving, pipelines, argo and kubeflow namespaces.
        serviceMonitorSelectorNilUsesHelmValues: false,
        podMonitorSelectorNilUsesHelmValues: false,
        ruleSelectorNilUsesHelmValues: false,
        resources: { requests: { cpu: "200m", memory: "512Mi" }, limits: { memory: "2Gi" } },
        ...(o.storageSize ? { storageSpec: { volumeClaimTemplate: { spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: o.storageSize } } } } } } : {}),
      },
    },
    alertmanager: { service: { type: "ClusterIP" } },
    grafana: {
      service: { type: "ClusterIP" },
      // Generated credentials from a Secret; never the chart's default password.
      admin: { existingSecret: GRAFANA_ADMIN_SECRET, userKey: "admin-user", passwordKey: "admin-password" },
      sidecar: { dashboards: { enabled: true, label: Object.keys(DASHBOARD_LABEL)[0], labelValue: Object.values(DASHBOARD_LABEL)[0], searchNamespace: "ALL" } },
      "grafana.ini": { users: { allow_sign_up: false }, auth: { disable_login_form: false }, "auth.anonymous": { enabled: false } },
    },
  };
}

/** DCGM exporter values: on GPU nodes only, its ServiceMonitor in the group the scraper reads. */
export function dcgmValues(gpu: Placement, serviceMonitorApiVersion: "monitoring.coreos.com/v1" | "azmonitoring.coreos.com/v1"): Record<string, unknown> {
  return {
    nodeSelector: { ...gpu.nodeSelector },
    tolerations: gpu.tolerations.map((t) => ({ ...t })),
    serviceMonitor: { enabled: true, apiVersion: serviceMonitorApiVersion, interval: "15s" },
    // The exporter maps GPUs to the pods using them through the kubelet's pod-resources API.
    kubernetes: { enablePodLabels: false },
  };
}

/**
 * NetworkPolicies that let the scrapers reach the metrics ports in namespaces that deny by
 * default (components/networkPolicies.ts): the model server's REST port, the trainers'
 * metrics port.
 */
export function metricsNetworkPolicies(o: {
  serving: string;
  pipelines: string;
  scraperNamespace: string;
}): { namespace: string; name: string; spec: k8s.types.input.networking.v1.NetworkPolicySpec }[] {
  const from = [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": o.scraperNamespace } } }];
  return [
    {
      namespace: o.serving,
      name: "metrics-from-scraper",
      spec: {
        podSelector: { matchLabels: { "app.kubernetes.io/name": "model-server" } },
        policyTypes: ["Ingress"],
        ingress: [{ from, ports: [{ protocol: "TCP", port: REST_PORT }] }],
      },
    },
    {
      namespace: o.pipelines,
      name: "metrics-from-scraper",
      spec: {
        podSelector: { matchExpressions: [{ key: "training.kubeflow.org/replica-type", operator: "Exists" }] },
        policyTypes: ["Ingress"],
        ingress: [{ from, ports: [{ protocol: "TCP", port: TRAINER_METRICS_PORT }] }],
      },
    },
  ];
}

/** Built-in Azure role: Monitoring Data Reader (Managed Grafana reads the workspace with it). */
export const MONITORING_DATA_READER_ROLE = "b0d8363b-8ddd-447d-831f-62ca05bff136";

export interface ObservabilityArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Validated `mlplatform:observability`. */
  readonly config: ObservabilityConfig;
  /** Validated `mlplatform:cluster` (decides `auto` mode and DCGM). */
  readonly cluster: ClusterConfig;
  /** The platform's serving and pipelines namespaces (where the scrape targets run). */
  readonly namespaces: { readonly serving: string; readonly pipelines: string };
  /** GPU placement from the cluster; `undefined` without GPUs (no DCGM, no GPU dashboard or alert). */
  readonly gpu: Placement | undefined;
  /** Argo Workflows and the Training Operator are installed (their controllers are scraped). */
  readonly argo: boolean;
  readonly trainingOperator: boolean;
  /** Ingress settings (`ingress.grafana`, `ingress.prometheus`); default none. */
  readonly ingress?: IngressConfig;
  /** azure-managed: the AKS cluster's resource group, location, resource id and name. */
  readonly azure?: {
    readonly resourceGroupName: pulumi.Input<string>;
    readonly location: string;
    readonly clusterId: pulumi.Input<string>;
    readonly clusterName: pulumi.Input<string>;
  };
  /** Tags on Azure resources. Default none. */
  readonly tags?: Readonly<Record<string, string>>;
  /** Resources the namespaced objects wait for (Namespaces, the Kubeflow parts). */
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for the charts' workloads. Default false. */
  readonly skipAwait?: boolean;
}

export class Observability extends pulumi.ComponentResource {
  readonly mode: ObservabilityMode;
  /** In-cluster Grafana URL (kube-prometheus-stack), the Managed Grafana endpoint (azure-managed), else "". */
  readonly grafanaUrl: pulumi.Output<string>;
  /** In-cluster Prometheus URL (kube-prometheus-stack), else "". */
  readonly prometheusUrl: string;
  /** Name of the Secret with Grafana's admin credentials (kube-prometheus-stack), else "". */
  readonly grafanaAdminSecret: string;
  readonly dcgm: boolean;

  constructor(name: string, args: ObservabilityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:observability:Observability", name, {}, opts);
    const c = args.config;
    this.mode = observabilityMode(c.mode, args.cluster.provider);
    const skipAwait = args.skipAwait ?? false;
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const monitoringNs = c.namespace;
    const gpu = args.gpu;
    this.dcgm = wantsDcgm(c.dcgm.install, args.cluster, gpu !== undefined);
    const targets = scrapeTargets({ serving: args.namespaces.serving, pipelines: args.namespaces.pipelines, argo: args.argo, trainingOperator: args.trainingOperator });
    const groups = alertGroups(c.alerts, { gpu: gpu !== undefined });

    // A namespace of ours for the in-cluster stack and the DCGM exporter. privileged:
    // node-exporter reads the host's /proc and /sys with hostNetwork and hostPID, and the
    // DCGM exporter needs SYS_ADMIN and the kubelet's pod-resources socket.
    const needsNamespace = this.mode === "kube-prometheus-stack" || this.dcgm;
    const ns = needsNamespace
      ? new k8s.core.v1.Namespace(
          `${name}-ns`,
          { metadata: { name: monitoringNs, labels: { ...PLATFORM_LABELS, ...podSecurityLabels("privileged") }, annotations: awaitAnnotations(skipAwait) } },
          { parent: this, provider: args.provider },
        )
      : undefined;

    // What the monitors and rules need first: the CRDs (chart) and the namespaces they live in.
    const crdsFirst: pulumi.Resource[] = [...(args.dependsOn ?? [])];
    let grafanaUrl: pulumi.Output<string> = pulumi.output("");
    this.prometheusUrl = "";
    this.grafanaAdminSecret = "";

    if (this.mode === "kube-prometheus-stack") {
      const user = new GeneratedSecret(`${name}-grafana-user`, { length: 8, alphabet: "lowerAlnum", prefix: "admin-" }, { parent: this });
      const password = new GeneratedSecret(`${name}-grafana-password`, { length: 32 }, { parent: this });
      const secret = new k8s.core.v1.Secret(
        `${name}-grafana-admin`,
        {
          metadata: { name: GRAFANA_ADMIN_SECRET, namespace: ns!.metadata.name, labels: { ...PLATFORM_LABELS } },
          type: "Opaque",
          stringData: { "admin-user": user.value, "admin-password": password.value },
        },
        { parent: this, provider: args.provider },
      );
      const chart = new k8s.helm.v4.Chart(
        `${name}-kps`,
        {
          name: KPS_RELEASE,
          ...chartSource(charts.kubePrometheusStack, c),
          namespace: ns!.metadata.name,
          values: kubePrometheusStackValues({ retention: c.retention, storageSize: c.storageSize }),
          skipAwait,
        },
        { parent: this, provider: args.provider, dependsOn: [ns!, secret] },
      );
      crdsFirst.push(chart);
      this.grafanaAdminSecret = GRAFANA_ADMIN_SECRET;
      grafanaUrl = pulumi.output(`http://${GRAFANA_SERVICE}.${monitoringNs}.svc.cluster.local:${GRAFANA_PORT}`);
      this.prometheusUrl = `http://${PROMETHEUS_SERVICE}.${monitoringNs}.svc.cluster.local:${PROMETHEUS_PORT}`;

      for (const d of platformDashboards({ gpu: gpu !== undefined })) {
        const m = dashboardConfigMap(d, monitoringNs);
        new k8s.core.v1.ConfigMap(
          `${name}-dashboard-${d.uid}`,
          { metadata: { ...m.metadata, namespace: ns!.metadata.name }, data: m.data },
          { parent: this, provider: args.provider },
        );
      }
      const rule = prometheusRule(groups, monitoringNs);
      new k8s.apiextensions.CustomResource(
        `${name}-rules`,
        { ...(rule as CrArgs), metadata: { ...rule.metadata, namespace: ns!.metadata.name } },
        { parent: this, provider: args.provider, dependsOn: [chart] },
      );
      for (const t of targets) {
        new k8s.apiextensions.CustomResource(`${name}-${t.name}`, podMonitor(t, "monitoring.coreos.com") as CrArgs, { ...k8sOpts, dependsOn: crdsFirst });
      }

      const ing = args.ingress;
      if (ing?.grafana) {
        createUiIngress(
          `${name}-grafana-ui`,
          ns!.metadata.name,
          { ...ing.grafana, className: ing.className, clusterIssuer: ing.clusterIssuer, serviceName: GRAFANA_SERVICE, servicePort: GRAFANA_PORT },
          { provider: args.provider, parent: this, dependsOn: [chart] },
        );
      }
      if (ing?.prometheus) {
        createUiIngress(
          `${name}-prometheus-ui`,
          ns!.metadata.name,
          { ...ing.prometheus, className: ing.className, clusterIssuer: ing.clusterIssuer, serviceName: PROMETHEUS_SERVICE, servicePort: PROMETHEUS_PORT, unauthenticatedUi: true },
          { provider: args.provider, parent: this, dependsOn: [chart] },
        );
      }
    } else if (this.mode === "gke-managed") {
      // The PodMonitoring and ClusterRules CRDs come with managed collection (gkeCluster.ts).
      for (const t of targets) {
        new k8s.apiextensions.CustomResource(`${name}-${t.name}`, podMonitoring(t) as CrArgs, k8sOpts);
      }
      new k8s.apiextensions.CustomResource(`${name}-rules`, clusterRules(groups) as CrArgs, { parent: this, provider: args.provider });
      if (args.cluster.provider !== "gke") throw new pulumi.ResourceError('observability.mode "gke-managed" needs a GKE cluster', this);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const gcp = require("@pulumi/gcp") as typeof import("@pulumi/gcp");
      for (const d of platformDashboards({ gpu: gpu !== undefined })) {
        new gcp.monitoring.Dashboard(`${name}-dashboard-${d.uid}`, { project: args.cluster.project, dashboardJson: JSON.stringify(cloudMonitoringDashboard(d)) }, { parent: this });
      }
    } else {
      if (!args.azure) throw new pulumi.ResourceError('observability.mode "azure-managed" needs the AKS cluster (args.azure)', this);
      grafanaUrl = azureManagedPrometheus(this, name, args.azure, groups, args.tags ?? {});
      for (const t of targets) {
        // The add-on's CRDs exist once the cluster's metrics profile is on (aksCluster.ts).
        new k8s.apiextensions.CustomResource(`${name}-${t.name}`, podMonitor(t, "azmonitoring.coreos.com") as CrArgs, k8sOpts);
      }
    }

    if (this.dcgm && gpu) {
      const pin = charts.dcgmExporter;
      new k8s.helm.v4.Chart(
        `${name}-dcgm`,
        {
          name: "dcgm-exporter",
          ...chartSource(pin, c.dcgm),
          namespace: ns!.metadata.name,
          values: dcgmValues(gpu, this.mode === "azure-managed" ? "azmonitoring.coreos.com/v1" : "monitoring.coreos.com/v1"),
          skipAwait,
        },
        { parent: this, provider: args.provider, dependsOn: [ns!, ...crdsFirst] },
      );
    }

    const scraper = scraperNamespace(this.mode, monitoringNs);
    for (const p of metricsNetworkPolicies({ ...args.namespaces, scraperNamespace: scraper })) {
      const role = p.namespace === args.namespaces.serving ? "serving" : "pipelines";
      new k8s.networking.v1.NetworkPolicy(
        `${name}-${role}-${p.name}`,
        { metadata: { name: p.name, namespace: p.namespace, labels: { ...PLATFORM_LABELS } }, spec: p.spec },
        k8sOpts,
      );
    }

    this.grafanaUrl = grafanaUrl;
    this.registerOutputs({ mode: this.mode, grafanaUrl: this.grafanaUrl, prometheusUrl: this.prometheusUrl, dcgm: this.dcgm });
  }
}

/**
 * Azure Monitor managed Prometheus for an AKS cluster: workspace, data collection endpoint
 * and rule (Prometheus forwarder → workspace), the rule's association with the cluster, an
 * Azure Managed Grafana reading the workspace, and the alert groups as Prometheus rule
 * groups. Returns the Grafana endpoint. Azure SDK modules load only on this path.
 */
function azureManagedPrometheus(
  parent: pulumi.ComponentResource,
  name: string,
  az: NonNullable<ObservabilityArgs["azure"]>,
  groups: readonly RuleGroup[],
  tags: Readonly<Record<string, string>>,
): pulumi.Output<string> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const monitor = require("@pulumi/azure-native/monitor") as typeof import("@pulumi/azure-native/monitor");
  const dashboard = require("@pulumi/azure-native/dashboard") as typeof import("@pulumi/azure-native/dashboard");
  const alerts = require("@pulumi/azure-native/alertsmanagement") as typeof import("@pulumi/azure-native/alertsmanagement");
  const authorization = require("@pulumi/azure-native/authorization") as typeof import("@pulumi/azure-native/authorization");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const opts = { parent };
  const base = { resourceGroupName: az.resourceGroupName, location: az.location, tags: { ...tags, "managed-by": "pulumi", platform: "mlplatform" } };

  const workspace = new monitor.AzureMonitorWorkspace(`${name}-amw`, { ...base }, opts);
  const dce = new monitor.DataCollectionEndpoint(`${name}-dce`, { ...base, kind: "Linux", networkAcls: { publicNetworkAccess: "Enabled" } }, opts);
  const dcr = new monitor.DataCollectionRule(
    `${name}-dcr`,
    {
      ...base,
      kind: "Linux",
      dataCollectionEndpointId: dce.id,
      dataSources: { prometheusForwarder: [{ name: "PrometheusDataSource", streams: ["Microsoft-PrometheusMetrics"], labelIncludeFilter: {} }] },
      destinations: { monitoringAccounts: [{ accountResourceId: workspace.id, name: "MonitoringAccount1" }] },
      dataFlows: [{ destinations: ["MonitoringAccount1"], streams: ["Microsoft-PrometheusMetrics"] }],
    },
    opts,
  );
  new monitor.DataCollectionRuleAssociation(
    `${name}-dcra`,
    { resourceUri: az.clusterId, associationName: "mlplatform-prometheus", dataCollectionRuleId: dcr.id, description: "AKS metrics add-on → Azure Monitor workspace" },
    opts,
  );
  const grafana = new dashboard.Grafana(
    `${name}-grafana`,
    {
      ...base,
      sku: { name: "Standard" },
      identity: { type: "SystemAssigned" },
      properties: {
        // Reached through Entra ID sign-in; no local admin password exists to leak.
        apiKey: "Disabled",
        grafanaIntegrations: { azureMonitorWorkspaceIntegrations: [{ azureMonitorWorkspaceResourceId: workspace.id }] },
      },
    },
    opts,
  );
  const client = authorization.getClientConfigOutput(opts);
  new authorization.RoleAssignment(
    `${name}-grafana-reader`,
    {
      principalId: grafana.identity.apply((i) => i?.principalId ?? ""),
      principalType: "ServicePrincipal",
      roleDefinitionId: pulumi.interpolate`/subscriptions/${client.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${MONITORING_DATA_READER_ROLE}`,
      scope: workspace.id,
    },
    opts,
  );
  for (const g of groups) {
    new alerts.PrometheusRuleGroup(
      `${name}-${g.name.replace(/\./g, "-")}`,
      {
        ...base,
        ruleGroupName: g.name.replace(/\./g, "-"),
        clusterName: az.clusterName,
        scopes: [workspace.id, az.clusterId],
        interval: "PT1M",
        enabled: true,
        rules: g.rules.map((r) => ({
          alert: r.alert,
          expression: r.expr,
          for: isoDuration(r.for),
          severity: azureSeverity(r.severity),
          enabled: true,
          labels: { severity: r.severity, platform: "mlplatform" },
          annotations: { summary: r.summary, description: r.description },
        })),
      },
      opts,
    );
  }
  return grafana.properties.apply((p) => p?.endpoint ?? "");
}
