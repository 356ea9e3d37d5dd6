import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { AKS_VIRTUAL_NODE_PLACEMENT } from "../components/aksCluster";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { GRID_SCRIPT, PROMOTE_SCRIPT, sweepGrid } from "../components/hyperparameterSweep";
import { contentTag } from "../components/trainerImage";
import { PIPELINE_TEMPLATES } from "../components/trainingPipeline";
import { FAKE, FIXTURE_KUBECONFIG, ROOT, ofType, one, runStack, type StackRun } from "./harness";

const DIGEST = "sha256:" + "ab".repeat(32);

function templates(run: StackRun): Record<string, any> {
  return Object.fromEntries(
    ofType(run, "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate").map((t) => [t.inputs.metadata.name, t.inputs]),
  );
}

/** Every image reference in a WorkflowTemplate, including those inside resource manifests (TFJob, TensorBoard). */
function imagesIn(t: any): string[] {
  const found: string[] = [];
  const walk = (v: any): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        if (k === "image" && typeof x === "string") found.push(x);
        else if (k === "manifest" && typeof x === "string") walk(JSON.parse(x.replace(/\{\{=[^}]+\}\}/g, "0")));
        else walk(x);
      }
    }
  };
  walk(t);
  return found;
}

describe("trainer image and pipelines under mocks", () => {
  for (const stack of ["aks", "gke"] as const) {
    it(`${stack}: builds trainer/ with the repo as context and pushes to the cluster's registry by content tag`, async () => {
      const r = await runStack(stack);
      const img = one(r, "docker-build:index:Image").inputs;
      expect(img.context).toEqual({ location: ROOT });
      expect(img.dockerfile).toEqual({ location: path.join(ROOT, "trainer", "Dockerfile") });
      expect(img.push).toBe(true);
      expect(img.buildArgs).toEqual({ VARIANT: "gpu" });
      const registry = r.outputs.registryServer as string;
      expect(img.tags).toEqual([`${registry}/mlplatform/trainer:${contentTag(ROOT, "gpu")}`]);
      expect(r.outputs.trainerImage).toBe(`${registry}/mlplatform/trainer@${DIGEST}`);
      if (stack === "gke") {
        // The deployer's access token, as a secret, is the push credential.
        expect(JSON.stringify(img.registries)).toContain(FAKE.gcpAccessToken);
        expect(JSON.stringify(img.registries)).toContain("4dabf18193072939515e22adb298388d");
      }
    });

    it(`${stack}: the workflows, their TFJob and the model server all run the digest-pinned image`, async () => {
      const r = await runStack(stack);
      const ref = r.outputs.trainerImage as string;
      const t = templates(r);
      expect(Object.keys(t).sort()).toEqual([PIPELINE_TEMPLATES.sweep, PIPELINE_TEMPLATES.mnist, PIPELINE_TEMPLATES.retrain].sort());
      for (const name of [PIPELINE_TEMPLATES.mnist, PIPELINE_TEMPLATES.retrain, PIPELINE_TEMPLATES.sweep]) {
        const refs = imagesIn(t[name]).filter((i) => !i.startsWith("tensorflow/"));
        expect(refs.length, name).toBeGreaterThan(2);
        expect(new Set(refs), name).toEqual(new Set([ref]));
      }
      const tfjob = JSON.parse(
        t[PIPELINE_TEMPLATES.mnist].spec.templates.find((x: any) => x.name === "train").resource.manifest.replace(/\{\{=[^}]+\}\}/, "0"),
      );
      expect(tfjob.kind).toBe("TFJob");
      expect(tfjob.spec.tfReplicaSpecs.Chief.template.spec.containers[0].image).toBe(ref);
      expect(tfjob.spec.tfReplicaSpecs.Chief.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
      expect(tfjob.spec.tfReplicaSpecs.Chief.template.spec.nodeSelector).toEqual(r.outputs.gpuNodeSelector);
      const serving = ofType(r, "kubernetes:apps/v1:Deployment").find((d) => d.name.startsWith("serving"))!.inputs;
      expect(serving.spec.template.spec.containers[0].image).toBe(ref);
    });
  }

  it("dev: no build, the prebuilt image everywhere", async () => {
    const r = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    expect(ofType(r, "docker-build:index:Image")).toEqual([]);
    expect(r.outputs.trainerImage).toBe("localhost:5001/mlplatform/trainer:0.1.0");
    for (const t of Object.values(templates(r))) {
      for (const i of imagesIn(t).filter((x) => !x.startsWith("tensorflow/"))) expect(i).toBe("localhost:5001/mlplatform/trainer:0.1.0");
    }
  });

  it("the MNIST pipeline: verify → TensorBoard + train → evaluate (gate) → publish → smoke test, cleanup on exit", async () => {
    const r = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    const t = templates(r)[PIPELINE_TEMPLATES.mnist];
    expect(t.spec.onExit).toBe("cleanup");
    expect(t.spec.serviceAccountName).toBe("pipeline");
    const dag = t.spec.templates.find((x: any) => x.name === "pipeline").dag.tasks;
    expect(dag.map((x: any) => `${x.name}<-${(x.dependencies ?? []).join(",")}`)).toEqual([
      "verify-data<-",
      "tensorboard<-verify-data",
      "train<-verify-data",
      "evaluate<-train",
      "publish<-evaluate",
      "smoke-test<-publish",
    ]);
    expect(t.spec.arguments.parameters.map((p: any) => p.name)).toEqual([
      "dataset", "model-name", "steps", "learning-rate", "batch-size", "hidden-units", "workers", "accuracy-gate",
    ]);
    const evaluate = t.spec.templates.find((x: any) => x.name === "evaluate");
    expect(evaluate.container.args).toContain("--gate");
    expect(evaluate.retryStrategy).toBeUndefined(); // a missed gate is final, not transient
    expect(t.spec.templates.find((x: any) => x.name === "verify-data").retryStrategy.backoff).toBeDefined();
    const smoke = t.spec.templates.find((x: any) => x.name === "smoke-test").container.args;
    expect(smoke.slice(0, 3)).toEqual(["predict", "--server", r.outputs.servingGrpcEndpoint]);
    const train = t.spec.templates.find((x: any) => x.name === "train").resource;
    expect(train.manifest).toContain('"replicas":{{=asInt(workflow.parameters.workers) - 1}}');
    expect(train.successCondition).toBe("status.replicaStatuses.Chief.succeeded > 0");
  });

  it("aks: sweep trials burst to the virtual nodes; gke: on the autoscaled pools", async () => {
    const aks = templates(await runStack("aks"))[PIPELINE_TEMPLATES.sweep];
    const trial = aks.spec.templates.find((x: any) => x.name === "trial");
    expect(trial.nodeSelector).toEqual(AKS_VIRTUAL_NODE_PLACEMENT.nodeSelector);
    expect(trial.tolerations).toEqual(AKS_VIRTUAL_NODE_PLACEMENT.tolerations);
    expect(trial.container.volumeMounts.map((m: any) => m.name)).toEqual(["tmp"]); // no PVC on ACI
    expect(aks.spec.parallelism).toBe(4);
    const gke = templates(await runStack("gke"))[PIPELINE_TEMPLATES.sweep];
    expect(gke.spec.templates.find((x: any) => x.name === "trial").nodeSelector).toBeUndefined();
  });

  it("the sweep grid is the product of the lists, and bad lists are refused", () => {
    expect(sweepGrid("0.001,0.01", "64,128", "32")).toEqual([
      { index: 0, lr: "0.001", hu: "64", bs: "32" },
      { index: 1, lr: "0.001", hu: "128", bs: "32" },
      { index: 2, lr: "0.01", hu: "64", bs: "32" },
      { index: 3, lr: "0.01", hu: "128", bs: "32" },
    ]);
    expect(() => sweepGrid("0.001,-1", "64", "32")).toThrow(/learning-rates must be a comma-separated list of positive numbers; got "0.001,-1"/);
  });

  it("a content change changes the image tag; the same content keeps it", () => {
    expect(contentTag(ROOT, "gpu")).toBe(contentTag(ROOT, "gpu"));
    expect(contentTag(ROOT, "gpu")).not.toBe(contentTag(ROOT, "cpu"));
    expect(contentTag(ROOT, "gpu")).toMatch(/^gpu-[0-9a-f]{16}$/);
  });

  it("the sweep's in-cluster scripts: the grid matches sweepGrid; promote picks the best trial above the gate", () => {
    const out = execFileSync("node", ["-e", GRID_SCRIPT], {
      env: { ...process.env, LEARNING_RATES: "0.001,0.003", HIDDEN_UNITS: "64,128", BATCH_SIZES: "32" },
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual(sweepGrid("0.001,0.003", "64,128", "32"));
    const trials = [
      { trial: 0, lr: "0.001", hu: "64", bs: "32", metrics: { validationAccuracy: 0.95, testAccuracy: 0.94 }, model: "s3://models/sweeps/r/trial-0" },
      { trial: 1, lr: "0.003", hu: "64", bs: "32", metrics: { validationAccuracy: 0.97, testAccuracy: 0.96 }, model: "s3://models/sweeps/r/trial-1" },
    ];
    fs.rmSync("/tmp/best.json", { force: true });
    const ok = spawnSync("node", ["-e", PROMOTE_SCRIPT], { env: { ...process.env, RESULTS: JSON.stringify(trials.map((t) => JSON.stringify(t))), GATE: "0.9" }, encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain("best: trial 1 (validation accuracy 0.9700)");
    expect(JSON.parse(fs.readFileSync("/tmp/best.json", "utf8")).model).toBe("s3://models/sweeps/r/trial-1");
    const below = spawnSync("node", ["-e", PROMOTE_SCRIPT], { env: { ...process.env, RESULTS: JSON.stringify(trials), GATE: "0.99" }, encoding: "utf8" });
    expect(below.status).toBe(3);
    expect(below.stderr).toContain("no trial reached the gate 0.99: promoting nothing");
  });
});
