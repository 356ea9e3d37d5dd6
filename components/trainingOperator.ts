/**
 * Kubeflow Training Operator v1.9 (TFJob, `kubeflow.org/v1`), installed from its release
 * manifests with kustomize. v1.9 is the last line with TFJob: Kubeflow Trainer v2 has no
 * TensorFlow runtime, so the walkthroughs' distributed TensorFlow jobs need this one.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { Placement } from "./cluster";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { PLATFORM_LABELS } from "./namespaces";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { manifests } from "./versions";

/**
 * Port every replica serves training metrics on while it trains (`mlp train-mnist` and
 * `mlp retrain` read `MLP_METRICS_PORT`; trainer/src/train/metrics-server.ts), scraped by
 * the observability stack (components/observability.ts).
 */
export const TRAINER_METRICS_PORT = 9102;
export const TRAINER_METRICS_PORT_NAME = "metrics";

export interface TfJobOptions {
  /** Object name (a TFJob's pods are named after it). */
  readonly name: string;
  readonly namespace: string;
  /** Trainer image (digest-pinned in the pipeline). */
  readonly image: string;
  /** `mlp` arguments, e.g. `["train-mnist", "--data", "s3://data/mnist", …]`. */
  readonly args: readonly string[];
  /** GPUs for the chief; 0 runs on CPU. */
  readonly gpus: number;
  /** GPU placement from the cluster, required when `gpus` > 0. */
  readonly gpu?: Placement;
  /** Service account of the pods. Default: the namespace's default. */
  readonly serviceAccountName?: string;
  /** Restarts of a failed pod before the job fails. Default 3. */
  readonly backoffLimit?: number;
  /** CPU and memory each replica requests. Default {@link TRAINING_REQUESTS}. */
  readonly requests?: ResourceRequests;
}

/** CPU and memory a container requests of its node. */
export interface ResourceRequests {
  readonly cpu: string;
  readonly memory: string;
}

/** What a training replica requests unless told otherwise. */
export const TRAINING_REQUESTS: ResourceRequests = { cpu: "1", memory: "2Gi" };

/** kubernetes-models' ObjectMeta (declared in @kubernetes-models/apimachinery, not one of our dependencies). */
type ObjectMeta = NonNullable<IPodTemplateSpec["metadata"]>;

/**
 * One replica type of a TFJob (kubeflow.org/v1 ReplicaSpec), the fields we write. No typed
 * model of the Training Operator's CRDs is installed; the pod template is Kubernetes' own.
 * `Replicas` is the type of the count: a number, but a string placeholder in the pipelines'
 * Worker and PS specs until their manifest text turns it into an Argo expression
 * (`trainingJob` and `trainingJobManifestText` in trainingPipeline.ts).
 */
export type TfReplicaSpec<Replicas = number> = {
  replicas: Replicas;
  restartPolicy: "Always" | "OnFailure" | "Never" | "ExitCode";
  /** The replica's pods; `spec` is always set (the operator runs its container named "tensorflow"). */
  template: { metadata?: ObjectMeta; spec: IPodSpec };
};

/**
 * A TFJob (kubeflow.org/v1) as we write it: labelled, a Chief always, Workers and parameter
 * servers (PS) when the run asks for them, their counts of type `Replicas` ({@link TfReplicaSpec}).
 * Object types rather than interfaces, so a TfJob also passes where any object's fields are
 * taken (`Record<string, unknown>`).
 */
export type TfJob<Replicas = number> = {
  apiVersion: "kubeflow.org/v1";
  kind: "TFJob";
  metadata: ObjectMeta & { labels: { [key: string]: string } };
  spec: {
    runPolicy: { cleanPodPolicy: "None" | "Running" | "All"; backoffLimit: number };
    tfReplicaSpecs: { Chief: TfReplicaSpec; Worker?: TfReplicaSpec<Replicas>; PS?: TfReplicaSpec<Replicas> };
  };
};

/**
 * A TFJob with one chief. The pipelines add Worker and PS replica specs to it
 * (`trainingJob` in trainingPipeline.ts); the trainer trains across whatever replicas the
 * operator's TF_CONFIG lists (all-reduce, or parameter servers when PS replicas exist). The
 * chief reads data and credentials from the object store and writes logs, checkpoints and
 * exports on the shared volume. No Worker or PS specs, hence `TfJob<never>`: it is a TfJob of
 * any replica-count type.
 */
export function tfJobManifest(o: TfJobOptions): TfJob<never> {
  if (o.gpus > 0 && !o.gpu) throw new Error(`TFJob ${o.name}: ${o.gpus} GPUs asked for but the cluster has no GPU placement`);
  const gpu = o.gpus > 0 ? o.gpu : undefined;
  return {
    apiVersion: "kubeflow.org/v1",
    kind: "TFJob",
    metadata: { name: o.name, namespace: o.namespace, labels: { ...PLATFORM_LABELS, "app.kubernetes.io/component": "training" } },
    spec: {
      runPolicy: { cleanPodPolicy: "None", backoffLimit: o.backoffLimit ?? 3 },
      tfReplicaSpecs: {
        Chief: {
          replicas: 1,
          // Spot evictions and node failures: restart and resume from the last checkpoint.
          restartPolicy: "OnFailure",
          template: {
            metadata: { labels: { ...PLATFORM_LABELS } },
            spec: {
              serviceAccountName: o.serviceAccountName,
              automountServiceAccountToken: false,
              securityContext: restrictedPod(1000),
              nodeSelector: gpu?.nodeSelector,
              tolerations: gpu?.tolerations,
              containers: [
                {
                  // The operator looks for the container named "tensorflow".
                  name: "tensorflow",
                  image: o.image,
                  args: [...o.args],
                  envFrom: [{ secretRef: { name: OBJECT_STORE_SECRET } }],
                  env: [{ name: "MLP_METRICS_PORT", value: String(TRAINER_METRICS_PORT) }],
                  ports: [{ name: TRAINER_METRICS_PORT_NAME, containerPort: TRAINER_METRICS_PORT, protocol: "TCP" }],
                  resources: {
                    requests: { ...(o.requests ?? TRAINING_REQUESTS) },
                    limits: { memory: "8Gi", ...(gpu ? { "nvidia.com/gpu": String(o.gpus) } : {}) },
                  },
                  securityContext: RESTRICTED_CONTAINER,
                  volumeMounts: [
                    { name: "shared", mountPath: SHARED_MOUNT_PATH },
                    { name: "tmp", mountPath: "/tmp" },
                  ],
                },
              ],
              volumes: [
                { name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM } },
                { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
              ],
            },
          },
        },
      },
    },
  };
}

/** The Secret the release's kustomization generates empty and the operator's cert rotator fills. */
export const WEBHOOK_CERT_SECRET = "training-operator-webhook-cert";

/**
 * The operator writes its webhook CA and serving certificate into {@link WEBHOOK_CERT_SECRET}
 * and the CA into its ValidatingWebhookConfiguration. Left to Pulumi, every `pulumi up` would
 * replace that Secret with the empty one of the manifests; the operator then rotates both,
 * and until the kubelet delivers the new files (about a minute) the API server refuses every
 * TFJob ("x509: certificate signed by unknown authority"). Pulumi creates the Secret and then
 * leaves its data to the operator.
 */
export const keepOperatorWebhookCert: pulumi.ResourceTransform = ({ type, props, opts }) => {
  if (type !== "kubernetes:core/v1:Secret" || props.metadata?.name !== WEBHOOK_CERT_SECRET) return undefined;
  return { props, opts: pulumi.mergeOptions(opts, { ignoreChanges: ["data", "stringData"] }) };
};

/** Whether the engine runs resource transforms: the Pulumi engine does, the unit tests' mocks do not. */
function engineRunsTransforms(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const state = require("@pulumi/pulumi/runtime/state") as { getStore(): { supportsTransforms?: boolean } };
  return state.getStore().supportsTransforms === true;
}

export interface TrainingOperatorArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Kustomize directory: a local path or a remote URL; default the pinned upstream release (versions.ts). */
  readonly source?: string;
  /** Do not wait for the operator to become ready. Default false. */
  readonly skipAwait?: boolean;
}

export class TrainingOperator extends pulumi.ComponentResource {
  /** Where the manifests came from. */
  readonly source: string;
  readonly version: string;

  constructor(name: string, args: TrainingOperatorArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:kubeflow:TrainingOperator", name, {}, opts);
    this.source = args.source ?? manifests.trainingOperator.source;
    this.version = manifests.trainingOperator.version;
    new k8s.kustomize.v2.Directory(
      `${name}-manifests`,
      { directory: this.source, skipAwait: args.skipAwait ?? false },
      // The unit tests' mocks run no transforms; the engine does (tests/cluster checks the effect).
      { parent: this, provider: args.provider, transforms: engineRunsTransforms() ? [keepOperatorWebhookCert] : [] },
    );
    this.registerOutputs({ source: this.source, version: this.version });
  }
}
