/**
 * TFJob and Argo objects of ours, accepted by a real kube-apiserver with the real CRDs:
 *
 * - the TFJob CRD is the Training Operator release's own (v1.9.2, fetched from the Go module
 *   proxy by scripts/tools/fetch-manifests.sh): its structural schema covers the whole spec,
 *   pod templates included;
 * - the Argo CRDs are Argo Workflows' own full schemas (tests/fixtures/crds/argo.ts): the
 *   vendored chart's files/crds/full, checked equal to the v4.0.5 release module's
 *   (scripts/tools/fetch-argo-crds.sh).
 *
 * So the API server checks every field of our TFJobs (with the replica counts a run resolves)
 * and WorkflowTemplates the way a real cluster does, and rejects malformed ones. Pods shaped
 * like Argo's workflow pods meet the API server's Pod Security admission in a `restricted`
 * namespace, as the pipelines namespace is.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXECUTOR_SECURITY_CONTEXT, PIPELINE_SERVICE_ACCOUNT, trainingWorkflowManifest } from "../../components/argoWorkflows";
import { sweepTemplate } from "../../components/hyperparameterSweep";
import { AKS_VIRTUAL_NODE_PLACEMENT } from "../../components/aksCluster";
import { PLATFORM_LABELS, podSecurityLabels } from "../../components/namespaces";
import { restrictedPod } from "../../components/objectStore";
import { mnistPipelineTemplate, resolveReplicaCounts, retrainPipelineTemplate, type PipelineContext } from "../../components/trainingPipeline";
import { tfJobManifest } from "../../components/trainingOperator";
import { ARGO_CHART, chartArgoCrdTexts, comparableCrdText, moduleArgoCrdTexts, parseCrds } from "../fixtures/crds/argo";
import { Kube, TFJOB_CRD_TOOL, missingTools, startLocal, stopLocal, upstreamTfJobCrd } from "./support";

const missing = [...missingTools(["etcd", "kube-apiserver", TFJOB_CRD_TOOL]), ...(fs.existsSync(ARGO_CHART) ? [] : [ARGO_CHART])];
if (missing.length > 0) {
  if (process.env.CI === "true") throw new Error(`CRD tests cannot run: missing ${missing.join(", ")}`);
  console.log(`SKIPPED CRD tests: missing ${missing.join(", ")} (scripts/tools/build.sh; ../shared/charts)`);
}

const NS = "ml-pipelines";
const IMAGE = "registry.example.com/mlplatform/trainer@sha256:" + "0".repeat(64);
const GPU = { nodeSelector: { "nvidia.com/gpu.present": "true" }, tolerations: [{ key: "nvidia.com/gpu", operator: "Exists" as const, effect: "NoSchedule" as const }] };

describe.skipIf(missing.length > 0)("our TFJob and Argo objects in a real kube-apiserver with the real CRDs", () => {
  let work: string;
  let kube: Kube;
  let argoTexts: Record<string, string>;

  const ctx: PipelineContext = {
    namespace: NS,
    serviceAccountName: PIPELINE_SERVICE_ACCOUNT,
    image: IMAGE,
    tensorboardImage: "tensorflow/tensorflow:2.17.0",
    gpus: 1,
    gpu: GPU,
    modelBase: "/mnt/shared/models",
    servingGrpc: "mnist.ml-serving.svc.cluster.local:8500",
  };

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-crds-"));
    const local = startLocal(path.join(work, "cluster"), "apiserver");
    kube = new Kube(local.KUBECONFIG!);
    argoTexts = chartArgoCrdTexts();
    const crds = [...YAML.parseAllDocuments(fs.readFileSync(upstreamTfJobCrd(), "utf8")).map((d) => d.toJS()), ...parseCrds(argoTexts)];
    for (const crd of crds) {
      const r = await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      expect(r.status, `${crd.metadata.name}: ${JSON.stringify(r.body).slice(0, 500)}`).toBe(201);
    }
    // Wait until every CRD is Established before creating objects of its kinds.
    for (const crd of crds) {
      for (let i = 0; ; i++) {
        const got = await kube.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        if (got?.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True")) break;
        if (i > 150) throw new Error(`CRD ${crd.metadata.name} not Established after 30 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // The pipelines namespace enforces `restricted`, as components/namespaces.ts makes it.
    const ns = await kube.request("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: NS, labels: { ...PLATFORM_LABELS, ...podSecurityLabels("restricted") } },
    });
    expect(ns.status, JSON.stringify(ns.body)).toBe(201);
  });

  afterAll(() => {
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  const tfJobPath = `/apis/kubeflow.org/v1/namespaces/${NS}/tfjobs`;
  const argoPath = (plural: string) => `/apis/argoproj.io/v1alpha1/namespaces/${NS}/${plural}`;

  const tfJob = (name: string) =>
    tfJobManifest({
      name,
      namespace: NS,
      image: IMAGE,
      args: ["train-mnist", "--data", "s3://data/mnist", "--steps", "2000"],
      gpus: 1,
      gpu: GPU,
      serviceAccountName: PIPELINE_SERVICE_ACCOUNT,
    });

  it("the chart's Argo CRDs are the v4.0.5 release's own (scripts/tools/fetch-argo-crds.sh)", () => {
    const fromModule = moduleArgoCrdTexts();
    for (const [file, text] of Object.entries(argoTexts)) {
      expect(comparableCrdText(text) === comparableCrdText(fromModule[file]!), `${file}: chart and release module differ`).toBe(true);
    }
    // A full schema, not an open stand-in.
    const wft = parseCrds({ f: argoTexts["argoproj.io_workflowtemplates.yaml"]! })[0]!;
    const spec = wft.spec.versions[0].schema.openAPIV3Schema.properties.spec;
    expect(spec["x-kubernetes-preserve-unknown-fields"]).toBeUndefined();
    expect(Object.keys(spec.properties)).toContain("templates");
  });

  it("accepts our TFJob (kubeflow.org/v1)", async () => {
    const r = await kube.request("POST", tfJobPath, tfJob("mnist-train"));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const stored = await kube.get(`${tfJobPath}/mnist-train`);
    expect(stored.spec.tfReplicaSpecs.Chief.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
  });

  it("rejects a malformed TFJob: the schema is enforced, not decorative", async () => {
    const bad = tfJob("mnist-bad");
    (bad.spec.tfReplicaSpecs.Chief as Record<string, unknown>).replicas = "one";
    const r = await kube.request("POST", tfJobPath, bad);
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toMatch(/replicas/);
  });

  it("the pipelines' TFJobs with their replica counts resolved (Chief, Workers with GPUs, parameter servers) are accepted", async () => {
    for (const [template, counts] of [
      [mnistPipelineTemplate(ctx), { workers: 1, parameterServers: 0 }],
      [mnistPipelineTemplate(ctx), { workers: 4, parameterServers: 2 }],
      [retrainPipelineTemplate(ctx), { workers: 2, parameterServers: 1 }],
    ] as const) {
      const manifest = template.spec.templates!.find((x) => x.name === "train")!.resource!.manifest!;
      // Replica counts as Argo resolves them; then the run's name everywhere (also inside the Worker and PS specs).
      const run = `run-${counts.workers}-${counts.parameterServers}`;
      const job = JSON.parse(JSON.stringify(resolveReplicaCounts(manifest, counts)).replaceAll("{{workflow.name}}", run));
      const r = await kube.request("POST", tfJobPath, job);
      expect(r.status, `${template.metadata.name} ${JSON.stringify(counts)}: ${JSON.stringify(r.body)}`).toBe(201);
      const stored = (await kube.get(`${tfJobPath}/${job.metadata.name}`)).spec.tfReplicaSpecs;
      // A replica type with no replicas is absent (the operator would start a pod for replicas: 0).
      expect(Object.fromEntries(Object.entries<any>(stored).map(([k, v]) => [k, v.replicas]))).toEqual({
        Chief: 1,
        ...(counts.workers > 1 ? { Worker: counts.workers - 1 } : {}),
        ...(counts.parameterServers > 0 ? { PS: counts.parameterServers } : {}),
      });
      if (stored.Worker) expect(stored.Worker.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
      if (stored.PS) expect(stored.PS.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBeUndefined();
    }
    // A sweep trial's TFJob (its replicas run the trial script).
    const sweep = sweepTemplate(ctx, { parallelism: 2, modelsBucket: "models" });
    const trial = sweep.spec.templates!.find((x) => x.name === "trial-train")!.resource!.manifest!;
    const job = resolveReplicaCounts(trial, { workers: 2, parameterServers: 1 });
    const text = JSON.stringify(job)
      .replaceAll("{{workflow.name}}", "sweep-1")
      .replaceAll("{{inputs.parameters.index}}", "0")
      .replace(/\{\{[^}]+\}\}/g, "x");
    const r = await kube.request("POST", tfJobPath, JSON.parse(text));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.metadata.name).toBe("sweep-1-trial-0");
  });

  it("accepts our Workflow (argoproj.io/v1alpha1) that runs the TFJob", async () => {
    const wf = trainingWorkflowManifest({ generateName: "mnist-", namespace: NS, serviceAccountName: PIPELINE_SERVICE_ACCOUNT, tfJob: tfJob("mnist-wf") });
    const r = await kube.request("POST", argoPath("workflows"), wf);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.metadata.name).toMatch(/^mnist-/);
  });

  it("accepts the pipeline and sweep WorkflowTemplates (the sweep with and without burst placement)", async () => {
    const sweep = sweepTemplate(ctx, { parallelism: 4, modelsBucket: "models" });
    const burst = sweepTemplate(ctx, { parallelism: 4, modelsBucket: "models", burst: AKS_VIRTUAL_NODE_PLACEMENT });
    for (const t of [mnistPipelineTemplate(ctx), retrainPipelineTemplate(ctx), sweep, { ...burst, metadata: { ...burst.metadata, name: "hyperparameter-sweep-burst" } }]) {
      const r = await kube.request("POST", argoPath("workflowtemplates"), t);
      expect(r.status, `${t.metadata.name}: ${JSON.stringify(r.body).slice(0, 2000)}`).toBe(201);
    }
    expect((await kube.names(argoPath("workflowtemplates"))).sort()).toEqual(["hyperparameter-sweep", "hyperparameter-sweep-burst", "mnist-pipeline", "retrain-pipeline"]);
  });

  it("rejects a malformed WorkflowTemplate: the real schema checks the templates", async () => {
    const t = mnistPipelineTemplate(ctx);
    // Made invalid on purpose, so no longer typed as a WorkflowTemplate.
    const bad: Record<string, any> = structuredClone(t);
    bad.metadata.name = "bad-pipeline";
    bad.spec.templates.find((x: any) => x.name === "pipeline").dag.tasks[0].dependencies = "verify-data";
    const r = await kube.request("POST", argoPath("workflowtemplates"), bad);
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toMatch(/dependencies/);
    const unknownField: Record<string, any> = structuredClone(t);
    unknownField.metadata.name = "bad-pipeline-2";
    unknownField.spec.templates.find((x: any) => x.name === "evaluate").container.argz = ["x"];
    const strict = await kube.request("POST", `${argoPath("workflowtemplates")}?fieldValidation=Strict`, unknownField);
    expect(strict.status).toBe(400);
    expect(JSON.stringify(strict.body)).toMatch(/argz/);
  });

  it("accepts the scheduled MNIST run (CronWorkflow)", async () => {
    const r = await kube.request("POST", argoPath("cronworkflows"), {
      apiVersion: "argoproj.io/v1alpha1",
      kind: "CronWorkflow",
      metadata: { name: "mnist-pipeline-scheduled", namespace: NS },
      spec: { schedules: ["0 3 * * *"], concurrencyPolicy: "Forbid", workflowSpec: { workflowTemplateRef: { name: "mnist-pipeline" } } },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  });

  describe("a workflow pod in the restricted pipelines namespace (Pod Security admission)", () => {
    /** A pod shaped like the one Argo makes for the evaluate step: init + wait from argoexec, main from our template. */
    function workflowPod(name: string, executorSecurityContext: Record<string, unknown> | undefined) {
      const t = mnistPipelineTemplate(ctx);
      const step = t.spec.templates!.find((x) => x.name === "evaluate")!;
      const argoexec = (n: string) => ({
        name: n,
        image: "quay.io/argoproj/argoexec:v4.0.5",
        command: ["argoexec"],
        args: [n === "init" ? "init" : "wait"],
        ...(executorSecurityContext ? { securityContext: executorSecurityContext } : {}),
        volumeMounts: [{ name: "var-run-argo", mountPath: "/var/run/argo" }],
      });
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: NS },
        spec: {
          securityContext: t.spec.securityContext,
          automountServiceAccountToken: false,
          initContainers: [argoexec("init")],
          containers: [
            argoexec("wait"),
            {
              ...step.container,
              volumeMounts: [
                { name: "tmp", mountPath: "/tmp" },
                { name: "var-run-argo", mountPath: "/var/run/argo" },
              ],
            },
          ],
          volumes: [
            { name: "tmp", emptyDir: {} },
            { name: "var-run-argo", emptyDir: {} },
          ],
        },
      };
    }

    it("admitted with the executor securityContext the chart values set", async () => {
      expect(restrictedPod(1000).seccompProfile).toEqual({ type: "RuntimeDefault" });
      const r = await kube.request("POST", `/api/v1/namespaces/${NS}/pods`, workflowPod("evaluate-ok", { ...EXECUTOR_SECURITY_CONTEXT }));
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    });

    it("refused without it (what the chart's defaults gave), naming the init and wait containers", async () => {
      const r = await kube.request("POST", `/api/v1/namespaces/${NS}/pods`, workflowPod("evaluate-refused", undefined));
      expect(r.status).toBe(403);
      expect(r.body.message).toMatch(/violates PodSecurity "restricted:latest"/);
      expect(r.body.message).toMatch(/"init", "wait"/);
    });
  });
});
