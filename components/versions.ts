/**
 * Every chart and image version the platform installs, in one place.
 *
 * `repository` is where the chart is pulled from by default; each component lets a stack
 * override it (config `…repository`) for mirrored or air-gapped installs. Bump a version
 * here, run `npm test`, and the pull request's `pulumi preview` shows what changes.
 */
export interface ChartPin {
  /** Chart name in its repository. */
  readonly chart: string;
  /** Exact chart version (never a range). */
  readonly version: string;
  /** Default Helm repository URL. */
  readonly repository: string;
}

/**
 * Where Helm gets a chart: the pinned repository and version, or a local archive or
 * directory when `chart` is set (air-gapped installs, offline tests).
 */
export function chartSource(pin: ChartPin, o: { chart?: string; repository?: string; version?: string }): { chart: string; version?: string; repositoryOpts?: { repo: string } } {
  if (o.chart) return { chart: o.chart };
  return { chart: pin.chart, version: o.version ?? pin.version, repositoryOpts: { repo: o.repository ?? pin.repository } };
}

export const charts = {
  /** NVIDIA device plugin: advertises `nvidia.com/gpu` on nodes whose cloud does not manage it. */
  nvidiaDevicePlugin: {
    chart: "nvidia-device-plugin",
    version: "0.20.1",
    repository: "https://nvidia.github.io/k8s-device-plugin",
  },
  /** Argo Workflows (app v4.0.x): the pipeline engine. */
  argoWorkflows: {
    chart: "argo-workflows",
    version: "1.0.14",
    repository: "https://argoproj.github.io/argo-helm",
  },
  /** kube-prometheus-stack (Prometheus Operator v0.93.x, Grafana, kube-state-metrics, node-exporter): the in-cluster metrics stack. */
  kubePrometheusStack: {
    chart: "kube-prometheus-stack",
    version: "88.5.3",
    repository: "https://prometheus-community.github.io/helm-charts",
  },
  /** NVIDIA DCGM exporter (GPU metrics) where the cloud does not collect them (AKS, existing clusters). */
  dcgmExporter: {
    chart: "dcgm-exporter",
    version: "4.8.2",
    repository: "https://nvidia.github.io/dcgm-exporter/helm-charts",
  },
  /** Zero to JupyterHub. */
  jupyterhub: {
    chart: "jupyterhub",
    version: "4.3.3",
    repository: "https://hub.jupyter.org/helm-chart/",
  },
  /** Kueue: job queueing, team quotas and borrowing (an OCI chart; `repository` is the OCI path without the chart name). */
  kueue: {
    chart: "kueue",
    version: "0.19.2",
    repository: "oci://registry.k8s.io/kueue/charts",
  },
} as const satisfies Record<string, ChartPin>;

/**
 * Kustomize sources. Kubeflow Training Operator v1.9 is the last line with TFJob (Trainer v2
 * has no TensorFlow runtime); it ships as kustomize manifests, not a Helm chart.
 */
export const manifests = {
  trainingOperator: {
    version: "v1.9.2",
    source: "https://github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.2",
  },
} as const;

/** Container images the platform runs, by tag (never `latest`); each is overridable in config. */
export const images = {
  /** MinIO server. The community edition is in maintenance mode: override with a mirror or use `objectStore.mode: external`. */
  minio: "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
  /** MinIO client, for the bucket-creation Job. */
  minioClient: "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
  /** Kernel NFS server for the in-cluster shared volume (existing clusters without an RWX class). */
  nfsServer: "itsthenetwork/nfs-server-alpine:12",
  /** TensorBoard (the tensorflow image ships it). */
  tensorboard: "tensorflow/tensorflow:2.17.0",
  /** Notebook images for JupyterHub's CPU and GPU profiles. */
  notebookCpu: "quay.io/jupyter/tensorflow-notebook:2024-04-22",
  notebookGpu: "quay.io/jupyter/tensorflow-notebook:cuda-2024-04-22",
} as const;
