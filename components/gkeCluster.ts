/**
 * Google Kubernetes Engine with a system pool, an autoscaled GPU pool whose drivers GKE
 * installs, workload identity, Dataplane V2, and an Artifact Registry the nodes pull from.
 */
import * as gcp from "@pulumi/gcp";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { GkeClusterConfig, GpuSharingConfig } from "../config";
import { GPU_TAINT, GPU_TOLERATION, dnsLabel, type Placement, type PlatformCluster } from "./cluster";

export interface GkeClusterArgs {
  /** Validated `mlplatform:cluster` settings for GKE. */
  readonly cluster: GkeClusterConfig;
  /** Labels on every Google Cloud resource. Default: none. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Managed Service for Prometheus collection (observability mode gke-managed). Default false. */
  readonly managedPrometheus?: boolean;
  /** GPU sharing of the GPU pool (`gpuSharing`); default none. */
  readonly gpuSharing?: GpuSharingConfig;
}

/** `monitoringConfig` of the cluster: managed collection plus GKE's DCGM and pod packages (observability mode gke-managed). */
export function gkeMonitoringConfig(managedPrometheus: boolean): gcp.types.input.container.ClusterMonitoringConfig | undefined {
  if (!managedPrometheus) return undefined;
  return {
    managedPrometheus: { enabled: true },
    // DCGM: GKE runs the DCGM exporter on GPU nodes itself. POD: kube_pod_* series
    // (pending GPU requests, for the GPU alert).
    enableComponents: ["SYSTEM_COMPONENTS", "POD", "DCGM"],
  };
}

/** Node selector for GPU pods: GKE labels GPU nodes with their accelerator type. */
export function gkeGpuNodeSelector(acceleratorType: string): Record<string, string> {
  return { "cloud.google.com/gke-accelerator": acceleratorType };
}

/** Region of a GKE location: `europe-west4-a` → `europe-west4`; a region stays itself. */
export function regionOf(location: string): string {
  return /^[a-z]+-[a-z]+\d+-[a-z]$/.test(location) ? location.slice(0, location.lastIndexOf("-")) : location;
}

/** GKE's names for the sharing strategies of `gpuSharing.strategy`. */
const GKE_SHARING = { timeSlicing: "TIME_SHARING", mps: "MPS" } as const;

/** The GPU pool's `gpuSharingConfig`; `undefined` when sharing is off. */
export function gkeGpuSharingConfig(s: GpuSharingConfig | undefined): gcp.types.input.container.NodePoolNodeConfigGuestAcceleratorGpuSharingConfig | undefined {
  if (!s || s.strategy === "none") return undefined;
  return { gpuSharingStrategy: GKE_SHARING[s.strategy], maxSharedClientsPerGpu: s.maxSharedClientsPerGpu };
}

/**
 * Node labels GKE puts on shared-GPU nodes, which pods select to be placed there (GKE only
 * schedules a pod onto shared GPUs when it asks for them this way).
 */
export function gkeSharingSelector(s: GpuSharingConfig | undefined): Record<string, string> {
  if (!s || s.strategy === "none") return {};
  return {
    "cloud.google.com/gke-gpu-sharing-strategy": GKE_SHARING[s.strategy].toLowerCase().replace("_", "-"),
    "cloud.google.com/gke-max-shared-clients-per-gpu": String(s.maxSharedClientsPerGpu),
  };
}

/** Node config of the GPU pool. Pure, so tests check it without a cloud. */
export function gpuNodeConfig(
  c: GkeClusterConfig,
  serviceAccount: pulumi.Input<string>,
  labels: Record<string, string>,
  sharing?: GpuSharingConfig,
): gcp.types.input.container.NodePoolNodeConfig {
  const p = c.gpuPool;
  const gpuSharingConfig = gkeGpuSharingConfig(sharing);
  return {
    machineType: p.machineType,
    serviceAccount,
    oauthScopes: ["https://www.googleapis.com/auth/cloud-platform"],
    guestAccelerators: [
      {
        type: p.acceleratorType,
        count: p.acceleratorCount,
        gpuDriverInstallationConfig: { gpuDriverVersion: p.driverVersion },
        ...(sharing?.migPartitionSize ? { gpuPartitionSize: sharing.migPartitionSize } : {}),
        ...(gpuSharingConfig ? { gpuSharingConfig } : {}),
      },
    ],
    // GKE adds this taint to GPU nodes too; stating it keeps the contract visible in diffs.
    taints: [{ key: GPU_TAINT.key, value: GPU_TAINT.value, effect: "NO_SCHEDULE" }],
    spot: p.spot.enabled,
    labels,
    workloadMetadataConfig: { mode: "GKE_METADATA" },
    shieldedInstanceConfig: { enableSecureBoot: true, enableIntegrityMonitoring: true },
  };
}

/** A kubeconfig that authenticates with `gke-gcloud-auth-plugin` (no static credentials). */
export function gkeKubeconfig(name: string, endpoint: string, caCertificate: string): string {
  const ctx = `gke-${name}`;
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: ctx, cluster: { server: `https://${endpoint}`, "certificate-authority-data": caCertificate } }],
    contexts: [{ name: ctx, context: { cluster: ctx, user: ctx } }],
    "current-context": ctx,
    users: [
      {
        name: ctx,
        user: {
          exec: {
            apiVersion: "client.authentication.k8s.io/v1beta1",
            command: "gke-gcloud-auth-plugin",
            installHint: "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            provideClusterInfo: true,
          },
        },
      },
    ],
  });
}

export class GkeCluster extends pulumi.ComponentResource implements PlatformCluster {
  readonly clusterName: pulumi.Output<string>;
  readonly provider: k8s.Provider;
  readonly kubeconfig: pulumi.Output<string>;
  readonly gpu: Placement;
  readonly burst = undefined;
  readonly registryServer: pulumi.Output<string | undefined>;
  readonly cloudManagesDevicePlugin = true;
  /** Workload identity pool, `<project>.svc.id.goog`. */
  readonly workloadPool: string;
  readonly gcp: { readonly project: string; readonly location: string };
  readonly registryAuth: pulumi.Output<{ username: string; password: string }>;

  constructor(name: string, args: GkeClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:cluster:GkeCluster", name, {}, opts);
    const c = args.cluster;
    const labels = { ...(args.labels ?? {}), "managed-by": "pulumi", platform: "mlplatform" };
    const parent = { parent: this };
    const project = c.project;
    this.workloadPool = `${project}.svc.id.goog`;
    this.gcp = { project, location: c.location };

    // Nodes run as a dedicated, minimal service account, not the Compute default one.
    const nodeSa = new gcp.serviceaccount.Account(
      `${name}-nodes`,
      { project, accountId: dnsLabel(`${name}-mlp-nodes`).slice(0, 30), displayName: `mlplatform ${name} GKE nodes` },
      parent,
    );
    const member = pulumi.interpolate`serviceAccount:${nodeSa.email}`;
    new gcp.projects.IAMMember(`${name}-nodes-role`, { project, role: "roles/container.defaultNodeServiceAccount", member }, parent);

    const cluster = new gcp.container.Cluster(
      `${name}-gke`,
      {
        project,
        location: c.location,
        releaseChannel: { channel: c.releaseChannel },
        // Pools are managed below; the default pool is removed right after creation.
        removeDefaultNodePool: true,
        initialNodeCount: 1,
        networkingMode: "VPC_NATIVE",
        ipAllocationPolicy: {},
        // Dataplane V2 enforces NetworkPolicy without a separate add-on.
        datapathProvider: "ADVANCED_DATAPATH",
        workloadIdentityConfig: { workloadPool: this.workloadPool },
        monitoringConfig: gkeMonitoringConfig(args.managedPrometheus ?? false),
        deletionProtection: c.deletionProtection,
        resourceLabels: labels,
      },
      parent,
    );

    new gcp.container.NodePool(
      `${name}-system`,
      {
        project,
        location: c.location,
        cluster: cluster.name,
        autoscaling: { minNodeCount: c.systemPool.minCount, maxNodeCount: c.systemPool.maxCount },
        initialNodeCount: c.systemPool.minCount,
        management: { autoRepair: true, autoUpgrade: true },
        nodeConfig: {
          machineType: c.systemPool.machineType,
          serviceAccount: nodeSa.email,
          oauthScopes: ["https://www.googleapis.com/auth/cloud-platform"],
          workloadMetadataConfig: { mode: "GKE_METADATA" },
          labels,
        },
      },
      { parent: this, ignoreChanges: ["initialNodeCount"] },
    );

    new gcp.container.NodePool(
      `${name}-gpu`,
      {
        project,
        location: c.location,
        cluster: cluster.name,
        nodeLocations: c.gpuPool.nodeLocations,
        autoscaling: { minNodeCount: c.gpuPool.minCount, maxNodeCount: c.gpuPool.maxCount },
        initialNodeCount: c.gpuPool.minCount,
        management: { autoRepair: true, autoUpgrade: true },
        nodeConfig: gpuNodeConfig(c, nodeSa.email, labels, args.gpuSharing),
      },
      { parent: this, ignoreChanges: ["initialNodeCount"] },
    );

    const registryLocation = c.registryLocation ?? regionOf(c.location);
    const repo = new gcp.artifactregistry.Repository(
      `${name}-images`,
      {
        project,
        location: registryLocation,
        repositoryId: dnsLabel(`${name}-mlplatform`),
        format: "DOCKER",
        description: "mlplatform trainer and serving images",
        labels,
      },
      parent,
    );
    new gcp.artifactregistry.RepositoryIamMember(
      `${name}-images-reader`,
      { project, location: registryLocation, repository: repo.name, role: "roles/artifactregistry.reader", member },
      parent,
    );

    this.clusterName = cluster.name;
    this.kubeconfig = pulumi.secret(
      pulumi.all([cluster.name, cluster.endpoint, cluster.masterAuth]).apply(([n, endpoint, auth]) => gkeKubeconfig(n, endpoint, auth.clusterCaCertificate ?? "")),
    );
    this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: this.kubeconfig, enableServerSideApply: true }, parent);
    this.registryServer = pulumi.interpolate`${registryLocation}-docker.pkg.dev/${project}/${repo.repositoryId}`;
    // The deployer's own short-lived access token pushes images: no key file anywhere.
    const token = gcp.organizations.getClientConfigOutput({ parent: this }).accessToken;
    this.registryAuth = pulumi.secret(token.apply((password) => ({ username: "oauth2accesstoken", password })));
    // With sharing on, every GPU workload (notebook GPU profile, serving, training) asks for
    // a shared GPU by selecting the sharing labels.
    this.gpu = {
      nodeSelector: { ...gkeGpuNodeSelector(c.gpuPool.acceleratorType), ...gkeSharingSelector(args.gpuSharing) },
      tolerations: [GPU_TOLERATION],
    };

    this.registerOutputs({ clusterName: this.clusterName, kubeconfig: this.kubeconfig, registryServer: this.registryServer });
  }
}
