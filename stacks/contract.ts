/**
 * The typed contract between the platform stack and the teams that build on it.
 *
 * These are the platform's stack outputs: flat, camelCase, stable. A consumer reads them
 * through {@link ./reference.ts} (StackReference) and never depends on how the platform
 * is built. Adding an output is compatible; renaming or removing one is a breaking change.
 */

/** The label that submits a job to the Kueue LocalQueue of its namespace (a `teamQueues` value). */
export const QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name";

/** A Kubernetes toleration as the platform exports it. */
export interface TolerationOutput {
  key: string;
  operator: "Equal" | "Exists";
  value?: string;
  effect?: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
}

export interface PlatformOutputs {
  /** Which kind of cluster the platform runs on. */
  clusterProvider: "aks" | "gke" | "existing";
  /** Cluster name (AKS/GKE resource name, or the kubeconfig context). */
  clusterName: string;
  /** Kubeconfig for the cluster. Always a secret; empty for in-cluster credentials. */
  kubeconfig: string;
  /** Whether GPU nodes exist (or can be scaled up from zero). */
  gpuEnabled: boolean;
  /** Node selector GPU pods must carry (empty when `gpuEnabled` is false). */
  gpuNodeSelector: Record<string, string>;
  /** Tolerations GPU pods must carry (empty when `gpuEnabled` is false). */
  gpuTolerations: TolerationOutput[];
  /** Whether burst capacity (AKS virtual nodes on ACI) is available for CPU sweep trials. */
  burstEnabled: boolean;
  /** Node selector for burst pods (empty when `burstEnabled` is false). */
  burstNodeSelector: Record<string, string>;
  /** Tolerations for burst pods (empty when `burstEnabled` is false). */
  burstTolerations: TolerationOutput[];
  /** Image registry server (ACR login server, Artifact Registry path, or the configured one); empty if none. */
  registryServer: string;
  /** Namespace of shared platform services (object store, TensorBoard). */
  platformNamespace: string;
  /** Namespace for training pipelines, TFJobs and sweep trials. */
  pipelinesNamespace: string;
  /** Namespace for model servers. */
  servingNamespace: string;
  /** Namespace for JupyterHub and notebooks. */
  notebooksNamespace: string;
  /** What backs the shared volume: `azureFiles`, `filestore`, `nfs` (in-cluster), `externalNfs` or `hostPath` (one node's directory). */
  sharedStorageBackend: "azureFiles" | "filestore" | "nfs" | "externalNfs" | "hostPath";
  /** ReadWriteMany claim of the shared volume, present under this name in every platform namespace. */
  sharedClaimName: string;
  /** Where platform workloads mount the shared volume. */
  sharedMountPath: string;
  /** S3 endpoint URL (in-cluster for MinIO). */
  objectStoreEndpoint: string;
  /** Bucket for datasets. */
  objectStoreDataBucket: string;
  /** Bucket for exported models. */
  objectStoreModelsBucket: string;
  /** Bucket for logs and run artifacts. */
  objectStoreLogsBucket: string;
  /** Secret (AWS_* variables) present under this name in the pipelines, serving and notebooks namespaces. */
  objectStoreSecretName: string;
  /** S3 access key id. Always a secret. */
  objectStoreAccessKeyId: string;
  /** S3 secret access key. Always a secret. */
  objectStoreSecretAccessKey: string;
  /** Kubeflow Training Operator release (TFJob `kubeflow.org/v1`); empty when disabled. */
  trainingOperatorVersion: string;
  /** In-cluster URL of the Argo server (UI and API); empty when disabled. */
  argoServerUrl: string;
  /** Service account pipeline workflows run as, in the pipelines namespace; empty when Argo is disabled. */
  pipelineServiceAccount: string;
  /** In-cluster URL of JupyterHub; empty when disabled. */
  jupyterhubUrl: string;
  /** In-cluster URL of the platform TensorBoard; empty when disabled. */
  tensorboardUrl: string;
  /** The trainer image every workload runs (digest-pinned when built by the stack). */
  trainerImage: string;
  /** In-cluster gRPC endpoint (host:port) of the model server; empty when disabled. */
  servingGrpcEndpoint: string;
  /** In-cluster REST URL of the model server; empty when disabled. */
  servingRestUrl: string;
  /** Team name → the team's namespace (config `teams`); empty without teams. */
  teamNamespaces: Record<string, string>;
  /** Team name → the Kueue LocalQueue in its namespace that its jobs name in the `kueue.x-k8s.io/queue-name` label; empty without teams. */
  teamQueues: Record<string, string>;
}

/** Every output name, for checks that the platform exports the whole contract. */
export const PLATFORM_OUTPUT_NAMES = [
  "clusterProvider",
  "clusterName",
  "kubeconfig",
  "gpuEnabled",
  "gpuNodeSelector",
  "gpuTolerations",
  "burstEnabled",
  "burstNodeSelector",
  "burstTolerations",
  "registryServer",
  "platformNamespace",
  "pipelinesNamespace",
  "servingNamespace",
  "notebooksNamespace",
  "sharedStorageBackend",
  "sharedClaimName",
  "sharedMountPath",
  "objectStoreEndpoint",
  "objectStoreDataBucket",
  "objectStoreModelsBucket",
  "objectStoreLogsBucket",
  "objectStoreSecretName",
  "objectStoreAccessKeyId",
  "objectStoreSecretAccessKey",
  "trainingOperatorVersion",
  "argoServerUrl",
  "pipelineServiceAccount",
  "jupyterhubUrl",
  "tensorboardUrl",
  "trainerImage",
  "servingGrpcEndpoint",
  "servingRestUrl",
  "teamNamespaces",
  "teamQueues",
] as const satisfies readonly (keyof PlatformOutputs)[];

/** Outputs that are secrets and must stay secrets in every consumer. */
export const SECRET_OUTPUT_NAMES: readonly (keyof PlatformOutputs)[] = ["kubeconfig", "objectStoreAccessKeyId", "objectStoreSecretAccessKey"];
