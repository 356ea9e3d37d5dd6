/**
 * GPU node pools carry the `nvidia.com/gpu` NoSchedule taint (AKS and GKE node pools).
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, elements, isRecord, levelOf, read, show, str, type PolicyOptions } from "./common";

export const GPU_TAINT_KEY = "nvidia.com/gpu";

/** Azure N-series (NC, ND, NV) sizes are the GPU sizes. */
export const AZURE_GPU_VM_SIZE = /^Standard_N[CDV]/i;
/** GCE accelerator-optimized families come with GPUs attached whatever `guestAccelerators` says. */
export const GCE_GPU_MACHINE_TYPE = /^(a2|a3|a4|g2|g4)-/;

const AKS_AGENT_POOL = /^azure-native:containerservice(\/[^:]+)?:AgentPool$/;
const AKS_CLUSTER = /^azure-native:containerservice(\/[^:]+)?:ManagedCluster$/;
const AZURE_CLASSIC_POOL = "azure:containerservice/kubernetesClusterNodePool:KubernetesClusterNodePool";
const GKE_NODE_POOL = "gcp:container/nodePool:NodePool";
const GKE_CLUSTER = "gcp:container/cluster:Cluster";

/** Whether an AKS taint string (`key=value:Effect` or `key:Effect`) is the GPU NoSchedule taint. */
export function isAksGpuTaint(taint: unknown): boolean {
  if (typeof taint !== "string") return false;
  const colon = taint.lastIndexOf(":");
  if (colon < 0) return false;
  const key = taint.slice(0, colon).split("=")[0]!.trim();
  return key === GPU_TAINT_KEY && taint.slice(colon + 1).trim() === "NoSchedule";
}

/** Whether a GKE taint object is the GPU NoSchedule taint. */
export function isGkeGpuTaint(taint: unknown): boolean {
  return isRecord(taint) && read(taint, "key") === GPU_TAINT_KEY && read(taint, "effect") === "NO_SCHEDULE";
}

const WHY =
  "GPU node pools must carry the nvidia.com/gpu NoSchedule taint so that CPU pods never land on (and keep " +
  "awake) expensive GPU nodes: without it the autoscaler keeps a GPU node running for pods that need no GPU. " +
  "NoSchedule (not NoExecute) because the tolerations the platform hands to GPU workloads are for NoSchedule.";

/** One pool to check: where it is in the resource, its size and its taints. */
interface Pool {
  readonly where: string;
  readonly gpu: boolean | typeof UNKNOWN;
  readonly size: string;
  readonly taints: unknown;
  readonly isGpuTaint: (t: unknown) => boolean;
  readonly fix: string;
}

function aksPool(p: unknown, where: string): Pool {
  const vmSize = read(p, "vmSize");
  return {
    where,
    gpu: vmSize === UNKNOWN ? UNKNOWN : typeof vmSize === "string" && AZURE_GPU_VM_SIZE.test(vmSize),
    size: `vmSize ${show(vmSize)}`,
    taints: read(p, "nodeTaints"),
    isGpuTaint: isAksGpuTaint,
    fix: `add "${GPU_TAINT_KEY}=present:NoSchedule" to nodeTaints`,
  };
}

function gkeNodeConfig(nodeConfig: unknown, where: string): Pool {
  const accelerators = elements(read(nodeConfig, "guestAccelerators"));
  const machineType = read(nodeConfig, "machineType");
  const attached = accelerators?.some((a) => a === UNKNOWN || (isRecord(a) && read(a, "count") !== 0)) ?? false;
  const gpu =
    read(nodeConfig, "guestAccelerators") === UNKNOWN || machineType === UNKNOWN
      ? UNKNOWN
      : attached || (typeof machineType === "string" && GCE_GPU_MACHINE_TYPE.test(machineType));
  return {
    where: `${where}nodeConfig`,
    gpu,
    size: `machineType ${show(machineType)}${attached ? " with guestAccelerators" : ""}`,
    taints: read(nodeConfig, "taints"),
    isGpuTaint: isGkeGpuTaint,
    fix: `add { key: "${GPU_TAINT_KEY}", value: "present", effect: "NO_SCHEDULE" } to nodeConfig.taints`,
  };
}

/** The node pools a resource defines (an AKS/GKE cluster can define pools inline). */
function poolsOf(type: string, props: unknown): Pool[] | undefined {
  if (AKS_AGENT_POOL.test(type) || type === AZURE_CLASSIC_POOL) return [aksPool(props, "")];
  if (AKS_CLUSTER.test(type)) {
    return (elements(read(props, "agentPoolProfiles")) ?? []).map((p, i) => aksPool(p, `agentPoolProfiles[${i}]${str(read(p, "name")) ? ` ("${str(read(p, "name"))}")` : ""}`));
  }
  if (type === GKE_NODE_POOL) return [gkeNodeConfig(read(props, "nodeConfig"), "")];
  if (type === GKE_CLUSTER) {
    const inline = (elements(read(props, "nodePools")) ?? []).map((p, i) => gkeNodeConfig(read(p, "nodeConfig"), `nodePools[${i}].`));
    return [gkeNodeConfig(read(props, "nodeConfig"), ""), ...inline];
  }
  return undefined;
}

export function gpuPoolsTainted(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "gpu-pools-tainted",
    description: WHY,
    enforcementLevel: levelOf(opts),
    severity: "high",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      const pools = poolsOf(args.type, args.props);
      if (!pools) return args.notApplicable("not an AKS or GKE node pool or cluster");
      for (const pool of pools) {
        // Decided again on `pulumi up` when the size is known.
        if (pool.gpu !== true) continue;
        const taints = pool.taints;
        const list = elements(taints) ?? [];
        if (taints === UNKNOWN || list.includes(UNKNOWN)) continue;
        if (!list.some(pool.isGpuTaint)) {
          const where = pool.where ? `${pool.where}: ` : "";
          reportViolation(`${where}GPU pool (${pool.size}) has no ${GPU_TAINT_KEY} NoSchedule taint (taints: ${show(taints ?? [])}); ${pool.fix}.`);
        }
      }
    },
  };
}
