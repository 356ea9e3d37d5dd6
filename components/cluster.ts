/**
 * What every cluster component (AKS, GKE, existing) hands to the rest of the platform.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { Toleration } from "../config";

/** The taint every GPU pool carries, so that only pods asking for a GPU land there. */
export const GPU_TAINT = { key: "nvidia.com/gpu", value: "present", effect: "NoSchedule" } as const;

/** The toleration GPU workloads need for {@link GPU_TAINT}. */
export const GPU_TOLERATION: Toleration = {
  key: GPU_TAINT.key,
  operator: "Equal",
  value: GPU_TAINT.value,
  effect: GPU_TAINT.effect,
};

/** Node label we put on our GPU pools (AKS) and select on. */
export const GPU_POOL_LABEL = { "mlplatform.io/accelerator": "nvidia" } as const;

/** Where and how GPU (or burst) pods are scheduled. */
export interface Placement {
  /** Node labels the pod must select. */
  readonly nodeSelector: Record<string, string>;
  /** Tolerations the pod must carry. */
  readonly tolerations: Toleration[];
}

/** The contract between a cluster component and everything deployed onto it. */
export interface PlatformCluster {
  /** Cluster name as the cloud (or kubeconfig context) knows it. */
  readonly clusterName: pulumi.Output<string>;
  /** Explicit provider every Kubernetes child must use. */
  readonly provider: k8s.Provider;
  /** Kubeconfig for the cluster; always a secret. Empty for in-cluster credentials. */
  readonly kubeconfig: pulumi.Output<string>;
  /** Placement of GPU workloads; `undefined` when the cluster has no GPU. */
  readonly gpu: Placement | undefined;
  /** Placement of CPU sweep trials on burst capacity (AKS virtual nodes); `undefined` when off. */
  readonly burst: Placement | undefined;
  /** Image registry our images are pushed to and pulled from (e.g. `myacr.azurecr.io`), if any. */
  readonly registryServer: pulumi.Output<string | undefined>;
  /** True when the cloud installs and runs the NVIDIA device plugin itself (GKE). */
  readonly cloudManagesDevicePlugin: boolean;
  /** Credentials to push images to `registryServer`, when the cluster can mint them (GKE); else the deployer's Docker login. */
  readonly registryAuth?: pulumi.Output<{ username: string; password: string }>;
  /** AKS: where Azure resources that belong to the cluster (storage, monitoring) go, and the cluster's ARM id. */
  readonly azure?: { readonly resourceGroupName: pulumi.Output<string>; readonly location: string; readonly clusterId?: pulumi.Output<string> };
  /** GKE: project and location for Google Cloud resources that belong to the cluster. */
  readonly gcp?: { readonly project: string; readonly location: string };
}

/** Kubernetes object names we derive from Pulumi names are cut to this many characters. */
const MAX_LABEL = 63;

/** Lowercase alphanumerics only: for Azure names that allow nothing else (registries). */
export function alphanumeric(name: string, max = 40): string {
  const s = name.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (s === "") throw new Error(`cannot derive an alphanumeric name from "${name}"`);
  return s.slice(0, max);
}

/** DNS-1123 label from any string. */
export function dnsLabel(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, MAX_LABEL)
    .replace(/-+$/g, "");
  if (s === "") throw new Error(`cannot derive a DNS-1123 label from "${name}"`);
  return s;
}
