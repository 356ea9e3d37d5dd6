import { describe, expect, it } from "vitest";
import { SECRET_OUTPUT_NAMES } from "../stacks/contract";
import { AZURE_ROLES } from "../components/aksCluster";
import { FAKE, inventory, ofType, one, runStack, stackConfig, type StackRun } from "./harness";

const CLUSTER = "azure-native:containerservice:ManagedCluster";
const POOL = "azure-native:containerservice:AgentPool";
const ROLE = "azure-native:authorization:RoleAssignment";

/** The NVIDIA device plugin's chart resource. */
function deviceChart(r: StackRun) {
  const found = ofType(r, "kubernetes:helm.sh/v4:Chart").filter((c) => c.name === "gpu-chart");
  if (found.length !== 1) throw new Error(`expected the device plugin chart once, found ${found.length}`);
  return found[0]!;
}

describe("aks stack (Pulumi.aks.yaml) under mocks", () => {
  let run: StackRun;
  it("registers the cluster, pools, registry and roles", async () => {
    run = await runStack("aks");
    console.log("aks inventory", inventory(run));
    expect(ofType(run, CLUSTER)).toHaveLength(1);
    expect(ofType(run, "azure-native:containerregistry:Registry")).toHaveLength(1);
    // Nothing from the other clouds.
    expect(run.resources.filter((r) => r.type.startsWith("gcp:"))).toEqual([]);
  });

  it("GPU pool: NC series, tainted, autoscaled from zero, on spot with eviction Delete", () => {
    const gpu = one(run, POOL).inputs;
    expect(gpu.agentPoolName).toBe("gpu");
    expect(gpu.mode).toBe("User");
    expect(gpu.vmSize).toMatch(/^Standard_NC/);
    expect(gpu.nodeTaints).toEqual(["nvidia.com/gpu=present:NoSchedule"]);
    expect(gpu.enableAutoScaling).toBe(true);
    expect(gpu.minCount).toBe(0);
    expect(gpu.maxCount).toBe(4);
    expect(gpu.scaleSetPriority).toBe("Spot");
    expect(gpu.scaleSetEvictionPolicy).toBe("Delete");
    expect(gpu.spotMaxPrice).toBe(-1);
    expect(gpu.gpuProfile).toEqual({ driver: "Install" });
  });

  it("cluster: network policy, OIDC issuer, workload identity, tainted system pool, virtual nodes", () => {
    const c = one(run, CLUSTER).inputs;
    expect(c.networkProfile.networkPolicy).toBe("azure");
    expect(c.networkProfile.networkPlugin).toBe("azure");
    expect(c.oidcIssuerProfile).toEqual({ enabled: true });
    expect(c.securityProfile.workloadIdentity).toEqual({ enabled: true });
    expect(c.agentPoolProfiles).toHaveLength(1);
    expect(c.agentPoolProfiles[0].mode).toBe("System");
    expect(c.addonProfiles.aciConnectorLinux).toEqual({ enabled: true, config: { SubnetName: "virtual-nodes" } });
    const vnSubnet = ofType(run, "azure-native:network:Subnet").find((s) => s.inputs.subnetName === "virtual-nodes");
    expect(vnSubnet?.inputs.delegations).toEqual([{ name: "aci", serviceName: "Microsoft.ContainerInstance/containerGroups" }]);
  });

  it("kubelet identity gets AcrPull on the registry; ACI connector gets the subnet", () => {
    const roles = ofType(run, ROLE);
    const acrPull = roles.find((r) => r.inputs.roleDefinitionId.endsWith(AZURE_ROLES.acrPull));
    expect(acrPull?.inputs.principalId).toBe(FAKE.kubeletObjectId);
    expect(acrPull?.inputs.roleDefinitionId).toBe(`/subscriptions/${FAKE.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${AZURE_ROLES.acrPull}`);
    expect(acrPull?.inputs.scope).toBe("platform-acr-id");
    const aci = roles.find((r) => r.inputs.principalId === FAKE.aciObjectId);
    expect(aci?.inputs.roleDefinitionId).toContain(AZURE_ROLES.networkContributor);
    expect(aci?.inputs.scope).toBe("platform-virtual-nodes-id");
  });

  it("registry: admin user off, alphanumeric name", () => {
    const acr = one(run, "azure-native:containerregistry:Registry").inputs;
    expect(acr.adminUserEnabled).toBe(false);
    expect(acr.registryName).toMatch(/^[a-z0-9]{5,50}$/);
  });

  it("installs the NVIDIA device plugin chart on the GPU pool, in a privileged namespace of its own", () => {
    const chart = deviceChart(run).inputs;
    expect(chart.chart).toBe("nvidia-device-plugin");
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart.values.nodeSelector).toEqual({ "mlplatform.io/accelerator": "nvidia" });
    expect(chart.values.tolerations).toEqual([{ key: "nvidia.com/gpu", operator: "Equal", value: "present", effect: "NoSchedule" }]);
    const ns = ofType(run, "kubernetes:core/v1:Namespace").find((n) => n.inputs.metadata.name === "nvidia-device-plugin");
    expect(ns?.inputs.metadata.labels["pod-security.kubernetes.io/enforce"]).toBe("privileged");
  });

  it("every Kubernetes object uses the cluster's explicit provider", () => {
    const k8sObjects = run.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "pulumi:providers:kubernetes");
    expect(k8sObjects.length).toBeGreaterThan(0);
    for (const r of k8sObjects) expect(r.provider, r.name).toMatch(/pulumi:providers:kubernetes::platform-k8s::/);
  });

  it("exports the contract: GPU placement, burst placement, registry, kubeconfig as a secret", () => {
    expect(run.outputs.clusterProvider).toBe("aks");
    expect(run.outputs.gpuEnabled).toBe(true);
    expect(run.outputs.gpuNodeSelector).toEqual({ "mlplatform.io/accelerator": "nvidia" });
    expect(run.outputs.burstEnabled).toBe(true);
    expect(run.outputs.burstNodeSelector).toMatchObject({ type: "virtual-kubelet" });
    expect(run.outputs.registryServer).toBe("platformacra1b2c3d4.azurecr.io");
    expect(run.outputs.kubeconfig).toBe(FAKE.kubeconfig);
    expect(run.secretOutputs.sort()).toEqual([...SECRET_OUTPUT_NAMES].sort());
  });

  it("without spot and burst: regular priority, no ACI connector, no virtual-node subnet", async () => {
    const base = stackConfig("aks")["mlplatform:cluster"] as Record<string, any>;
    const r = await runStack("aks", {
      "mlplatform:cluster": { ...base, gpuPool: { ...base.gpuPool, spot: { enabled: false } } },
      "mlplatform:burst": { enabled: false },
    });
    const gpu = one(r, POOL).inputs;
    expect(gpu.scaleSetPriority).toBe("Regular");
    expect(gpu.scaleSetEvictionPolicy).toBeUndefined();
    expect(one(r, CLUSTER).inputs.addonProfiles).toBeUndefined();
    expect(ofType(r, "azure-native:network:Subnet").map((s) => s.inputs.subnetName)).toEqual(["nodes"]);
    expect(r.outputs.burstEnabled).toBe(false);
  });
});
