/**
 * All of the program's configuration: one schema, parsed once, frozen.
 *
 * Every key lives in the `mlplatform` namespace and is documented in `Pulumi.yaml`. A bad
 * value stops the program before any resource is registered, with a message that names the
 * key, the value it got and what is allowed.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { SERVING_DEFAULTS } from "./components/servingDefaults";

/** Config namespace: keys are `mlplatform:<key>`. */
export const CONFIG_NAMESPACE = "mlplatform";

// DNS-1123 label: what Kubernetes accepts as a namespace name.
const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "must be a DNS-1123 label (lowercase letters, digits and '-', at most 63)");

const count = z.number().int().min(0);

const toleration = z
  .object({
    key: z.string().min(1),
    operator: z.enum(["Equal", "Exists"]).default("Equal"),
    value: z.string().optional(),
    effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
  })
  .strict();

const spot = z
  .object({
    /** Run the GPU pool on spot/preemptible capacity (evictions are survived by checkpoints). */
    enabled: z.boolean().default(false),
    /** AKS only: highest price per hour in USD; -1 pays up to the on-demand price. */
    maxPrice: z
      .number()
      .refine((v) => v === -1 || v > 0, "must be -1 (on-demand cap) or a positive price")
      .default(-1),
  })
  .strict()
  .prefault({});

function checkPoolBounds(pool: { minCount: number; maxCount: number }, ctx: z.RefinementCtx): void {
  if (pool.maxCount < pool.minCount) {
    ctx.addIssue({
      code: "custom",
      path: ["maxCount"],
      message: `must be ≥ minCount (${pool.minCount})`,
      input: pool.maxCount,
    });
  }
  if (pool.maxCount === 0) {
    ctx.addIssue({ code: "custom", path: ["maxCount"], message: "must be ≥ 1 so the pool can scale up", input: 0 });
  }
}

const aksCluster = z
  .object({
    provider: z.literal("aks"),
    /** Azure region, e.g. `westeurope`. */
    location: z.string().min(1),
    /** Resource group to create; default `<project>-<stack>`. */
    resourceGroupName: z.string().min(1).optional(),
    /** Kubernetes version; default the region's default. */
    kubernetesVersion: z
      .string()
      .regex(/^\d+\.\d+(\.\d+)?$/, "must look like 1.33 or 1.33.2")
      // README "Prerequisites": the model server's preStop hook is a sleep action.
      .refine((v) => !/^\d+\.\d+/.test(v) || Number(v.split(".")[0]) > 1 || Number(v.split(".")[1]) >= 30, "must be 1.30 or later (the model server's preStop sleep action)")
      .optional(),
    /** Control-plane tier: `Standard` has an uptime SLA; `Free` is for experiments. */
    skuTier: z.enum(["Free", "Standard"]).default("Standard"),
    systemPool: z
      .object({
        vmSize: z.string().min(1).default("Standard_D4s_v5"),
        minCount: z.number().int().min(1).default(1),
        maxCount: z.number().int().min(1).default(3),
      })
      .strict()
      .superRefine(checkPoolBounds)
      .prefault({}),
    gpuPool: z
      .object({
        /** NC/ND-series VM size. */
        vmSize: z
          .string()
          .regex(/^Standard_N[CDV]/, "must be an NC, ND or NV series size such as Standard_NC4as_T4_v3")
          .default("Standard_NC4as_T4_v3"),
        minCount: count.default(0),
        maxCount: count.default(4),
        osDiskSizeGB: z.number().int().min(30).default(128),
        spot,
      })
      .strict()
      .superRefine(checkPoolBounds)
      .prefault({}),
    /** Network policy engine; all three enforce Kubernetes NetworkPolicy. */
    networkPolicy: z.enum(["azure", "calico", "cilium"]).default("azure"),
    /** Address space of the cluster VNet; node and virtual-node subnets are carved from it. */
    vnetCidr: z
      .string()
      .regex(/^\d+\.\d+\.\d+\.\d+\/(8|9|10|11|12|13|14|15|16)$/, "must be an IPv4 CIDR of /8 to /16")
      .default("10.224.0.0/12"),
    /** Azure Container Registry SKU. */
    acrSku: z.enum(["Basic", "Standard", "Premium"]).default("Standard"),
  })
  .strict();

const gkeCluster = z
  .object({
    provider: z.literal("gke"),
    /** Google Cloud project id. */
    project: z.string().regex(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/, "must be a Google Cloud project id"),
    /** Region (regional cluster) or zone (zonal cluster), e.g. `europe-west4`. */
    location: z.string().min(1),
    releaseChannel: z.enum(["RAPID", "REGULAR", "STABLE"]).default("REGULAR"),
    /** Keep `true` in production: a `pulumi destroy` then cannot delete the cluster by accident. */
    deletionProtection: z.boolean().default(true),
    systemPool: z
      .object({
        machineType: z.string().min(1).default("e2-standard-4"),
        minCount: z.number().int().min(1).default(1),
        maxCount: z.number().int().min(1).default(3),
      })
      .strict()
      .superRefine(checkPoolBounds)
      .prefault({}),
    gpuPool: z
      .object({
        machineType: z.string().min(1).default("n1-standard-8"),
        acceleratorType: z
          .string()
          .regex(/^nvidia-/, "must be a GKE accelerator type such as nvidia-tesla-t4 or nvidia-l4")
          .default("nvidia-tesla-t4"),
        acceleratorCount: z.number().int().min(1).max(16).default(1),
        /** Which driver GKE installs on GPU nodes. */
        driverVersion: z.enum(["DEFAULT", "LATEST"]).default("LATEST"),
        minCount: count.default(0),
        maxCount: count.default(4),
        /** Zones for the GPU pool (GPU types are not offered in every zone); default the cluster's. */
        nodeLocations: z.array(z.string().min(1)).optional(),
        spot,
      })
      .strict()
      .superRefine(checkPoolBounds)
      .prefault({}),
    /** Artifact Registry location; default the cluster's region. */
    registryLocation: z.string().min(1).optional(),
  })
  .strict();

const existingCluster = z
  .object({
    provider: z.literal("existing"),
    /** Name reported in outputs; default the context name, else `existing`. */
    name: dnsLabel.optional(),
    /** Path to a kubeconfig; default `$KUBECONFIG`, else `~/.kube/config`. Ignored with `inCluster`. */
    kubeconfig: z.string().min(1).optional(),
    /** Context in the kubeconfig; default its current context. */
    context: z.string().min(1).optional(),
    /** Use the pod's service-account credentials (the program runs inside the cluster). */
    inCluster: z.boolean().default(false),
    /** `none` for CPU-only clusters (kind, minikube, k3d on a laptop); `nvidia` when GPU nodes exist. */
    gpu: z.enum(["none", "nvidia"]).default("none"),
    /** Labels GPU workloads select; default `nvidia.com/gpu.present: "true"` when gpu is `nvidia`. */
    gpuNodeSelector: z.record(z.string(), z.string()).optional(),
    /** Tolerations GPU workloads carry; default the `nvidia.com/gpu` taint. */
    gpuTolerations: z.array(toleration).optional(),
    /** Registry our images are pushed to and pulled from, e.g. `localhost:5001` for kind. */
    registry: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.inCluster && (c.kubeconfig !== undefined || c.context !== undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["inCluster"],
        message: "cannot be combined with kubeconfig or context (in-cluster credentials come from the pod)",
        input: c.inCluster,
      });
    }
  });

const clusterSchema = z.discriminatedUnion("provider", [aksCluster, gkeCluster, existingCluster]);

const devicePluginSchema = z
  .object({
    /** `auto`: install where the cloud does not manage it (AKS; existing clusters with gpu `nvidia`). */
    install: z.enum(["auto", "always", "never"]).default("auto"),
    /** Helm repository to pull the chart from; override for mirrors. Default in components/versions.ts. */
    repository: z.string().min(1).optional(),
    /** Chart version; default pinned in components/versions.ts. */
    version: z.string().min(1).optional(),
  })
  .strict();

const burstSchema = z
  .object({
    /** AKS only: virtual nodes (ACI connector) for CPU sweep trials. */
    enabled: z.boolean().default(false),
    /** Address prefix of the virtual-node subnet; must lie inside `cluster.vnetCidr`. */
    subnetCidr: z
      .string()
      .regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/, "must be an IPv4 CIDR")
      .default("10.239.0.0/16"),
  })
  .strict();

const namespacesSchema = z
  .object({
    /** Shared platform services: object store, TensorBoard. */
    platform: dnsLabel.default("mlplatform"),
    /** Training pipelines, TFJobs and sweep trials. */
    pipelines: dnsLabel.default("ml-pipelines"),
    /** Model servers. */
    serving: dnsLabel.default("ml-serving"),
    /** JupyterHub and user notebooks. */
    notebooks: dnsLabel.default("ml-notebooks"),
  })
  .strict()
  .superRefine((ns, ctx) => {
    const seen = new Map<string, string>();
    for (const [role, name] of Object.entries(ns)) {
      const other = seen.get(name);
      if (other) ctx.addIssue({ code: "custom", path: [role], message: `must differ from namespaces.${other}`, input: name });
      seen.set(name, role);
    }
  });

const kubernetesSchema = z
  .object({
    /**
     * Do not wait for workloads to become ready. Only for API servers that have no nodes
     * (the offline integration tests); a real cluster should always be awaited.
     */
    skipAwait: z.boolean().default(false),
  })
  .strict();

// Kubernetes quantity in binary units, as storage sizes are given.
const quantity = z.string().regex(/^[1-9]\d*(Mi|Gi|Ti)$/, "must be a size such as 512Mi, 100Gi or 1Ti");
// CPU as Kubernetes writes it: whole cores, millicores or a decimal.
const cpuQuantity = z.string().regex(/^([1-9]\d*|[1-9]\d*m|\d+\.\d+)$/, "must be a CPU quantity such as 8, 500m or 2.5");
/** What a container requests of its node (the scheduler's currency): `{ cpu: "500m", memory: "1Gi" }`. */
const requestsSchema = z.object({ cpu: cpuQuantity, memory: quantity }).strict();

// An image reference pinned by tag or digest; `latest` is never pinned.
const image = z
  .string()
  .regex(/^[a-z0-9][\w./:-]*(:[\w][\w.-]{0,127}|@sha256:[a-f0-9]{64})$/, "must name a tag or digest (registry/repo:tag)")
  .refine((s) => !/:latest$/.test(s), "must not use the latest tag (pin a version)");

const bucket = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')");

const objectStoreSchema = z
  .object({
    /** `minio`: a MinIO server in the cluster. `external`: any S3-compatible endpoint. */
    mode: z.enum(["minio", "external"]).default("minio"),
    /** MinIO image; default pinned in components/versions.ts. */
    image: image.optional(),
    /** MinIO client image for the bucket Job; default pinned in components/versions.ts. */
    clientImage: image.optional(),
    /** MinIO volume size. */
    storageSize: quantity.default("50Gi"),
    /** StorageClass of the MinIO volume; default the cluster's default class. */
    storageClassName: z.string().min(1).optional(),
    buckets: z
      .object({ data: bucket.default("data"), models: bucket.default("models"), logs: bucket.default("logs") })
      .strict()
      .prefault({}),
    /** external only: the S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com. */
    endpoint: z.string().url().optional(),
    /** Region reported to S3 clients. */
    region: z.string().min(1).default("us-east-1"),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.mode === "external" && !o.endpoint) {
      ctx.addIssue({ code: "custom", path: ["endpoint"], message: "is required with mode external", input: undefined });
    }
    if (o.mode === "minio" && o.endpoint) {
      ctx.addIssue({ code: "custom", path: ["endpoint"], message: "only applies to mode external (MinIO's endpoint is in-cluster)", input: o.endpoint });
    }
    const names = Object.values(o.buckets);
    if (new Set(names).size !== names.length) {
      ctx.addIssue({ code: "custom", path: ["buckets"], message: "must name three different buckets", input: o.buckets });
    }
  });

const sharedStorageSchema = z
  .object({
    /**
     * `auto`: Azure Files on AKS, Filestore on GKE, an in-cluster NFS server elsewhere.
     * `externalNfs`: an NFS export you already have (`server`, `path`).
     */
    backend: z.enum(["auto", "azureFiles", "filestore", "nfs", "externalNfs", "hostPath"]).default("auto"),
    /**
     * hostPath backend (existing single-node clusters only, e.g. the local real node): the
     * node directory every namespace's volume points at. It must exist and be writable by
     * uid 1000 (our workloads' user). Data lives only on that one node.
     */
    hostPath: z.string().startsWith("/").optional(),
    /** Capacity; default 1Ti with Filestore (its smallest instance), else 100Gi. */
    size: quantity.optional(),
    /** nfs backend: StorageClass of the server's own disk; default the cluster's default class. */
    storageClassName: z.string().min(1).optional(),
    /** nfs backend: NFS server image; default pinned in components/versions.ts. */
    nfsImage: image.optional(),
    /** azureFiles: storage redundancy and tier. */
    azureFilesSku: z.enum(["Standard_LRS", "Standard_ZRS", "Premium_LRS", "Premium_ZRS"]).default("Standard_LRS"),
    /** filestore: service tier. */
    filestoreTier: z.enum(["BASIC_HDD", "BASIC_SSD", "ZONAL", "REGIONAL"]).default("BASIC_HDD"),
    /** filestore: zone (BASIC tiers) or region; default the cluster's zone, or zone `-a` of its region. */
    filestoreLocation: z.string().min(1).optional(),
    /** filestore: VPC network the cluster uses. */
    filestoreNetwork: z.string().min(1).default("default"),
    /** externalNfs: server address. */
    server: z.string().min(1).optional(),
    /** externalNfs: exported path. */
    path: z.string().startsWith("/").optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.backend === "externalNfs") {
      for (const k of ["server", "path"] as const) {
        if (!s[k]) ctx.addIssue({ code: "custom", path: [k], message: "is required with backend externalNfs", input: undefined });
      }
    }
    if (s.backend === "hostPath" && !s.hostPath) {
      ctx.addIssue({ code: "custom", path: ["hostPath"], message: "is required with backend hostPath (a node directory writable by uid 1000)", input: undefined });
    }
  });

const hostname = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a DNS host name");

const jupyterhubFields = z
  .object({
    enabled: z.boolean().default(true),
    repository: z.string().min(1).optional(),
    version: z.string().min(1).optional(),
    /** A local chart archive or directory instead of the Helm repository; repository and version are then ignored. */
    chart: z.string().min(1).optional(),
    /** `github` (OAuth) everywhere; `dummy` (any name, no password) only in the dev stack. */
    authenticator: z.enum(["github", "dummy"]).default("github"),
    github: z
      .object({
        clientId: z.string().min(1),
        /** Public URL of the hub's OAuth callback, e.g. https://hub.example.com/hub/oauth_callback. */
        callbackUrl: z.string().url(),
        allowedOrganizations: z.array(z.string().min(1)).default([]),
        allowedUsers: z.array(z.string().min(1)).default([]),
        adminUsers: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .optional(),
    /** Seconds of inactivity after which a notebook server is stopped. */
    idleTimeoutSeconds: z.number().int().min(300).default(3600),
    /** Each user's home volume (a PVC per user), or `none` (home lives and dies with the pod; /mnt/shared stays). */
    homeStorage: z.union([z.literal("none"), z.object({ capacity: quantity.default("10Gi"), storageClass: z.string().min(1).optional() }).strict()]).prefault({}),
    cpuImage: image.optional(),
    gpuImage: image.optional(),
  })
  .strict();

const kubeflowSchema = z
  .object({
    trainingOperator: z
      .object({
        enabled: z.boolean().default(true),
        /** Kustomize directory (local path or remote URL); default the pinned upstream release. */
        source: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    argo: z
      .object({
        enabled: z.boolean().default(true),
        repository: z.string().min(1).optional(),
        version: z.string().min(1).optional(),
        /** A local chart archive or directory instead of the Helm repository (air-gapped installs, offline tests); repository and version are then ignored. */
        chart: z.string().min(1).optional(),
        /** `client`: callers bring a Kubernetes token; `sso`: OIDC login. Never `server`. */
        authMode: z.enum(["client", "sso"]).default("client"),
        /** Install the CRDs with the chart (its hook downloads them); false when you install them yourself. */
        installCrds: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    jupyterhub: jupyterhubFields
      .superRefine((j, ctx) => {
        if (j.enabled && j.authenticator === "github") {
          if (!j.github) {
            ctx.addIssue({
              code: "custom",
              path: ["github"],
              message: "is required with authenticator github ({ clientId, callbackUrl, allowedOrganizations or allowedUsers })",
              input: undefined,
            });
          } else if (j.github.allowedOrganizations.length === 0 && j.github.allowedUsers.length === 0) {
            ctx.addIssue({
              code: "custom",
              path: ["github", "allowedOrganizations"],
              message: "or allowedUsers must name someone: without an allow list every GitHub user could log in",
              input: [],
            });
          }
        }
      })
      // Not prefault, which would run the allow-list rule above on a hub left out of the config
      // and so refuse every config that does not mention it: such a hub gets its fields'
      // defaults unchecked, as before (a default is not parsed).
      .default(() => jupyterhubFields.parse({})),
    tensorboard: z
      .object({
        enabled: z.boolean().default(true),
        image: image.optional(),
        /** Log directory, relative to the shared volume (or an s3:// URL). */
        logDir: z.string().min(1).default("logs"),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const ingressSchema = z
  .object({
    /** IngressClass; default the cluster's default class. */
    className: z.string().min(1).optional(),
    /** Namespace of the ingress controller: NetworkPolicies let only it reach the UIs. */
    controllerNamespace: dnsLabel.default("ingress-nginx"),
    /** cert-manager ClusterIssuer that signs the TLS certificates; without it, bring `tlsSecretName`s. */
    clusterIssuer: z.string().min(1).optional(),
    jupyterhub: z
      .object({ host: hostname, tlsSecretName: z.string().min(1).optional() })
      .strict()
      .optional(),
    argo: z
      .object({ host: hostname, tlsSecretName: z.string().min(1).optional() })
      .strict()
      .optional(),
    tensorboard: z
      .object({
        host: hostname,
        tlsSecretName: z.string().min(1).optional(),
        /** TensorBoard has no login: an external auth URL (e.g. oauth2-proxy) the ingress checks first. Required. */
        authUrl: z.string().url(),
        authSignIn: z.string().url().optional(),
      })
      .strict()
      .optional(),
    /** Grafana (observability.mode kube-prometheus-stack); it has its own login (generated admin credentials). */
    grafana: z
      .object({ host: hostname, tlsSecretName: z.string().min(1).optional() })
      .strict()
      .optional(),
    /** Prometheus (observability.mode kube-prometheus-stack) has no login: authUrl is required, as for TensorBoard. */
    prometheus: z
      .object({ host: hostname, tlsSecretName: z.string().min(1).optional(), authUrl: z.string().url(), authSignIn: z.string().url().optional() })
      .strict()
      .optional(),
  })
  .strict();

const trainerImageSchema = z
  .object({
    /** Build `trainer/` and push it to the cluster's registry; default true on AKS/GKE, false elsewhere. */
    build: z.boolean().optional(),
    /** Prebuilt image reference (required when not building). */
    image: image.optional(),
    /** `gpu` (CUDA base, tfjs-node-gpu) or `cpu`; default gpu when the cluster has GPUs. */
    variant: z.enum(["gpu", "cpu"]).optional(),
  })
  .strict();

/** One model the server serves: TF Serving's `config { name base_path model_version_policy version_labels }`. */
const servedModelSchema = z
  .object({
    /** Model name clients ask for; the pipelines publish under it. */
    name: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/, "must be 1-63 letters, digits, '_', '.', '-', starting and ending alphanumeric"),
    /** Where its versions are; default /mnt/shared/models/<name> (where the pipelines publish). */
    basePath: z
      .string()
      .regex(/^(\/mnt\/shared\/[^"\\\n]+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^"\\\n]*)?)$/, "must be a path under /mnt/shared/ or s3://bucket/prefix")
      .refine((p) => !p.split("/").includes(".."), "must not contain ..")
      .optional(),
    /** latest:N | all | specific:V1,V2; default the server's (SERVING_DEFAULTS.versionPolicy). */
    versionPolicy: z
      .string()
      .regex(/^(latest(:[1-9][0-9]*)?|all|specific:[1-9][0-9]*(,[1-9][0-9]*)*)$/, "must be latest:N, all or specific:V1,V2,... (N, V ≥ 1)")
      .optional(),
    /** Labels clients may ask for instead of a version number, e.g. { stable: 3, canary: 4 }. */
    versionLabels: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, "version labels must be letters, digits, '_', '.', '-'"), z.number().int().min(1)).optional(),
  })
  .strict();

/** The models the pipelines publish (mnist-pipeline and retrain-pipeline), served by default. */
export const DEFAULT_SERVED_MODELS = [{ name: "mnist" }, { name: "images" }] as const;

const servingSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** The models served, each with its version policy and labels. */
    models: z
      .array(servedModelSchema)
      .min(1)
      .default(() => DEFAULT_SERVED_MODELS.map((m) => ({ ...m }))),
    /** Replaced by `models`; kept in the schema only to refuse it with the fix. */
    modelName: z.unknown().optional(),
    minReplicas: z.number().int().min(1).default(SERVING_DEFAULTS.minReplicas),
    maxReplicas: z.number().int().min(1).default(SERVING_DEFAULTS.maxReplicas),
    /** GPUs per replica; needs GPU nodes. GPU servers scale on in-flight requests, not CPU. */
    gpus: z.number().int().min(0).max(8).default(SERVING_DEFAULTS.gpus),
    /** CPU and memory each server requests; default the server's (SERVING_DEFAULTS.resources.requests). */
    requests: requestsSchema.optional(),
    /** GPU servers: average in-flight requests per pod the autoscaler aims for (needs a custom-metrics adapter). */
    targetInflightRequestsPerReplica: z.number().int().min(1).max(10_000).default(SERVING_DEFAULTS.targetInflightRequestsPerReplica),
    /** Server-side batching: largest batch and how long to wait filling it. */
    batching: z
      .object({ maxBatchSize: z.number().int().min(2).max(1024), timeoutMicros: z.number().int().min(0).max(1_000_000) })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.maxReplicas < v.minReplicas) ctx.addIssue({ code: "custom", path: ["maxReplicas"], message: `must be ≥ minReplicas (${v.minReplicas})`, input: v.maxReplicas });
    if (v.modelName !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["modelName"],
        message: `was replaced by serving.models, a list of models; write models: [{ name: ${JSON.stringify(v.modelName)} }] (the default serves mnist and images)`,
        input: v.modelName,
      });
    }
    const seen = new Set<string>();
    v.models.forEach((m, i) => {
      if (seen.has(m.name)) ctx.addIssue({ code: "custom", path: ["models", i, "name"], message: "names a model listed before it; each model needs its own name", input: m.name });
      seen.add(m.name);
    });
  });

const pipelineSchema = z
  .object({
    /** Install the pipeline and sweep WorkflowTemplates (needs kubeflow.argo and the Training Operator). */
    enabled: z.boolean().default(true),
    /** Retrain MNIST on a schedule (cron syntax, e.g. "0 3 * * 1"); default none. */
    schedule: z
      .string()
      .regex(/^(\S+\s+){4}\S+$/, "must be a 5-field cron expression")
      .optional(),
    /** Sweep trials running at once. */
    sweepParallelism: z.number().int().min(1).max(64).default(4),
    /** CPU and memory each pipeline step requests (verify, evaluate, publish, smoke test); default STEP_REQUESTS (components/trainingPipeline.ts). */
    stepRequests: requestsSchema.optional(),
    /** CPU and memory each training replica and sweep trial requests; default TRAINING_REQUESTS (components/trainingOperator.ts). */
    trainingRequests: requestsSchema.optional(),
  })
  .strict();

/** One team of `mlplatform:teams`: who is in it and what it may use. */
const teamSchema = z
  .object({
    /** Team name: names its Kueue queue and, by default, its namespace. */
    name: dnsLabel,
    /** The team's namespace; default `team-<name>`. */
    namespace: dnsLabel.optional(),
    /** Users (as the cluster's authenticator names them) bound to the team's role. */
    members: z.array(z.string().min(1)).default([]),
    /** Groups (e.g. Entra ID object ids, Google groups) bound to the team's role. */
    groups: z.array(z.string().min(1)).default([]),
    /** What the team's namespace may request at once (ResourceQuota) and its nominal Kueue quota. */
    quota: z.object({ gpu: count.default(0), cpu: cpuQuantity, memory: quantity }).strict(),
    /** Share of idle capacity the team gets when teams compete for it (Kueue fair sharing weight). */
    fairShareWeight: z.number().positive().max(1000).default(1),
    /** Whether the team's jobs may borrow other teams' idle quota. */
    canBorrow: z.boolean().default(true),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.members.length === 0 && t.groups.length === 0) {
      ctx.addIssue({ code: "custom", path: ["members"], message: "or groups must name someone: a team nobody belongs to cannot use its namespace", input: [] });
    }
  });

const teamsSchema = z.array(teamSchema).superRefine((teams, ctx) => {
  const names = new Set<string>();
  const namespaces = new Set<string>();
  teams.forEach((t, i) => {
    if (names.has(t.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: "names a team listed before it; team names must be unique", input: t.name });
    names.add(t.name);
    const ns = t.namespace ?? teamNamespace(t.name);
    if (namespaces.has(ns)) ctx.addIssue({ code: "custom", path: [i, "namespace"], message: "is another team's namespace; each team needs its own", input: ns });
    namespaces.add(ns);
  });
});

/** A team's namespace when `namespace` is not set. */
export function teamNamespace(team: string): string {
  return `team-${team}`;
}

const kueueSchema = z
  .object({
    /** Install Kueue; default on when `teams` lists any team (teams need it). */
    enabled: z.boolean().optional(),
    repository: z.string().min(1).optional(),
    version: z.string().min(1).optional(),
    /** A local chart archive or directory instead of the Helm repository; repository and version are then ignored. */
    chart: z.string().min(1).optional(),
    /** Cohort every team's ClusterQueue joins: the teams borrow each other's idle quota within it. */
    cohort: dnsLabel.default("mlplatform"),
    /**
     * Nominal quota of the platform's own pipelines (the `platform` queue). Default none: they
     * run on quota the teams leave idle.
     */
    platformQuota: z
      .object({ gpu: count.default(0), cpu: cpuQuantity.or(z.literal("0")).default("0"), memory: quantity.or(z.literal("0")).default("0") })
      .strict()
      .prefault({}),
  })
  .strict();

/** AKS VM sizes whose GPUs can be MIG-partitioned (A100, H100). */
export const AKS_MIG_VM_SIZES = /(A100|H100|ND96asr_v4)/i;

/** GKE accelerator types that can be MIG-partitioned (A100, H100, H200). */
export const MIG_ACCELERATORS = /^nvidia-(tesla-a100|a100-80gb|h100-80gb|h100-mega-80gb|h200-141gb)$/;

const gpuSharingSchema = z
  .object({
    /**
     * `none`: a pod's `nvidia.com/gpu: 1` is a whole GPU. `timeSlicing`: pods take turns on a
     * GPU (no memory isolation). `mps`: NVIDIA MPS, concurrent processes with a share of the
     * GPU's memory each. Applies to the whole GPU pool.
     */
    strategy: z.enum(["none", "timeSlicing", "mps"]).default("none"),
    /** How many pods share one GPU (device-plugin replicas; GKE maxSharedClientsPerGpu). */
    maxSharedClientsPerGpu: z.number().int().min(2).max(48).default(4),
    /**
     * MIG partitions of A100/H100 GPUs, e.g. `1g.5gb`; each partition is one `nvidia.com/gpu`.
     * GKE: the pool's gpuPartitionSize. AKS: the pool's GPU instance profile `MIG<N>g` (from the
     * `<N>g` compute slices; memory follows the GPU model).
     */
    migPartitionSize: z
      .string()
      .regex(/^[1-7]g\.\d+gb$/, "must be a MIG profile such as 1g.5gb, 2g.10gb or 3g.20gb")
      .optional(),
  })
  .strict();

const chartOverrides = {
  /** Helm repository; default the pin in components/versions.ts. */
  repository: z.string().min(1).optional(),
  /** Chart version; default the pin in components/versions.ts. */
  version: z.string().min(1).optional(),
  /** A local chart archive or directory instead of the Helm repository; repository and version are then ignored. */
  chart: z.string().min(1).optional(),
};

/** Where metrics go, per cluster kind; `auto` picks the cloud's managed service. */
export const OBSERVABILITY_MODES = ["auto", "kube-prometheus-stack", "gke-managed", "azure-managed"] as const;
export type ObservabilityMode = Exclude<(typeof OBSERVABILITY_MODES)[number], "auto">;

/** `auto` → GKE: gke-managed, AKS: azure-managed, existing: kube-prometheus-stack. */
export function observabilityMode(mode: (typeof OBSERVABILITY_MODES)[number], provider: "aks" | "gke" | "existing"): ObservabilityMode {
  if (mode !== "auto") return mode;
  return provider === "gke" ? "gke-managed" : provider === "aks" ? "azure-managed" : "kube-prometheus-stack";
}

const observabilitySchema = z
  .object({
    /** Metrics stack, scrape targets, dashboards and alerts. */
    enabled: z.boolean().default(true),
    /** See {@link observabilityMode}. */
    mode: z.enum(OBSERVABILITY_MODES).default("auto"),
    /** kube-prometheus-stack chart source. */
    ...chartOverrides,
    /** Namespace of the in-cluster stack and the DCGM exporter. */
    namespace: dnsLabel.default("monitoring"),
    /** kube-prometheus-stack: how long Prometheus keeps samples. */
    retention: z
      .string()
      .regex(/^[1-9]\d*(h|d|w)$/, "must be a Prometheus retention such as 36h, 15d or 4w")
      .default("15d"),
    /** kube-prometheus-stack: Prometheus volume size; default none (an emptyDir: samples go with the pod). */
    storageSize: quantity.optional(),
    /** NVIDIA DCGM exporter (GPU metrics). `auto`: AKS, and existing clusters with gpu nvidia (GKE collects DCGM metrics itself). */
    dcgm: z
      .object({ install: z.enum(["auto", "always", "never"]).default("auto"), ...chartOverrides })
      .strict()
      .prefault({}),
    /** Alert thresholds. */
    alerts: z
      .object({
        servingErrorRatio: z.number().gt(0).max(1).default(0.05),
        servingP99Seconds: z.number().positive().default(0.5),
        trainingStallMinutes: z.number().int().min(1).default(15),
        gpuIdlePercent: z.number().min(0).max(100).default(10),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** Keys in the `mlplatform` namespace, their schema, and whether a stack must set them. */
const keys = {
  cluster: clusterSchema,
  devicePlugin: devicePluginSchema.prefault({}),
  burst: burstSchema.prefault({}),
  namespaces: namespacesSchema.prefault({}),
  kubernetes: kubernetesSchema.prefault({}),
  objectStore: objectStoreSchema.prefault({}),
  kubeflow: kubeflowSchema.prefault({}),
  ingress: ingressSchema.prefault({}),
  trainerImage: trainerImageSchema.prefault({}),
  serving: servingSchema.prefault({}),
  pipeline: pipelineSchema.prefault({}),
  observability: observabilitySchema.prefault({}),
  teams: teamsSchema.default([]),
  kueue: kueueSchema.prefault({}),
  gpuSharing: gpuSharingSchema.prefault({}),
  sharedStorage: sharedStorageSchema.prefault({}),
  /** Tags (Azure) / labels (GCP) put on every cloud resource. */
  tags: z.record(z.string().regex(/^[a-z][-_a-z0-9]{0,62}$/, "tag keys must be lowercase (GCP label rules)"), z.string().max(63)).default({}),
} as const;

const configSchema = z
  .object(keys)
  .strict()
  .superRefine((c, ctx) => {
    if (c.burst.enabled && c.cluster.provider !== "aks") {
      ctx.addIssue({
        code: "custom",
        path: ["burst", "enabled"],
        message: `is only supported with cluster.provider "aks" (virtual nodes run on Azure Container Instances); got provider "${c.cluster.provider}". GKE and existing clusters run sweep trials on their autoscaled pools: remove burst.enabled`,
        input: true,
      });
    }
    const backend = c.sharedStorage.backend;
    const allowed: Record<string, string[]> = { azureFiles: ["aks"], filestore: ["gke"], hostPath: ["existing"] };
    if (allowed[backend] && !allowed[backend]!.includes(c.cluster.provider)) {
      ctx.addIssue({
        code: "custom",
        path: ["sharedStorage", "backend"],
        message: `"${backend}" needs cluster.provider "${allowed[backend]![0]}"; got "${c.cluster.provider}" (use "nfs" or "externalNfs")`,
        input: backend,
      });
    }
    const filestore = backend === "filestore" || (backend === "auto" && c.cluster.provider === "gke");
    if (filestore && c.sharedStorage.size && sizeInGiB(c.sharedStorage.size) < 1024) {
      ctx.addIssue({
        code: "custom",
        path: ["sharedStorage", "size"],
        message: "must be at least 1Ti with Filestore (its smallest instance)",
        input: c.sharedStorage.size,
      });
    }
    if (c.pipeline.enabled && (!c.kubeflow.argo.enabled || !c.kubeflow.trainingOperator.enabled)) {
      ctx.addIssue({
        code: "custom",
        path: ["pipeline", "enabled"],
        message: "needs kubeflow.argo and kubeflow.trainingOperator enabled (the pipelines are Argo workflows running TFJobs); set pipeline.enabled: false",
        input: true,
      });
    }
    if (c.serving.gpus > 0 && c.cluster.provider === "existing" && c.cluster.gpu === "none") {
      ctx.addIssue({ code: "custom", path: ["serving", "gpus"], message: "needs GPU nodes, but cluster.gpu is none", input: c.serving.gpus });
    }
    const builds = c.trainerImage.build ?? c.cluster.provider !== "existing";
    if (!builds && !c.trainerImage.image) {
      ctx.addIssue({
        code: "custom",
        path: ["trainerImage", "image"],
        message: "is required when the trainer image is not built here (trainerImage.build is false, the default for existing clusters)",
        input: undefined,
      });
    }
    if (builds && c.cluster.provider === "existing" && !c.cluster.registry) {
      ctx.addIssue({
        code: "custom",
        path: ["trainerImage", "build"],
        message: "needs cluster.registry to push to on an existing cluster",
        input: true,
      });
    }
    teamProblems(c, ctx);
    const obs = c.observability;
    const needs: Partial<Record<ObservabilityMode, string>> = { "gke-managed": "gke", "azure-managed": "aks" };
    const need = needs[observabilityMode(obs.mode, c.cluster.provider)];
    if (obs.enabled && need && need !== c.cluster.provider) {
      ctx.addIssue({
        code: "custom",
        path: ["observability", "mode"],
        message: `needs cluster.provider "${need}" (this stack's is "${c.cluster.provider}"); use "kube-prometheus-stack" or "auto"`,
        input: obs.mode,
      });
    }
    for (const ui of ["grafana", "prometheus"] as const) {
      if (c.ingress[ui] && !(obs.enabled && observabilityMode(obs.mode, c.cluster.provider) === "kube-prometheus-stack")) {
        ctx.addIssue({
          code: "custom",
          path: ["ingress", ui],
          message: `exposes the in-cluster ${ui}, which only observability.mode "kube-prometheus-stack" (enabled) runs; remove it or set that mode`,
          input: c.ingress[ui],
        });
      }
    }
    if (c.cluster.provider === "gke" && c.devicePlugin.install === "always") {
      ctx.addIssue({
        code: "custom",
        path: ["devicePlugin", "install"],
        message: 'must not be "always" on GKE: GKE installs and manages the NVIDIA device plugin itself; use "auto"',
        input: "always",
      });
    }
  });

/** Rules across teams, Kueue, GPU sharing and the rest of the configuration. */
function teamProblems(c: z.infer<z.ZodObject<typeof keys>>, ctx: z.RefinementCtx): void {
  const platformNamespaces = new Map(Object.entries(c.namespaces).map(([role, ns]) => [ns, role]));
  c.teams.forEach((t, i) => {
    const ns = t.namespace ?? teamNamespace(t.name);
    const role = platformNamespaces.get(ns);
    if (role) ctx.addIssue({ code: "custom", path: ["teams", i, "namespace"], message: `is the platform's ${role} namespace; a team needs a namespace of its own`, input: ns });
    if (t.quota.gpu > 0 && c.cluster.provider === "existing" && c.cluster.gpu === "none") {
      ctx.addIssue({ code: "custom", path: ["teams", i, "quota", "gpu"], message: "needs GPU nodes, but cluster.gpu is none; set it to 0", input: t.quota.gpu });
    }
  });
  const q = c.kueue.platformQuota;
  if (c.kueue.enabled === true && c.teams.length === 0 && q.gpu === 0 && q.cpu === "0" && q.memory === "0") {
    ctx.addIssue({
      code: "custom",
      path: ["kueue", "enabled"],
      message:
        "queues the pipelines' jobs, but with no teams and no kueue.platformQuota there is no quota to admit them with: add teams or a platformQuota, or remove kueue.enabled",
      input: true,
    });
  }
  if (c.teams.length > 0 && c.kueue.enabled === false) {
    ctx.addIssue({
      code: "custom",
      path: ["kueue", "enabled"],
      message: "must not be false while teams are set: each team's quota and queue are Kueue objects; remove kueue.enabled",
      input: false,
    });
  }
  const s = c.gpuSharing;
  const shares = s.strategy !== "none";
  if (shares || s.migPartitionSize) {
    const cl = c.cluster;
    if (cl.provider === "existing" && cl.gpu === "none") {
      ctx.addIssue({ code: "custom", path: ["gpuSharing", "strategy"], message: "needs GPU nodes, but cluster.gpu is none", input: s.strategy });
    }
    if (shares && cl.provider !== "gke" && c.devicePlugin.install === "never") {
      ctx.addIssue({
        code: "custom",
        path: ["gpuSharing", "strategy"],
        message: 'is set through the NVIDIA device plugin this stack installs, but devicePlugin.install is "never"; use "auto"',
        input: s.strategy,
      });
    }
    if (s.migPartitionSize && cl.provider === "existing") {
      ctx.addIssue({
        code: "custom",
        path: ["gpuSharing", "migPartitionSize"],
        message: 'is set on GKE and AKS node pools; on an existing cluster partition the GPUs with the NVIDIA GPU Operator and remove it; got cluster.provider "existing"',
        input: s.migPartitionSize,
      });
    }
    if (s.migPartitionSize && cl.provider === "aks" && !AKS_MIG_VM_SIZES.test(cl.gpuPool.vmSize)) {
      ctx.addIssue({
        code: "custom",
        path: ["gpuSharing", "migPartitionSize"],
        message: `needs an A100 or H100 VM size; cluster.gpuPool.vmSize is "${cl.gpuPool.vmSize}"`,
        input: s.migPartitionSize,
      });
    }
    if (s.migPartitionSize && cl.provider === "gke" && !MIG_ACCELERATORS.test(cl.gpuPool.acceleratorType)) {
      ctx.addIssue({
        code: "custom",
        path: ["gpuSharing", "migPartitionSize"],
        message: `needs an A100, H100 or H200 pool; cluster.gpuPool.acceleratorType is "${cl.gpuPool.acceleratorType}"`,
        input: s.migPartitionSize,
      });
    }
    if (shares && c.serving.gpus > 1) {
      ctx.addIssue({
        code: "custom",
        path: ["serving", "gpus"],
        message: `must be 0 or 1 with gpuSharing.strategy "${s.strategy}": a shared GPU is asked for as one nvidia.com/gpu`,
        input: c.serving.gpus,
      });
    }
  }
}

/** `100Gi` → 100; `1Ti` → 1024; `512Mi` → 0.5. */
export function sizeInGiB(q: string): number {
  const m = /^(\d+)(Mi|Gi|Ti)$/.exec(q);
  if (!m) throw new Error(`not a size: ${q}`);
  const n = Number(m[1]);
  return m[2] === "Ti" ? n * 1024 : m[2] === "Mi" ? n / 1024 : n;
}

export type PlatformConfig = z.infer<typeof configSchema>;
export type ObjectStoreConfig = PlatformConfig["objectStore"];
export type SharedStorageConfig = PlatformConfig["sharedStorage"];
export type KubeflowConfig = PlatformConfig["kubeflow"];
export type IngressConfig = PlatformConfig["ingress"];
export type ObservabilityConfig = PlatformConfig["observability"];
export type ClusterConfig = PlatformConfig["cluster"];
export type AksClusterConfig = Extract<ClusterConfig, { provider: "aks" }>;
export type GkeClusterConfig = Extract<ClusterConfig, { provider: "gke" }>;
export type ExistingClusterConfig = Extract<ClusterConfig, { provider: "existing" }>;
export type Toleration = z.infer<typeof toleration>;
export type TeamConfig = PlatformConfig["teams"][number];
export type KueueConfig = PlatformConfig["kueue"];
export type GpuSharingConfig = PlatformConfig["gpuSharing"];

/**
 * Keys that hold secrets. They are never parsed into the plain config object: the component
 * that needs one reads it with `requireSecret`, so it stays a secret Output end to end.
 */
export const SECRET_KEYS: readonly string[] = [
  /** objectStore.mode external: S3 access key id. */
  "objectStoreAccessKeyId",
  /** objectStore.mode external: S3 secret access key. */
  "objectStoreSecretAccessKey",
  /** kubeflow.jupyterhub.authenticator github: the OAuth app's client secret. */
  "githubOAuthClientSecret",
];

/** Names of every key the program reads, without the namespace. */
export const CONFIG_KEYS: readonly string[] = Object.keys(keys);

/** A configuration value the program cannot use. The message names key, value and fix. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.length === 1 ? `Invalid configuration: ${problems[0]}` : `Invalid configuration (${problems.length} problems):\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function keyOf(path: readonly PropertyKey[]): string {
  const [head, ...rest] = path.map(String);
  return `${CONFIG_NAMESPACE}:${head ?? "?"}${rest.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("")}`;
}

/** Turns one zod issue into "`key` must …; got …". */
function describe(issue: z.core.$ZodIssue): string[] {
  const where = keyOf(issue.path);
  const got = `got ${show(issue.input)}`;
  switch (issue.code) {
    case "unrecognized_keys":
      return issue.keys.map((k) =>
        issue.path.length === 0
          ? `${CONFIG_NAMESPACE}:${k} is not a key this program reads; known keys: ${CONFIG_KEYS.join(", ")}`
          : `${keyOf([...issue.path, k])} is not a known setting (typo?); remove it`,
      );
    case "invalid_union":
      if ("discriminator" in issue && issue.discriminator) {
        const value = (issue.input as Record<string, unknown> | undefined)?.[issue.discriminator as string];
        const options = (issue as { options?: unknown[] }).options ?? [];
        return [`${where} must be one of ${options.map((o) => `"${String(o)}"`).join(", ")}; got ${show(value)}`];
      }
      return [`${where} ${issue.message}; ${got}`];
    case "invalid_value":
      return [`${where} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}; ${got}`];
    case "invalid_type": {
      const expected = issue.expected === "int" ? "whole number" : issue.expected;
      return [issue.input === undefined ? `${where} is required (a ${expected})` : `${where} must be a ${expected}; ${got}`];
    }
    case "invalid_key":
      return [`${where} ${issue.issues[0]?.message ?? "is not an allowed key"}`];
    case "too_small":
      return [`${where} must be ${issue.inclusive === false ? ">" : "≥"} ${String(issue.minimum)}${issue.origin === "string" ? " characters" : ""}; ${got}`];
    case "too_big":
      return [`${where} must be ${issue.inclusive === false ? "<" : "≤"} ${String(issue.maximum)}; ${got}`];
    default:
      return [`${where} ${issue.message}; ${got}`];
  }
}

/**
 * Validates raw config values (key without namespace → parsed JSON/YAML value) and returns
 * the frozen, defaulted configuration. Pure: the tests call it directly.
 * @throws ConfigError listing every problem found.
 */
export function parseConfig(raw: Readonly<Record<string, unknown>>): Readonly<PlatformConfig> {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) throw new ConfigError(result.error.issues.flatMap(describe));
  return deepFreeze(result.data);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/**
 * Reads every `mlplatform:*` key of the current stack. Values set as objects in the stack
 * file arrive as JSON strings; plain strings stay strings.
 */
export function readRawConfig(): Record<string, unknown> {
  const prefix = `${CONFIG_NAMESPACE}:`;
  const raw: Record<string, unknown> = {};
  for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    // Secrets are read through requireSecret by the component that needs them, never here.
    if (SECRET_KEYS.includes(key)) continue;
    try {
      raw[key] = JSON.parse(value);
    } catch {
      raw[key] = value;
    }
  }
  return raw;
}

/**
 * Secret keys a configuration needs but lacks. Only emptiness is checked here: the values
 * themselves are read with `requireSecret` by the component that uses them.
 */
export function missingSecrets(cfg: PlatformConfig, all: Readonly<Record<string, string>>): string[] {
  const needed: [string, string][] = [];
  if (cfg.objectStore.mode === "external") {
    needed.push(["objectStoreAccessKeyId", 'objectStore.mode "external"'], ["objectStoreSecretAccessKey", 'objectStore.mode "external"']);
  }
  const hub = cfg.kubeflow.jupyterhub;
  if (hub.enabled && hub.authenticator === "github") needed.push(["githubOAuthClientSecret", 'kubeflow.jupyterhub.authenticator "github"']);
  return needed
    .filter(([k]) => !all[`${CONFIG_NAMESPACE}:${k}`])
    .map(([k, why]) => `${CONFIG_NAMESPACE}:${k} is required with ${why}; set it with ` + `\`pulumi config set --secret ${CONFIG_NAMESPACE}:${k} <value>\``);
}

/** Rules that depend on which stack this is. */
export function stackProblems(cfg: PlatformConfig, stack: string): string[] {
  const hub = cfg.kubeflow.jupyterhub;
  if (hub.enabled && hub.authenticator === "dummy" && stack !== "dev") {
    return [
      `${CONFIG_NAMESPACE}:kubeflow.jupyterhub.authenticator "dummy" lets anyone in and is only allowed in the dev stack; ` +
        `got stack "${stack}". Use "github" with an allow list`,
    ];
  }
  return [];
}

/** The current stack's configuration, validated. Call once per program run. */
export function loadConfig(): Readonly<PlatformConfig> {
  const cfg = parseConfig(readRawConfig());
  const problems = stackProblems(cfg, pulumi.getStack());
  if (problems.length > 0) throw new ConfigError(problems);
  const missing = missingSecrets(cfg, pulumi.runtime.allConfig());
  if (missing.length > 0) throw new ConfigError(missing);
  return cfg;
}
