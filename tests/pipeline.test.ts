import * as path from "node:path";
import * as os from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AKS_VIRTUAL_NODE_PLACEMENT } from "../components/aksCluster";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { GRID_SCRIPT, PROMOTE_SCRIPT, sweepGrid, sweepTemplate } from "../components/hyperparameterSweep";
import { SHARED_MOUNT_PATH } from "../components/sharedStorage";
import { contentTag } from "../components/trainerImage";
import { mnistPipelineTemplate, PIPELINE_OUTPUTS, PIPELINE_TEMPLATES, resolveReplicaCounts, retrainPipelineTemplate, type PipelineContext } from "../components/trainingPipeline";
import { main as cliMain } from "../trainer/src/cli";
import { publishModelVersion } from "../trainer/src/export/publish";
import { createMnistModel } from "../trainer/src/model/mnist";
import { MLP_PROGRAM, runDirs, shellCommand, stagedVersion, trialRunName } from "../trainer/src/pipeline/steps";
import { closedPort } from "../trainer/tests/fixtures/fake-s3";
import { captureIo } from "../trainer/tests/fixtures/tmp";
import { FAKE, FIXTURE_KUBECONFIG, ROOT, ofType, one, runStack, type StackRun } from "./harness";

const DIGEST = "sha256:" + "ab".repeat(32);

function templates(run: StackRun): Record<string, any> {
  return Object.fromEntries(ofType(run, "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate").map((t) => [t.inputs.metadata.name, t.inputs]));
}

const isTfJob = (manifest: string) => manifest.startsWith('{"apiVersion":"kubeflow.org/v1","kind":"TFJob"');

/** Every image reference in a WorkflowTemplate, including those inside resource manifests (TFJob, TensorBoard). */
function imagesIn(t: any): string[] {
  const found: string[] = [];
  const walk = (v: any): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        if (k === "image" && typeof x === "string") found.push(x);
        else if (k === "manifest" && typeof x === "string") walk(isTfJob(x) ? resolveReplicaCounts(x, { workers: 3, parameterServers: 2 }) : JSON.parse(x));
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
      const tfjob = resolveReplicaCounts(t[PIPELINE_TEMPLATES.mnist].spec.templates.find((x: any) => x.name === "train").resource.manifest, { workers: 1, parameterServers: 0 });
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

  it("every container and script step names its command (the emissary executor cannot look up a local or private image's entrypoint)", async () => {
    const r = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    const t = templates(r);
    let steps = 0;
    for (const [name, wt] of Object.entries(t)) {
      for (const step of wt.spec.templates) {
        const c = step.container ?? step.script;
        if (!c) continue;
        steps++;
        expect(Array.isArray(c.command) && c.command.length > 0, `${name}/${step.name} has no command`).toBe(true);
      }
    }
    expect(steps).toBeGreaterThan(8);
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
      "dataset",
      "model-name",
      "steps",
      "learning-rate",
      "batch-size",
      "hidden-units",
      "accuracy-gate",
      "workers",
      "parameter-servers",
    ]);
    const evaluate = t.spec.templates.find((x: any) => x.name === "evaluate");
    expect(evaluate.container.args).toContain("--gate");
    expect(evaluate.retryStrategy).toBeUndefined(); // a missed gate is final, not transient
    expect(t.spec.templates.find((x: any) => x.name === "verify-data").retryStrategy.backoff).toBeDefined();
    const smoke = t.spec.templates.find((x: any) => x.name === "smoke-test").container.args;
    expect(smoke.slice(0, 3)).toEqual(["predict", "--server", r.outputs.servingGrpcEndpoint]);
    const train = t.spec.templates.find((x: any) => x.name === "train").resource;
    // Workers and PS exist only when asked for (an Argo expression each, after the Chief).
    expect(train.manifest).toContain('"tfReplicaSpecs":{"Chief":{"replicas":1,');
    expect(train.manifest).toContain("{{=asInt(workflow.parameters.workers) > 1 ? sprig.b64dec(");
    expect(train.manifest).toContain("{{=asInt(workflow.parameters['parameter-servers']) > 0 ? sprig.b64dec(");
    expect(train.successCondition).toBe("status.replicaStatuses.Chief.succeeded > 0");
  });

  it("aks: sweep trials burst to the virtual nodes; gke: on the autoscaled pools", async () => {
    const aks = templates(await runStack("aks"))[PIPELINE_TEMPLATES.sweep];
    // On burst nodes the trial is a DAG: the run on the virtual node, then its logs saved.
    expect(aks.spec.templates.find((x: any) => x.name === "trial").dag.tasks.map((x: any) => x.name)).toEqual(["run", "save-logs"]);
    const trial = aks.spec.templates.find((x: any) => x.name === "trial-run");
    expect(trial.nodeSelector).toEqual(AKS_VIRTUAL_NODE_PLACEMENT.nodeSelector);
    expect(trial.tolerations).toEqual(AKS_VIRTUAL_NODE_PLACEMENT.tolerations);
    expect(trial.container.volumeMounts.map((m: any) => m.name)).toEqual(["tmp"]); // no PVC on ACI
    // Its logs reach the shared log directory through a step on a regular node.
    const saveLogs = aks.spec.templates.find((x: any) => x.name === "save-logs");
    expect(saveLogs.nodeSelector).toBeUndefined();
    expect(saveLogs.inputs.artifacts[0].path).toBe("/mnt/shared/logs/{{workflow.name}}/trial-{{inputs.parameters.index}}");
    expect(saveLogs.container.volumeMounts).toContainEqual({ name: "shared", mountPath: "/mnt/shared" });
    expect(aks.spec.parallelism).toBe(4);
    const gke = templates(await runStack("gke"))[PIPELINE_TEMPLATES.sweep];
    expect(gke.spec.templates.find((x: any) => x.name === "trial").nodeSelector).toBeUndefined();
    expect(gke.spec.templates.find((x: any) => x.name === "save-logs")).toBeUndefined();
    // Off the virtual nodes a trial is a TFJob sized by workers and parameter-servers.
    expect(resolveReplicaCounts(gke.spec.templates.find((x: any) => x.name === "trial-train").resource.manifest, { workers: 1, parameterServers: 0 }).kind).toBe("TFJob");
    expect(gke.spec.arguments.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(["workers", "parameter-servers"]));
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

// ---------------------------------------------------------------------------------------
// Every step's command line through the real `mlp` (HOUSE_STYLE: generated arguments are
// checked by the real parser). Argo placeholders are filled in the way Argo would: workflow
// parameters with the template's own defaults (or a value the test sets), the run name, a
// trial's inputs; the shared volume is a fresh temporary directory; S3 and the model server
// are closed ports on 127.0.0.1, so a command that gets past its flags fails on I/O (exit 1)
// while a flag it does not know, or a value it refuses, is a usage error (exit 2).
// ---------------------------------------------------------------------------------------

const RUN = "wf-test";

interface Invocation {
  /** Template (and replica) it came from. */
  readonly where: string;
  readonly args: string[];
}

/** Fills Argo placeholders; fails on any it does not know, so none reaches a parser unfilled. */
function fill(text: string, v: { params: Record<string, string>; inputs?: Record<string, string> }): string {
  const out = text
    .replace(/\{\{workflow\.parameters\.([\w-]+)\}\}/g, (_, k: string) => {
      if (v.params[k] === undefined) throw new Error(`no value for workflow parameter ${k}`);
      return v.params[k]!;
    })
    .replace(/\{\{workflow\.name\}\}/g, RUN)
    .replace(/\{\{=jsonpath\(inputs\.parameters\.([\w-]+), '\$\.(\w+)'\)\}\}/g, (_, k: string, field: string) => String(JSON.parse(v.inputs![k]!)[field]))
    .replace(/\{\{inputs\.parameters\.([\w-]+)\}\}/g, (_, k: string) => {
      if (v.inputs?.[k] === undefined) throw new Error(`no value for input ${k}`);
      return v.inputs[k]!;
    });
  expect(out, `unfilled placeholder in ${text}`).not.toMatch(/\{\{/);
  return out;
}

function defaults(t: any, set: Record<string, string> = {}): Record<string, string> {
  return { ...Object.fromEntries(t.spec.arguments.parameters.map((p: any) => [p.name, String(p.value)])), ...set };
}

/** The `mlp` command lines of a pipeline template: its containers that run mlp and every TFJob replica. */
function invocations(t: any, params: Record<string, string>, replicas = { workers: 3, parameterServers: 2 }): Invocation[] {
  const found: Invocation[] = [];
  for (const step of t.spec.templates) {
    if (step.container?.command?.length === 1 && step.container.command[0] === MLP_PROGRAM) {
      found.push({ where: `${t.metadata.name}/${step.name}`, args: step.container.args.map((a: string) => fill(a, { params })) });
    }
    if (step.resource && isTfJob(step.resource.manifest)) {
      const job = resolveReplicaCounts(step.resource.manifest, replicas);
      for (const [role, spec] of Object.entries<any>(job.spec.tfReplicaSpecs)) {
        found.push({ where: `${t.metadata.name}/${step.name} (${role})`, args: spec.template.spec.containers[0].args.map((a: string) => fill(a, { params })) });
      }
    }
  }
  return found;
}

describe("every pipeline step's command line passes the real mlp parser", () => {
  let tmp: string;
  let shared: string;
  let env: NodeJS.ProcessEnv;
  let ctx: PipelineContext;
  /** The shared volume path in an argument → the test's fresh one. */
  const onShared = (a: string) => a.split(SHARED_MOUNT_PATH).join(shared);

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-steps-"));
    shared = path.join(tmp, "shared");
    fs.mkdirSync(shared);
    const closed = await closedPort();
    env = {
      AWS_ACCESS_KEY_ID: "k",
      AWS_SECRET_ACCESS_KEY: "s",
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${closed}`,
      MLPLATFORM_CACHE: path.join(tmp, "cache"),
    };
    ctx = {
      namespace: "ml-pipelines",
      serviceAccountName: "pipeline",
      image: "trainer:test",
      tensorboardImage: "tensorflow/tensorflow:2.17.0",
      gpus: 1,
      gpu: { nodeSelector: { "nvidia.com/gpu.present": "true" }, tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }] },
      modelBase: `${SHARED_MOUNT_PATH}/models`,
      servingGrpc: `127.0.0.1:${closed}`,
    };
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Runs `mlp <args>` in this process as the CLI does; resolves to its exit code and stderr. */
  async function mlp(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
    const c = captureIo({ ...env, ...extraEnv });
    const code = await cliMain(args.map(onShared), c.io);
    return { code, stderr: c.stderr() };
  }

  async function expectParsed(inv: Invocation) {
    const r = await mlp(inv.args);
    expect(r.code, `${inv.where}: mlp ${inv.args.join(" ")}\n${r.stderr}`).not.toBe(2);
    // Past the flags means it went for its inputs (exit 0 or 1), not a usage message.
    expect(r.stderr, inv.where).not.toMatch(/see mlp \S+ --help|Unknown option|is required/);
  }

  it("the MNIST and retrain templates: verify-data, fetch-base (retrain), every TFJob replica, evaluate, publish, smoke test", async () => {
    // The default base model already fetched onto the shared volume: fetch-base must find it
    // there and not go to the network.
    const retrain = retrainPipelineTemplate(ctx);
    const baseName = defaults(retrain)["base-model"]!;
    const sha = "cd".repeat(32);
    const entry = path.join(shared, "base-models", baseName, sha);
    fs.mkdirSync(entry, { recursive: true });
    fs.writeFileSync(path.join(entry, "model.json"), "{}");
    fs.writeFileSync(path.join(entry, "base-model.json"), "{}");
    fs.writeFileSync(path.join(shared, "base-models", baseName, "current"), `${sha}\n`);

    const seen: string[] = [];
    for (const t of [mnistPipelineTemplate(ctx), retrain]) {
      const all = invocations(t, defaults(t));
      const fetchBase = t === retrain ? ["fetch-base"] : [];
      expect(
        all.map((i) => i.where.replace(/^[^/]+\//, "")),
        t.metadata.name,
      ).toEqual(["verify-data", ...fetchBase, "train (Chief)", "train (Worker)", "train (PS)", "evaluate", "publish", "smoke-test"]);
      for (const inv of all) {
        await expectParsed(inv);
        seen.push(`${t.metadata.name} ${inv.args[0]}`);
      }
    }
    expect(seen).toContain("mnist-pipeline train-mnist");
    expect(seen).toContain("retrain-pipeline retrain");
    const fetch = invocations(retrain, defaults(retrain)).find((i) => i.args[0] === "fetch-base")!;
    const r = await mlp(fetch.args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`base model ${baseName} sha256:${sha} is already in`);
    const dag = retrain.spec.templates!.find((x) => x.name === "pipeline")!.dag!.tasks;
    expect(dag.find((x) => x.name === "train")!.dependencies).toEqual(["verify-data", "fetch-base"]);
  });

  it("a bad argument is caught: the check is not a formality", async () => {
    const t = mnistPipelineTemplate(ctx);
    const verify = invocations(t, defaults(t)).find((i) => i.args[0] === "verify-data")!;
    const r = await mlp([...verify.args, "--kinds", "idx"]);
    expect(r.code).toBe(2);
    const train = invocations(t, defaults(t, { steps: "many" })).find((i) => i.args[0] === "train-mnist")!;
    expect((await mlp(train.args)).code).toBe(2);
  });

  it("publish on a fresh shared volume (no models/ yet) publishes the staged version", async () => {
    const t = mnistPipelineTemplate(ctx);
    const params = defaults(t);
    const publish = invocations(t, params).find((i) => i.where.endsWith("/publish"))!;
    // What train left in the run's staging area.
    const staging = onShared(runDirs(SHARED_MOUNT_PATH, RUN).staging);
    const model = createMnistModel({ hiddenUnits: 4, filters: [2, 2], seed: 1 });
    const v = await publishModelVersion({
      modelBase: staging,
      name: params["model-name"]!,
      model,
      metadata: {
        modelType: "layers",
        signatures: {
          serving_default: {
            methodName: "tensorflow/serving/predict",
            inputs: { images: { dtype: "float32", shape: [-1, 28, 28, 1] } },
            outputs: { probabilities: { dtype: "float32", shape: [-1, 10] } },
          },
        },
        labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
      },
    });
    model.dispose();
    expect(v.dir).toBe(onShared(stagedVersion(runDirs(SHARED_MOUNT_PATH, RUN).staging, params["model-name"]!)));
    expect(fs.existsSync(path.join(shared, "models"))).toBe(false);
    const r = await mlp(publish.args);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(path.join(shared, "models", "mnist"))).toEqual(["1"]);
    // The output parameter the template declares is the file publish wrote.
    const declared = t.spec.templates!.find((x) => x.name === "publish")!.outputs!.parameters![0];
    expect(declared.name).toBe(PIPELINE_OUTPUTS.published);
    expect(JSON.parse(fs.readFileSync(onShared(fill(declared.valueFrom!.path!, { params })), "utf8"))).toEqual({ version: 1, uri: path.join(shared, "models", "mnist", "1") });
  });

  for (const burst of [false, true]) {
    it(`the sweep${burst ? " on burst nodes" : " (a TFJob per trial)"}: a trial's script (real sh, quoting), its mlp calls, and publish-best from s3://`, async () => {
      const t = sweepTemplate(ctx, { parallelism: 2, modelsBucket: "models", ...(burst ? { burst: AKS_VIRTUAL_NODE_PLACEMENT } : {}) });
      // A dataset name with a space and a $: it must arrive as one argument, unexpanded.
      const params = defaults(t, { dataset: "s3://data/my mnist $HOME" });
      const inputs = { index: "3", lr: "0.001", hu: "64", bs: "32" };
      // Where the script and its environment are: the burst trial's container, or every replica of the trial's TFJob.
      let container: any;
      if (burst) {
        container = t.spec.templates!.find((x) => x.name === "trial-run")!.container;
        expect(t.spec.arguments!.parameters!.map((p) => p.name)).not.toContain("workers");
      } else {
        const step = t.spec.templates!.find((x) => x.name === "trial-train")!;
        expect(step.resource!.successCondition).toBe("status.replicaStatuses.Chief.succeeded > 0");
        const counted = resolveReplicaCounts(step.resource!.manifest!, { workers: 3, parameterServers: 1 });
        const job = JSON.parse(fill(JSON.stringify(counted), { params, inputs }));
        expect(job.metadata.name).toBe("wf-test-trial-3");
        const specs = job.spec.tfReplicaSpecs;
        expect([specs.Chief.replicas, specs.Worker.replicas, specs.PS.replicas]).toEqual([1, 2, 1]);
        container = specs.Chief.template.spec.containers[0];
        expect(specs.Worker.template.spec.containers[0].command).toEqual(container.command);
        expect(container.volumeMounts).toContainEqual({ name: "shared", mountPath: SHARED_MOUNT_PATH });
      }
      const trialEnv: Record<string, string> = Object.fromEntries(container.env.map((e: any) => [e.name, onShared(fill(e.value, { params, inputs }))]));
      const work = fs.mkdtempSync(path.join(tmp, "trial-"));
      if (burst) trialEnv.RESULT = path.join(work, "result.json");
      const bin = path.join(work, "bin");
      fs.mkdirSync(bin);
      const calls = path.join(work, "calls.jsonl");
      // A stand-in mlp that records its argv and writes the result files the real one would.
      fs.writeFileSync(
        path.join(bin, "mlp"),
        `#!${process.execPath}
const fs = require("node:fs"); const a = process.argv.slice(2); const f = (n) => a[a.indexOf("--" + n) + 1];
fs.appendFileSync(${JSON.stringify(calls)}, JSON.stringify(a) + "\\n");
if (a[0] === "train-mnist") fs.writeFileSync(f("result-file"), JSON.stringify({ version: 1, dir: f("model-base") + "/" + f("name") + "/1", metrics: { validationAccuracy: 0.93 } }));
if (a[0] === "publish") fs.writeFileSync(f("result-file"), JSON.stringify({ version: 1, uri: f("model-base") + "/" + f("name") + "/1" }));
`,
        { mode: 0o755 },
      );
      const [sh, dashC, script] = container.command;
      expect([sh, dashC]).toEqual(["sh", "-c"]);
      const runScript = (tfConfig?: Record<string, unknown>) => {
        fs.rmSync(calls, { force: true });
        const r = spawnSync(sh, [dashC, script], {
          env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin`, ...trialEnv, WORK: work, ...(tfConfig ? { TF_CONFIG: JSON.stringify(tfConfig) } : {}) },
          encoding: "utf8",
        });
        expect(r.status, r.stderr).toBe(0);
        return fs
          .readFileSync(calls, "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as string[]);
      };
      if (!burst) {
        // A worker replica trains and stops there: only the chief publishes and reports.
        const cluster = { chief: ["c-0:2222"], worker: ["w-0:2222", "w-1:2222"], ps: ["p-0:2222"] };
        expect(runScript({ cluster, task: { type: "worker", index: 1 } }).map((a) => a[0])).toEqual(["train-mnist"]);
        expect(fs.existsSync(trialEnv.RESULT!)).toBe(false);
        expect(runScript({ cluster, task: { type: "chief", index: 0 } }).map((a) => a[0])).toEqual(["train-mnist", "publish"]);
      }
      const argvs = runScript();
      expect(argvs.map((a) => a[0])).toEqual(["train-mnist", "publish"]);
      expect(argvs[0]![argvs[0]!.indexOf("--data") + 1]).toBe(params.dataset);
      // Its curves: the shared log directory (TensorBoard's), under the trial's own run name.
      const logdir = argvs[0]![argvs[0]!.indexOf("--logdir") + 1]!;
      const trialRun = trialRunName(RUN, "3");
      expect(logdir).toBe(burst ? "/tmp/logs/wf-test/trial-3" : path.join(shared, "logs", trialRun));
      if (burst) {
        const runT = t.spec.templates!.find((x) => x.name === "trial-run")!;
        expect(runT.outputs!.artifacts).toEqual([{ name: "logs", path: "/tmp/logs" }]);
        expect(runT.outputs!.parameters![0].valueFrom!.path).toBe(fill(container.env.find((e: any) => e.name === "RESULT").value, { params, inputs }));
        const save = t.spec.templates!.find((x) => x.name === "save-logs")!;
        expect(onShared(fill(save.inputs!.artifacts![0].path!, { params, inputs }))).toBe(path.join(shared, "logs", trialRun));
        expect(save.container!.volumeMounts).toContainEqual({ name: "shared", mountPath: SHARED_MOUNT_PATH });
      } else {
        // The report step reads the file the chief wrote, on the shared volume.
        const report = t.spec.templates!.find((x) => x.name === "trial-report")!;
        expect(onShared(fill(report.outputs!.parameters![0].valueFrom!.path!, { params, inputs }))).toBe(trialEnv.RESULT);
        expect(report.container!.volumeMounts).toContainEqual({ name: "shared", mountPath: SHARED_MOUNT_PATH });
      }
      // The promote step's input: one JSON line per trial, as the output contract says.
      const result = JSON.parse(fs.readFileSync(trialEnv.RESULT!, "utf8"));
      expect(result).toEqual({
        trial: 3,
        lr: "0.001",
        hu: "64",
        bs: "32",
        run: trialRun,
        metrics: { validationAccuracy: 0.93 },
        model: "s3://models/sweeps/wf-test/trial-3/mnist/1",
      });
      // The recorded calls through the real parser.
      for (const a of argvs) await expectParsed({ where: `sweep trial ${a[0]}`, args: a.map((x) => x.replace(work, path.join(tmp, "w"))) });

      // publish-best takes the promoted trial's model from s3:// (it used to be refused).
      const best = t.spec.templates!.find((x) => x.name === "publish-best")!;
      const args = best.container!.args!.map((a: string) => fill(a, { params, inputs: { [PIPELINE_OUTPUTS.best]: JSON.stringify(result) } }));
      expect(args.slice(0, 3)).toEqual(["publish", "--from", "s3://models/sweeps/wf-test/trial-3/mnist/1"]);
      const pub = await mlp(args);
      expect(pub.code, pub.stderr).toBe(1);
      expect(pub.stderr).toMatch(/s3:\/\/models\/sweeps\/wf-test\/trial-3\/mnist\/1.*cannot reach S3 at http:\/\/127\.0\.0\.1/);
      expect(best.outputs!.parameters).toEqual([{ name: PIPELINE_OUTPUTS.published, valueFrom: { path: args[args.indexOf("--result-file") + 1] } }]);
    });
  }

  it("shell words: a value with quotes, $ and backticks stays one literal word; ${NAME} references expand", () => {
    const script = shellCommand(["a b", 'q"uote', "$HOME `x` \\", "${V}/x"], "printf '%s|'");
    const r = spawnSync("sh", ["-c", script.replace(/^"printf '%s\|'"/, "printf '%s|'")], { env: { V: "v v" }, encoding: "utf8" });
    expect(r.stdout).toBe('a b|q"uote|$HOME `x` \\|v v/x|');
  });

  it("workers and parameter-servers size the TFJob: Chief 1, Workers n−1 with the chief's GPUs, PS on CPU", () => {
    const train = mnistPipelineTemplate(ctx).spec.templates!.find((x) => x.name === "train")!.resource!.manifest!;
    const job = resolveReplicaCounts(train, { workers: 4, parameterServers: 2 });
    const specs = job.spec.tfReplicaSpecs;
    expect(Object.fromEntries(Object.entries<any>(specs).map(([k, v]) => [k, v.replicas]))).toEqual({ Chief: 1, Worker: 3, PS: 2 });
    expect(specs.Worker.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(specs.Worker.template.spec.nodeSelector).toEqual(ctx.gpu!.nodeSelector);
    expect(specs.PS.template.spec.containers[0].resources.limits["nvidia.com/gpu"]).toBeUndefined();
    expect(specs.PS.template.spec.nodeSelector).toBeUndefined();
    // A replica type with no replicas is left out: the operator starts a pod even for replicas: 0.
    const kinds = (workers: number, parameterServers: number) => Object.keys(resolveReplicaCounts(train, { workers, parameterServers }).spec.tfReplicaSpecs);
    expect(kinds(1, 0)).toEqual(["Chief"]);
    expect(kinds(1, 2)).toEqual(["Chief", "PS"]);
    expect(kinds(3, 0)).toEqual(["Chief", "Worker"]);
    // The Workers' arguments keep their workflow tags (Argo fills them from the expression).
    expect(resolveReplicaCounts(train, { workers: 2, parameterServers: 0 }).spec.tfReplicaSpecs.Worker.template.spec.containers[0].args).toEqual(
      specs.Chief.template.spec.containers[0].args,
    );
    // The defaults: one training replica, no parameter servers.
    const params = defaults(mnistPipelineTemplate(ctx));
    expect([params.workers, params["parameter-servers"]]).toEqual(["1", "0"]);
  });
});
