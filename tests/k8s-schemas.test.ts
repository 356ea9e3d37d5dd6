import { describe, expect, it } from "vitest";
import * as path from "node:path";
import { FIXTURE_KUBECONFIG, ROOT, runProgram, runStack, type StackRun } from "./harness";
import { validateObject, validateRecorded } from "./k8sSchema";

const kind = { KUBECONFIG: FIXTURE_KUBECONFIG };
const variants: [string, () => Promise<StackRun>][] = [
  ["dev", () => runStack("dev", {}, kind)],
  ["dev with GPU", () => runStack("dev", { "mlplatform:cluster": { provider: "existing", context: "kind-mlplatform", gpu: "nvidia" } }, kind)],
  ["aks", () => runStack("aks")],
  ["gke", () => runStack("gke")],
];

describe("every Kubernetes object we author validates against the Kubernetes OpenAPI schema", () => {
  for (const [name, run] of variants) {
    it(name, async () => {
      const r = await run();
      const checked = await validateRecorded(r.resources);
      expect(checked).toBeGreaterThan(0);
    });
  }

  it("the consumer's smoke Job (GPU variant)", async () => {
    const platform = await runStack("aks");
    const r = await runProgram({
      module: path.join(ROOT, "stacks", "consumer", "index.ts"),
      project: "mlplatform-consumer",
      stack: "dev",
      config: { "mlplatform-consumer:platformStack": "o/mlplatform/aks" },
      stackOutputs: { "o/mlplatform/aks": platform.outputs },
    });
    expect(await validateRecorded(r.resources)).toBe(1);
  });

  it("the validator rejects what the API server would reject", async () => {
    await expect(validateObject({ apiVersion: "v1", kind: "Namespace", metadata: { name: "x", labels: { a: 1 } } })).rejects.toThrow(
      /fails its schema: data\/metadata\/labels\/a must be string/,
    );
    await expect(validateObject({ apiVersion: "example.com/v1", kind: "Thing" })).rejects.toThrow(/no schema known/);
    // Monitoring kinds: a PodMonitoring without its endpoint's interval, a PodMonitor endpoint with a wrong type.
    await expect(
      validateObject({
        apiVersion: "monitoring.googleapis.com/v1",
        kind: "PodMonitoring",
        metadata: { name: "x", namespace: "n" },
        spec: { selector: {}, endpoints: [{ port: "http" }] },
      }),
    ).rejects.toThrow(/must have required property 'interval'/);
    await expect(
      validateObject({ apiVersion: "azmonitoring.coreos.com/v1", kind: "PodMonitor", metadata: { name: "x" }, spec: { selector: {}, podMetricsEndpoints: [{ port: 8501 }] } }),
    ).rejects.toThrow(/fails its schema/);
  });
});
