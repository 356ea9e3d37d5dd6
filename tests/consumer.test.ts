import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { PLATFORM_OUTPUT_NAMES } from "../stacks/contract";
import { SMOKE_IMAGES } from "../stacks/consumer/smokeJob";
import { FIXTURE_KUBECONFIG, ROOT, one, runProgram, runStack } from "./harness";

const PLATFORM = "organization/mlplatform/dev";

/** Runs the consumer program against the outputs a platform stack run produced. */
async function consume(platformOutputs: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return runProgram({
    module: path.join(ROOT, "stacks", "consumer", "index.ts"),
    project: "mlplatform-consumer",
    stack: "dev",
    config: { "mlplatform-consumer:platformStack": PLATFORM, ...extra },
    stackOutputs: { [PLATFORM]: platformOutputs },
  });
}

describe("platform outputs contract", () => {
  it("every stack exports exactly the contract's outputs", async () => {
    for (const [stack, env] of [
      ["dev", { KUBECONFIG: FIXTURE_KUBECONFIG }],
      ["aks", {}],
      ["gke", {}],
    ] as const) {
      const run = await runStack(stack, {}, env);
      expect(Object.keys(run.outputs).sort(), stack).toEqual([...PLATFORM_OUTPUT_NAMES].sort());
    }
  });
});

describe("consumer program (stacks/consumer) under mocks", () => {
  it("on a CPU-only platform: a CPU smoke Job in the pipelines namespace, through the platform's kubeconfig", async () => {
    const platform = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    const run = await consume(platform.outputs);
    expect(one(run, "pulumi:pulumi:StackReference").inputs.name).toBe(PLATFORM);
    const job = one(run, "kubernetes:batch/v1:Job").inputs;
    expect(job.metadata.namespace).toBe("ml-pipelines");
    const pod = job.spec.template.spec;
    expect(pod.containers[0].image).toBe(SMOKE_IMAGES.cpu);
    expect(pod.nodeSelector).toBeUndefined();
    expect(pod.containers[0].resources.limits["nvidia.com/gpu"]).toBeUndefined();
    const provider = one(run, "pulumi:providers:kubernetes").inputs;
    expect(provider.kubeconfig.value).toBe(platform.outputs.kubeconfig);
    expect(one(run, "kubernetes:batch/v1:Job").provider).toMatch(/pulumi:providers:kubernetes::platform::/);
  });

  it("on a GPU platform: one GPU, the platform's node selector and tolerations", async () => {
    const platform = await runStack("aks");
    const run = await consume(platform.outputs, { "mlplatform-consumer:skipAwait": "true" });
    const job = one(run, "kubernetes:batch/v1:Job").inputs;
    const pod = job.spec.template.spec;
    expect(pod.containers[0].image).toBe(SMOKE_IMAGES.gpu);
    expect(pod.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(pod.nodeSelector).toEqual(platform.outputs.gpuNodeSelector);
    expect(pod.tolerations).toEqual(platform.outputs.gpuTolerations);
    expect(job.metadata.annotations).toEqual({ "pulumi.com/skipAwait": "true" });
  });
});
