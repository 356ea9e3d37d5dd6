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
import { tfJobStepTemplate } from "./argoWorkflows";
import type { Placement } from "./cluster";
import { PLATFORM_LABELS } from "./namespaces";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { tensorBoardDeploymentSpec, tensorBoardSelector, TENSORBOARD_PORT } from "./tensorBoard";
import { tfJobManifest } from "./trainingOperator";

/** Template names: the submit CLI (scripts/submit.ts) refers to them. */
export const PIPELINE_TEMPLATES = {
  mnist: "mnist-pipeline",
  retrain: "retrain-pipeline",
  sweep: "hyperparameter-sweep",
} as const;

/** What every template needs from the platform. */
export interface PipelineContext {
  readonly namespace: string;
  readonly serviceAccountName: string;
  /** Digest-pinned trainer image. */
  readonly image: string;
  /** TensorBoard image for the per-run TensorBoard. */
  readonly tensorboardImage: string;
  /** GPUs per training job (0 = CPU) and where GPU pods go. */
  readonly gpus: number;
  readonly gpu?: Placement;
  /** Where published models live (the model server watches it). */
  readonly modelBase: string;
  /** gRPC address of the model server, `host:port`. */
  readonly servingGrpc: string;
}

const W = "{{workflow.name}}";
const P = (name: string) => `{{workflow.parameters.${name}}}`;
/** Per-run directories on the shared volume. */
export const runDirs = {
  staging: `${SHARED_MOUNT_PATH}/staging/${W}`,
  logs: `${SHARED_MOUNT_PATH}/logs/${W}`,
  checkpoints: `${SHARED_MOUNT_PATH}/checkpoints/${W}`,
};

/** Retries with exponential back-off for steps that can fail transiently (S3, API server, scheduling). */
const RETRY = { limit: "3", retryPolicy: "Always", backoff: { duration: "10s", factor: "2", maxDuration: "5m" } };

/** A container step running `mlp <args>` with the object-store credentials and the shared volume. */
export function mlpStep(
  name: string,
  ctx: PipelineContext,
  args: string[],
  extra: { outputs?: Record<string, unknown>; retry?: boolean; placement?: Placement; sharedVolume?: boolean } = {},
): Record<string, unknown> {
  const shared = extra.sharedVolume ?? true;
  return {
    name,
    ...(extra.retry === false ? {} : { retryStrategy: RETRY }),
    ...(extra.placement ? { nodeSelector: extra.placement.nodeSelector, tolerations: extra.placement.tolerations } : {}),
    container: {
      name: "main",
      image: ctx.image,
      args,
      envFrom: [{ secretRef: { name: OBJECT_STORE_SECRET } }],
      resources: { requests: { cpu: "500m", memory: "1Gi" }, limits: { memory: "4Gi" } },
      securityContext: RESTRICTED_CONTAINER,
      volumeMounts: [...(shared ? [{ name: "shared", mountPath: SHARED_MOUNT_PATH }] : []), { name: "tmp", mountPath: "/tmp" }],
    },
    ...(extra.outputs ? { outputs: extra.outputs } : {}),
  };
}

/** Resource steps that create (and, on exit, delete) the run's TensorBoard. */
function tensorBoardSteps(ctx: PipelineContext): Record<string, unknown>[] {
  const app = `tb-${W}`;
  const spec = tensorBoardDeploymentSpec({ image: ctx.tensorboardImage, logDir: `logs/${W}`, app });
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
      dag: { tasks: [{ name: "deployment", template: "tensorboard-deployment" }, { name: "service", template: "tensorboard-service" }] },
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

/** Placeholder replaced by an Argo expression: TFJob replica counts must be JSON numbers. */
const WORKER_REPLICAS = "__WORKER_REPLICAS__";

/** The training step: a TFJob whose chief runs `mlp <trainArgs>`; extra workers per the `workers` parameter. */
function trainStep(ctx: PipelineContext, trainArgs: string[]): Record<string, unknown> {
  const job = tfJobManifest({
    name: `${W}-train`,
    namespace: ctx.namespace,
    image: ctx.image,
    args: trainArgs,
    gpus: ctx.gpus,
    gpu: ctx.gpu,
  });
  const chief = job.spec.tfReplicaSpecs.Chief;
  // Workers beyond the chief: the trainer refuses a multi-replica TF_CONFIG with a clear error
  // rather than silently training copies, so workers > 1 fails the run loudly at start.
  job.spec.tfReplicaSpecs.Worker = { ...chief, replicas: WORKER_REPLICAS };
  const step = tfJobStepTemplate("train", job);
  const resource = step.resource as { manifest: string };
  resource.manifest = resource.manifest.replace(`"${WORKER_REPLICAS}"`, "{{=asInt(workflow.parameters.workers) - 1}}");
  return step;
}

/** Shared shape of the two training pipelines. */
function pipelineTemplate(
  ctx: PipelineContext,
  o: {
    name: string;
    parameters: { name: string; value: string; description: string }[];
    verifyArgs: string[];
    trainArgs: string[];
    evaluateArgs: string[];
    smokeArgs: string[];
  },
): Record<string, any> {
  const evaluation = `${runDirs.staging}/evaluation.json`;
  const published = `${runDirs.staging}/published.json`;
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "WorkflowTemplate",
    metadata: { name: o.name, namespace: ctx.namespace, labels: { ...PLATFORM_LABELS, "app.kubernetes.io/component": "pipeline" } },
    spec: {
      serviceAccountName: ctx.serviceAccountName,
      entrypoint: "pipeline",
      onExit: "cleanup",
      arguments: { parameters: o.parameters },
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
              { name: "train", template: "train", dependencies: ["verify-data"] },
              { name: "evaluate", template: "evaluate", dependencies: ["train"] },
              { name: "publish", template: "publish", dependencies: ["evaluate"] },
              { name: "smoke-test", template: "smoke-test", dependencies: ["publish"] },
            ],
          },
        },
        mlpStep("verify-data", ctx, o.verifyArgs),
        ...tensorBoardSteps(ctx),
        trainStep(ctx, o.trainArgs),
        // Exit code 3 below the gate: the DAG stops here and nothing is published.
        mlpStep("evaluate", ctx, [...o.evaluateArgs, "--result-file", evaluation], {
          retry: false,
          outputs: { parameters: [{ name: "evaluation", valueFrom: { path: evaluation } }] },
        }),
        mlpStep(
          "publish",
          ctx,
          ["publish", "--from", `${runDirs.staging}/${P("model-name")}/1`, "--model-base", ctx.modelBase, "--name", P("model-name"), "--result-file", published],
          { outputs: { parameters: [{ name: "published", valueFrom: { path: published } }] } },
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
export function mnistPipelineTemplate(ctx: PipelineContext): Record<string, any> {
  return pipelineTemplate(ctx, {
    name: PIPELINE_TEMPLATES.mnist,
    parameters: [
      { name: "dataset", value: "s3://data/mnist", description: "IDX files (train-*, t10k-*) in the object store" },
      { name: "model-name", value: "mnist", description: "name the model is published and served under" },
      { name: "steps", value: "2000", description: "training steps" },
      { name: "learning-rate", value: "0.001", description: "Adam learning rate" },
      { name: "batch-size", value: "64", description: "examples per step" },
      { name: "hidden-units", value: "128", description: "units of the hidden dense layer" },
      { name: "workers", value: "1", description: "training replicas (the trainer supports 1)" },
      { name: "accuracy-gate", value: "0.97", description: "minimum test accuracy to publish" },
    ],
    verifyArgs: ["verify-data", "--data", P("dataset"), "--kind", "idx"],
    trainArgs: [
      "train-mnist",
      "--data", P("dataset"),
      "--steps", P("steps"),
      "--learning-rate", P("learning-rate"),
      "--batch-size", P("batch-size"),
      "--hidden-units", P("hidden-units"),
      "--model-base", runDirs.staging,
      "--name", P("model-name"),
      "--logdir", runDirs.logs,
      "--checkpoint-dir", runDirs.checkpoints,
      "--progress", "lines",
    ],
    evaluateArgs: ["evaluate", "--model", `${runDirs.staging}/${P("model-name")}/1`, "--data", P("dataset"), "--kind", "idx", "--gate", P("accuracy-gate")],
    smokeArgs: [
      "predict", "--server", ctx.servingGrpc, "--model", P("model-name"),
      "--idx", `${P("dataset")}/t10k-images-idx3-ubyte`, "--idx-labels", `${P("dataset")}/t10k-labels-idx1-ubyte`, "--index", "0",
    ],
  });
}

/** Image retraining (the Inception retraining walkthrough). */
export function retrainPipelineTemplate(ctx: PipelineContext): Record<string, any> {
  return pipelineTemplate(ctx, {
    name: PIPELINE_TEMPLATES.retrain,
    parameters: [
      // retrain reads a local folder: the shared volume (upload there from a notebook or a Job).
      { name: "images", value: `${SHARED_MOUNT_PATH}/datasets/images`, description: "one folder of images per label, on the shared volume" },
      { name: "base-model", value: `${SHARED_MOUNT_PATH}/base-models/mobilenet`, description: "tfjs base model directory" },
      { name: "model-name", value: "images", description: "name the model is published and served under" },
      { name: "steps", value: "500", description: "training steps of the new head" },
      { name: "learning-rate", value: "0.01", description: "learning rate of the new head" },
      { name: "batch-size", value: "32", description: "examples per step" },
      { name: "workers", value: "1", description: "training replicas (the trainer supports 1)" },
      { name: "accuracy-gate", value: "0.9", description: "minimum test accuracy to publish" },
      { name: "smoke-image", value: `${SHARED_MOUNT_PATH}/datasets/smoke.jpg`, description: "an image the smoke test classifies" },
    ],
    verifyArgs: ["verify-data", "--data", P("images"), "--kind", "images"],
    trainArgs: [
      "retrain",
      "--images", P("images"),
      "--base-model", P("base-model"),
      "--steps", P("steps"),
      "--learning-rate", P("learning-rate"),
      "--batch-size", P("batch-size"),
      "--model-base", runDirs.staging,
      "--name", P("model-name"),
      "--logdir", runDirs.logs,
      "--cache-dir", `${SHARED_MOUNT_PATH}/cache/bottlenecks`,
    ],
    evaluateArgs: ["evaluate", "--model", `${runDirs.staging}/${P("model-name")}/1`, "--data", P("images"), "--kind", "images", "--gate", P("accuracy-gate")],
    smokeArgs: ["predict", "--server", ctx.servingGrpc, "--model", P("model-name"), "--image", P("smoke-image")],
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
    for (const [role, build] of [["mnist", mnistPipelineTemplate], ["retrain", retrainPipelineTemplate]] as const) {
      const t = ctx.apply((c) => build(c as PipelineContext));
      new k8s.apiextensions.CustomResource(
        `${name}-${role}`,
        { apiVersion: "argoproj.io/v1alpha1", kind: "WorkflowTemplate", metadata: t.apply((x) => x.metadata), spec: t.apply((x) => x.spec) } as k8s.apiextensions.CustomResourceArgs,
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
