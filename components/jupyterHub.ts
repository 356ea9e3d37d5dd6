/**
 * JupyterHub (Zero to JupyterHub chart) with GitHub OAuth and an allow list, CPU and GPU
 * notebook profiles, the shared volume mounted read-write, and the idle culler on.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { KubeflowConfig } from "../config";
import type { Placement } from "./cluster";
import { GeneratedSecret } from "./generatedSecret";
import { OBJECT_STORE_ENV_KEYS, OBJECT_STORE_SECRET } from "./objectStore";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { chartSource, charts, images } from "./versions";

export type JupyterHubConfig = KubeflowConfig["jupyterhub"];
export const JUPYTERHUB_RELEASE = "jupyterhub";

/** Authenticator section of `hub.config`; the client secret stays a Pulumi secret. */
export function authenticatorConfig(c: JupyterHubConfig, clientSecret?: pulumi.Output<string>): Record<string, unknown> {
  if (c.authenticator === "dummy") {
    return { JupyterHub: { authenticator_class: "dummy" } };
  }
  const gh = c.github!;
  return {
    JupyterHub: { authenticator_class: "github" },
    GitHubOAuthenticator: {
      client_id: gh.clientId,
      client_secret: clientSecret,
      oauth_callback_url: gh.callbackUrl,
      allowed_organizations: gh.allowedOrganizations,
      allowed_users: gh.allowedUsers,
      admin_users: gh.adminUsers,
      // Organization membership is only visible with read:org.
      scope: gh.allowedOrganizations.length > 0 ? ["read:org"] : [],
    },
  };
}

/** Notebook profiles: CPU always; GPU when the cluster has GPUs (one GPU, its node selector and tolerations). */
export function profileList(c: JupyterHubConfig, gpu: Placement | undefined): Record<string, unknown>[] {
  const profiles: Record<string, unknown>[] = [
    {
      display_name: "CPU notebook",
      description: "2 CPUs, 8 GiB; TensorFlow (CPU) and the shared volume at /mnt/shared",
      default: true,
      kubespawner_override: { image: c.cpuImage ?? images.notebookCpu, cpu_guarantee: 0.5, cpu_limit: 2, mem_guarantee: "2G", mem_limit: "8G" },
    },
  ];
  if (gpu) {
    profiles.push({
      display_name: "GPU notebook",
      description: "1 NVIDIA GPU, 4 CPUs, 24 GiB; TensorFlow with CUDA",
      kubespawner_override: {
        image: c.gpuImage ?? images.notebookGpu,
        cpu_guarantee: 1,
        cpu_limit: 4,
        mem_guarantee: "8G",
        mem_limit: "24G",
        extra_resource_limits: { "nvidia.com/gpu": "1" },
        node_selector: gpu.nodeSelector,
        tolerations: gpu.tolerations,
      },
    });
  }
  return profiles;
}

/**
 * The hub's cookie secret, auth-state encryption key and proxy token. The chart keeps them
 * stable only through Helm's `lookup` of its own Secret, which a Pulumi render cannot do: it
 * drew new ones every `pulumi up`, restarting the hub and the proxy and logging everyone out.
 * Generated once and kept in the stack's state instead.
 */
export interface HubKeys {
  readonly cookieSecret: pulumi.Input<string>;
  readonly cryptKey: pulumi.Input<string>;
  readonly proxyToken: pulumi.Input<string>;
}

/** A notebook container under the restricted Pod Security level (its root filesystem stays writable: Jupyter writes there). */
export const NOTEBOOK_CONTAINER_SECURITY = {
  allowPrivilegeEscalation: false,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/** The notebook pod's part (user and fsGroup come from singleuser.uid / fsGid). */
export const NOTEBOOK_POD_SECURITY = { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } } as const;

/** Chart values: ClusterIP proxy, network policies on, shared volume, culler, restricted-friendly user pods. */
export function jupyterHubValues(o: {
  config: JupyterHubConfig;
  gpu: Placement | undefined;
  clientSecret?: pulumi.Output<string>;
  /** The hub's own keys (see {@link HubKeys}); without them the chart draws new ones on every render. */
  keys?: HubKeys;
  ingress?: { host: string; className?: string; tlsSecretName?: string; clusterIssuer?: string };
}): Record<string, unknown> {
  const ing = o.ingress;
  return {
    hub: {
      ...(o.keys ? { cookieSecret: o.keys.cookieSecret } : {}),
      config: {
        ...authenticatorConfig(o.config, o.clientSecret),
        ...(o.keys ? { CryptKeeper: { keys: [o.keys.cryptKey] } } : {}),
        // User pods run in the notebooks namespace, which enforces the restricted Pod Security
        // level; the chart sets none of this for them, so every spawn was refused.
        KubeSpawner: { container_security_context: NOTEBOOK_CONTAINER_SECURITY, pod_security_context: NOTEBOOK_POD_SECURITY },
      },
      networkPolicy: { enabled: true },
      resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "1Gi" } },
    },
    // Never a LoadBalancer: reach the hub through the ingress (TLS) or a port-forward.
    proxy: {
      ...(o.keys ? { secretToken: o.keys.proxyToken } : {}),
      service: { type: "ClusterIP" },
      chp: { networkPolicy: { enabled: true }, resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } } },
    },
    // Not needed at this size, and each would be one more unbounded pod: off.
    scheduling: { userScheduler: { enabled: false } },
    prePuller: { hook: { enabled: false }, continuous: { enabled: false } },
    singleuser: {
      profileList: profileList(o.config, o.gpu),
      uid: 1000,
      fsGid: 100,
      // The chart's default blocks the cloud metadata server with a privileged NET_ADMIN init
      // container in every user pod, which the restricted notebooks namespace refuses (no spawn
      // would start). The user pods' NetworkPolicy blocks it instead: egress to
      // 169.254.169.254 stays disallowed (egressAllowRules.cloudMetadataServer false).
      cloudMetadata: { blockWithIptables: false },
      networkPolicy: { enabled: true, egressAllowRules: { cloudMetadataServer: false } },
      storage: {
        ...(o.config.homeStorage === "none"
          ? { type: "none" }
          : { type: "dynamic", capacity: o.config.homeStorage.capacity, dynamic: { storageClass: o.config.homeStorage.storageClass } }),
        extraVolumes: [{ name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM } }],
        extraVolumeMounts: [{ name: "shared", mountPath: SHARED_MOUNT_PATH }],
      },
      // The object store's endpoint and credentials, as the pipelines get them, so a notebook
      // reads datasets and publishes models with the same code (mlp, boto3, the AWS CLI).
      extraEnv: {
        MLPLATFORM_SHARED: SHARED_MOUNT_PATH,
        ...Object.fromEntries(OBJECT_STORE_ENV_KEYS.map((key) => [key, { valueFrom: { secretKeyRef: { name: OBJECT_STORE_SECRET, key } } }])),
      },
    },
    cull: { enabled: true, timeout: o.config.idleTimeoutSeconds, every: 300 },
    ingress: ing
      ? {
          enabled: true,
          ingressClassName: ing.className,
          hosts: [ing.host],
          annotations: ing.clusterIssuer ? { "cert-manager.io/cluster-issuer": ing.clusterIssuer } : {},
          tls: [{ hosts: [ing.host], secretName: ing.tlsSecretName ?? `${JUPYTERHUB_RELEASE}-tls` }],
        }
      : { enabled: false },
  };
}

export interface JupyterHubArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Namespace of the hub and user notebooks. */
  readonly namespace: string;
  /** Validated `mlplatform:kubeflow.jupyterhub`. */
  readonly config: JupyterHubConfig;
  /** GPU placement, when the cluster has GPUs. */
  readonly gpu?: Placement;
  /** GitHub OAuth client secret (from `requireSecret`); required with the github authenticator. */
  readonly clientSecret?: pulumi.Output<string>;
  /** Optional ingress with TLS. */
  readonly ingress?: { host: string; className?: string; tlsSecretName?: string; clusterIssuer?: string };
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for the chart's workloads. Default false. */
  readonly skipAwait?: boolean;
}

export class JupyterHub extends pulumi.ComponentResource {
  /** In-cluster URL of the hub's proxy. */
  readonly url: string;
  readonly chartVersion: string;

  constructor(name: string, args: JupyterHubArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:kubeflow:JupyterHub", name, {}, opts);
    const c = args.config;
    if (c.authenticator === "github" && !args.clientSecret) {
      throw new pulumi.ResourceError("the github authenticator needs mlplatform:githubOAuthClientSecret", this);
    }
    if (c.authenticator === "dummy") {
      pulumi.log.warn("JupyterHub uses the dummy authenticator: anyone who reaches it can log in with any name (dev only)", this);
    }
    const pin = charts.jupyterhub;
    this.chartVersion = c.version ?? pin.version;
    new k8s.helm.v4.Chart(
      `${name}-chart`,
      {
        name: JUPYTERHUB_RELEASE,
        ...chartSource(pin, c),
        namespace: args.namespace,
        values: jupyterHubValues({
          config: c,
          gpu: args.gpu,
          clientSecret: args.clientSecret,
          ingress: args.ingress,
          keys: {
            // 32 bytes as hex: what JupyterHub's cookie secret and CryptKeeper expect.
            cookieSecret: new GeneratedSecret(`${name}-cookie-secret`, { length: 64, alphabet: "hex" }, { parent: this }).value,
            cryptKey: new GeneratedSecret(`${name}-crypt-key`, { length: 64, alphabet: "hex" }, { parent: this }).value,
            proxyToken: new GeneratedSecret(`${name}-proxy-token`, { length: 64, alphabet: "alnum" }, { parent: this }).value,
          },
        }),
        skipAwait: args.skipAwait ?? false,
      },
      { parent: this, provider: args.provider, dependsOn: args.dependsOn },
    );
    this.url = `http://proxy-public.${args.namespace}.svc.cluster.local`;
    this.registerOutputs({ url: this.url, chartVersion: this.chartVersion });
  }
}
