/**
 * Azure Kubernetes Service with a system pool, an autoscaled GPU pool, a container registry
 * the nodes can pull from, and (optionally) virtual nodes on Azure Container Instances.
 */
import * as authorization from "@pulumi/azure-native/authorization";
import * as containerregistry from "@pulumi/azure-native/containerregistry";
import * as containerservice from "@pulumi/azure-native/containerservice";
import * as network from "@pulumi/azure-native/network";
import * as resources from "@pulumi/azure-native/resources";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { AksClusterConfig } from "../config";
import { GPU_POOL_LABEL, GPU_TAINT, GPU_TOLERATION, alphanumeric, type Placement, type PlatformCluster } from "./cluster";

/** Built-in Azure role definition ids (the same in every tenant). */
export const AZURE_ROLES = {
  acrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
  networkContributor: "4d97b98b-1d4f-4787-a291-c67834d212e7",
} as const;

/** Where the virtual-node (ACI) pods go: AKS's virtual-kubelet labels and taints. */
export const AKS_VIRTUAL_NODE_PLACEMENT: Placement = {
  nodeSelector: { "kubernetes.io/role": "agent", "kubernetes.io/os": "linux", type: "virtual-kubelet" },
  tolerations: [
    { key: "virtual-kubelet.io/provider", operator: "Exists" },
    { key: "azure.com/aci", operator: "Exists", effect: "NoSchedule" },
  ],
};

/** Name of the subnet AKS virtual nodes use (the ACI connector looks it up by name). */
export const VIRTUAL_NODE_SUBNET = "virtual-nodes";

export interface AksClusterArgs {
  /** Validated `mlplatform:cluster` settings for AKS. */
  readonly cluster: AksClusterConfig;
  /** Virtual nodes on ACI for CPU sweep trials. Default: off. */
  readonly burst?: { readonly enabled: boolean; readonly subnetCidr: string };
  /** Tags on every Azure resource. Default: none. */
  readonly tags?: Readonly<Record<string, string>>;
  /** The metrics add-on for Azure Monitor managed Prometheus (observability mode azure-managed). Default false. */
  readonly managedPrometheus?: boolean;
  /** MIG partition size of the GPU pool (`gpuSharing.migPartitionSize`, e.g. `1g.10gb`); default none: whole GPUs. */
  readonly migPartitionSize?: string;
}

/** AKS's GPU instance profile for a MIG partition size: `2g.20gb` → `MIG2g`. */
export function aksGpuInstanceProfile(migPartitionSize: string): string {
  const m = /^([1-7])g\./.exec(migPartitionSize);
  if (!m) throw new Error(`gpuSharing.migPartitionSize must look like 1g.10gb; got "${migPartitionSize}"`);
  return `MIG${m[1]}g`;
}

/** First /16 of the VNet: the node (and, with Azure CNI, pod) subnet. */
export function nodeSubnetCidr(vnetCidr: string): string {
  const [a, b] = vnetCidr.split("/")[0]!.split(".");
  return `${a}.${b}.0.0/16`;
}

/** Agent-pool profile of the GPU pool. Pure, so tests check it without a cloud. */
export function gpuAgentPool(
  c: AksClusterConfig,
  subnetId?: pulumi.Input<string>,
  migPartitionSize?: string,
): Omit<containerservice.AgentPoolArgs, "resourceGroupName" | "resourceName"> {
  const pool = c.gpuPool;
  return {
    agentPoolName: "gpu",
    mode: "User",
    osType: "Linux",
    vmSize: pool.vmSize,
    osDiskSizeGB: pool.osDiskSizeGB,
    enableAutoScaling: true,
    minCount: pool.minCount,
    maxCount: pool.maxCount,
    count: pool.minCount,
    nodeTaints: [`${GPU_TAINT.key}=${GPU_TAINT.value}:${GPU_TAINT.effect}`],
    nodeLabels: { ...GPU_POOL_LABEL },
    // AKS installs the NVIDIA driver on GPU node images; the device plugin is ours.
    gpuProfile: { driver: "Install" },
    ...(migPartitionSize ? { gpuInstanceProfile: aksGpuInstanceProfile(migPartitionSize) } : {}),
    vnetSubnetID: subnetId,
    ...(pool.spot.enabled
      ? {
          scaleSetPriority: "Spot",
          // Delete, not Deallocate: a deallocated spot node still counts against quota.
          scaleSetEvictionPolicy: "Delete",
          spotMaxPrice: pool.spot.maxPrice,
        }
      : { scaleSetPriority: "Regular" }),
  };
}

export class AksCluster extends pulumi.ComponentResource implements PlatformCluster {
  readonly clusterName: pulumi.Output<string>;
  readonly provider: k8s.Provider;
  readonly kubeconfig: pulumi.Output<string>;
  readonly gpu: Placement;
  readonly burst: Placement | undefined;
  readonly registryServer: pulumi.Output<string | undefined>;
  readonly cloudManagesDevicePlugin = false;
  /** Resource group holding the cluster, VNet and registry. */
  readonly resourceGroupName: pulumi.Output<string>;
  /** ARM resource id of the managed cluster. */
  readonly clusterId: pulumi.Output<string>;
  /** OIDC issuer URL, for workload identity federation. */
  readonly oidcIssuerUrl: pulumi.Output<string | undefined>;
  readonly azure: { readonly resourceGroupName: pulumi.Output<string>; readonly location: string; readonly clusterId: pulumi.Output<string> };

  constructor(name: string, args: AksClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:cluster:AksCluster", name, {}, opts);
    const c = args.cluster;
    const burst = args.burst?.enabled ? args.burst : undefined;
    const tags = { ...(args.tags ?? {}), "managed-by": "pulumi", platform: "mlplatform" };
    const parent = { parent: this };

    const rg = new resources.ResourceGroup(`${name}-rg`, { resourceGroupName: c.resourceGroupName, location: c.location, tags }, parent);

    const vnet = new network.VirtualNetwork(`${name}-vnet`, { resourceGroupName: rg.name, location: c.location, addressSpace: { addressPrefixes: [c.vnetCidr] }, tags }, parent);
    const nodeSubnet = new network.Subnet(
      `${name}-nodes`,
      { resourceGroupName: rg.name, virtualNetworkName: vnet.name, subnetName: "nodes", addressPrefix: nodeSubnetCidr(c.vnetCidr) },
      parent,
    );
    const vnSubnet = burst
      ? new network.Subnet(
          `${name}-virtual-nodes`,
          {
            resourceGroupName: rg.name,
            virtualNetworkName: vnet.name,
            subnetName: VIRTUAL_NODE_SUBNET,
            addressPrefix: burst.subnetCidr,
            delegations: [{ name: "aci", serviceName: "Microsoft.ContainerInstance/containerGroups" }],
          },
          // Subnets of one VNet cannot be changed concurrently.
          { parent: this, dependsOn: [nodeSubnet] },
        )
      : undefined;

    const gpuPool = gpuAgentPool(c, nodeSubnet.id, args.migPartitionSize);
    const cluster = new containerservice.ManagedCluster(
      `${name}-aks`,
      {
        resourceGroupName: rg.name,
        location: c.location,
        dnsPrefix: `${name}-mlp`,
        kubernetesVersion: c.kubernetesVersion,
        sku: { name: "Base", tier: c.skuTier },
        identity: { type: "SystemAssigned" },
        enableRBAC: true,
        oidcIssuerProfile: { enabled: true },
        securityProfile: { workloadIdentity: { enabled: true } },
        networkProfile: {
          // Azure CNI (not overlay): virtual nodes need pods routable on the VNet.
          networkPlugin: "azure",
          networkPolicy: c.networkPolicy,
          ...(c.networkPolicy === "cilium" ? { networkDataplane: "cilium" } : {}),
          serviceCidr: "10.0.0.0/16",
          dnsServiceIP: "10.0.0.10",
          loadBalancerSku: "standard",
        },
        agentPoolProfiles: [
          {
            name: "system",
            mode: "System",
            osType: "Linux",
            vmSize: c.systemPool.vmSize,
            enableAutoScaling: true,
            minCount: c.systemPool.minCount,
            maxCount: c.systemPool.maxCount,
            count: c.systemPool.minCount,
            vnetSubnetID: nodeSubnet.id,
            // Keep user workloads off the system pool.
            nodeTaints: ["CriticalAddonsOnly=true:NoSchedule"],
          },
        ],
        autoScalerProfile: { scaleDownUnneededTime: "10m", expander: "least-waste" },
        // The ama-metrics add-on scrapes into the Azure Monitor workspace (components/observability.ts).
        azureMonitorProfile: args.managedPrometheus ? { metrics: { enabled: true } } : undefined,
        addonProfiles: burst ? { aciConnectorLinux: { enabled: true, config: { SubnetName: VIRTUAL_NODE_SUBNET } } } : undefined,
        tags,
      },
      // The GPU pool is its own resource (below), so AKS must not diff it away.
      { parent: this, dependsOn: vnSubnet ? [vnSubnet] : [], ignoreChanges: ["agentPoolProfiles[0].count"] },
    );

    new containerservice.AgentPool(
      `${name}-gpu`,
      { ...gpuPool, resourceGroupName: rg.name, resourceName: cluster.name, tags },
      // The autoscaler owns the node count.
      { parent: this, ignoreChanges: ["count"] },
    );

    // Registry names are global and alphanumeric only: a stable random suffix keeps them unique.
    const suffix = new random.RandomString(`${name}-acr-suffix`, { length: 8, special: false, upper: false }, parent);
    const registry = new containerregistry.Registry(
      `${name}-acr`,
      {
        resourceGroupName: rg.name,
        location: c.location,
        registryName: pulumi.interpolate`${registryBaseName(name)}${suffix.result}`,
        sku: { name: c.acrSku },
        // Pulls use the kubelet identity, pushes the deployer's Azure login: no admin password.
        adminUserEnabled: false,
        tags,
      },
      parent,
    );

    const client = authorization.getClientConfigOutput(parent);
    const role = (id: string) => pulumi.interpolate`/subscriptions/${client.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${id}`;

    // Nodes pull our images with the kubelet identity: no registry password anywhere.
    new authorization.RoleAssignment(
      `${name}-acr-pull`,
      {
        principalId: cluster.identityProfile.apply((p) => {
          const id = p?.kubeletidentity?.objectId;
          if (!id && !pulumi.runtime.isDryRun()) throw new pulumi.ResourceError("AKS returned no kubelet identity", this);
          return id ?? "";
        }),
        principalType: "ServicePrincipal",
        roleDefinitionId: role(AZURE_ROLES.acrPull),
        scope: registry.id,
      },
      parent,
    );
    // With a VNet of ours, the cluster identity manages load balancers and routes in it.
    new authorization.RoleAssignment(
      `${name}-vnet-contributor`,
      {
        principalId: cluster.identity.apply((i) => i?.principalId ?? ""),
        principalType: "ServicePrincipal",
        roleDefinitionId: role(AZURE_ROLES.networkContributor),
        scope: vnet.id,
      },
      parent,
    );
    if (burst && vnSubnet) {
      // The ACI connector creates container groups in the virtual-node subnet.
      new authorization.RoleAssignment(
        `${name}-aci-subnet`,
        {
          principalId: cluster.addonProfiles.apply((a) => a?.aciConnectorLinux?.identity?.objectId ?? ""),
          principalType: "ServicePrincipal",
          roleDefinitionId: role(AZURE_ROLES.networkContributor),
          scope: vnSubnet.id,
        },
        parent,
      );
    }

    const creds = containerservice.listManagedClusterUserCredentialsOutput({ resourceGroupName: rg.name, resourceName: cluster.name }, parent);
    this.kubeconfig = pulumi.secret(creds.kubeconfigs.apply((kcs) => Buffer.from(kcs[0]?.value ?? "", "base64").toString("utf8")));
    this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: this.kubeconfig, enableServerSideApply: true }, parent);
    this.clusterName = cluster.name;
    this.clusterId = cluster.id;
    this.resourceGroupName = rg.name;
    this.azure = { resourceGroupName: rg.name, location: c.location, clusterId: cluster.id };
    this.registryServer = registry.loginServer;
    this.oidcIssuerUrl = cluster.oidcIssuerProfile.apply((p) => p?.issuerURL);
    this.gpu = { nodeSelector: { ...GPU_POOL_LABEL }, tolerations: [GPU_TOLERATION] };
    this.burst = burst ? AKS_VIRTUAL_NODE_PLACEMENT : undefined;

    this.registerOutputs({
      clusterName: this.clusterName,
      kubeconfig: this.kubeconfig,
      registryServer: this.registryServer,
      oidcIssuerUrl: this.oidcIssuerUrl,
    });
  }
}

/** Registry name Azure accepts (alphanumerics, 5–50), before the provider's random suffix. */
export function registryBaseName(name: string): string {
  return alphanumeric(`${name}acr`, 42);
}
