/**
 * Teams, Kueue and GPU sharing (issue 19) under mocks: every stack file with two teams gets
 * the per-team objects; GPU sharing reaches the device plugin (AKS, existing) and the GKE
 * GPU pool; the config refuses what cannot work.
 */
import { describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { ConfigError, parseConfig } from "../config";
import { clusterQueueManifest, kueueChartSource, QUEUE_NAME_LABEL } from "../components/kueue";
import { sharingConfig } from "../components/devicePlugin";
import { limitRangeSpec, milliCpu, resourceQuotaSpec, TEAM_RULES } from "../components/teams";
import { charts } from "../components/versions";
import { FIXTURE_KUBECONFIG, ofType, runStack, stackConfig, type RecordedResource, type StackRun } from "./harness";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const TEAMS = [
  { name: "vision", members: ["alice@example.com"], groups: ["vision-researchers"], quota: { gpu: 2, cpu: "16", memory: "64Gi" } },
  { name: "nlp", namespace: "nlp-lab", groups: ["nlp"], quota: { gpu: 1, cpu: "8", memory: "32Gi" }, fairShareWeight: 2, canBorrow: false },
];
const KUEUE_CHART = "/charts/kueue-0.19.2.tgz";
const withTeams = { "mlplatform:teams": TEAMS, "mlplatform:kueue": { chart: KUEUE_CHART } };
const env = { KUBECONFIG: FIXTURE_KUBECONFIG };

const named = (r: StackRun, type: string) =>
  Object.fromEntries(ofType(r, type).map((x) => [x.inputs.metadata.name + (x.inputs.metadata.namespace ? `@${x.inputs.metadata.namespace}` : ""), x.inputs]));
const custom = (r: StackRun, kind: string): RecordedResource[] => ofType(r, `kubernetes:kueue.x-k8s.io/v1beta2:${kind}`);

/** What every stack with the two teams must have, whatever its cloud. */
function expectTeamObjects(r: StackRun, gpuFlavor: boolean, teams: readonly { name: string; quota: object }[] = TEAMS): void {
  const ns = named(r, "kubernetes:core/v1:Namespace");
  for (const [team, n] of [
    ["vision", "team-vision"],
    ["nlp", "nlp-lab"],
  ] as const) {
    expect(ns[n]?.metadata.labels).toMatchObject({ "mlplatform.io/team": team, "pod-security.kubernetes.io/enforce": "restricted" });
    const policies = ofType(r, "kubernetes:networking.k8s.io/v1:NetworkPolicy").filter((p) => p.inputs.metadata.namespace === n);
    expect(policies.map((p) => p.inputs.metadata.name).sort()).toEqual(["allow-dns", "default-deny", "egress-to-api-and-serving", "egress-to-object-store", "within-namespace"]);
    expect(policies.find((p) => p.inputs.metadata.name === "default-deny")!.inputs.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress", "Egress"] });
    const secret = named(r, "kubernetes:core/v1:Secret")[`mlplatform-object-store@${n}`];
    expect(secret?.stringData[SECRET_SIG], "the team's object store Secret is a Pulumi secret").toBeDefined();
    expect(secret.stringData.value.AWS_ENDPOINT_URL).toMatch(/^https?:\/\//);
    expect(named(r, "kubernetes:core/v1:ResourceQuota")[`team-quota@${n}`]?.spec.hard).toEqual(resourceQuotaSpec(teams.find((t) => t.name === team)!.quota as any).hard);
    expect(named(r, "kubernetes:core/v1:LimitRange")[`team-defaults@${n}`]?.spec.limits[0].defaultRequest).toEqual({ cpu: "250m", memory: "512Mi" });
    const binding = named(r, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")[`mlplatform-team-member@${n}`];
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "mlplatform-team-member" });
    const lq = custom(r, "LocalQueue").find((q) => q.inputs.metadata.namespace === n)!;
    expect(lq.inputs.spec).toEqual({ clusterQueue: team });
    const cq = custom(r, "ClusterQueue").find((q) => q.inputs.metadata.name === team)!.inputs.spec;
    expect(cq.cohortName).toBe("mlplatform");
    expect(cq.namespaceSelector).toEqual({ matchLabels: { "kubernetes.io/metadata.name": n } });
    expect(cq.resourceGroups[0].flavors.map((f: any) => f.name)).toEqual(gpuFlavor ? ["gpu", "cpu"] : ["cpu"]);
  }
  expect(named(r, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")["mlplatform-team-member@nlp-lab"].subjects).toEqual([
    { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: "nlp" },
  ]);
  expect(r.outputs.teamNamespaces).toEqual({ vision: "team-vision", nlp: "nlp-lab" });
  expect(r.outputs.teamQueues).toEqual({ vision: "vision", nlp: "nlp" });
  const chart = ofType(r, "kubernetes:helm.sh/v4:Chart").find((c) => c.name === "kueue-chart")!;
  expect(chart.inputs.chart).toBe(KUEUE_CHART);
  const managerConfig = YAML.parse(chart.inputs.values.managerConfig.controllerManagerConfigYaml);
  expect(managerConfig.integrations.frameworks).toContain("kubeflow.org/tfjob");
  // Kueue (and its fail-closed pod webhook) reaches only the pipelines and team namespaces.
  expect(managerConfig.managedJobsNamespaceSelector).toEqual({
    matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["ml-pipelines", "nlp-lab", "team-vision"] }],
  });
  expect(chart.inputs.values.controllerManager.manager.image.tag).toBe(`v${charts.kueue.version}`);
  // The platform's own pipelines queue on idle team quota; their TFJobs carry its label.
  expect(custom(r, "LocalQueue").find((q) => q.inputs.metadata.namespace === "ml-pipelines")!.inputs.spec).toEqual({ clusterQueue: "platform" });
  const templates = ofType(r, "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate");
  const mnist = templates.find((t) => t.inputs.metadata.name === "mnist-pipeline");
  expect(mnist, "the mnist pipeline template").toBeDefined();
  expect(JSON.stringify(mnist!.inputs)).toContain(`\\"${QUEUE_NAME_LABEL}\\":\\"platform\\"`);
}

describe("teams under mocks, every stack file", () => {
  it("dev: two teams get namespace, policies, Secret, RBAC, quota, limits and queues; CPU flavor only", async () => {
    // The dev cluster has no GPUs: the teams' GPU quota must be 0 there.
    const cpuTeams = TEAMS.map((t) => ({ ...t, quota: { ...t.quota, gpu: 0 } }));
    const r = await runStack("dev", { ...withTeams, "mlplatform:teams": cpuTeams }, env);
    expectTeamObjects(r, false, cpuTeams);
    expect(custom(r, "ResourceFlavor").map((f) => f.inputs.metadata.name)).toEqual(["cpu"]);
    // MinIO admits team namespaces by label.
    const minio = named(r, "kubernetes:networking.k8s.io/v1:NetworkPolicy")["minio-from-teams@mlplatform"];
    expect(minio.spec.ingress[0].from[0].namespaceSelector.matchExpressions).toEqual([{ key: "mlplatform.io/team", operator: "Exists" }]);
  });

  it("aks: teams plus time-slicing: the device plugin advertises shared GPUs, the GPU pool is a Kueue flavor", async () => {
    const r = await runStack("aks", { ...withTeams, "mlplatform:gpuSharing": { strategy: "timeSlicing", maxSharedClientsPerGpu: 3 } });
    expectTeamObjects(r, true);
    const gpuFlavor = custom(r, "ResourceFlavor").find((f) => f.inputs.metadata.name === "gpu")!.inputs.spec;
    expect(gpuFlavor.nodeLabels).toEqual({ "mlplatform.io/accelerator": "nvidia" });
    expect(gpuFlavor.nodeTaints).toEqual([{ key: "nvidia.com/gpu", value: "present", effect: "NoSchedule" }]);
    const plugin = ofType(r, "kubernetes:helm.sh/v4:Chart").find((c) => c.name === "gpu-chart")!.inputs.values;
    expect(plugin.config.default).toBe("default");
    expect(YAML.parse(plugin.config.map.default)).toEqual({
      version: "v1",
      sharing: { timeSlicing: { failRequestsGreaterThanOne: true, resources: [{ name: "nvidia.com/gpu", replicas: 3 }] } },
    });
    const vision = custom(r, "ClusterQueue").find((q) => q.inputs.metadata.name === "vision")!.inputs.spec;
    expect(vision.resourceGroups[0].flavors[0].resources).toEqual([
      { name: "cpu", nominalQuota: "16" },
      { name: "memory", nominalQuota: "64Gi" },
      { name: "nvidia.com/gpu", nominalQuota: "2" },
    ]);
    const platform = custom(r, "ClusterQueue").find((q) => q.inputs.metadata.name === "platform")!.inputs.spec;
    expect(platform.resourceGroups[0].flavors[0].resources.map((x: any) => x.nominalQuota)).toEqual(["0", "0", "0"]);
    const nlp = custom(r, "ClusterQueue").find((q) => q.inputs.metadata.name === "nlp")!.inputs.spec;
    expect(nlp.fairSharing).toEqual({ weight: "2" });
    expect(nlp.resourceGroups[0].flavors.every((f: any) => f.resources.every((x: any) => x.borrowingLimit === "0"))).toBe(true);
  });

  it("gke: teams plus MPS on an A100 pool with MIG: gpuSharingConfig, gpuPartitionSize, and GPU workloads select shared nodes", async () => {
    const base = stackConfig("gke")["mlplatform:cluster"] as Record<string, any>;
    const r = await runStack("gke", {
      ...withTeams,
      "mlplatform:cluster": { ...base, gpuPool: { ...base.gpuPool, machineType: "a2-highgpu-1g", acceleratorType: "nvidia-tesla-a100" } },
      "mlplatform:gpuSharing": { strategy: "mps", maxSharedClientsPerGpu: 4, migPartitionSize: "1g.5gb" },
      "mlplatform:serving": { gpus: 1 },
    });
    expectTeamObjects(r, true);
    const gpu = ofType(r, "gcp:container/nodePool:NodePool").find((p) => p.name === "platform-gpu")!.inputs;
    expect(gpu.nodeConfig.guestAccelerators[0]).toMatchObject({
      type: "nvidia-tesla-a100",
      gpuPartitionSize: "1g.5gb",
      gpuSharingConfig: { gpuSharingStrategy: "MPS", maxSharedClientsPerGpu: 4 },
    });
    const shared = { "cloud.google.com/gke-gpu-sharing-strategy": "mps", "cloud.google.com/gke-max-shared-clients-per-gpu": "4" };
    expect(r.outputs.gpuNodeSelector).toMatchObject(shared);
    // The notebook GPU profile asks for a shared GPU.
    // The hub's values hold the OAuth client secret, so they arrive as a Pulumi secret.
    const values = ofType(r, "kubernetes:helm.sh/v4:Chart").map((c) => (c.inputs.values?.[SECRET_SIG] ? c.inputs.values.value : c.inputs.values));
    const hub = values.find((v) => v?.singleuser)!;
    const gpuProfile = hub.singleuser.profileList.find((p: any) => p.kubespawner_override?.extra_resource_limits);
    expect(gpuProfile.kubespawner_override.node_selector).toMatchObject(shared);
    expect(gpuProfile.kubespawner_override.extra_resource_limits).toEqual({ "nvidia.com/gpu": "1" });
    expect(custom(r, "ResourceFlavor").find((f) => f.inputs.metadata.name === "gpu")!.inputs.spec.nodeLabels).toMatchObject(shared);
    // So does the model server with gpus: 1.
    const server = ofType(r, "kubernetes:apps/v1:Deployment").find((d) => JSON.stringify(d.inputs).includes('"nvidia.com/gpu":"1"'))!;
    expect(server, "a GPU model server Deployment").toBeDefined();
    expect(server.inputs.metadata.namespace).toBe("ml-serving");
    expect(server.inputs.spec.template.spec.nodeSelector).toMatchObject(shared);
  });

  it("aks: MIG on an A100 pool: the agent pool's GPU instance profile and the device plugin's single MIG strategy; refused on a T4 size", async () => {
    const base = stackConfig("aks")["mlplatform:cluster"] as Record<string, any>;
    const a100 = { ...base, gpuPool: { ...base.gpuPool, vmSize: "Standard_NC24ads_A100_v4" } };
    const r = await runStack("aks", { "mlplatform:cluster": a100, "mlplatform:gpuSharing": { migPartitionSize: "2g.20gb" } });
    const pool = ofType(r, "azure-native:containerservice:AgentPool").find((p) => p.inputs.agentPoolName === "gpu")!.inputs;
    expect(pool.gpuInstanceProfile).toBe("MIG2g");
    const plugin = ofType(r, "kubernetes:helm.sh/v4:Chart").find((c) => c.name === "gpu-chart")!.inputs.values;
    expect(plugin.migStrategy).toBe("single");
    expect(plugin.config).toBeUndefined();
    const plain = ofType(await runStack("aks"), "azure-native:containerservice:AgentPool").find((p) => p.inputs.agentPoolName === "gpu")!.inputs;
    expect(plain.gpuInstanceProfile).toBeUndefined();
    await expect(runStack("aks", { "mlplatform:gpuSharing": { migPartitionSize: "1g.10gb" } })).rejects.toThrow(
      'mlplatform:gpuSharing.migPartitionSize needs an A100 or H100 VM size; cluster.gpuPool.vmSize is "Standard_NC4as_T4_v3"',
    );
  });

  it("gke: time-sharing is TIME_SHARING with the time-sharing node label; the default stack shares nothing and installs no Kueue", async () => {
    const r = await runStack("gke", { "mlplatform:gpuSharing": { strategy: "timeSlicing" } });
    const gpu = ofType(r, "gcp:container/nodePool:NodePool").find((p) => p.name === "platform-gpu")!.inputs;
    expect(gpu.nodeConfig.guestAccelerators[0].gpuSharingConfig).toEqual({ gpuSharingStrategy: "TIME_SHARING", maxSharedClientsPerGpu: 4 });
    expect(r.outputs.gpuNodeSelector).toMatchObject({ "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing" });
    const plain = await runStack("gke");
    const plainGpu = ofType(plain, "gcp:container/nodePool:NodePool").find((p) => p.name === "platform-gpu")!.inputs;
    expect(plainGpu.nodeConfig.guestAccelerators[0].gpuSharingConfig).toBeUndefined();
    expect(ofType(plain, "mlplatform:queueing:Kueue")).toEqual([]);
    expect(plain.outputs.teamNamespaces).toEqual({});
    expect(plain.outputs.teamQueues).toEqual({});
  });
});

describe("builders", () => {
  it("device plugin sharing config: none, time-slicing, MPS", () => {
    expect(sharingConfig({ strategy: "none", maxSharedClientsPerGpu: 4 })).toBeUndefined();
    expect(sharingConfig({ strategy: "mps", maxSharedClientsPerGpu: 8 })).toEqual({ version: "v1", sharing: { mps: { resources: [{ name: "nvidia.com/gpu", replicas: 8 }] } } });
  });

  it("Kueue chart source: local archive, the pinned OCI chart, or a classic repository", () => {
    expect(kueueChartSource(charts.kueue, { chart: "/x/kueue.tgz" })).toEqual({ chart: "/x/kueue.tgz" });
    expect(kueueChartSource(charts.kueue, {})).toEqual({ chart: `${charts.kueue.repository}/kueue`, version: "0.19.2" });
    expect(kueueChartSource(charts.kueue, { repository: "https://charts.example.com", version: "0.19.1" })).toEqual({
      chart: "kueue",
      version: "0.19.1",
      repositoryOpts: { repo: "https://charts.example.com" },
    });
  });

  it("a ClusterQueue without borrowing caps every resource at its nominal quota", () => {
    const cq = clusterQueueManifest({ name: "a", namespace: "team-a", cohort: "c", quota: { gpu: 1, cpu: "2", memory: "4Gi" }, pools: [], fairShareWeight: 1, canBorrow: false });
    expect(cq.spec.resourceGroups[0].flavors).toEqual([
      {
        name: "cpu",
        resources: [
          { name: "cpu", nominalQuota: "2", borrowingLimit: "0" },
          { name: "memory", nominalQuota: "4Gi", borrowingLimit: "0" },
          { name: "nvidia.com/gpu", nominalQuota: "0", borrowingLimit: "0" },
        ],
      },
    ]);
  });

  it("LimitRange defaults never exceed a small team's ceiling", () => {
    expect(milliCpu("8")).toBe(8000);
    expect(milliCpu("500m")).toBe(500);
    expect(milliCpu("2.5")).toBe(2500);
    expect(limitRangeSpec({ gpu: 0, cpu: "16", memory: "64Gi" }).limits).toEqual([
      { type: "Container", defaultRequest: { cpu: "250m", memory: "512Mi" }, default: { memory: "2Gi" }, max: { cpu: "16", memory: "64Gi" } },
    ]);
    expect(limitRangeSpec({ gpu: 0, cpu: "100m", memory: "1Gi" }).limits).toEqual([
      { type: "Container", defaultRequest: { cpu: "100m", memory: "512Mi" }, default: { memory: "1Gi" }, max: { cpu: "100m", memory: "1Gi" } },
    ]);
  });

  it("the team role grants no Secrets, no RBAC and no quota changes", () => {
    const resources = TEAM_RULES.flatMap((r) => r.resources as string[]);
    expect(resources).not.toContain("secrets");
    expect(TEAM_RULES.flatMap((r) => r.apiGroups as string[])).not.toContain("rbac.authorization.k8s.io");
    const writable = TEAM_RULES.filter((r) => (r.verbs as string[]).some((v) => ["create", "update", "patch", "delete"].includes(v))).flatMap((r) => r.resources as string[]);
    expect(writable.sort()).toEqual(["cronworkflows", "jobs", "tfjobs", "workflows", "workflowtemplates"]);
  });
});

describe("config refuses what cannot work", () => {
  const base = { cluster: { provider: "existing", gpu: "nvidia" }, trainerImage: { image: "r.example.com/t:1" }, kubeflow: { jupyterhub: { authenticator: "dummy" } } };
  const problems = (raw: Record<string, unknown>): string => {
    try {
      parseConfig({ ...base, ...raw });
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return "";
  };

  it("accepts two teams and sharing; defaults share nothing", () => {
    expect(problems({ teams: TEAMS, gpuSharing: { strategy: "timeSlicing" } })).toBe("");
    const c = parseConfig(base);
    expect(c.teams).toEqual([]);
    expect(c.gpuSharing).toEqual({ strategy: "none", maxSharedClientsPerGpu: 4 });
  });

  it("names the key, the value and the fix", () => {
    expect(problems({ teams: [{ ...TEAMS[0], members: [], groups: [] }] })).toContain("mlplatform:teams[0].members or groups must name someone");
    expect(problems({ teams: [TEAMS[0], TEAMS[0]] })).toContain("mlplatform:teams[1].name names a team listed before it");
    expect(problems({ teams: [{ ...TEAMS[0], namespace: "ml-pipelines" }] })).toContain("mlplatform:teams[0].namespace is the platform's pipelines namespace");
    expect(problems({ teams: [{ ...TEAMS[0], quota: { cpu: "lots", memory: "1Gi" } }] })).toContain("mlplatform:teams[0].quota.cpu must be a CPU quantity");
    expect(problems({ teams: TEAMS, kueue: { enabled: false } })).toContain("mlplatform:kueue.enabled must not be false while teams are set");
    expect(problems({ kueue: { enabled: true } })).toContain(
      "mlplatform:kueue.enabled queues the pipelines' jobs, but with no teams and no kueue.platformQuota there is no quota to admit them with",
    );
    expect(problems({ kueue: { enabled: true, platformQuota: { gpu: 1, cpu: "4", memory: "16Gi" } } })).toBe("");
    expect(problems({ gpuSharing: { strategy: "mps" }, devicePlugin: { install: "never" } })).toContain(
      'mlplatform:gpuSharing.strategy is set through the NVIDIA device plugin this stack installs, but devicePlugin.install is "never"',
    );
    expect(problems({ gpuSharing: { strategy: "timeSlicing" }, serving: { gpus: 2 } })).toContain("mlplatform:serving.gpus must be 0 or 1");
    expect(problems({ gpuSharing: { migPartitionSize: "1g.5gb" } })).toContain(
      "mlplatform:gpuSharing.migPartitionSize is set on GKE and AKS node pools; on an existing cluster partition the GPUs with the NVIDIA GPU Operator",
    );
    expect(problems({ cluster: { provider: "existing", gpu: "none" }, teams: [TEAMS[0]] })).toContain("mlplatform:teams[0].quota.gpu needs GPU nodes");
  });

  it("GKE MIG needs an A100/H100/H200 pool", () => {
    const gke = { ...(stackConfig("gke")["mlplatform:cluster"] as object) };
    const gkeBase = { cluster: gke, kubeflow: { jupyterhub: { authenticator: "dummy" } } };
    let msg = "";
    try {
      parseConfig({ ...gkeBase, gpuSharing: { migPartitionSize: "1g.5gb" } });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('needs an A100, H100 or H200 pool; cluster.gpuPool.acceleratorType is "nvidia-l4"');
  });
});
