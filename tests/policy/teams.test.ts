/**
 * The team policies (issue 19): a team namespace without a ResourceQuota, and a GPU batch
 * workload outside a Kueue queue while teams are on, are violations. Checked on hand-made
 * resources and on the aks stack with two teams, as the real program registers it.
 */
import { describe, expect, it } from "vitest";
import { gpuWorkloadsQueued, teamNamespacesHaveQuota } from "../../policy/policies";
import { withoutExpressions } from "../../policy/policies/teams";
import { tfJobManifest } from "../../components/trainingOperator";
import { runStack, type StackRun } from "../harness";
import { checkStack, type Target } from "./support";

const ns = (name: string, team?: string): Target => ({
  type: "kubernetes:core/v1:Namespace",
  name,
  props: { metadata: { name, labels: team ? { "mlplatform.io/team": team } : {} } },
});
const quota = (namespace: string): Target => ({
  type: "kubernetes:core/v1:ResourceQuota",
  name: `${namespace}-quota`,
  props: { metadata: { name: "team-quota", namespace }, spec: { hard: { "requests.nvidia.com/gpu": "2" } } },
});
const GPU = { nodeSelector: { "nvidia.com/gpu.present": "true" }, tolerations: [] };
const tfJob = (namespace: string, gpus: number, queue?: string): Target => {
  const m = tfJobManifest({ name: "train", namespace, image: "r.example.com/t:1", args: ["train-mnist"], gpus, gpu: GPU });
  if (queue) m.metadata.labels["kueue.x-k8s.io/queue-name"] = queue;
  return { type: "kubernetes:kubeflow.org/v1:TFJob", name: `tfjob-${namespace}-${gpus}-${queue ?? "none"}`, props: m };
};
const template = (manifest: Record<string, unknown>): Target => ({
  type: "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate",
  name: "pipeline",
  props: {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "WorkflowTemplate",
    metadata: { name: "pipeline", namespace: "ml-pipelines" },
    spec: {
      templates: [
        { name: "train", resource: { action: "create", manifest: JSON.stringify(manifest).replace('"replicas":1', '"replicas":{{=asInt(workflow.parameters.workers)}}') } },
      ],
    },
  },
});

describe("team-namespaces-have-quota", () => {
  const policy = teamNamespacesHaveQuota();
  it("passes team namespaces with a quota, and stacks without teams", async () => {
    expect((await checkStack(policy, [ns("team-a", "a"), quota("team-a"), ns("ml-pipelines")])).violations).toEqual([]);
    expect((await checkStack(policy, [ns("ml-pipelines"), ns("other")])).violations).toEqual([]);
  });
  it("fails a team namespace without one, naming it; a quota elsewhere does not count", async () => {
    const v = (await checkStack(policy, [ns("team-a", "a"), quota("team-a"), ns("team-b", "b"), quota("ml-pipelines")])).violations;
    expect(v).toEqual([
      { message: expect.stringMatching(/^team namespace "team-b" has no ResourceQuota; add one/), urn: "urn:pulumi:dev::mlplatform::kubernetes:core/v1:Namespace::team-b" },
    ]);
  });
});

describe("manifests with Argo expressions", () => {
  it("parse once the expressions are out: in strings, as values, and as optional fragments", () => {
    const text =
      '{"metadata":{"name":"{{workflow.name}}-train"},"spec":{"Chief":{"replicas":{{=asInt(workflow.parameters.workers)}}}{{=asInt(workflow.parameters.workers) > 1 ? \'x\' : \'\'}},"note":"a \\"{{x}}\\" b"}}';
    expect(JSON.parse(withoutExpressions(text))).toEqual({ metadata: { name: "x-train" }, spec: { Chief: { replicas: 1 }, note: 'a "x" b' } });
  });
});

describe("gpu-workloads-queued", () => {
  const policy = gpuWorkloadsQueued();
  const teams = [ns("team-a", "a"), quota("team-a")];
  it("fails a GPU TFJob without a queue while teams are on; passes it queued, or CPU-only, or without teams", async () => {
    const v = (await checkStack(policy, [...teams, tfJob("team-a", 1)])).violations;
    expect(v.map((x) => x.message)).toEqual([expect.stringMatching(/^TFJob asks for nvidia.com\/gpu but names no Kueue queue; add the label kueue.x-k8s.io\/queue-name/)]);
    expect((await checkStack(policy, [...teams, tfJob("team-a", 1, "a")])).violations).toEqual([]);
    expect((await checkStack(policy, [...teams, tfJob("team-a", 0)])).violations).toEqual([]);
    expect((await checkStack(policy, [ns("ml-pipelines"), tfJob("ml-pipelines", 1)])).violations).toEqual([]);
  });
  it("looks into the TFJobs Argo templates create", async () => {
    const unqueued = tfJobManifest({ name: "{{workflow.name}}-train", namespace: "ml-pipelines", image: "r.example.com/t:1", args: ["train-mnist"], gpus: 1, gpu: GPU });
    const v = (await checkStack(policy, [...teams, template(unqueued)])).violations;
    expect(v.map((x) => x.message)).toEqual([expect.stringMatching(/^spec.templates\[0\] \("train"\) creates a TFJob that asks for nvidia.com\/gpu but names no Kueue queue/)]);
    const queued = structuredClone(unqueued);
    queued.metadata.labels["kueue.x-k8s.io/queue-name"] = "platform";
    expect((await checkStack(policy, [...teams, template(queued)])).violations).toEqual([]);
  });
});

describe("the aks stack with two teams, through the real program", () => {
  const teamsConfig = {
    "mlplatform:teams": [
      { name: "vision", groups: ["vision"], quota: { gpu: 2, cpu: "16", memory: "64Gi" } },
      { name: "nlp", groups: ["nlp"], quota: { gpu: 1, cpu: "8", memory: "32Gi" } },
    ],
    "mlplatform:kueue": { chart: "/charts/kueue-0.19.2.tgz" },
  };
  const targets = (run: StackRun): Target[] => run.resources.map((r) => ({ type: r.type, name: r.name, props: r.inputs, stack: "aks" }));

  it("passes both policies; broken (a quota removed, the pipeline TFJob's queue label removed) it fails each", async () => {
    const run = await runStack("aks", teamsConfig);
    const all = targets(run);
    // The GPU pipeline's TFJob is there, so the queue check has something to judge.
    expect(JSON.stringify(all.filter((t) => t.type.endsWith(":WorkflowTemplate")).map((t) => t.props))).toContain("nvidia.com/gpu");
    for (const p of [teamNamespacesHaveQuota(), gpuWorkloadsQueued()]) expect((await checkStack(p, all)).violations, p.name).toEqual([]);

    const noQuota = all.filter((t) => !(t.type === "kubernetes:core/v1:ResourceQuota" && (t.props as any).metadata.namespace === "team-nlp"));
    expect((await checkStack(teamNamespacesHaveQuota(), noQuota)).violations.map((v) => v.message)).toEqual([expect.stringContaining('team namespace "team-nlp"')]);

    const unlabelled = all.map((t) =>
      t.type.endsWith(":WorkflowTemplate")
        ? {
            ...t,
            props: JSON.parse(
              JSON.stringify(t.props).replaceAll('\\"kueue.x-k8s.io/queue-name\\":\\"platform\\",', "").replaceAll(',\\"kueue.x-k8s.io/queue-name\\":\\"platform\\"', ""),
            ),
          }
        : t,
    );
    const v = (await checkStack(gpuWorkloadsQueued(), unlabelled)).violations;
    expect(v.length).toBeGreaterThan(0);
    expect(v.every((x) => /creates a TFJob that asks for nvidia.com\/gpu but names no Kueue queue/.test(x.message))).toBe(true);
  });
});
