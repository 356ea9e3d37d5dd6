/**
 * The train → serve pipeline as Argo WorkflowTemplates: verify data → TensorBoard for the run
 * → train as a TFJob → evaluate against a gate → publish a version atomically → smoke-test the
 * model server → clean up. One template for MNIST-style IDX data, one for image retraining,
 * and a hyperparameter sweep that fans out trials and promotes the best.
 *
 * Templates are plain builders (tested and schema-validated); the component only applies them.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { IOutputs, IRetryStrategy, ITemplate, IWorkflowTemplate } from "@kubernetes-models/argo-workflows/argoproj.io/v1alpha1";
import {
  evaluateArgs,
  MLP_PROGRAM,
  PIPELINE_OUTPUTS,
  PIPELINE_TEMPLATES,
  predictArgs,
  publishArgs,
  retrainArgs,
  fetchBaseArgs,
  runDirs as runDirsOf,
  stagedVersion,
  trainMnistArgs,
  verifyDataArgs,
} from "../trainer/src/pipeline/steps";
import { BASE_MODELS, DEFAULT_BASE_MODEL } from "../trainer/src/retrain/base-catalogue";
import { tfJobStepTemplate } from "./argoWorkflows";
import type { Placement } from "./cluster";
import { QUEUE_NAME_LABEL } from "./kueue";
import { PLATFORM_LABELS } from "./namespaces";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { tensorBoardDeploymentSpec, tensorBoardSelector, TENSORBOARD_PORT } from "./tensorBoard";
import { tfJobManifest, type ResourceRequests, type TfJob } from "./trainingOperator";

/** Template names (the submit CLI, scripts/submit.ts, takes them from the same module). */
export { PIPELINE_OUTPUTS, PIPELINE_TEMPLATES };

/** What every template needs from the platform. */
export interface PipelineContext {
  readonly namespace: string;
  readonly serviceAccountName: string;
  /** Digest-pinned trainer image. */
  readonly image: string;
  /** TensorBoard image for the per-run TensorBoard. */
  readonly tensorboardImage: string;
  /** GPUs per training replica (chief and workers; 0 = CPU) and where GPU pods go. */
  readonly gpus: number;
  readonly gpu?: Placement;
  /** Where published models live (the model server watches it); created by the first publish. */
  readonly modelBase: string;
  /** gRPC address of the model server, `host:port`. */
  readonly servingGrpc: string;
  /** CPU and memory of each step container (default 500m, 1Gi) and each training replica or trial (default `TRAINING_REQUESTS` of ./trainingOperator). */
  readonly stepRequests?: ResourceRequests;
  readonly trainingRequests?: ResourceRequests;
  /** Kueue LocalQueue the training TFJobs are submitted to (label `kueue.x-k8s.io/queue-name`); default none. */
  readonly queueName?: string;
}

/** The run's name, as Argo fills it in. */
const WORKFLOW_NAME = "{{workflow.name}}";
/** A workflow parameter, as Argo fills it in. */
const workflowParam = (name: string) => `{{workflow.parameters.${name}}}`;
/** Per-run directories on the shared volume (trainer/src/pipeline/steps.ts runDirs). */
export const runDirs = runDirsOf(SHARED_MOUNT_PATH, WORKFLOW_NAME);

/** What a pipeline step (verify, evaluate, publish, smoke test) requests unless told otherwise. */
export const STEP_REQUESTS: ResourceRequests = { cpu: "500m", memory: "1Gi" };

/** Retries with exponential back-off for steps that can fail transiently (S3, API server, scheduling). */
const RETRY: IRetryStrategy = { limit: "3", retryPolicy: "Always", backoff: { duration: "10s", factor: "2", maxDuration: "5m" } };

/** A container step running `mlp <args>` with the object-store credentials and the shared volume. */
export function mlpStep(
  name: string,
  ctx: PipelineContext,
  args: string[],
  extra: { outputs?: IOutputs; retry?: boolean; placement?: Placement; sharedVolume?: boolean } = {},
): ITemplate {
  const shared = extra.sharedVolume ?? true;
  return {
    name,
    ...(extra.retry === false ? {} : { retryStrategy: RETRY }),
    ...(extra.placement ? { nodeSelector: extra.placement.nodeSelector, tolerations: extra.placement.tolerations } : {}),
    container: {
      name: "main",
      image: ctx.image,
      command: [MLP_PROGRAM],
      args,
      envFrom: [{ secretRef: { name: OBJECT_STORE_SECRET } }],
      resources: { requests: { ...(ctx.stepRequests ?? STEP_REQUESTS) }, limits: { memory: "4Gi" } },
      securityContext: RESTRICTED_CONTAINER,
      volumeMounts: [...(shared ? [{ name: "shared", mountPath: SHARED_MOUNT_PATH }] : []), { name: "tmp", mountPath: "/tmp" }],
    },
    ...(extra.outputs ? { outputs: extra.outputs } : {}),
  };
}

/** Resource steps that create (and, on exit, delete) the run's TensorBoard. */
function tensorBoardSteps(ctx: PipelineContext): ITemplate[] {
  const app = `tb-${WORKFLOW_NAME}`;
  const spec = tensorBoardDeploymentSpec({ image: ctx.tensorboardImage, logDir: `logs/${WORKFLOW_NAME}`, app });
  const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: app, labels: { ...PLATFORM_LABELS } }, spec };
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: app, labels: { ...PLATFORM_LABELS } },
    spec: { type: "ClusterIP", selector: tensorBoardSelector(app), ports: [{ name: "http", port: 80, targetPort: TENSORBOARD_PORT }] },
  };
  return [
    {
      name: "tensorboard",
      dag: {
        tasks: [
          { name: "deployment", template: "tensorboard-deployment" },
          { name: "service", template: "tensorboard-service" },
        ],
      },
    },
    { name: "tensorboard-deployment", resource: { action: "create", manifest: JSON.stringify(deployment) } },
    { name: "tensorboard-service", resource: { action: "create", manifest: JSON.stringify(service) } },
    {
      name: "delete-tensorboard",
      resource: { action: "delete", flags: ["--ignore-not-found"], manifest: JSON.stringify({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: app } }) },
    },
    {
      name: "delete-tensorboard-service",
      resource: { action: "delete", flags: ["--ignore-not-found"], manifest: JSON.stringify({ apiVersion: "v1", kind: "Service", metadata: { name: app } }) },
    },
  ];
}

/** The workflow parameters that size the TFJob, with their defaults (one training replica). */
export const REPLICA_PARAMETERS = [
  { name: "workers", value: "1", description: "training replicas, the chief included (≥ 1): the TFJob gets workers − 1 Worker replicas" },
  { name: "parameter-servers", value: "0", description: "parameter-server (PS) replicas of the TFJob (0 = none)" },
] as const;

/**
 * When a run's parameters ask for no Workers or no parameter servers, the TFJob must not name
 * that replica type at all: the Training Operator (v1.9) starts a pod even for `replicas: 0`
 * (upstream issue kubeflow/training-operator#1709), which here trained a second, unasked
 * copy and failed the job. So the manifest text carries, after the Chief, one Argo
 * expression per optional type that yields `,"Worker":{...}` (or `,"PS":{...}`) or nothing.
 */
const OPTIONAL_REPLICAS = {
  Worker: { present: "asInt(workflow.parameters.workers) > 1", count: "asInt(workflow.parameters.workers) - 1" },
  PS: { present: "asInt(workflow.parameters['parameter-servers']) > 0", count: "asInt(workflow.parameters['parameter-servers'])" },
} as const;

/** Stand-ins for the replica counts while the manifest is an object. */
const REPLICA_PLACEHOLDER = { Worker: "__WORKER_REPLICAS__", PS: "__PS_REPLICAS__" } as const;
/** The Worker and PS replica counts of {@link trainingJob}'s TFJob. */
type ReplicaPlaceholder = (typeof REPLICA_PLACEHOLDER)[keyof typeof REPLICA_PLACEHOLDER];

/** Argo expression for a literal string: base64, so no quote, brace or `}}` reaches the expression. */
const literalExpr = (text: string) => `sprig.b64dec('${Buffer.from(text, "utf8").toString("base64")}')`;

/** Argo expression for a simple tag's path: `workflow.parameters.learning-rate` → `workflow.parameters['learning-rate']`. */
function tagPathExpr(tagPath: string): string {
  const [head, ...rest] = tagPath.split(".");
  return head + rest.map((k) => (/^[A-Za-z_]\w*$/.test(k) ? `.${k}` : `['${k}']`)).join("");
}

/** One Argo expression that yields `text` as Argo would render it (its `{{tags}}` filled in). */
export function templateTextExpression(text: string): string {
  const terms: string[] = [];
  let last = 0;
  for (const m of text.matchAll(/\{\{(=?)\s*(.+?)\s*\}\}/g)) {
    if (m.index > last) terms.push(literalExpr(text.slice(last, m.index)));
    terms.push(m[1] ? `string(${m[2]})` : tagPathExpr(m[2]!));
    last = m.index + m[0].length;
  }
  if (last < text.length) terms.push(literalExpr(text.slice(last)));
  return terms.join(" + ") || "''";
}

/**
 * The TFJob of a training step, Worker and PS replica counts left as placeholders (strings
 * until {@link trainingJobManifestText} turns them into Argo expressions): a Chief, Workers
 * that train like it (same command, same GPUs and placement), and parameter servers (CPU
 * only: they hold variables, they do not compute gradients).
 *
 * The operator sets TF_CONFIG in every replica. How a command trains across the replicas it
 * is given is the trainer's business (trainer/src/train/tfconfig.ts); each command's --help
 * says what it supports.
 */
export function trainingJob(ctx: PipelineContext, trainArgs: string[], name = `${WORKFLOW_NAME}-train`): TfJob<ReplicaPlaceholder> {
  const job: TfJob<ReplicaPlaceholder> = tfJobManifest({
    name,
    namespace: ctx.namespace,
    image: ctx.image,
    args: trainArgs,
    gpus: ctx.gpus,
    gpu: ctx.gpu,
    requests: ctx.trainingRequests,
  });
  if (ctx.queueName) job.metadata.labels[QUEUE_NAME_LABEL] = ctx.queueName;
  const chief = job.spec.tfReplicaSpecs.Chief;
  const ps = structuredClone(chief);
  const psPod = ps.template.spec;
  delete psPod.nodeSelector;
  delete psPod.tolerations;
  delete psPod.containers[0].resources!.limits!["nvidia.com/gpu"];
  job.spec.tfReplicaSpecs.Worker = { ...structuredClone(chief), replicas: REPLICA_PLACEHOLDER.Worker };
  job.spec.tfReplicaSpecs.PS = { ...ps, replicas: REPLICA_PLACEHOLDER.PS };
  return job;
}

/** The TFJob manifest text as Argo gets it: the Chief as JSON, Workers and PS behind Argo expressions ({@link OPTIONAL_REPLICAS}). */
export function trainingJobManifestText(job: TfJob<ReplicaPlaceholder>): string {
  const { Chief, ...optional } = job.spec.tfReplicaSpecs;
  const marker = "__OPTIONAL_REPLICAS__";
  let text = JSON.stringify({ ...job, spec: { ...job.spec, tfReplicaSpecs: { Chief, [marker]: 0 } } });
  let tags = "";
  for (const role of ["Worker", "PS"] as const) {
    if (!optional[role]) continue;
    const fragment = `,${JSON.stringify(role)}:${JSON.stringify(optional[role])}`.replace(`"${REPLICA_PLACEHOLDER[role]}"`, `{{=${OPTIONAL_REPLICAS[role].count}}}`);
    tags += `{{=${OPTIONAL_REPLICAS[role].present} ? ${templateTextExpression(fragment)} : ''}}`;
  }
  text = text.replace(`,"${marker}":0`, tags);
  return text;
}

/** A term of {@link templateTextExpression} evaluated the way Argo would, for the counts given; tags stay tags. */
function evaluateTerm(term: string, counts: { workers: number; parameterServers: number }): string {
  const lit = /^sprig\.b64dec\('([A-Za-z0-9+/=]*)'\)$/.exec(term);
  if (lit) return Buffer.from(lit[1]!, "base64").toString("utf8");
  for (const role of ["Worker", "PS"] as const) {
    if (term === `string(${OPTIONAL_REPLICAS[role].count})`) return String(role === "Worker" ? counts.workers - 1 : counts.parameterServers);
  }
  const fn = /^string\((.*)\)$/.exec(term);
  if (fn) return `{{=${fn[1]}}}`;
  return `{{${term.replace(/\['([^']+)'\]/g, ".$1")}}}`;
}

/**
 * The TFJob a run creates, from the manifest text in a train step and the run's `workers`
 * and `parameter-servers` (what Argo does at run time; for tests and checks). Other tags are
 * left for the caller to fill.
 */
export function resolveReplicaCounts(manifest: string, counts: { workers: number; parameterServers: number }): Record<string, any> {
  let text = manifest;
  for (const role of ["Worker", "PS"] as const) {
    const open = `{{=${OPTIONAL_REPLICAS[role].present} ? `;
    const at = text.indexOf(open);
    if (at < 0) continue;
    const end = text.indexOf(" : ''}}", at);
    const wanted = role === "Worker" ? counts.workers > 1 : counts.parameterServers > 0;
    const body = text.slice(at + open.length, end);
    const rendered = wanted
      ? body
          .split(" + ")
          .map((t) => evaluateTerm(t, counts))
          .join("")
      : "";
    text = text.slice(0, at) + rendered + text.slice(end + " : ''}}".length);
  }
  return JSON.parse(text);
}

/** The training step: creates the TFJob and waits for its chief. */
function trainStep(ctx: PipelineContext, trainArgs: string[]): ITemplate {
  const step = tfJobStepTemplate("train", trainingJob(ctx, trainArgs));
  const resource = step.resource!;
  resource.manifest = trainingJobManifestText(JSON.parse(resource.manifest!));
  return step;
}

/** Where a run's step result files go (in its staging area), by output. */
const resultFiles = {
  evaluation: `${runDirs.staging}/evaluation.json`,
  published: `${runDirs.staging}/published.json`,
};

/** Shared shape of the two training pipelines. */
function pipelineTemplate(
  ctx: PipelineContext,
  o: {
    name: string;
    parameters: { name: string; value: string; description: string }[];
    verifyArgs: string[];
    /** `mlp fetch-base` before training (the retrain pipeline's base model); none by default. */
    fetchBaseArgs?: string[];
    trainArgs: string[];
    evaluateArgs: string[];
    smokeArgs: string[];
  },
): IWorkflowTemplate {
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "WorkflowTemplate",
    metadata: { name: o.name, namespace: ctx.namespace, labels: { ...PLATFORM_LABELS, "app.kubernetes.io/component": "pipeline" } },
    spec: {
      serviceAccountName: ctx.serviceAccountName,
      entrypoint: "pipeline",
      onExit: "cleanup",
      arguments: { parameters: [...o.parameters, ...REPLICA_PARAMETERS.map((p) => ({ ...p }))] },
      securityContext: restrictedPod(1000),
      // Step logs go to the object store's logs bucket (the controller's artifact repository).
      archiveLogs: true,
      podGC: { strategy: "OnPodSuccess" },
      ttlStrategy: { secondsAfterSuccess: 7 * 24 * 3600, secondsAfterFailure: 14 * 24 * 3600 },
      volumes: [
        { name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM } },
        { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
      ],
      templates: [
        {
          name: "pipeline",
          dag: {
            tasks: [
              { name: "verify-data", template: "verify-data" },
              { name: "tensorboard", template: "tensorboard", dependencies: ["verify-data"] },
              ...(o.fetchBaseArgs ? [{ name: "fetch-base", template: "fetch-base" }] : []),
              { name: "train", template: "train", dependencies: ["verify-data", ...(o.fetchBaseArgs ? ["fetch-base"] : [])] },
              { name: "evaluate", template: "evaluate", dependencies: ["train"] },
              { name: "publish", template: "publish", dependencies: ["evaluate"] },
              { name: "smoke-test", template: "smoke-test", dependencies: ["publish"] },
            ],
          },
        },
        mlpStep("verify-data", ctx, o.verifyArgs),
        // Downloads only on the first run (cached on the shared volume by name and digest).
        ...(o.fetchBaseArgs ? [mlpStep("fetch-base", ctx, o.fetchBaseArgs)] : []),
        ...tensorBoardSteps(ctx),
        trainStep(ctx, o.trainArgs),
        // Exit code 3 below the gate: the DAG stops here and nothing is published.
        mlpStep("evaluate", ctx, o.evaluateArgs, {
          retry: false,
          outputs: { parameters: [{ name: PIPELINE_OUTPUTS.evaluation, valueFrom: { path: resultFiles.evaluation } }] },
        }),
        // publish creates the model base on a fresh shared volume.
        mlpStep(
          "publish",
          ctx,
          publishArgs({
            from: stagedVersion(runDirs.staging, workflowParam("model-name")),
            modelBase: ctx.modelBase,
            name: workflowParam("model-name"),
            resultFile: resultFiles.published,
          }),
          { outputs: { parameters: [{ name: PIPELINE_OUTPUTS.published, valueFrom: { path: resultFiles.published } }] } },
        ),
        // The server polls for new versions; retries give it time to load the one just published.
        mlpStep("smoke-test", ctx, o.smokeArgs),
        {
          name: "cleanup",
          dag: {
            tasks: [
              { name: "delete-tensorboard", template: "delete-tensorboard" },
              { name: "delete-tensorboard-service", template: "delete-tensorboard-service" },
              { name: "delete-staging", template: "delete-staging" },
            ],
          },
        },
        {
          name: "delete-staging",
          container: {
            name: "main",
            image: ctx.image,
            command: ["rm", "-rf", runDirs.staging],
            resources: { requests: { cpu: "50m", memory: "32Mi" }, limits: { memory: "64Mi" } },
            securityContext: RESTRICTED_CONTAINER,
            volumeMounts: [{ name: "shared", mountPath: SHARED_MOUNT_PATH }],
          },
        },
      ],
    },
  };
}

/** MNIST-style training (the distributed-MNIST walkthrough). */
export function mnistPipelineTemplate(ctx: PipelineContext): IWorkflowTemplate {
  const staged = stagedVersion(runDirs.staging, workflowParam("model-name"));
  return pipelineTemplate(ctx, {
    name: PIPELINE_TEMPLATES.mnist,
    parameters: [
      { name: "dataset", value: "s3://data/mnist", description: "IDX files (train-*, t10k-*) in the object store" },
      { name: "model-name", value: "mnist", description: "name the model is published and served under" },
      { name: "steps", value: "2000", description: "training steps" },
      { name: "learning-rate", value: "0.001", description: "Adam learning rate" },
      { name: "batch-size", value: "64", description: "examples per step" },
      { name: "hidden-units", value: "128", description: "units of the hidden dense layer" },
      { name: "accuracy-gate", value: "0.97", description: "minimum test accuracy to publish" },
    ],
    verifyArgs: verifyDataArgs({ data: workflowParam("dataset"), kind: "idx" }),
    trainArgs: trainMnistArgs({
      data: workflowParam("dataset"),
      steps: workflowParam("steps"),
      learningRate: workflowParam("learning-rate"),
      batchSize: workflowParam("batch-size"),
      hiddenUnits: workflowParam("hidden-units"),
      modelBase: runDirs.staging,
      name: workflowParam("model-name"),
      logdir: runDirs.logs,
      checkpointDir: runDirs.checkpoints,
    }),
    evaluateArgs: evaluateArgs({ model: staged, data: workflowParam("dataset"), kind: "idx", gate: workflowParam("accuracy-gate"), resultFile: resultFiles.evaluation }),
    smokeArgs: predictArgs({
      server: ctx.servingGrpc,
      model: workflowParam("model-name"),
      input: { idx: `${workflowParam("dataset")}/t10k-images-idx3-ubyte`, labels: `${workflowParam("dataset")}/t10k-labels-idx1-ubyte`, index: 0 },
    }),
  });
}

/** Where `mlp fetch-base` caches base models: on the shared volume, so every run and replica sees them. */
const BASE_MODELS_DIR = `${SHARED_MOUNT_PATH}/base-models`;

/** Image retraining (the Inception retraining walkthrough). */
export function retrainPipelineTemplate(ctx: PipelineContext): IWorkflowTemplate {
  const staged = stagedVersion(runDirs.staging, workflowParam("model-name"));
  return pipelineTemplate(ctx, {
    name: PIPELINE_TEMPLATES.retrain,
    parameters: [
      // A folder on the shared volume, or an object-store prefix (npm run dataset -- images), which retrain mirrors into its cache there.
      {
        name: "images",
        value: `${SHARED_MOUNT_PATH}/datasets/images`,
        description: "one folder of images per label: a directory on the shared volume, or s3://bucket/prefix in the object store",
      },
      {
        name: "base-model",
        value: DEFAULT_BASE_MODEL,
        description: `base model fetched into ${BASE_MODELS_DIR} before training: ${BASE_MODELS.map((m) => m.name).join(", ")} (mlp fetch-base --help)`,
      },
      { name: "model-name", value: "images", description: "name the model is published and served under" },
      { name: "steps", value: "500", description: "training steps of the new head" },
      { name: "learning-rate", value: "0.01", description: "learning rate of the new head" },
      { name: "batch-size", value: "32", description: "examples per step" },
      { name: "accuracy-gate", value: "0.9", description: "minimum test accuracy to publish" },
      { name: "smoke-image", value: `${SHARED_MOUNT_PATH}/datasets/smoke.jpg`, description: "an image the smoke test classifies" },
    ],
    verifyArgs: verifyDataArgs({ data: workflowParam("images"), kind: "images" }),
    fetchBaseArgs: fetchBaseArgs({ name: workflowParam("base-model"), baseModels: BASE_MODELS_DIR }),
    trainArgs: retrainArgs({
      images: workflowParam("images"),
      baseModel: workflowParam("base-model"),
      baseModels: BASE_MODELS_DIR,
      steps: workflowParam("steps"),
      learningRate: workflowParam("learning-rate"),
      batchSize: workflowParam("batch-size"),
      modelBase: runDirs.staging,
      name: workflowParam("model-name"),
      logdir: runDirs.logs,
      cacheDir: `${SHARED_MOUNT_PATH}/cache/bottlenecks`,
    }),
    evaluateArgs: evaluateArgs({ model: staged, data: workflowParam("images"), kind: "images", gate: workflowParam("accuracy-gate"), resultFile: resultFiles.evaluation }),
    smokeArgs: predictArgs({ server: ctx.servingGrpc, model: workflowParam("model-name"), input: { image: workflowParam("smoke-image") } }),
  });
}

export interface PipelineArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  readonly context: pulumi.Input<PipelineContext>;
  /** Run the MNIST pipeline on a schedule (cron syntax); default none. */
  readonly schedule?: string;
  readonly dependsOn?: pulumi.Input<pulumi.Resource>[];
}

export class TrainingPipeline extends pulumi.ComponentResource {
  readonly templateNames = [PIPELINE_TEMPLATES.mnist, PIPELINE_TEMPLATES.retrain];

  constructor(name: string, args: PipelineArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:pipeline:TrainingPipeline", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const ctx = pulumi.output(args.context);
    for (const [role, build] of [
      ["mnist", mnistPipelineTemplate],
      ["retrain", retrainPipelineTemplate],
    ] as const) {
      const t = ctx.apply((c) => build(c as PipelineContext));
      new k8s.apiextensions.CustomResource(
        `${name}-${role}`,
        {
          apiVersion: "argoproj.io/v1alpha1",
          kind: "WorkflowTemplate",
          metadata: t.apply((x) => x.metadata),
          spec: t.apply((x) => x.spec),
        } as k8s.apiextensions.CustomResourceArgs,
        k8sOpts,
      );
    }
    if (args.schedule) {
      new k8s.apiextensions.CustomResource(
        `${name}-mnist-schedule`,
        {
          apiVersion: "argoproj.io/v1alpha1",
          kind: "CronWorkflow",
          metadata: { name: `${PIPELINE_TEMPLATES.mnist}-scheduled`, namespace: ctx.apply((c) => c.namespace), labels: { ...PLATFORM_LABELS } },
          spec: {
            schedules: [args.schedule],
            concurrencyPolicy: "Forbid",
            workflowSpec: { workflowTemplateRef: { name: PIPELINE_TEMPLATES.mnist } },
          },
        } as k8s.apiextensions.CustomResourceArgs,
        k8sOpts,
      );
    }
    this.registerOutputs({ templateNames: this.templateNames });
  }
}
