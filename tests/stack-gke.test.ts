import { describe, expect, it } from "vitest";
import { SECRET_OUTPUT_NAMES } from "../stacks/contract";
import { inventory, ofType, one, runStack, stackConfig, type StackRun } from "./harness";

describe("gke stack (Pulumi.gke.yaml) under mocks", () => {
  let run: StackRun;
  it("registers the cluster, two pools, registry and IAM, and nothing from Azure", async () => {
    run = await runStack("gke");
    console.log("gke inventory", inventory(run));
    expect(ofType(run, "gcp:container/nodePool:NodePool")).toHaveLength(2);
    expect(run.resources.filter((r) => r.type.startsWith("azure-native:"))).toEqual([]);
  });

  it("cluster: release channel, no default pool, workload identity, Dataplane V2", () => {
    const c = one(run, "gcp:container/cluster:Cluster").inputs;
    expect(c.releaseChannel).toEqual({ channel: "REGULAR" });
    expect(c.removeDefaultNodePool).toBe(true);
    expect(c.workloadIdentityConfig).toEqual({ workloadPool: "my-ml-project.svc.id.goog" });
    expect(c.datapathProvider).toBe("ADVANCED_DATAPATH");
    expect(c.deletionProtection).toBe(true);
  });

  it("GPU pool: accelerators with GKE-installed drivers, taint, autoscale from zero, spot", () => {
    const gpu = ofType(run, "gcp:container/nodePool:NodePool").find((p) => p.name === "platform-gpu")!.inputs;
    expect(gpu.nodeConfig.guestAccelerators).toEqual([{ type: "nvidia-l4", count: 1, gpuDriverInstallationConfig: { gpuDriverVersion: "LATEST" } }]);
    expect(gpu.nodeConfig.taints).toEqual([{ key: "nvidia.com/gpu", value: "present", effect: "NO_SCHEDULE" }]);
    expect(gpu.autoscaling).toEqual({ minNodeCount: 0, maxNodeCount: 4 });
    expect(gpu.nodeConfig.spot).toBe(true);
    expect(gpu.nodeConfig.machineType).toBe("g2-standard-8");
    expect(gpu.nodeLocations).toEqual(["europe-west4-a", "europe-west4-b"]);
    expect(gpu.nodeConfig.workloadMetadataConfig).toEqual({ mode: "GKE_METADATA" });
  });

  it("nodes run as their own service account, which may read the Artifact Registry repository", () => {
    const sa = one(run, "gcp:serviceaccount/account:Account").inputs;
    const member = `serviceAccount:${sa.accountId}@my-ml-project.iam.gserviceaccount.com`;
    const reader = one(run, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember").inputs;
    expect(reader.role).toBe("roles/artifactregistry.reader");
    expect(reader.member).toBe(member);
    for (const pool of ofType(run, "gcp:container/nodePool:NodePool")) {
      expect(pool.inputs.nodeConfig.serviceAccount).toBe(`${sa.accountId}@my-ml-project.iam.gserviceaccount.com`);
    }
    expect(one(run, "gcp:artifactregistry/repository:Repository").inputs.format).toBe("DOCKER");
  });

  it("does not install a device plugin: GKE manages its own", () => {
    expect(ofType(run, "kubernetes:helm.sh/v4:Chart").filter((c) => c.name === "gpu-chart")).toEqual([]);
    expect(ofType(run, "mlplatform:gpu:NvidiaDevicePlugin")).toEqual([]);
  });

  it("exports GKE's accelerator selector, the registry path and a secret exec kubeconfig", () => {
    expect(run.outputs.gpuNodeSelector).toEqual({ "cloud.google.com/gke-accelerator": "nvidia-l4" });
    expect(run.outputs.registryServer).toBe("europe-west4-docker.pkg.dev/my-ml-project/platform-mlplatform");
    expect(run.outputs.burstEnabled).toBe(false);
    expect(run.secretOutputs.sort()).toEqual([...SECRET_OUTPUT_NAMES].sort());
    const kc = JSON.parse(run.outputs.kubeconfig as string);
    expect(kc.users[0].user.exec.command).toBe("gke-gcloud-auth-plugin");
    expect(kc.clusters[0].cluster.server).toBe("https://203.0.113.10");
  });

  it("on-demand GPU pool when spot is off; zonal location gives a regional registry", async () => {
    const base = stackConfig("gke")["mlplatform:cluster"] as Record<string, any>;
    const r = await runStack("gke", {
      "mlplatform:cluster": { ...base, location: "us-central1-a", gpuPool: { ...base.gpuPool, spot: { enabled: false } } },
    });
    const gpu = ofType(r, "gcp:container/nodePool:NodePool").find((p) => p.name === "platform-gpu")!.inputs;
    expect(gpu.nodeConfig.spot).toBe(false);
    expect(r.outputs.registryServer).toMatch(/^us-central1-docker\.pkg\.dev\//);
  });
});
