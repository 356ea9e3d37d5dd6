import { describe, expect, it } from "vitest";
import { SECRET_OUTPUT_NAMES } from "../stacks/contract";
import { FIXTURE_KUBECONFIG, inventory, ofType, one, runStack, type StackRun } from "./harness";
import * as fs from "node:fs";

// Pulumi's wire marker for a secret value (specialSigKey), as it appears in mock inputs.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

const env = { KUBECONFIG: FIXTURE_KUBECONFIG };

/** The NVIDIA device plugin's chart resource. */
function deviceChart(r: StackRun) {
  const found = ofType(r, "kubernetes:helm.sh/v4:Chart").filter((c) => c.name === "gpu-chart");
  if (found.length !== 1) throw new Error(`expected the device plugin chart once, found ${found.length}`);
  return found[0]!;
}

describe("dev stack (Pulumi.dev.yaml) under mocks", () => {
  let run: StackRun;
  it("registers no cloud resource at all", async () => {
    run = await runStack("dev", {}, env);
    console.log("dev inventory", inventory(run));
    const cloud = run.resources.filter((r) => /^(azure-native|gcp|random):/.test(r.type));
    expect(cloud).toEqual([]);
    expect(run.invokes).toEqual([]);
  });

  it("points the provider at the configured context of the kubeconfig", () => {
    const p = one(run, "pulumi:providers:kubernetes").inputs;
    expect(p.context).toBe("kind-mlplatform");
    // The provider receives the kubeconfig as a secret: the engine never stores it in plaintext.
    expect(p.kubeconfig).toEqual({
      [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270",
      value: fs.readFileSync(FIXTURE_KUBECONFIG, "utf8"),
    });
  });

  it("creates the four platform namespaces with restricted Pod Security; only the NFS server's and the metrics stack's are privileged", () => {
    const ns = ofType(run, "kubernetes:core/v1:Namespace").map((n) => n.inputs.metadata);
    const level = Object.fromEntries(ns.map((m) => [m.name, m.labels["pod-security.kubernetes.io/enforce"]]));
    expect(level).toEqual({
      "ml-notebooks": "restricted",
      "ml-pipelines": "restricted",
      "ml-serving": "restricted",
      mlplatform: "restricted",
      "mlplatform-storage": "privileged",
      // node-exporter reads the host (hostNetwork, hostPID, hostPath).
      monitoring: "privileged",
      argo: "baseline",
    });
  });

  it("CPU-only: no GPU placement and no device plugin", () => {
    expect(run.outputs.gpuEnabled).toBe(false);
    expect(run.outputs.gpuNodeSelector).toEqual({});
    expect(run.outputs.gpuTolerations).toEqual([]);
    expect(ofType(run, "kubernetes:helm.sh/v4:Chart").filter((c) => c.name === "gpu-chart")).toEqual([]);
  });

  it("exports the kubeconfig only as a secret, and the namespaces", () => {
    expect(run.secretOutputs.sort()).toEqual([...SECRET_OUTPUT_NAMES].sort());
    expect(run.outputs.clusterName).toBe("kind-mlplatform");
    expect(run.outputs.pipelinesNamespace).toBe("ml-pipelines");
  });

  it("awaits by default; kubernetes.skipAwait annotates what would be awaited", async () => {
    for (const m of ofType(run, "kubernetes:core/v1:Namespace").map((n) => n.inputs.metadata)) {
      expect(m.annotations).toEqual({});
    }
    const r = await runStack(
      "dev",
      {
        "mlplatform:cluster": { provider: "existing", context: "kind-mlplatform", gpu: "nvidia" },
        "mlplatform:kubernetes": { skipAwait: true },
      },
      env,
    );
    for (const m of ofType(r, "kubernetes:core/v1:Namespace").map((n) => n.inputs.metadata)) {
      expect(m.annotations).toEqual({ "pulumi.com/skipAwait": "true" });
    }
    expect(deviceChart(r).inputs.skipAwait).toBe(true);
  });

  it("gpu: nvidia installs the device plugin with the default GPU placement", async () => {
    const r = await runStack("dev", { "mlplatform:cluster": { provider: "existing", context: "kind-mlplatform", gpu: "nvidia" } }, env);
    expect(r.outputs.gpuNodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
    expect(deviceChart(r).inputs.values.nodeSelector).toEqual({ "nvidia.com/gpu.present": "true" });
  });

  it("fails with the file name and the fix when the kubeconfig does not exist", async () => {
    await expect(runStack("dev", {}, { KUBECONFIG: "/nonexistent/kubeconfig" })).rejects.toThrow(
      /cannot read the kubeconfig \/nonexistent\/kubeconfig \(ENOENT\); set mlplatform:cluster.kubeconfig or KUBECONFIG/,
    );
  });

  it("fails naming the context and the ones that exist when the context is unknown", async () => {
    await expect(runStack("dev", { "mlplatform:cluster": { provider: "existing", context: "minikube" } }, env)).rejects.toThrow(
      /"minikube" is not in .*kubeconfig.yaml; its contexts are: kind-mlplatform, other/,
    );
  });
});
