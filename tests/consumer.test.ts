import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { PLATFORM_OUTPUT_NAMES } from "../stacks/contract";
import { SMOKE_IMAGES } from "../stacks/consumer/smokeJob";
import { teamEntry } from "../stacks/reference";
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

  it("as a team of the platform: the team's namespace and Kueue queue from the teamNamespaces/teamQueues outputs", async () => {
    const platform = await runStack("aks", {
      "mlplatform:teams": [
        { name: "vision", groups: ["vision"], quota: { gpu: 2, cpu: "16", memory: "64Gi" } },
        { name: "nlp", namespace: "nlp-lab", groups: ["nlp"], quota: { gpu: 1, cpu: "8", memory: "32Gi" } },
      ],
      "mlplatform:kueue": { chart: "/charts/kueue-0.19.2.tgz" },
    });
    const job = one(await consume(platform.outputs, { "mlplatform-consumer:team": "nlp" }), "kubernetes:batch/v1:Job").inputs;
    expect(job.metadata.namespace).toBe("nlp-lab");
    expect(job.metadata.labels).toEqual({ "kueue.x-k8s.io/queue-name": "nlp" });
    // Without the setting, nothing changes.
    const plain = one(await consume(platform.outputs), "kubernetes:batch/v1:Job").inputs;
    expect(plain.metadata.namespace).toBe("ml-pipelines");
    expect(plain.metadata.labels).toEqual({});
  });

  it("a team the platform does not have is an error naming the team and the ones there are", () => {
    expect(teamEntry({ vision: "team-vision" }, "vision", "teamNamespaces")).toBe("team-vision");
    expect(() => teamEntry({ vision: "v", nlp: "n" }, "ops", "teamQueues")).toThrow('the platform stack has no team "ops" (teamQueues; its teams: vision, nlp)');
    expect(() => teamEntry({}, "ops", "teamNamespaces")).toThrow("its teams: none");
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
