/**
 * A model server: the trainer image running `mlp serve` (TensorFlow-Serving-compatible gRPC
 * on 8500 and REST on 8501) for one or more models, behind a ClusterIP Service, scaled by a
 * HorizontalPodAutoscaler and protected during node drains by a PodDisruptionBudget.
 *
 * The models are listed in TF Serving's own `--model_config_file` text format (name, base
 * path, version policy, version labels), held in a ConfigMap mounted into the pod; the
 * server re-reads it every `pollSeconds`, so changing a policy or a label is a ConfigMap
 * update, not a rollout. Model versions (tfjs models or TensorFlow SavedModels) come from
 * the shared volume (`/mnt/shared/...`, mounted read-only) or from the object store
 * (`s3://bucket/prefix`, credentials from the object store's Secret); the server hot-loads
 * new versions as the pipelines publish them.
 *
 * Probes follow what the server reports (trainer/src/serve):
 *  - the server loads the versions it finds *before* it binds its ports, so the
 *    startupProbe (any HTTP answer on 8501) gives a slow load `startupTimeoutSeconds`;
 *  - readiness is the gRPC health check (`grpc.health.v1`, service ""), which is SERVING
 *    only while every configured model has an AVAILABLE version (a model with nothing
 *    published yet, e.g. `images` before its first retrain, does not count against it) and
 *    the server is not draining. `GET /v1/models/<name>` would be wrong: it answers 200 while a version is
 *    still LOADING or after it failed (END), and 404 before storage was first listed;
 *  - liveness is the metrics page, which answers without a model, so a pod waiting for
 *    the pipeline's first version is kept (NotReady) rather than restarted in a loop.
 *
 * Autoscaling: CPU servers scale on CPU utilization. GPU servers do not: their CPU is
 * mostly idle while the GPU is saturated, so they scale on the server's in-flight requests
 * per pod (`mlp_serving_inflight_requests`, a Pods metric), which needs a custom-metrics
 * adapter (e.g. prometheus-adapter) serving that metric; without one the HPA keeps the
 * replica count it has.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { dnsLabel, type Placement } from "./cluster";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { PLATFORM_LABELS, awaitAnnotations } from "./namespaces";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { SERVING_DEFAULTS } from "./servingDefaults";

export { SERVING_DEFAULTS };

/** gRPC port of `mlp serve` (TF Serving's `--port`). */
export const GRPC_PORT = 8500;
/** REST port of `mlp serve` (TF Serving's `--rest_api_port`). */
export const REST_PORT = 8501;
/** Where the server exposes Prometheus metrics. */
export const METRICS_PATH = "/monitoring/prometheus/metrics";
/** The user our containers run as (the trainer image's `node` user). */
export const SERVING_UID = 1000;
/** Where the model config file is mounted in the server's container. */
export const MODEL_CONFIG_DIR = "/etc/mlp-serving";
export const MODEL_CONFIG_FILE = `${MODEL_CONFIG_DIR}/models.config`;
/** The per-pod metric GPU servers scale on (exported by `mlp serve`). */
export const INFLIGHT_METRIC = "mlp_serving_inflight_requests";

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

/** One model the server serves (one `config { ... }` of TF Serving's model config). */
export interface ServedModel {
  /** The name clients use (`ModelSpec.name`, `/v1/models/<name>`): letters, digits, `_`, `.`, `-`. */
  readonly name: string;
  /**
   * Where the model's version directories are: a path on the shared volume (under
   * `/mnt/shared`) or `s3://bucket/prefix`. Default `/mnt/shared/models/<name>`.
   */
  readonly basePath?: string;
  /** Which versions to serve: `latest:N`, `all` or `specific:V1,V2,...`. Default `latest:1`. */
  readonly versionPolicy?: string;
  /** Version labels clients may ask for instead of a number, e.g. `{ stable: 3, canary: 4 }`. Default none. */
  readonly versionLabels?: Readonly<Record<string, number>>;
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
  /** The models to serve, each with its base path, version policy and labels. Give this or `modelName`. */
  readonly models?: readonly ServedModel[];
  /** @deprecated One model by name: use `models: [{ name }]`. Cannot be combined with `models`. */
  readonly modelName?: string;
  /** @deprecated The base path of `modelName`'s model: use `models: [{ name, basePath }]`. */
  readonly modelBasePath?: string;
  /**
   * Name of the Service, and so of the endpoints clients are given. Default
   * `model-server`, or the model name as a DNS label with the deprecated `modelName`.
   */
  readonly serviceName?: string;
  /** Fewest replicas (the HPA's floor). Default 1. */
  readonly minReplicas?: number;
  /** Most replicas (the HPA's ceiling); equal to `minReplicas` means a fixed count and no HPA. Default 3. */
  readonly maxReplicas?: number;
  /** Average CPU utilization (% of the request) the HPA aims for (CPU servers). Default 70. */
  readonly targetCpuUtilizationPercent?: number;
  /** Average in-flight requests per pod the HPA aims for (GPU servers, see the file comment). Default 8. */
  readonly targetInflightRequestsPerReplica?: number;
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
  /**
   * How often storage is checked for new versions and the model config file for changes,
   * seconds (`--file_system_poll_wait_seconds`, `--model_config_file_poll_wait_seconds`). Default 10.
   */
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
/** A {@link ServedModel} with its defaults applied. */
export interface ResolvedModel {
  readonly name: string;
  readonly basePath: string;
  readonly versionPolicy: string;
  readonly versionLabels: Readonly<Record<string, number>>;
}

export interface ServingSpec {
  readonly instance: string;
  readonly image: pulumi.Input<string>;
  readonly command?: readonly string[];
  readonly models: readonly ResolvedModel[];
  readonly serviceName: string;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly targetCpuUtilizationPercent: number;
  readonly targetInflightRequestsPerReplica: number;
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

const POLICY = /^(latest(:[1-9][0-9]*)?|all|specific:[1-9][0-9]*(,[1-9][0-9]*)*)$/;
const LABEL = /^[A-Za-z0-9_.-]+$/;

/** Validates one model; `legacy` words errors for the deprecated `modelName`/`modelBasePath`. */
function resolveModel(where: string, m: ServedModel, legacy: boolean): ResolvedModel {
  const key = (k: string): string => (legacy ? (k === "name" ? "modelName" : k === "basePath" ? "modelBasePath" : k) : `${where}.${k}`);
  if (typeof m.name !== "string" || !MODEL_NAME.test(m.name)) {
    throw new Error(`\`${key("name")}\` must be 1-63 letters, digits, '_', '.' or '-', starting and ending alphanumeric; got ${JSON.stringify(m.name)}`);
  }
  const basePath = m.basePath ?? `${SHARED_MOUNT_PATH}/models/${m.name}`;
  if (basePath.startsWith("s3://")) {
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(basePath)) {
      throw new Error(`\`${key("basePath")}\` must be s3://bucket/prefix with a valid bucket name; got ${JSON.stringify(basePath)}`);
    }
  } else if (!basePath.startsWith(`${SHARED_MOUNT_PATH}/`) || basePath.split("/").includes("..") || /["\\\n]/.test(basePath)) {
    throw new Error(`\`${key("basePath")}\` must be a path on the shared volume (under ${SHARED_MOUNT_PATH}/) or s3://bucket/prefix; got ${JSON.stringify(basePath)}`);
  }
  const versionPolicy = m.versionPolicy ?? SERVING_DEFAULTS.versionPolicy;
  if (!POLICY.test(versionPolicy)) {
    throw new Error(`\`${key("versionPolicy")}\` must be latest:N, all or specific:V1,V2,... (N, V ≥ 1); got ${JSON.stringify(versionPolicy)}`);
  }
  const versionLabels = { ...(m.versionLabels ?? {}) };
  for (const [label, v] of Object.entries(versionLabels)) {
    if (!LABEL.test(label)) throw new Error(`\`${key("versionLabels")}\` label ${JSON.stringify(label)} must be letters, digits, '_', '.' or '-'`);
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`\`${key("versionLabels")}.${label}\` must be a version ≥ 1; got ${JSON.stringify(v)}`);
  }
  return { name: m.name, basePath, versionPolicy, versionLabels };
}

/**
 * Validates the options and applies the defaults. `instance` is the component's name
 * (it tells two servers of the same model apart in labels). Throws naming the option,
 * the bad value and the fix.
 */
export function resolveServingSpec(instance: string, o: ServingOptions): ServingSpec {
  if (o.models !== undefined && (o.modelName !== undefined || o.modelBasePath !== undefined)) {
    throw new Error("`models` and the deprecated `modelName`/`modelBasePath` cannot both be given; move the model into `models: [{ name, basePath }]`");
  }
  const list: readonly ServedModel[] = o.models ?? (o.modelName !== undefined ? [{ name: o.modelName, basePath: o.modelBasePath }] : []);
  if (list.length === 0) throw new Error('`models` must list at least one model, e.g. [{ name: "mnist" }]');
  const seen = new Set<string>();
  const models = list.map((m, i) => resolveModel(`models[${i}]`, m, o.models === undefined));
  for (const m of models) {
    if (seen.has(m.name)) throw new Error(`\`models\` names "${m.name}" twice; each model needs its own name`);
    seen.add(m.name);
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
    models,
    serviceName: dnsLabel(o.serviceName ?? (o.models === undefined ? models[0]!.name : SERVING_DEFAULTS.serviceName)),
    minReplicas,
    maxReplicas,
    targetCpuUtilizationPercent: int("targetCpuUtilizationPercent", o.targetCpuUtilizationPercent ?? SERVING_DEFAULTS.targetCpuUtilizationPercent, 1, 100),
    targetInflightRequestsPerReplica: int("targetInflightRequestsPerReplica", o.targetInflightRequestsPerReplica ?? SERVING_DEFAULTS.targetInflightRequestsPerReplica, 1, 10_000),
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

/** Whether any model comes from the object store (the pod then gets its credentials). */
export function fromObjectStore(s: ServingSpec): boolean {
  return s.models.some((m) => m.basePath.startsWith("s3://"));
}

/** Whether any model comes from the shared volume (the pod then mounts it). */
export function fromSharedVolume(s: ServingSpec): boolean {
  return s.models.some((m) => !m.basePath.startsWith("s3://"));
}

/** The models in TF Serving's `--model_config_file` text format (ModelServerConfig). */
export function modelServerConfigText(s: ServingSpec): string {
  const q = (v: string): string => JSON.stringify(v);
  const policy = (p: string): string => {
    const [kind, rest] = p.split(":");
    if (kind === "all") return "all {}";
    if (kind === "latest") return `latest { num_versions: ${rest ?? 1} }`;
    return `specific { ${rest!
      .split(",")
      .map((v) => `versions: ${v}`)
      .join(" ")} }`;
  };
  const configs = s.models.map((m) =>
    [
      "  config {",
      `    name: ${q(m.name)}`,
      `    base_path: ${q(m.basePath)}`,
      `    model_platform: "tensorflow"`,
      `    model_version_policy { ${policy(m.versionPolicy)} }`,
      ...Object.entries(m.versionLabels).map(([k, v]) => `    version_labels { key: ${q(k)} value: ${v} }`),
      "  }",
    ].join("\n"),
  );
  return `# Written by the mlplatform ModelServing component; read by \`mlp serve --model_config_file\`.\nmodel_config_list {\n${configs.join("\n")}\n}\n`;
}

/** Labels the Deployment selects its pods by (immutable: one server instance). */
export function servingSelector(s: ServingSpec): Record<string, string> {
  return { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": s.instance };
}

/** Labels on every object of the server. */
export function servingLabels(s: ServingSpec): Record<string, string> {
  const labels: Record<string, string> = { ...PLATFORM_LABELS, ...servingSelector(s), "app.kubernetes.io/component": "serving" };
  // One model: its name (label values cannot list several).
  if (s.models.length === 1) labels["mlplatform.io/model"] = s.models[0]!.name;
  return labels;
}

/** `mlp serve` arguments: TF Serving's flag names, every value explicit. */
export function servingArgs(s: ServingSpec): string[] {
  const args = [
    "serve",
    `--model_config_file=${MODEL_CONFIG_FILE}`,
    `--model_config_file_poll_wait_seconds=${s.pollSeconds}`,
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

/**
 * The server's pod template (restricted Pod Security, probes, volumes, placement).
 * `configMapName` is the ConfigMap holding {@link modelServerConfigText} as `models.config`.
 */
export function modelServingPodTemplate(s: ServingSpec, configMapName: pulumi.Input<string>): k8s.types.input.core.v1.PodTemplateSpec {
  const s3 = fromObjectStore(s);
  const limits: Record<string, string> = { ...(s.resources.limits ?? {}) };
  if (s.gpus > 0) limits["nvidia.com/gpu"] = String(s.gpus);
  const env: k8s.types.input.core.v1.EnvVar[] = [];
  // The GPU trainer image selects @tensorflow/tfjs-node-gpu by this variable (trainer/src/serve/tf.ts).
  if (s.gpus > 0) env.push({ name: "MLP_TFJS_BACKEND", value: "gpu" });
  const volumeMounts: k8s.types.input.core.v1.VolumeMount[] = [
    { name: "tmp", mountPath: "/tmp" },
    // A directory mount (not subPath), so ConfigMap updates reach the running server.
    { name: "model-config", mountPath: MODEL_CONFIG_DIR, readOnly: true },
  ];
  const volumes: k8s.types.input.core.v1.Volume[] = [
    // SavedModels from s3:// are copied here while the runtime loads them.
    { name: "tmp", emptyDir: { sizeLimit: "256Mi" } },
    { name: "model-config", configMap: { name: configMapName, items: [{ key: "models.config", path: "models.config" }] } },
  ];
  if (fromSharedVolume(s)) {
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
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: servingSelector(s) } }],
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
export function modelServingDeploymentSpec(s: ServingSpec, configMapName: pulumi.Input<string>): k8s.types.input.apps.v1.DeploymentSpec {
  return {
    replicas: s.minReplicas === s.maxReplicas ? s.minReplicas : undefined,
    selector: { matchLabels: servingSelector(s) },
    // A new pod must load its model and turn Ready before an old one goes.
    strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
    // Ready is "model AVAILABLE"; a few seconds of it before counting the pod as available.
    minReadySeconds: 5,
    revisionHistoryLimit: 5,
    template: modelServingPodTemplate(s, configMapName),
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

/**
 * The HPA; `undefined` for a fixed replica count. CPU servers: average CPU utilization.
 * GPU servers: in-flight requests per pod only — with CPU among the metrics the HPA would
 * scale on whichever asks for more replicas, so CPU alone could still scale them.
 */
export function modelServingHpaSpec(s: ServingSpec, deploymentName: pulumi.Input<string>): k8s.types.input.autoscaling.v2.HorizontalPodAutoscalerSpec | undefined {
  if (s.minReplicas === s.maxReplicas) return undefined;
  const metrics: k8s.types.input.autoscaling.v2.MetricSpec[] =
    s.gpus > 0
      ? [{ type: "Pods", pods: { metric: { name: INFLIGHT_METRIC }, target: { type: "AverageValue", averageValue: String(s.targetInflightRequestsPerReplica) } } }]
      : [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: s.targetCpuUtilizationPercent } } }];
  return {
    scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deploymentName },
    minReplicas: s.minReplicas,
    maxReplicas: s.maxReplicas,
    metrics,
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
  /** The model names clients use. */
  readonly modelNames: readonly string[];

  constructor(name: string, args: ModelServingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:serving:ModelServing", name, {}, opts);
    let s: ServingSpec;
    try {
      s = resolveServingSpec(name, args);
    } catch (e) {
      throw new pulumi.ResourceError((e as Error).message, this);
    }
    this.modelNames = s.models.map((m) => m.name);
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const labels = servingLabels(s);
    const annotations = awaitAnnotations(args.skipAwait ?? false);
    const metadata = { namespace: args.namespace, labels, annotations };

    const config = new k8s.core.v1.ConfigMap(`${name}-models`, { metadata, data: { "models.config": modelServerConfigText(s) } }, k8sOpts);
    const deployment = new k8s.apps.v1.Deployment(`${name}-server`, { metadata, spec: modelServingDeploymentSpec(s, config.metadata.name) }, k8sOpts);
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
    this.registerOutputs({ grpcEndpoint: this.grpcEndpoint, restUrl: this.restUrl, serviceName: this.serviceName, modelNames: this.modelNames });
  }
}
