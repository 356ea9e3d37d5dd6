/**
 * A hyperparameter sweep as an Argo WorkflowTemplate: the grid (learning rate × hidden units ×
 * batch size) fans out into trials with bounded parallelism, on burst virtual nodes (ACI) when
 * enabled, else on the autoscaled pools; each trial reports its validation accuracy; the best
 * trial's model is promoted to the model store; a summary table is printed and kept.
 *
 * On the cluster's own nodes each trial is a TFJob sized by the `workers` and
 * `parameter-servers` parameters, like the training pipelines' (its chief publishes and
 * reports); on burst virtual nodes a trial is one container. Trials read data from and write
 * models to the object store (virtual nodes cannot mount the shared volume). Each trial logs to the shared log directory under its own run,
 * `logs/<workflow>/trial-<n>`, so TensorBoard shows the trials side by side; the best trial's
 * version is published from the object store into the model base the server watches.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { IRetryStrategy, ITemplate, IWorkflowTemplate } from "@kubernetes-models/argo-workflows/argoproj.io/v1alpha1";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { Placement } from "./cluster";
import { PLATFORM_LABELS } from "./namespaces";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { TRAINING_REQUESTS } from "./trainingOperator";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { MLP_PROGRAM, PIPELINE_OUTPUTS, PIPELINE_TEMPLATES, publishArgs, shellCommand, stagedVersion, trainMnistArgs, trialRunName } from "../trainer/src/pipeline/steps";
import { tfJobStepTemplate } from "./argoWorkflows";
import { REPLICA_PARAMETERS, trainingJob, trainingJobManifestText, type PipelineContext } from "./trainingPipeline";

export interface SweepOptions {
  /** Trials running at once. */
  readonly parallelism: number;
  /** Burst placement (AKS virtual nodes); trials then cannot mount the shared volume. */
  readonly burst?: Placement;
  /** Bucket for trial models and the summary (`s3://<bucket>/sweeps/<run>/…`). */
  readonly modelsBucket: string;
}

/** The grid: every combination of the comma-separated parameter lists, as the JSON list Argo fans out over. */
export function sweepGrid(learningRates: string, hiddenUnits: string, batchSizes: string): { index: number; lr: string; hu: string; bs: string }[] {
  const list = (s: string, what: string) => {
    const xs = s
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
    if (xs.length === 0 || xs.some((x) => !Number.isFinite(Number(x)) || Number(x) <= 0)) {
      throw new Error(`${what} must be a comma-separated list of positive numbers; got "${s}"`);
    }
    return xs;
  };
  const out: { index: number; lr: string; hu: string; bs: string }[] = [];
  for (const lr of list(learningRates, "learning-rates"))
    for (const hu of list(hiddenUnits, "hidden-units")) for (const bs of list(batchSizes, "batch-sizes")) out.push({ index: out.length, lr, hu, bs });
  return out;
}

/** Script for the grid step (runs in the trainer image's Node.js): the same logic as {@link sweepGrid}. */
export const GRID_SCRIPT = `const { LEARNING_RATES: lrs, HIDDEN_UNITS: hus, BATCH_SIZES: bss } = process.env;
const list = (s, what) => { const xs = s.split(",").map((x) => x.trim()).filter(Boolean);
  if (!xs.length || xs.some((x) => !(Number(x) > 0))) { console.error(what + " must be a comma-separated list of positive numbers; got " + JSON.stringify(s)); process.exit(2); }
  return xs; };
const out = [];
for (const lr of list(lrs, "learning-rates")) for (const hu of list(hus, "hidden-units")) for (const bs of list(bss, "batch-sizes")) out.push({ index: out.length, lr, hu, bs });
console.log(JSON.stringify(out));`;

/**
 * Script for the promote step: picks the trial with the best validation accuracy at or above
 * the gate, prints a summary table, and writes its model location for the publish step.
 */
export const PROMOTE_SCRIPT = `const fs = require("node:fs");
const { RESULTS: resultsJson, GATE: gate } = process.env;
const trials = JSON.parse(resultsJson).map((r) => (typeof r === "string" ? JSON.parse(r) : r));
trials.sort((a, b) => (b.metrics?.validationAccuracy ?? 0) - (a.metrics?.validationAccuracy ?? 0));
console.log("trial  lr        hidden  batch  val_acc  test_acc");
for (const t of trials) console.log([String(t.trial).padEnd(6), String(t.lr).padEnd(9), String(t.hu).padEnd(7), String(t.bs).padEnd(6), (t.metrics?.validationAccuracy ?? NaN).toFixed(4).padEnd(8), (t.metrics?.testAccuracy ?? NaN).toFixed(4)].join(" "));
const best = trials[0];
if (!best || !((best.metrics?.validationAccuracy ?? 0) >= Number(gate))) { console.error("no trial reached the gate " + gate + ": promoting nothing"); process.exit(3); }
console.log("best: trial " + best.trial + " (validation accuracy " + best.metrics.validationAccuracy.toFixed(4) + ")");
fs.writeFileSync("/tmp/best.json", JSON.stringify(best));
fs.writeFileSync("/tmp/summary.json", JSON.stringify(trials, null, 2));`;

/** Environment of a trial's script: every value Argo fills in comes through here, never through the script text. */
export function trialEnv(o: { modelsBucket: string; logRoot: string; resultFile: string }): { name: string; value: string }[] {
  const P = (n: string) => `{{workflow.parameters.${n}}}`;
  const I = (n: string) => `{{inputs.parameters.${n}}}`;
  const run = trialRunName("{{workflow.name}}", I("index"));
  return [
    { name: "DATASET", value: P("dataset") },
    { name: "MODEL_NAME", value: P("model-name") },
    { name: "STEPS", value: P("steps") },
    { name: "TRIAL", value: I("index") },
    { name: "LR", value: I("lr") },
    { name: "HU", value: I("hu") },
    { name: "BS", value: I("bs") },
    { name: "TRIAL_RUN", value: run },
    { name: "LOGDIR", value: `${o.logRoot}/${run}` },
    { name: "TRIAL_BASE", value: `s3://${o.modelsBucket}/sweeps/{{workflow.name}}/trial-${I("index")}` },
    { name: "WORK", value: TRIAL_WORK },
    { name: "RESULT", value: o.resultFile },
  ];
}

/** Scratch space of a trial (its emptyDir): the trained version before upload, the result files. */
const TRIAL_WORK = "/tmp";
/** The trial's line for the promote step ({@link SweepTrialOutput}), from its result files and environment. */
const TRIAL_RESULT_SCRIPT =
  'const e = process.env, t = require(e.WORK + "/train.json"), p = require(e.WORK + "/published.json");' +
  " console.log(JSON.stringify({ trial: Number(e.TRIAL), lr: e.LR, hu: e.HU, bs: e.BS, run: e.TRIAL_RUN, metrics: t.metrics, model: p.uri }));";

/** The mlp command lines of a trial, with `${NAME}` references to {@link trialEnv}. */
export function trialCommands(): { train: string[]; publish: string[] } {
  return {
    train: trainMnistArgs({
      data: "${DATASET}",
      steps: "${STEPS}",
      learningRate: "${LR}",
      hiddenUnits: "${HU}",
      batchSize: "${BS}",
      modelBase: "${WORK}/trial",
      name: "${MODEL_NAME}",
      logdir: "${LOGDIR}",
      resultFile: "${WORK}/train.json",
    }),
    publish: publishArgs({ from: stagedVersion("${WORK}/trial", "${MODEL_NAME}"), modelBase: "${TRIAL_BASE}", name: "${MODEL_NAME}", resultFile: "${WORK}/published.json" }),
  };
}

/** Prints the replica's role from TF_CONFIG: `chief` outside a TFJob, or for its Chief/Master. */
const ROLE_SCRIPT = 'const c = process.env.TF_CONFIG ? JSON.parse(process.env.TF_CONFIG) : {}, t = c.task ? c.task.type : "chief";' + ' console.log(t === "master" ? "chief" : t);';

/**
 * The trial's shell script: train (every replica of a multi-replica trial), then the chief
 * alone uploads the version and writes the trial's JSON line to `$RESULT`.
 */
export function trialScript(): string {
  const c = trialCommands();
  return [
    "set -eu",
    shellCommand(c.train),
    `[ "$(${shellCommand(["-e", ROLE_SCRIPT], "node")})" = chief ] || exit 0`,
    shellCommand(c.publish),
    'mkdir -p "$(dirname "${RESULT}")"',
    `${shellCommand(["-e", TRIAL_RESULT_SCRIPT], "node")} > "\${RESULT}"`,
  ].join("\n");
}

/** Where a trial's TensorBoard logs go when it runs on burst nodes (no shared volume there). */
const BURST_LOG_ROOT = `${TRIAL_WORK}/logs`;

export function sweepTemplate(ctx: PipelineContext, o: SweepOptions): IWorkflowTemplate {
  const P = (n: string) => `{{workflow.parameters.${n}}}`;
  const I = (n: string) => `{{inputs.parameters.${n}}}`;
  const sharedLogs = `${SHARED_MOUNT_PATH}/logs`;
  // Trials on the cluster's own nodes log straight into the shared log directory; burst trials
  // (virtual nodes cannot mount it) log to their scratch space and hand the directory over as
  // an artifact, which a step on a regular node unpacks into the same place.
  const burst = o.burst !== undefined;
  const env: { name: string; value: string }[] = [];
  const container = (extra: Partial<IContainer>): IContainer => ({
    name: "main",
    image: ctx.image,
    command: [MLP_PROGRAM],
    envFrom: [{ secretRef: { name: OBJECT_STORE_SECRET } }],
    env,
    resources: { requests: { ...(ctx.trainingRequests ?? TRAINING_REQUESTS) }, limits: { memory: "4Gi" } },
    securityContext: RESTRICTED_CONTAINER,
    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
    ...extra,
  });
  const shared = { name: "shared", mountPath: SHARED_MOUNT_PATH };
  const trialInputs = { parameters: [{ name: "index" }, { name: "lr" }, { name: "hu" }, { name: "bs" }] };
  const trialPass = (names: string[]) => names.map((n) => ({ name: n, value: I(n) }));
  const trialRunName_ = trialRunName("{{workflow.name}}", I("index"));
  const retryStrategy: IRetryStrategy = { limit: "2", retryPolicy: "OnError", backoff: { duration: "30s", factor: "2" } };
  // Burst trials: one container on a virtual node; logs handed over as an artifact.
  const burstTrial: ITemplate[] = [
    {
      name: "trial",
      inputs: trialInputs,
      dag: {
        tasks: [
          { name: "run", template: "trial-run", arguments: { parameters: trialPass(["index", "lr", "hu", "bs"]) } },
          {
            name: "save-logs",
            template: "save-logs",
            dependencies: ["run"],
            arguments: { parameters: [{ name: "index", value: I("index") }], artifacts: [{ name: "logs", from: "{{tasks.run.outputs.artifacts.logs}}" }] },
          },
        ],
      },
      outputs: { parameters: [{ name: "result", valueFrom: { parameter: "{{tasks.run.outputs.parameters.result}}" } }] },
    },
    {
      name: "trial-run",
      inputs: trialInputs,
      retryStrategy,
      nodeSelector: o.burst?.nodeSelector,
      tolerations: o.burst?.tolerations,
      container: container({
        command: ["sh", "-c", trialScript()],
        env: trialEnv({ modelsBucket: o.modelsBucket, logRoot: BURST_LOG_ROOT, resultFile: `${TRIAL_WORK}/result.json` }),
      }),
      outputs: {
        parameters: [{ name: "result", valueFrom: { path: `${TRIAL_WORK}/result.json` } }],
        artifacts: [{ name: "logs", path: BURST_LOG_ROOT }],
      },
    },
    {
      // Argo unpacks an input artifact whose path lies in a mounted volume into that volume.
      name: "save-logs",
      inputs: { parameters: [{ name: "index" }], artifacts: [{ name: "logs", path: `${sharedLogs}/${trialRunName_}` }] },
      container: container({
        command: ["ls", "-R", `${sharedLogs}/${trialRunName_}`],
        resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "128Mi" } },
        volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, shared],
      }),
    },
  ];
  // Trials on the cluster's nodes: a TFJob per trial (Chief, `workers` − 1 Workers,
  // `parameter-servers` PS, as the training pipelines), logging into the shared log directory;
  // its chief leaves the trial's line on the shared volume for the report step.
  const resultOnShared = `${SHARED_MOUNT_PATH}/staging/{{workflow.name}}/trial-${I("index")}/result.json`;
  const job = trainingJob({ ...ctx, gpus: 0 }, [], `{{workflow.name}}-trial-${I("index")}`);
  for (const spec of Object.values(job.spec.tfReplicaSpecs)) {
    const c = spec.template.spec.containers[0];
    c.command = ["sh", "-c", trialScript()];
    delete c.args;
    c.env = trialEnv({ modelsBucket: o.modelsBucket, logRoot: sharedLogs, resultFile: resultOnShared });
  }
  const clusterTrial: ITemplate[] = [
    {
      name: "trial",
      inputs: trialInputs,
      dag: {
        tasks: [
          { name: "train", template: "trial-train", arguments: { parameters: trialPass(["index", "lr", "hu", "bs"]) } },
          { name: "report", template: "trial-report", dependencies: ["train"], arguments: { parameters: [{ name: "index", value: I("index") }] } },
        ],
      },
      outputs: { parameters: [{ name: "result", valueFrom: { parameter: "{{tasks.report.outputs.parameters.result}}" } }] },
    },
    { ...tfJobStepTemplate("trial-train", job), inputs: trialInputs, retryStrategy },
    {
      name: "trial-report",
      inputs: { parameters: [{ name: "index" }] },
      container: container({
        command: ["test", "-s", resultOnShared],
        resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "128Mi" } },
        volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, shared],
      }),
      outputs: { parameters: [{ name: "result", valueFrom: { path: resultOnShared } }] },
    },
  ];
  const trialTemplates = burst ? burstTrial : clusterTrial;
  const trainStep = trialTemplates.find((t) => t.name === "trial-train") as { resource?: { manifest: string } } | undefined;
  if (trainStep?.resource) trainStep.resource.manifest = trainingJobManifestText(JSON.parse(trainStep.resource.manifest));
  const publishedFile = `${TRIAL_WORK}/published.json`;
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "WorkflowTemplate",
    metadata: { name: PIPELINE_TEMPLATES.sweep, namespace: ctx.namespace, labels: { ...PLATFORM_LABELS, "app.kubernetes.io/component": "sweep" } },
    spec: {
      serviceAccountName: ctx.serviceAccountName,
      entrypoint: "sweep",
      parallelism: o.parallelism,
      securityContext: restrictedPod(1000),
      archiveLogs: true,
      podGC: { strategy: "OnPodSuccess" },
      arguments: {
        parameters: [
          { name: "dataset", value: "s3://data/mnist", description: "IDX files in the object store" },
          { name: "model-name", value: "mnist", description: "name the best model is published under" },
          { name: "learning-rates", value: "0.0005,0.001,0.003", description: "comma-separated" },
          { name: "hidden-units", value: "64,128", description: "comma-separated" },
          { name: "batch-sizes", value: "64", description: "comma-separated" },
          { name: "steps", value: "1000", description: "training steps per trial" },
          { name: "accuracy-gate", value: "0.95", description: "minimum validation accuracy to promote" },
          // Virtual nodes run a trial as one container: no replicas there.
          ...(burst ? [] : REPLICA_PARAMETERS.map((p) => ({ ...p }))),
        ],
      },
      volumes: [
        { name: "tmp", emptyDir: { sizeLimit: "2Gi" } },
        { name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM } },
      ],
      templates: [
        {
          // A DAG rather than steps: every task is an object, which both Argo and the upstream schema accept.
          name: "sweep",
          dag: {
            tasks: [
              { name: "grid", template: "grid" },
              {
                name: "trial",
                template: "trial",
                dependencies: ["grid"],
                withParam: "{{tasks.grid.outputs.result}}",
                arguments: {
                  parameters: [
                    { name: "index", value: "{{item.index}}" },
                    { name: "lr", value: "{{item.lr}}" },
                    { name: "hu", value: "{{item.hu}}" },
                    { name: "bs", value: "{{item.bs}}" },
                  ],
                },
              },
              {
                name: "promote",
                template: "promote",
                dependencies: ["trial"],
                arguments: { parameters: [{ name: "results", value: "{{tasks.trial.outputs.parameters.result}}" }] },
              },
              {
                name: "publish-best",
                template: "publish-best",
                dependencies: ["promote"],
                arguments: { parameters: [{ name: PIPELINE_OUTPUTS.best, value: `{{tasks.promote.outputs.parameters.${PIPELINE_OUTPUTS.best}}}` }] },
              },
            ],
          },
        },
        {
          name: "grid",
          // Argo writes `source` to a file and appends its path to `command`; inputs come as env.
          script: {
            ...container({}),
            command: ["node"],
            env: [
              ...env,
              { name: "LEARNING_RATES", value: P("learning-rates") },
              { name: "HIDDEN_UNITS", value: P("hidden-units") },
              { name: "BATCH_SIZES", value: P("batch-sizes") },
            ],
            source: GRID_SCRIPT,
          },
        },
        ...trialTemplates,
        {
          name: "promote",
          inputs: { parameters: [{ name: "results" }] },
          script: {
            ...container({}),
            command: ["node"],
            env: [...env, { name: "RESULTS", value: I("results") }, { name: "GATE", value: P("accuracy-gate") }],
            source: PROMOTE_SCRIPT,
          },
          outputs: {
            parameters: [{ name: PIPELINE_OUTPUTS.best, valueFrom: { path: "/tmp/best.json" } }],
            artifacts: [{ name: "summary", path: "/tmp/summary.json", s3: { key: "sweeps/{{workflow.name}}/summary.json" } }],
          },
        },
        {
          // The best trial's version, from the object store into the model base the server watches.
          name: "publish-best",
          inputs: { parameters: [{ name: PIPELINE_OUTPUTS.best }] },
          container: container({
            args: publishArgs({
              from: `{{=jsonpath(inputs.parameters.${PIPELINE_OUTPUTS.best}, '$.model')}}`,
              modelBase: ctx.modelBase,
              name: P("model-name"),
              resultFile: publishedFile,
            }),
            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, shared],
          }),
          outputs: { parameters: [{ name: PIPELINE_OUTPUTS.published, valueFrom: { path: publishedFile } }] },
        },
      ],
    },
  };
}

export interface HyperparameterSweepArgs {
  readonly provider: k8s.Provider;
  readonly context: pulumi.Input<PipelineContext>;
  readonly options: SweepOptions;
  readonly dependsOn?: pulumi.Input<pulumi.Resource>[];
}

export class HyperparameterSweep extends pulumi.ComponentResource {
  readonly templateName = PIPELINE_TEMPLATES.sweep;

  constructor(name: string, args: HyperparameterSweepArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:pipeline:HyperparameterSweep", name, {}, opts);
    const t = pulumi.output(args.context).apply((c) => sweepTemplate(c as PipelineContext, args.options));
    new k8s.apiextensions.CustomResource(
      `${name}-template`,
      { apiVersion: "argoproj.io/v1alpha1", kind: "WorkflowTemplate", metadata: t.apply((x) => x.metadata), spec: t.apply((x) => x.spec) } as k8s.apiextensions.CustomResourceArgs,
      { parent: this, provider: args.provider, dependsOn: args.dependsOn },
    );
    this.registerOutputs({ templateName: this.templateName });
  }
}
