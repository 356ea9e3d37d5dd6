/**
 * Kueue: queues jobs until their team's quota admits them, and lets teams borrow each other's
 * idle quota within one cohort.
 *
 * Shape (Kueue's own model): every node pool is a ResourceFlavor (one per GPU pool, one for
 * CPU nodes); every team has a ClusterQueue holding its nominal quota in each flavor, all in
 * one cohort; a team submits to the LocalQueue in its namespace. A pool is a flavor rather
 * than a ClusterQueue of its own because Kueue keeps quota and borrowing on ClusterQueues and
 * a LocalQueue feeds exactly one of them: per-team quotas and borrowing between teams need
 * one ClusterQueue per team, which then spans the pools.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import type { Placement } from "./cluster";
import { GPU_TAINT } from "./cluster";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels } from "./namespaces";
import { charts, type ChartPin } from "./versions";

/** API version of the Kueue objects we author (the chart's storage version). */
export const KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta2";
/** The label that puts a job (TFJob, Job, pod) into a LocalQueue of its namespace (part of the output contract). */
export { QUEUE_NAME_LABEL } from "../stacks/contract";
/** Namespace label that marks a team namespace (its value is the team's name). */
export const TEAM_LABEL = "mlplatform.io/team";
/** Namespace of the Kueue controller. */
export const KUEUE_NAMESPACE = "kueue-system";
/** Resources every ClusterQueue covers (one resource group, so a pod's CPU, memory and GPU come from one pool). */
export const COVERED_RESOURCES = ["cpu", "memory", "nvidia.com/gpu"] as const;
/** The ResourceFlavor of CPU-only nodes. */
export const CPU_FLAVOR = "cpu";
/**
 * ClusterQueue and LocalQueue of the platform's own pipelines: no quota of its own, so its
 * jobs run on quota the teams leave idle (and are preempted when a team reclaims it).
 */
export const PLATFORM_QUEUE = "platform";

/** A GPU node pool as Kueue sees it: a flavor with the pool's labels and taint. */
export interface GpuPool {
  /** Flavor name, e.g. `gpu`. */
  readonly name: string;
  readonly placement: Placement;
}

/** The GPU pools of a cluster (today one per cluster) named as flavors. */
export function gpuPools(gpu: Placement | undefined): GpuPool[] {
  return gpu ? [{ name: "gpu", placement: gpu }] : [];
}

/** Nominal quota of one queue. */
export interface QueueQuota {
  readonly gpu: number;
  readonly cpu: string;
  readonly memory: string;
}

/**
 * ResourceFlavors: one per GPU pool (its node labels, and its taint so that Kueue only
 * assigns the flavor to pods that tolerate it) and one for CPU nodes.
 */
export function resourceFlavorManifests(pools: readonly GpuPool[]): Record<string, any>[] {
  const flavor = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: KUEUE_API_VERSION,
    kind: "ResourceFlavor",
    metadata: { name, labels: { ...PLATFORM_LABELS } },
    spec,
  });
  return [
    ...pools.map((p) =>
      flavor(p.name, {
        nodeLabels: { ...p.placement.nodeSelector },
        nodeTaints: [{ key: GPU_TAINT.key, value: GPU_TAINT.value, effect: GPU_TAINT.effect }],
      }),
    ),
    flavor(CPU_FLAVOR, {}),
  ];
}

/**
 * A team's ClusterQueue: its quota in every GPU pool flavor (GPU pods) and in the CPU
 * flavor (CPU-only pods, no GPUs there), in `cohort`, where idle quota is lent and borrowed
 * and reclaimed by preemption when its owner needs it back.
 */
export function clusterQueueManifest(o: {
  name: string;
  namespace: string;
  cohort: string;
  quota: QueueQuota;
  pools: readonly GpuPool[];
  fairShareWeight: number;
  canBorrow: boolean;
}): Record<string, any> {
  const resources = (gpu: number) =>
    COVERED_RESOURCES.map((r) => ({
      name: r,
      nominalQuota: r === "cpu" ? o.quota.cpu : r === "memory" ? o.quota.memory : String(gpu),
      ...(o.canBorrow ? {} : { borrowingLimit: "0" }),
    }));
  return {
    apiVersion: KUEUE_API_VERSION,
    kind: "ClusterQueue",
    metadata: { name: o.name, labels: { ...PLATFORM_LABELS } },
    spec: {
      cohortName: o.cohort,
      // Only the team's own namespace may feed this queue.
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": o.namespace } },
      queueingStrategy: "BestEffortFIFO",
      resourceGroups: [
        {
          coveredResources: [...COVERED_RESOURCES],
          flavors: [...o.pools.map((p) => ({ name: p.name, resources: resources(o.quota.gpu) })), { name: CPU_FLAVOR, resources: resources(0) }],
        },
      ],
      preemption: { reclaimWithinCohort: "Any", withinClusterQueue: "LowerPriority", borrowWithinCohort: { policy: "Never" } },
      fairSharing: { weight: String(o.fairShareWeight) },
    },
  };
}

/** The LocalQueue a namespace submits to. */
export function localQueueManifest(o: { name: string; namespace: string; clusterQueue: string }): Record<string, any> {
  return {
    apiVersion: KUEUE_API_VERSION,
    kind: "LocalQueue",
    metadata: { name: o.name, namespace: o.namespace, labels: { ...PLATFORM_LABELS } },
    spec: { clusterQueue: o.clusterQueue },
  };
}

/**
 * Kueue's controller configuration: the integrations we use, fair sharing, and the namespaces
 * Kueue manages. The chart also scopes its admission webhooks by that selector; the pod
 * webhook fails closed, so without it a Kueue outage would stop pod creation in every
 * namespace, the platform's own included.
 */
export function kueueManagerConfig(managedNamespaces: readonly string[]): Record<string, unknown> {
  if (managedNamespaces.length === 0) throw new Error("kueue: at least one managed namespace is needed (the pipelines namespace)");
  return {
    apiVersion: "config.kueue.x-k8s.io/v1beta2",
    kind: "Configuration",
    health: { healthProbeBindAddress: ":8081" },
    metrics: { bindAddress: ":8443" },
    webhook: { port: 9443 },
    leaderElection: { leaderElect: true, resourceName: "c1f6bfd2.kueue.x-k8s.io" },
    managedJobsNamespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: [...managedNamespaces].sort() }] },
    // manageJobsWithoutQueueName stays off: only jobs that carry the queue label are queued.
    // TFJobs; batch Jobs; pods of Argo workflow steps that carry the queue label.
    integrations: { frameworks: ["batch/job", "kubeflow.org/tfjob", "pod"] },
    fairSharing: { preemptionStrategies: ["LessThanOrEqualToFinalShare", "LessThanInitialShare"] },
  };
}

/** Helm values: pinned release image (the chart defaults to a moving staging tag), our config. */
export function kueueValues(version: string, managedNamespaces: readonly string[]): Record<string, unknown> {
  return {
    controllerManager: {
      manager: {
        image: { repository: "registry.k8s.io/kueue/kueue", tag: `v${version}`, pullPolicy: "IfNotPresent" },
      },
    },
    managerConfig: { controllerManagerConfigYaml: YAML.stringify(kueueManagerConfig(managedNamespaces)) },
    enableKueueViz: false,
    enableCertManager: false,
  };
}

/** Where Helm gets the Kueue chart: a local archive, a classic repository, or the pinned OCI chart. */
export function kueueChartSource(
  pin: ChartPin,
  o: { chart?: string; repository?: string; version?: string },
): { chart: string; version?: string; repositoryOpts?: { repo: string } } {
  if (o.chart) return { chart: o.chart };
  const repo = o.repository ?? pin.repository;
  const version = o.version ?? pin.version;
  if (repo.startsWith("oci://")) return { chart: `${repo.replace(/\/+$/, "")}/${pin.chart}`, version };
  return { chart: pin.chart, version, repositoryOpts: { repo } };
}

export interface KueueArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** The cluster's GPU placement; `undefined` without GPUs (then only the CPU flavor exists). */
  readonly gpu: Placement | undefined;
  /** Helm repository (or OCI path); default pinned in versions.ts. */
  readonly repository?: string;
  /** Chart version; default pinned in versions.ts. */
  readonly version?: string;
  /** A local chart archive or directory instead; repository and version are then ignored. */
  readonly chart?: string;
  /** Cohort the platform's queue joins (the teams' cohort). */
  readonly cohort: string;
  /** Nominal quota of the platform's queue. Default 0 each: the pipelines borrow idle team quota. */
  readonly platformQuota?: QueueQuota;
  /** Namespace of the platform's pipelines: gets the LocalQueue {@link PLATFORM_QUEUE}. */
  readonly pipelinesNamespace: string;
  /** The team namespaces: with the pipelines namespace, the only ones Kueue manages. Default none. */
  readonly teamNamespaces?: readonly string[];
  /** Resources the LocalQueue waits for (the namespace). */
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for the controller (API servers without nodes). Default false. */
  readonly skipAwait?: boolean;
}

export class Kueue extends pulumi.ComponentResource {
  /** Flavor names (GPU pools first, then CPU), as team ClusterQueues list them. */
  readonly pools: readonly GpuPool[];
  /** The chart and flavors: what a ClusterQueue or LocalQueue must wait for. */
  readonly ready: pulumi.Resource[];
  /** LocalQueue of the platform's pipelines namespace. */
  readonly platformQueue: pulumi.Output<string>;

  constructor(name: string, args: KueueArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:queueing:Kueue", name, {}, opts);
    const pin = charts.kueue;
    const k8sOpts = { parent: this, provider: args.provider };
    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      {
        metadata: {
          name: KUEUE_NAMESPACE,
          labels: { ...PLATFORM_LABELS, ...podSecurityLabels("restricted") },
          annotations: awaitAnnotations(args.skipAwait ?? false),
        },
      },
      k8sOpts,
    );
    const chart = new k8s.helm.v4.Chart(
      `${name}-chart`,
      {
        name: "kueue",
        ...kueueChartSource(pin, args),
        namespace: ns.metadata.name,
        values: kueueValues(args.version ?? pin.version, [args.pipelinesNamespace, ...(args.teamNamespaces ?? [])]),
        skipAwait: args.skipAwait ?? false,
      },
      { ...k8sOpts, dependsOn: [ns] },
    );
    this.pools = gpuPools(args.gpu);
    const flavors = resourceFlavorManifests(this.pools).map(
      (m) => new k8s.apiextensions.CustomResource(`${name}-flavor-${m.metadata.name}`, m as k8s.apiextensions.CustomResourceArgs, { ...k8sOpts, dependsOn: [chart] }),
    );
    this.ready = [chart, ...flavors];
    const cq = new k8s.apiextensions.CustomResource(
      `${name}-platform-cq`,
      clusterQueueManifest({
        name: PLATFORM_QUEUE,
        namespace: args.pipelinesNamespace,
        cohort: args.cohort,
        quota: args.platformQuota ?? { gpu: 0, cpu: "0", memory: "0" },
        pools: this.pools,
        fairShareWeight: 1,
        canBorrow: true,
      }) as k8s.apiextensions.CustomResourceArgs,
      { ...k8sOpts, dependsOn: this.ready },
    );
    const lq = new k8s.apiextensions.CustomResource(
      `${name}-platform-lq`,
      localQueueManifest({ name: PLATFORM_QUEUE, namespace: args.pipelinesNamespace, clusterQueue: PLATFORM_QUEUE }) as k8s.apiextensions.CustomResourceArgs,
      { ...k8sOpts, dependsOn: [...this.ready, cq, ...(args.dependsOn ?? [])] },
    );
    this.platformQueue = lq.metadata.name;
    this.registerOutputs({ pools: this.pools.map((p) => p.name), platformQueue: this.platformQueue });
  }
}
