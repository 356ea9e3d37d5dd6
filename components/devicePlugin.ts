/**
 * The NVIDIA device plugin: advertises `nvidia.com/gpu` on GPU nodes so pods can request
 * GPUs. Installed only where the cloud does not run it itself (AKS, existing clusters).
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import type { ClusterConfig, GpuSharingConfig, PlatformConfig } from "../config";
import type { Placement } from "./cluster";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels } from "./namespaces";
import { charts } from "./versions";

/** Whether the stack installs the device plugin (config `devicePlugin.install`). */
export function wantsDevicePlugin(install: PlatformConfig["devicePlugin"]["install"], cluster: ClusterConfig): boolean {
  if (install === "never") return false;
  if (install === "always") return true;
  switch (cluster.provider) {
    case "aks":
      return true;
    case "gke":
      return false; // GKE deploys and upgrades its own device plugin.
    case "existing":
      return cluster.gpu === "nvidia";
  }
}

/**
 * The device plugin's config file for GPU sharing (`gpuSharing`): each GPU is advertised as
 * `replicas` `nvidia.com/gpu` devices that take turns (time-slicing) or run side by side
 * under MPS. `undefined` when sharing is off (the plugin's defaults: whole GPUs).
 */
export function sharingConfig(s: Pick<GpuSharingConfig, "strategy" | "maxSharedClientsPerGpu">): Record<string, unknown> | undefined {
  if (s.strategy === "none") return undefined;
  const resources = [{ name: "nvidia.com/gpu", replicas: s.maxSharedClientsPerGpu }];
  // failRequestsGreaterThanOne: a pod asking for 2 shares would get two turns on one GPU, not
  // two GPUs; refusing it says so instead of pretending.
  const sharing = s.strategy === "timeSlicing" ? { timeSlicing: { failRequestsGreaterThanOne: true, resources } } : { mps: { resources } };
  return { version: "v1", sharing };
}

/** Helm values: run only on GPU nodes, tolerate their taint, and drop the chart's NFD-based affinity. */
export function devicePluginValues(gpu: Placement, sharing?: Pick<GpuSharingConfig, "strategy" | "maxSharedClientsPerGpu" | "migPartitionSize">): Record<string, unknown> {
  const config = sharing && sharingConfig(sharing);
  return {
    // MIG-partitioned pools (AKS gpuInstanceProfile): each partition is one nvidia.com/gpu.
    ...(sharing?.migPartitionSize ? { migStrategy: "single" } : {}),
    // The chart builds a ConfigMap from `map` and points the plugin at `default`.
    ...(config ? { config: { map: { default: YAML.stringify(config) }, default: "default" } } : {}),
    nodeSelector: gpu.nodeSelector,
    tolerations: gpu.tolerations,
    // The chart's default affinity needs node-feature-discovery labels we do not install;
    // null removes it so the node selector above decides.
    affinity: null,
    gfd: { enabled: false },
    nfd: { enabled: false },
    resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
  };
}

export interface NvidiaDevicePluginArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** GPU node selector and tolerations from the cluster component. */
  readonly gpu: Placement;
  /** Helm repository URL; default the upstream one in versions.ts. */
  readonly repository?: string;
  /** Chart version; default pinned in versions.ts. */
  readonly version?: string;
  /** GPU sharing (`gpuSharing`); default none: whole GPUs. */
  readonly sharing?: Pick<GpuSharingConfig, "strategy" | "maxSharedClientsPerGpu" | "migPartitionSize">;
  /** Do not wait for the DaemonSet to become ready (API servers without nodes). Default false. */
  readonly skipAwait?: boolean;
}

export class NvidiaDevicePlugin extends pulumi.ComponentResource {
  readonly namespace: pulumi.Output<string>;
  readonly chartVersion: string;

  constructor(name: string, args: NvidiaDevicePluginArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:gpu:NvidiaDevicePlugin", name, {}, opts);
    const pin = charts.nvidiaDevicePlugin;
    this.chartVersion = args.version ?? pin.version;
    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      {
        metadata: {
          name: "nvidia-device-plugin",
          // privileged: the plugin mounts the kubelet's device-plugin socket directory from
          // the host, which baseline and restricted forbid. Nothing else runs here.
          labels: { ...PLATFORM_LABELS, ...podSecurityLabels("privileged") },
          annotations: awaitAnnotations(args.skipAwait ?? false),
        },
      },
      { parent: this, provider: args.provider },
    );
    new k8s.helm.v4.Chart(
      `${name}-chart`,
      {
        chart: pin.chart,
        version: this.chartVersion,
        repositoryOpts: { repo: args.repository ?? pin.repository },
        namespace: ns.metadata.name,
        values: devicePluginValues(args.gpu, args.sharing),
        skipAwait: args.skipAwait ?? false,
      },
      { parent: this, provider: args.provider },
    );
    this.namespace = ns.metadata.name;
    this.registerOutputs({ namespace: this.namespace });
  }
}
