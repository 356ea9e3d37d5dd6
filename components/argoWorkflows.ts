/**
 * Argo Workflows (the pipeline engine) from its Helm chart, and the least-privileged
 * service account our pipeline workflows run as.
 *
 * The Argo server never runs in `server` auth mode (which lets anyone who reaches it act
 * with the server's own permissions): `client` (bring a Kubernetes token) or `sso`.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { ITemplate, IWorkflow } from "@kubernetes-models/argo-workflows/argoproj.io/v1alpha1";
import { OBJECT_STORE_SECRET } from "./objectStore";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels } from "./namespaces";
import type { TfJob } from "./trainingOperator";
import { chartSource, charts } from "./versions";

/** Namespace of the Argo controller and server. */
export const ARGO_NAMESPACE = "argo";
/** Helm release name; the server Service is `<release>-server`. */
export const ARGO_RELEASE = "argo-workflows";
export const ARGO_SERVER_PORT = 2746;
/** Service account our WorkflowTemplates run as (part of the output contract). */
export const PIPELINE_SERVICE_ACCOUNT = "pipeline";

/**
 * What a pipeline run may do in its own namespace, and nothing more: run and watch TFJobs,
 * read pod logs, report step results to Argo, and start/stop the run's TensorBoard.
 */
export const PIPELINE_RULES: k8s.types.input.rbac.v1.PolicyRule[] = [
  { apiGroups: ["kubeflow.org"], resources: ["tfjobs"], verbs: ["create", "get", "list", "watch", "delete", "patch"] },
  { apiGroups: ["kubeflow.org"], resources: ["tfjobs/status"], verbs: ["get"] },
  { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] },
  { apiGroups: [""], resources: ["pods/log"], verbs: ["get"] },
  // The Argo executor records each step's outputs as a WorkflowTaskResult.
  { apiGroups: ["argoproj.io"], resources: ["workflowtaskresults"], verbs: ["create", "patch"] },
  { apiGroups: ["apps"], resources: ["deployments"], verbs: ["create", "get", "delete"] },
  { apiGroups: [""], resources: ["services"], verbs: ["create", "get", "delete"] },
];

/**
 * An Argo template step that creates a TFJob and waits for it: succeeds when the chief
 * succeeded, fails when it failed (Argo evaluates these against the TFJob's status). The
 * TFJob's replica counts may still be placeholders (`trainingJob` in trainingPipeline.ts).
 */
export function tfJobStepTemplate(name: string, tfJob: TfJob<number | string>): ITemplate {
  return {
    name,
    resource: {
      action: "create",
      // The run's owner reference makes the TFJob go away with the workflow.
      setOwnerReference: true,
      manifest: JSON.stringify(tfJob),
      successCondition: "status.replicaStatuses.Chief.succeeded > 0",
      failureCondition: "status.replicaStatuses.Chief.failed > 0",
    },
  };
}

/** A Workflow that runs one TFJob as the pipeline's service account. */
export function trainingWorkflowManifest(o: { generateName: string; namespace: string; serviceAccountName: string; tfJob: TfJob }): IWorkflow {
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: { generateName: o.generateName, namespace: o.namespace, labels: { ...PLATFORM_LABELS } },
    spec: {
      entrypoint: "train",
      serviceAccountName: o.serviceAccountName,
      podGC: { strategy: "OnWorkflowSuccess" },
      templates: [tfJobStepTemplate("train", o.tfJob)],
    },
  };
}

/**
 * securityContext of Argo's own containers in every workflow pod (the `init` that loads
 * artifacts and the `wait` sidecar that saves outputs): they run in the pipelines namespace,
 * which enforces the `restricted` Pod Security level, and the chart sets nothing for them.
 * The user comes from the workflow pod's securityContext (the templates' non-root uid), so
 * the sidecars read and write the same files as the step.
 */
export const EXECUTOR_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/**
 * Where workflows keep their artifacts and archived step logs: a bucket of the platform's
 * object store. The credentials are the object store Secret in the pipelines namespace.
 */
export interface ArtifactStore {
  /** S3 endpoint URL as pods reach it, e.g. `http://minio.mlplatform.svc.cluster.local:9000`. */
  readonly endpoint: string;
  readonly bucket: string;
  readonly region?: string;
}

/** The controller's default artifact repository for {@link ArtifactStore} (Argo wants host:port and `insecure` for plain HTTP). */
export function artifactRepositoryValues(a: ArtifactStore): Record<string, unknown> {
  const url = new URL(a.endpoint);
  const host = url.port ? `${url.hostname}:${url.port}` : url.hostname;
  return {
    // The pipeline templates archive each step's log (archiveLogs), so it outlives the pod.
    archiveLogs: true,
    s3: {
      endpoint: host,
      bucket: a.bucket,
      insecure: url.protocol === "http:",
      ...(a.region ? { region: a.region } : {}),
      accessKeySecret: { name: OBJECT_STORE_SECRET, key: "AWS_ACCESS_KEY_ID" },
      secretKeySecret: { name: OBJECT_STORE_SECRET, key: "AWS_SECRET_ACCESS_KEY" },
    },
  };
}

/** Helm values: controller watches only the pipelines namespace; server ClusterIP, safe auth mode; restricted executor. */
export function argoValues(o: { pipelinesNamespace: string; authMode: "client" | "sso"; installCrds: boolean; artifacts?: ArtifactStore }): Record<string, unknown> {
  return {
    ...(o.artifacts ? { useStaticCredentials: true, artifactRepository: artifactRepositoryValues(o.artifacts) } : {}),
    crds: { install: o.installCrds, keep: true },
    // The chart's default is Always: a node that already holds the pinned image (an
    // air-gapped or pre-loaded node) would still need the registry to start any Argo pod.
    images: { pullPolicy: "IfNotPresent" },
    controller: {
      workflowNamespaces: [o.pipelinesNamespace],
      resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
    },
    server: {
      enabled: true,
      authModes: [o.authMode],
      serviceType: "ClusterIP",
      resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
    },
    // The chart renders this into the controller's config (executor.securityContext), which
    // the controller puts on the init and wait containers of every workflow pod.
    executor: { securityContext: EXECUTOR_SECURITY_CONTEXT },
    // We create the workflow service account ourselves, with the rules above.
    workflow: { serviceAccount: { create: false }, rbac: { create: false } },
  };
}

export interface ArgoWorkflowsArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Namespace the pipelines run in (the controller watches it; the service account lives there). */
  readonly pipelinesNamespace: string;
  /** `client` or `sso`. Default `client`. */
  readonly authMode?: "client" | "sso";
  /** Let the chart install the CRDs. Default true. */
  readonly installCrds?: boolean;
  /** Helm repository and chart version; default the pins in versions.ts. */
  readonly repository?: string;
  readonly version?: string;
  /** A local chart archive or directory instead of the repository (then repository and version are ignored). */
  readonly chart?: string;
  /** Resources the namespaced objects wait for (the Namespaces component). */
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for the chart's workloads. Default false. */
  readonly skipAwait?: boolean;
  /**
   * The default artifact repository (a bucket of the object store). Without one, workflows
   * that archive logs or pass artifacts fail in their `wait` container.
   */
  readonly artifacts?: { readonly endpoint: pulumi.Input<string>; readonly bucket: string; readonly region?: string };
}

export class ArgoWorkflows extends pulumi.ComponentResource {
  /** In-cluster URL of the Argo server (UI and API). */
  readonly serverUrl: string;
  readonly serviceAccountName = PIPELINE_SERVICE_ACCOUNT;
  readonly chartVersion: string;
  readonly serverService = `${ARGO_RELEASE}-server`;

  constructor(name: string, args: ArgoWorkflowsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:kubeflow:ArgoWorkflows", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const pin = charts.argoWorkflows;
    this.chartVersion = args.version ?? pin.version;

    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      // baseline: the upstream chart's pods are not all restricted-compliant; warn shows where.
      {
        metadata: {
          name: ARGO_NAMESPACE,
          labels: { ...PLATFORM_LABELS, ...podSecurityLabels("baseline") },
          annotations: awaitAnnotations(args.skipAwait ?? false),
        },
      },
      k8sOpts,
    );
    new k8s.helm.v4.Chart(
      `${name}-chart`,
      {
        name: ARGO_RELEASE,
        ...chartSource(pin, args),
        namespace: ns.metadata.name,
        values: pulumi.output(args.artifacts?.endpoint).apply((endpoint) =>
          argoValues({
            pipelinesNamespace: args.pipelinesNamespace,
            authMode: args.authMode ?? "client",
            installCrds: args.installCrds ?? true,
            artifacts: endpoint && args.artifacts ? { endpoint, bucket: args.artifacts.bucket, region: args.artifacts.region } : undefined,
          }),
        ),
        skipAwait: args.skipAwait ?? false,
      },
      { parent: this, provider: args.provider, dependsOn: [ns] },
    );

    const sa = new k8s.core.v1.ServiceAccount(
      `${name}-pipeline`,
      { metadata: { name: PIPELINE_SERVICE_ACCOUNT, namespace: args.pipelinesNamespace, labels: { ...PLATFORM_LABELS } } },
      k8sOpts,
    );
    const role = new k8s.rbac.v1.Role(`${name}-pipeline`, { metadata: { namespace: args.pipelinesNamespace, labels: { ...PLATFORM_LABELS } }, rules: PIPELINE_RULES }, k8sOpts);
    new k8s.rbac.v1.RoleBinding(
      `${name}-pipeline`,
      {
        metadata: { namespace: args.pipelinesNamespace, labels: { ...PLATFORM_LABELS } },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
        subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: args.pipelinesNamespace }],
      },
      k8sOpts,
    );

    this.serverUrl = `https://${this.serverService}.${ARGO_NAMESPACE}.svc.cluster.local:${ARGO_SERVER_PORT}`;
    this.registerOutputs({ serverUrl: this.serverUrl, serviceAccountName: this.serviceAccountName });
  }
}
