import { describe, expect, it } from "vitest";
import { gpuPoolsTainted, noUnapprovedLoadBalancer } from "../../policy/policies";
import { isAksGpuTaint } from "../../policy/policies/gpuPoolsTainted";
import { UNKNOWN_STRING, check, type Target } from "./support";

describe("gpu-pools-tainted", () => {
  const policy = gpuPoolsTainted();
  const aksPool = (vmSize: string, nodeTaints?: string[]): Target => ({
    type: "azure-native:containerservice:AgentPool",
    props: { agentPoolName: "gpu", mode: "User", vmSize, ...(nodeTaints ? { nodeTaints } : {}) },
  });
  const gkePool = (nodeConfig: Record<string, unknown>): Target => ({ type: "gcp:container/nodePool:NodePool", props: { nodeConfig } });
  const t4 = { type: "nvidia-tesla-t4", count: 1 };
  const gkeTaint = { key: "nvidia.com/gpu", value: "present", effect: "NO_SCHEDULE" };

  it("parses AKS taint strings", () => {
    expect(isAksGpuTaint("nvidia.com/gpu=present:NoSchedule")).toBe(true);
    expect(isAksGpuTaint("nvidia.com/gpu:NoSchedule")).toBe(true);
    expect(isAksGpuTaint("nvidia.com/gpu=present:NoExecute")).toBe(false);
    expect(isAksGpuTaint("nvidia.com/gpu=present:PreferNoSchedule")).toBe(false);
    expect(isAksGpuTaint("sku=gpu:NoSchedule")).toBe(false);
  });

  it("AKS: an NC/ND/NV agent pool passes with the taint and fails without it", async () => {
    for (const size of ["Standard_NC4as_T4_v3", "Standard_ND96asr_v4", "Standard_NV36ads_A10_v5"]) {
      expect((await check(policy, aksPool(size, ["nvidia.com/gpu=present:NoSchedule"]))).violations, size).toEqual([]);
      expect((await check(policy, aksPool(size))).violations, size).toEqual([
        expect.stringMatching(new RegExp(`^GPU pool \\(vmSize "${size}"\\) has no nvidia.com/gpu NoSchedule taint \\(taints: \\[\\]\\)`)),
      ]);
      expect((await check(policy, aksPool(size, ["CriticalAddonsOnly=true:NoSchedule"]))).violations, size).toHaveLength(1);
    }
  });

  it("AKS: CPU pools need no taint; API-versioned and classic azure types are checked too", async () => {
    expect((await check(policy, aksPool("Standard_D4s_v5"))).violations).toEqual([]);
    const versioned = { ...aksPool("Standard_NC6s_v3"), type: "azure-native:containerservice/v20240901:AgentPool" };
    expect((await check(policy, versioned)).violations).toHaveLength(1);
    const classic: Target = { type: "azure:containerservice/kubernetesClusterNodePool:KubernetesClusterNodePool", props: { vmSize: "Standard_NC6s_v3", nodeTaints: [] } };
    expect((await check(policy, classic)).violations).toHaveLength(1);
  });

  it("AKS: GPU pools inline in a ManagedCluster's agentPoolProfiles are checked by name", async () => {
    const cluster = (gpuTaints: string[]): Target => ({
      type: "azure-native:containerservice:ManagedCluster",
      props: {
        agentPoolProfiles: [
          { name: "system", mode: "System", vmSize: "Standard_D4s_v5", nodeTaints: ["CriticalAddonsOnly=true:NoSchedule"] },
          { name: "gpu", mode: "User", vmSize: "Standard_NC4as_T4_v3", nodeTaints: gpuTaints },
        ],
      },
    });
    expect((await check(policy, cluster(["nvidia.com/gpu=present:NoSchedule"]))).violations).toEqual([]);
    expect((await check(policy, cluster([]))).violations).toEqual([expect.stringMatching(/^agentPoolProfiles\[1\] \("gpu"\): GPU pool/)]);
  });

  it("GKE: a node pool with guestAccelerators passes with the taint and fails without it", async () => {
    expect((await check(policy, gkePool({ machineType: "n1-standard-8", guestAccelerators: [t4], taints: [gkeTaint] }))).violations).toEqual([]);
    expect((await check(policy, gkePool({ machineType: "n1-standard-8", guestAccelerators: [t4] }))).violations).toEqual([
      expect.stringMatching(/^nodeConfig: GPU pool \(machineType "n1-standard-8" with guestAccelerators\) has no nvidia.com\/gpu NoSchedule taint/),
    ]);
    const preferOnly = { ...gkeTaint, effect: "PREFER_NO_SCHEDULE" };
    expect((await check(policy, gkePool({ machineType: "n1-standard-8", guestAccelerators: [t4], taints: [preferOnly] }))).violations).toHaveLength(1);
  });

  it("GKE: accelerator-optimized machine types count as GPU pools even without guestAccelerators; CPU pools pass", async () => {
    expect((await check(policy, gkePool({ machineType: "g2-standard-8" }))).violations).toHaveLength(1);
    expect((await check(policy, gkePool({ machineType: "a2-highgpu-1g", taints: [gkeTaint] }))).violations).toEqual([]);
    expect((await check(policy, gkePool({ machineType: "e2-standard-4" }))).violations).toEqual([]);
    expect((await check(policy, gkePool({ machineType: "n1-standard-8", guestAccelerators: [{ ...t4, count: 0 }] }))).violations).toEqual([]);
  });

  it("GKE: a Cluster's default nodeConfig and inline nodePools are checked", async () => {
    const cluster: Target = {
      type: "gcp:container/cluster:Cluster",
      props: {
        nodeConfig: { machineType: "e2-standard-4" },
        nodePools: [{ name: "gpu", nodeConfig: { machineType: "n1-standard-8", guestAccelerators: [t4] } }],
      },
    };
    expect((await check(policy, cluster)).violations).toEqual([expect.stringMatching(/^nodePools\[0\].nodeConfig: GPU pool/)]);
    expect((await check(policy, { type: "gcp:container/cluster:Cluster", props: { removeDefaultNodePool: true, initialNodeCount: 1 } })).violations).toEqual([]);
  });

  it("skips sizes and taints not known during preview, and is not applicable to other resources", async () => {
    expect((await check(policy, aksPool(UNKNOWN_STRING))).violations).toEqual([]);
    expect((await check(policy, { ...aksPool("Standard_NC6s_v3"), props: { vmSize: "Standard_NC6s_v3", nodeTaints: UNKNOWN_STRING } })).violations).toEqual([]);
    expect((await check(policy, { type: "kubernetes:core/v1:Service", props: {} })).notApplicable).toMatch(/not an AKS or GKE node pool/);
  });
});

describe("no-unapproved-load-balancer", () => {
  const policy = noUnapprovedLoadBalancer();
  const service = (type: string, annotations?: Record<string, string>): Target => ({
    type: "kubernetes:core/v1:Service",
    props: { metadata: { namespace: "ml-serving", ...(annotations ? { annotations } : {}) }, spec: { type, ports: [{ port: 80 }] } },
  });

  it("passes ClusterIP and NodePort Services and Services without a type", async () => {
    expect((await check(policy, service("ClusterIP"))).violations).toEqual([]);
    expect((await check(policy, service("NodePort"))).violations).toEqual([]);
    expect((await check(policy, { type: "kubernetes:core/v1:Service", props: { spec: { ports: [{ port: 80 }] } } })).violations).toEqual([]);
  });

  it('fails a LoadBalancer Service unless annotated mlplatform.io/allow-load-balancer: "true"', async () => {
    expect((await check(policy, service("LoadBalancer"))).violations).toEqual([
      expect.stringMatching(/^spec.type is LoadBalancer without the annotation mlplatform.io\/allow-load-balancer: "true" \(found none\)/),
    ]);
    expect((await check(policy, service("LoadBalancer", { "mlplatform.io/allow-load-balancer": "yes" }))).violations).toEqual([expect.stringMatching(/\(found "yes"\)/)]);
    expect((await check(policy, service("LoadBalancer", { "mlplatform.io/allow-load-balancer": "true" }))).violations).toEqual([]);
  });

  it("is not applicable to anything but Services", async () => {
    expect((await check(policy, { type: "kubernetes:networking.k8s.io/v1:Ingress", props: {} })).notApplicable).toBe("not a Service");
  });
});
