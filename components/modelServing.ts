/**
 * A model server: the trainer image running `mlp serve` (TensorFlow-Serving-compatible gRPC
 * on 8500 and REST on 8501) for one model, behind a ClusterIP Service, scaled on CPU by a
 * HorizontalPodAutoscaler and protected during node drains by a PodDisruptionBudget.
 *
 * Model versions come from the shared volume (`/mnt/shared/...`, mounted read-only) or
 * from the object store (`s3://bucket/prefix`, credentials from the object store's Secret);
 * the server hot-loads new versions as the pipeline publishes them.
 *
 * Probes follow what the server reports (trainer/src/serve):
 *  - the server loads the versions it finds *before* it binds its ports, so the
 *    startupProbe (any HTTP answer on 8501) gives a slow load `startupTimeoutSeconds`;
 *  - readiness is the gRPC health check (`grpc.health.v1`, service ""), which is SERVING
 *    only while every configured model has an AVAILABLE version and the server is not
 *    draining. `GET /v1/models/<name>` would be wrong: it answers 200 while a version is
 *    still LOADING or after it failed (END), and 404 before storage was first listed;
 *  - liveness is the metrics page, which answers without a model, so a pod waiting for
 *    the pipeline's first version is kept (NotReady) rather than restarted in a loop.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { dnsLabel, type Placement } from "./cluster";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { PLATFORM_LABELS, awaitAnnotations } from "./namespaces";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";

/** gRPC port of `mlp serve` (TF Serving's `--port`). */
export const GRPC_PORT = 8500;
/** REST port of `mlp serve` (TF Serving's `--rest_api_port`). */
export const REST_PORT = 8501;
/** Where the server exposes Prometheus metrics. */
export const METRICS_PATH = "/monitoring/prometheus/metrics";
/** The user our containers run as (the trainer image's `node` user). */
export const SERVING_UID = 1000;

/** Defaults of {@link ModelServingArgs}, in one place for the docs and the tests. */
export const SERVING_DEFAULTS = {
  minReplicas: 1,
  maxReplicas: 3,
  targetCpuUtilizationPercent: 70,
  gpus: 0,
  resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { memory: "2Gi" } },
  /** `mlp serve --grpc_max_message_bytes` default. */
  grpcMaxMessageBytes: 32 * 1024 * 1024,
  /** `mlp serve --rest_api_max_body_bytes` default. */
  restMaxBodyBytes: 64 * 1024 * 1024,
  pollSeconds: 10,
  /** `mlp serve --shutdown_grace_seconds` default. */
  shutdownGraceSeconds: 20,
  preStopSleepSeconds: 5,
  startupTimeoutSeconds: 600,
  /** `mlp serve`'s batching defaults (trainer/src/serve/batcher.ts DEFAULT_BATCHING). */
  batching: { maxBatchSize: 32, batchTimeoutMicros: 2000, maxEnqueuedRequests: 1024 },
} as const;

/** Server-side batching (`mlp serve --enable_batching`). */
export interface ServingBatching {
  /** Most examples in one model run (`--max_batch_size`). Default 32. */
  readonly maxBatchSize?: number;
  /** How long the first request of a batch waits for others, µs (`--batch_timeout_micros`). Default 2000. */
  readonly batchTimeoutMicros?: number;
  /** Requests queued before RESOURCE_EXHAUSTED (`--max_enqueued_requests`). Default 1024. */
  readonly maxEnqueuedRequests?: number;
}

/** Container resources; quantities as Kubernetes writes them ("500m", "2Gi"). */
export interface ServingResources {
  readonly requests?: { readonly cpu?: string; readonly memory?: string };
  readonly limits?: { readonly cpu?: string; readonly memory?: string };
}

export interface ModelServingArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Namespace the server runs in (the platform's `serving` namespace; it has the shared claim and the object store Secret). */
  readonly namespace: pulumi.Input<string>;
  /** Resources the namespaced objects wait for (Namespaces, SharedStorage, ObjectStore). */
  readonly dependsOn?: pulumi.Resource[];
  /** The trainer image (digest-pinned by TrainerImage). Its entrypoint must be the `mlp` CLI. */
  readonly image: pulumi.Input<string>;
  /** Overrides the image's entrypoint, e.g. `["node", "/app/dist/src/cli.js"]`. Default: the image's. */
  readonly command?: readonly string[];
  /** The model name clients use (`ModelSpec.name`, `/v1/models/<name>`): letters, digits, `_`, `.`, `-`. */
  readonly modelName: string;
  /**
   * Where the model's version directories are: a path on the shared volume (under
   * `/mnt/shared`) or `s3://bucket/prefix`. Default `/mnt/shared/models/<modelName>`.
   */
  readonly modelBasePath?: string;
  /** Name of the Service, and so of the endpoints clients are given. Default the model name as a DNS label. */
  readonly serviceName?: string;
  /** Fewest replicas (the HPA's floor). Default 1. */
  readonly minReplicas?: number;
  /** Most replicas (the HPA's ceiling); equal to `minReplicas` means a fixed count and no HPA. Default 3. */
  readonly maxReplicas?: number;
  /** Average CPU utilization (% of the request) the HPA aims for. Default 70. */
  readonly targetCpuUtilizationPercent?: number;
  /** Container requests and limits. Default requests 1 CPU / 1Gi, limit 2Gi memory and no CPU limit (CFS throttling hurts tail latency). */
  readonly resources?: ServingResources;
  /** GPUs per replica (`nvidia.com/gpu`). Default 0 (CPU). Needs `gpuPlacement`. */
  readonly gpus?: number;
  /** Where GPU pods go: the cluster's GPU node selector and tolerations (`PlatformCluster.gpu`). */
  readonly gpuPlacement?: Placement;
  /** Server-side batching; off when undefined. */
  readonly batching?: ServingBatching;
  /** Largest gRPC message, bytes (`--grpc_max_message_bytes`). Default 32 MiB. */
  readonly grpcMaxMessageBytes?: number;
  /** Largest REST body, bytes (`--rest_api_max_body_bytes`). Default 64 MiB. */
  readonly restMaxBodyBytes?: number;
  /** How often storage is checked for new versions, seconds (`--file_system_poll_wait_seconds`). Default 10. */
  readonly pollSeconds?: number;
  /** How long a stopping server lets in-flight requests finish (`--shutdown_grace_seconds`). Default 20. */
  readonly shutdownGraceSeconds?: number;
  /** Pause before SIGTERM, so Service endpoints drop the pod before it refuses calls. Default 5; 0 for none. */
  readonly preStopSleepSeconds?: number;
  /** How long the first model load may take before the pod is restarted, seconds. Default 600. */
  readonly startupTimeoutSeconds?: number;
  /**
   * Do not wait for the Deployment to become ready (API servers without nodes). Default false.
   * Pods are Ready only once a model version is AVAILABLE, so deploying before the pipeline
   * has published a version also needs this (or `pulumi up` waits for its timeout).
   */
  readonly skipAwait?: boolean;
}

/** The plain values the builders work from: {@link ModelServingArgs} with every default applied. */
export interface ServingSpec {
  readonly instance: string;
  readonly image: pulumi.Input<string>;
  readonly command?: readonly string[];
  readonly modelName: string;
  readonly modelBasePath: string;
  readonly serviceName: string;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly targetCpuUtilizationPercent: number;
  readonly resources: ServingResources;
  readonly gpus: number;
  readonly gpuPlacement?: Placement;
  readonly batching?: Required<ServingBatching>;
  readonly grpcMaxMessageBytes: number;
  readonly restMaxBodyBytes: number;
  readonly pollSeconds: number;
  readonly shutdownGraceSeconds: number;
  readonly preStopSleepSeconds: number;
  readonly startupTimeoutSeconds: number;
}

type ServingOptions = Omit<ModelServingArgs, "provider" | "namespace" | "dependsOn" | "skipAwait">;

const MODEL_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

function int(option: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in [${min}, ${max}]`;
    throw new Error(`\`${option}\` must be an integer ${range}; got ${v}`);
  }
  return v;
}

/**
 * Validates the options and applies the defaults. `instance` is the component's name
 * (it tells two servers of the same model apart in labels). Throws naming the option,
 * the bad value and the fix.
 */
export function resolveServingSpec(instance: string, o: ServingOptions): ServingSpec {
  if (!MODEL_NAME.test(o.modelName)) {
    throw new Error(`\`modelName\` must be 1-63 letters, digits, '_', '.' or '-', starting and ending alphanumeric; got ${JSON.stringify(o.modelName)}`);
  }
  const modelBasePath = o.modelBasePath ?? `${SHARED_MOUNT_PATH}/models/${o.modelName}`;
  if (modelBasePath.startsWith("s3://")) {
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(modelBasePath)) {
      throw new Error(`\`modelBasePath\` must be s3://bucket/prefix with a valid bucket name; got ${JSON.stringify(modelBasePath)}`);
    }
  } else if (!modelBasePath.startsWith(`${SHARED_MOUNT_PATH}/`) || modelBasePath.split("/").includes("..")) {
    throw new Error(
      `\`modelBasePath\` must be a path on the shared volume (under ${SHARED_MOUNT_PATH}/) or s3://bucket/prefix; got ${JSON.stringify(modelBasePath)}`,
    );
  }
  const minReplicas = int("minReplicas", o.minReplicas ?? SERVING_DEFAULTS.minReplicas, 1);
  const maxReplicas = int("maxReplicas", o.maxReplicas ?? Math.max(SERVING_DEFAULTS.maxReplicas, minReplicas), 1);
  if (maxReplicas < minReplicas) throw new Error(`\`maxReplicas\` must be ≥ minReplicas (${minReplicas}); got ${maxReplicas}`);
  const gpus = int("gpus", o.gpus ?? SERVING_DEFAULTS.gpus, 0, 16);
  if (gpus > 0 && !o.gpuPlacement) {
    throw new Error(`\`gpus\` is ${gpus} but no \`gpuPlacement\` was given; pass the cluster's GPU placement (cluster.gpu), or set gpus to 0 for a CPU server`);
  }
  const b = o.batching;
  const d = SERVING_DEFAULTS.batching;
  const batching = b && {
    maxBatchSize: int("batching.maxBatchSize", b.maxBatchSize ?? d.maxBatchSize, 1),
    batchTimeoutMicros: int("batching.batchTimeoutMicros", b.batchTimeoutMicros ?? d.batchTimeoutMicros, 0),
    maxEnqueuedRequests: int("batching.maxEnqueuedRequests", b.maxEnqueuedRequests ?? d.maxEnqueuedRequests, 1),
  };
  return {
    instance: dnsLabel(instance),
    image: o.image,
    command: o.command,
    modelName: o.modelName,
    modelBasePath,
    serviceName: dnsLabel(o.serviceName ?? o.modelName),
    minReplicas,
    maxReplicas,
    targetCpuUtilizationPercent: int("targetCpuUtilizationPercent", o.targetCpuUtilizationPercent ?? SERVING_DEFAULTS.targetCpuUtilizationPercent, 1, 100),
    resources: o.resources ?? SERVING_DEFAULTS.resources,
    gpus,
    gpuPlacement: gpus > 0 ? o.gpuPlacement : undefined,
    batching,
    grpcMaxMessageBytes: int("grpcMaxMessageBytes", o.grpcMaxMessageBytes ?? SERVING_DEFAULTS.grpcMaxMessageBytes, 1024),
    restMaxBodyBytes: int("restMaxBodyBytes", o.restMaxBodyBytes ?? SERVING_DEFAULTS.restMaxBodyBytes, 1024),
    pollSeconds: int("pollSeconds", o.pollSeconds ?? SERVING_DEFAULTS.pollSeconds, 0),
    shutdownGraceSeconds: int("shutdownGraceSeconds", o.shutdownGraceSeconds ?? SERVING_DEFAULTS.shutdownGraceSeconds, 0, 3600),
    preStopSleepSeconds: int("preStopSleepSeconds", o.preStopSleepSeconds ?? SERVING_DEFAULTS.preStopSleepSeconds, 0, 300),
    startupTimeoutSeconds: int("startupTimeoutSeconds", o.startupTimeoutSeconds ?? SERVING_DEFAULTS.startupTimeoutSeconds, 10),
  };
}

/** Whether the model comes from the object store rather than the shared volume. */
export function fromObjectStore(s: ServingSpec): boolean {
  return s.modelBasePath.startsWith("s3://");
}

/** Labels the Deployment selects its pods by (immutable: one server instance). */
export function servingSelector(s: ServingSpec): Record<string, string> {
  return { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": s.instance };
}

/** Labels on every object of the server. */
export function servingLabels(s: ServingSpec): Record<string, string> {
  return { ...PLATFORM_LABELS, ...servingSelector(s), "app.kubernetes.io/component": "serving", "mlplatform.io/model": s.modelName };
}

/** `mlp serve` arguments: TF Serving's flag names, every value explicit. */
export function servingArgs(s: ServingSpec): string[] {
  const args = [
    "serve",
    `--model_name=${s.modelName}`,
    `--model_base_path=${s.modelBasePath}`,
    `--port=${GRPC_PORT}`,
    `--rest_api_port=${REST_PORT}`,
    `--grpc_max_message_bytes=${s.grpcMaxMessageBytes}`,
    `--rest_api_max_body_bytes=${s.restMaxBodyBytes}`,
    `--file_system_poll_wait_seconds=${s.pollSeconds}`,
    `--shutdown_grace_seconds=${s.shutdownGraceSeconds}`,
  ];
  if (s.batching) {
    args.push(
      "--enable_batching",
      `--max_batch_size=${s.batching.maxBatchSize}`,
      `--batch_timeout_micros=${s.batching.batchTimeoutMicros}`,
      `--max_enqueued_requests=${s.batching.maxEnqueuedRequests}`,
    );
  }
  return args;
}

/**
 * Seconds Kubernetes waits between the start of termination and SIGKILL: the preStop
 * pause, the server's drain, the 2 s after which `mlp serve` exits on its own, and a
 * margin of 3 s (so at least the server's grace + 5).
 */
export function terminationGraceSeconds(s: ServingSpec): number {
  return s.preStopSleepSeconds + s.shutdownGraceSeconds + 5;
}

/** The server's pod template (restricted Pod Security, probes, volumes, placement). */
export function modelServingPodTemplate(s: ServingSpec): k8s.types.input.core.v1.PodTemplateSpec {
  const s3 = fromObjectStore(s);
  const limits: Record<string, string> = { ...(s.resources.limits ?? {}) };
  if (s.gpus > 0) limits["nvidia.com/gpu"] = String(s.gpus);
  const env: k8s.types.input.core.v1.EnvVar[] = [];
  // The GPU trainer image selects @tensorflow/tfjs-node-gpu by this variable (trainer/src/serve/tf.ts).
  if (s.gpus > 0) env.push({ name: "MLP_TFJS_BACKEND", value: "gpu" });
  const volumeMounts: k8s.types.input.core.v1.VolumeMount[] = [{ name: "tmp", mountPath: "/tmp" }];
  const volumes: k8s.types.input.core.v1.Volume[] = [{ name: "tmp", emptyDir: { sizeLimit: "256Mi" } }];
  if (!s3) {
    // Serving only reads models; the pipeline writes them.
    volumeMounts.push({ name: "shared", mountPath: SHARED_MOUNT_PATH, readOnly: true });
    volumes.push({ name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM, readOnly: true } });
  }
  const startupPeriod = 5;
  return {
    metadata: {
      labels: servingLabels(s),
      annotations: {
        "prometheus.io/scrape": "true",
        "prometheus.io/scheme": "http",
        "prometheus.io/port": String(REST_PORT),
        "prometheus.io/path": METRICS_PATH,
      },
    },
    spec: {
      securityContext: restrictedPod(SERVING_UID),
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: terminationGraceSeconds(s),
      nodeSelector: s.gpuPlacement ? { ...s.gpuPlacement.nodeSelector } : undefined,
      tolerations: s.gpuPlacement ? s.gpuPlacement.tolerations.map((t) => ({ ...t })) : undefined,
      // Replicas on different nodes, so one node drain or failure takes one replica at most.
      topologySpreadConstraints: [
        { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: servingSelector(s) } },
      ],
      containers: [
        {
          name: "serve",
          image: s.image,
          command: s.command ? [...s.command] : undefined,
          args: servingArgs(s),
          env: env.length > 0 ? env : undefined,
          envFrom: s3 ? [{ secretRef: { name: OBJECT_STORE_SECRET } }] : undefined,
          ports: [
            { name: "grpc", containerPort: GRPC_PORT, protocol: "TCP" },
            { name: "http", containerPort: REST_PORT, protocol: "TCP" },
          ],
          // Ports open only after the first load attempt (see the file comment).
          startupProbe: {
            httpGet: { path: METRICS_PATH, port: "http" },
            periodSeconds: startupPeriod,
            timeoutSeconds: 3,
            failureThreshold: Math.ceil(s.startupTimeoutSeconds / startupPeriod),
          },
          // SERVING only with every model AVAILABLE, NOT_SERVING from the start of a drain.
          readinessProbe: { grpc: { port: GRPC_PORT, service: "" }, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 2 },
          // Answers with or without a model: only a wedged process fails it. Generous, as a
          // large synchronous model run can hold the event loop for a while.
          livenessProbe: { httpGet: { path: METRICS_PATH, port: "http" }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
          lifecycle: s.preStopSleepSeconds > 0 ? { preStop: { sleep: { seconds: s.preStopSleepSeconds } } } : undefined,
          resources: { requests: { ...(s.resources.requests ?? {}) }, limits },
          securityContext: RESTRICTED_CONTAINER,
          volumeMounts,
        },
      ],
      volumes,
    },
  };
}

/** The server's Deployment spec. With an HPA, `replicas` is left to it. */
export function modelServingDeploymentSpec(s: ServingSpec): k8s.types.input.apps.v1.DeploymentSpec {
  return {
    replicas: s.minReplicas === s.maxReplicas ? s.minReplicas : undefined,
    selector: { matchLabels: servingSelector(s) },
    // A new pod must load its model and turn Ready before an old one goes.
    strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
    // Ready is "model AVAILABLE"; a few seconds of it before counting the pod as available.
    minReadySeconds: 5,
    revisionHistoryLimit: 5,
    template: modelServingPodTemplate(s),
  };
}

/** ClusterIP Service: gRPC (HTTP/2 cleartext) on 8500, REST on 8501. */
export function modelServingServiceSpec(s: ServingSpec): k8s.types.input.core.v1.ServiceSpec {
  return {
    type: "ClusterIP",
    selector: servingSelector(s),
    ports: [
      // `kubernetes.io/h2c` is Kubernetes' standard appProtocol for HTTP/2 without TLS,
      // which is what gRPC is here; meshes and Gateway API implementations route it as such.
      { name: "grpc", port: GRPC_PORT, targetPort: "grpc", protocol: "TCP", appProtocol: "kubernetes.io/h2c" },
      { name: "http", port: REST_PORT, targetPort: "http", protocol: "TCP", appProtocol: "http" },
    ],
  };
}

/** HPA on average CPU utilization; `undefined` for a fixed replica count. */
export function modelServingHpaSpec(s: ServingSpec, deploymentName: pulumi.Input<string>): k8s.types.input.autoscaling.v2.HorizontalPodAutoscalerSpec | undefined {
  if (s.minReplicas === s.maxReplicas) return undefined;
  return {
    scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deploymentName },
    minReplicas: s.minReplicas,
    maxReplicas: s.maxReplicas,
    metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: s.targetCpuUtilizationPercent } } }],
    behavior: {
      // A replica takes a model load to come back: give load back slowly.
      scaleDown: { stabilizationWindowSeconds: 300, policies: [{ type: "Pods", value: 1, periodSeconds: 60 }] },
    },
  };
}

/**
 * PDB: at most one replica disrupted at a time (`maxUnavailable: 1`), created only when
 * there can be more than one replica.
 *
 * Why not `minAvailable: 1`: with N replicas it lets a drain take N-1 at once, so a node
 * holding most replicas empties the service's capacity under load; `maxUnavailable: 1`
 * scales with N. With one replica running (the HPA at its floor) it still lets the drain
 * proceed (`minAvailable: 1` or `maxUnavailable: 0` would block it until someone deletes
 * the pod by hand). `AlwaysAllow` lets drains evict pods that are not Ready (a version that
 * fails to load, a crash loop), which would otherwise hold the budget and the drain forever.
 */
export function modelServingPdbSpec(s: ServingSpec): k8s.types.input.policy.v1.PodDisruptionBudgetSpec | undefined {
  if (s.maxReplicas <= 1) return undefined;
  return { maxUnavailable: 1, selector: { matchLabels: servingSelector(s) }, unhealthyPodEvictionPolicy: "AlwaysAllow" };
}

/** In-cluster gRPC endpoint (`host:port`) of a Service. */
export function grpcEndpoint(service: string, namespace: string): string {
  return `${service}.${namespace}.svc.cluster.local:${GRPC_PORT}`;
}

/** In-cluster REST base URL of a Service. */
export function restUrl(service: string, namespace: string): string {
  return `http://${service}.${namespace}.svc.cluster.local:${REST_PORT}`;
}

export class ModelServing extends pulumi.ComponentResource {
  /** In-cluster gRPC endpoint, `<svc>.<ns>.svc.cluster.local:8500`. */
  readonly grpcEndpoint: pulumi.Output<string>;
  /** In-cluster REST base URL, `http://<svc>.<ns>.svc.cluster.local:8501`. */
  readonly restUrl: pulumi.Output<string>;
  /** Name of the Service. */
  readonly serviceName: pulumi.Output<string>;
  /** The model name clients use. */
  readonly modelName: string;

  constructor(name: string, args: ModelServingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:serving:ModelServing", name, {}, opts);
    let s: ServingSpec;
    try {
      s = resolveServingSpec(name, args);
    } catch (e) {
      throw new pulumi.ResourceError((e as Error).message, this);
    }
    this.modelName = s.modelName;
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const labels = servingLabels(s);
    const annotations = awaitAnnotations(args.skipAwait ?? false);
    const metadata = { namespace: args.namespace, labels, annotations };

    const deployment = new k8s.apps.v1.Deployment(`${name}-server`, { metadata, spec: modelServingDeploymentSpec(s) }, k8sOpts);
    const service = new k8s.core.v1.Service(
      `${name}-service`,
      // Named: the name is in the endpoints handed to clients (a contract).
      { metadata: { ...metadata, name: s.serviceName }, spec: modelServingServiceSpec(s) },
      k8sOpts,
    );
    const hpa = modelServingHpaSpec(s, deployment.metadata.name);
    if (hpa) new k8s.autoscaling.v2.HorizontalPodAutoscaler(`${name}-hpa`, { metadata, spec: hpa }, k8sOpts);
    const pdb = modelServingPdbSpec(s);
    if (pdb) new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, { metadata, spec: pdb }, k8sOpts);

    this.serviceName = service.metadata.name;
    this.grpcEndpoint = pulumi.all([service.metadata.name, service.metadata.namespace]).apply(([svc, ns]) => grpcEndpoint(svc, ns));
    this.restUrl = pulumi.all([service.metadata.name, service.metadata.namespace]).apply(([svc, ns]) => restUrl(svc, ns));
    this.registerOutputs({ grpcEndpoint: this.grpcEndpoint, restUrl: this.restUrl, serviceName: this.serviceName, modelName: this.modelName });
  }
}
