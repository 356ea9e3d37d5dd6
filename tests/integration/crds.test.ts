/**
 * TFJob and Argo Workflow objects of ours, accepted by a real kube-apiserver.
 *
 * The TFJob CRD is the Training Operator release's own (v1.9.2, fetched from the Go module
 * proxy by scripts/tools/fetch-manifests.sh): its structural schema covers the whole spec,
 * pod templates included, so the API server checks every field of our TFJobs the way a real
 * cluster does (and rejects a malformed one). The Argo CRDs are stand-ins this repository
 * wrote (tests/fixtures/crds/README.md); the Argo objects are also checked against the
 * upstream schemas in tests/kubeflow.test.ts.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PIPELINE_SERVICE_ACCOUNT, trainingWorkflowManifest } from "../../components/argoWorkflows";
import { sweepTemplate } from "../../components/hyperparameterSweep";
import { mnistPipelineTemplate, retrainPipelineTemplate, type PipelineContext } from "../../components/trainingPipeline";
import { tfJobManifest } from "../../components/trainingOperator";
import { Kube, ROOT, TFJOB_CRD_TOOL, missingTools, startLocal, stopLocal, upstreamTfJobCrd } from "./support";

const missing = missingTools(["etcd", "kube-apiserver", TFJOB_CRD_TOOL]);
if (missing.length > 0) console.log(`SKIPPED CRD tests: missing ${missing.join(", ")} (scripts/tools/build.sh)`);

const NS = "ml-pipelines";

describe.skipIf(missing.length > 0)("our TFJob and Workflow objects in a real kube-apiserver", () => {
  let work: string;
  let kube: Kube;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-crds-"));
    const local = startLocal(path.join(work, "cluster"), "apiserver");
    kube = new Kube(local.KUBECONFIG!);
    const crds = [upstreamTfJobCrd(), path.join(ROOT, "tests", "fixtures", "crds", "argoproj.io.yaml")].flatMap((f) =>
      YAML.parseAllDocuments(fs.readFileSync(f, "utf8")).map((d) => d.toJS()),
    );
    for (const crd of crds) {
      const r = await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    // Wait until every CRD is Established before creating objects of its kinds.
    for (const crd of crds) {
      for (let i = 0; i < 50; i++) {
        const got = await kube.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        if (got?.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True")) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const ns = await kube.request("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
    expect(ns.status).toBe(201);
  });

  afterAll(() => {
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  const tfJob = (name: string) =>
    tfJobManifest({
      name,
      namespace: NS,
      image: "registry.example.com/mlplatform/trainer@sha256:" + "0".repeat(64),
      args: ["train-mnist", "--data", "s3://data/mnist", "--steps", "2000"],
      gpus: 1,
      gpu: { nodeSelector: { "nvidia.com/gpu.present": "true" }, tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }] },
      serviceAccountName: PIPELINE_SERVICE_ACCOUNT,
    });

  it("accepts our TFJob (kubeflow.org/v1)", async () => {
    const r = await kube.request("POST", `/apis/kubeflow.org/v1/namespaces/${NS}/tfjobs`, tfJob("mnist-train"));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const stored = await kube.get(`/apis/kubeflow.org/v1/namespaces/${NS}/tfjobs/mnist-train`);
    expect(stored.spec.tfReplicaSpecs.Chief.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
  });

  it("rejects a malformed TFJob: the schema is enforced, not decorative", async () => {
    const bad = tfJob("mnist-bad");
    (bad.spec.tfReplicaSpecs.Chief as Record<string, unknown>).replicas = "one";
    const r = await kube.request("POST", `/apis/kubeflow.org/v1/namespaces/${NS}/tfjobs`, bad);
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toMatch(/replicas/);
  });

  it("accepts our Workflow (argoproj.io/v1alpha1) that runs the TFJob", async () => {
    const wf = trainingWorkflowManifest({ generateName: "mnist-", namespace: NS, serviceAccountName: PIPELINE_SERVICE_ACCOUNT, tfJob: tfJob("mnist-wf") });
    const r = await kube.request("POST", `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows`, wf);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.metadata.name).toMatch(/^mnist-/);
  });

  it("accepts the pipeline and sweep WorkflowTemplates", async () => {
    const ctx: PipelineContext = {
      namespace: NS,
      serviceAccountName: PIPELINE_SERVICE_ACCOUNT,
      image: "registry.example.com/mlplatform/trainer@sha256:" + "0".repeat(64),
      tensorboardImage: "tensorflow/tensorflow:2.17.0",
      gpus: 0,
      modelBase: "/mnt/shared/models",
      servingGrpc: "mnist.ml-serving.svc.cluster.local:8500",
    };
    for (const t of [mnistPipelineTemplate(ctx), retrainPipelineTemplate(ctx), sweepTemplate(ctx, { parallelism: 4, modelsBucket: "models" })]) {
      const r = await kube.request("POST", `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflowtemplates`, t);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    expect((await kube.names(`/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflowtemplates`)).sort()).toEqual([
      "hyperparameter-sweep",
      "mnist-pipeline",
      "retrain-pipeline",
    ]);
  });
});
