/**
 * The platform's S3-compatible object store: a MinIO server in the cluster with generated
 * credentials (or an external S3 endpoint), its buckets, and the credentials Secret that
 * workloads load with `envFrom` in every namespace that needs it.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { IPodSecurityContext } from "kubernetes-models/v1/PodSecurityContext";
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext";
import type { ObjectStoreConfig } from "../config";
import { GeneratedSecret } from "./generatedSecret";
import { PLATFORM_LABELS, awaitAnnotations } from "./namespaces";
import { images } from "./versions";

/** Name of the credentials Secret in each consumer namespace (part of the output contract). */
export const OBJECT_STORE_SECRET = "mlplatform-object-store";
/** Name of the in-cluster MinIO Service (its DNS name is the endpoint). */
export const MINIO_SERVICE = "minio";
export const MINIO_PORT = 9000;

/**
 * Restricted-profile security settings shared by our containers. Plain values (not Pulumi
 * inputs), so they also go into manifests we build as plain objects (Argo templates, TFJobs).
 */
export const RESTRICTED_CONTAINER: ISecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
};

/** Restricted-profile pod settings: a fixed non-root user, RuntimeDefault seccomp. */
export function restrictedPod(uid: number): IPodSecurityContext {
  return { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid, fsGroup: uid, seccompProfile: { type: "RuntimeDefault" } };
}

/** In-cluster endpoint of the MinIO Service in `namespace`. */
export function minioEndpoint(namespace: string): string {
  return `http://${MINIO_SERVICE}.${namespace}.svc.cluster.local:${MINIO_PORT}`;
}

/** The keys of the object store Secret ({@link credentialsData}): what a pod's environment gets from it. */
export const OBJECT_STORE_ENV_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION", "S3_FORCE_PATH_STYLE"] as const;

/**
 * The credentials Secret's data: standard AWS variable names, so the AWS SDKs, `mc`, boto3
 * and our trainer all pick them up from the environment.
 */
export function credentialsData(endpoint: string, region: string, accessKeyId: string, secretAccessKey: string): Record<(typeof OBJECT_STORE_ENV_KEYS)[number], string> {
  return {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: region,
    // MinIO and most S3 gateways need path-style addressing.
    S3_FORCE_PATH_STYLE: "true",
  };
}

const MINIO_LABELS = { ...PLATFORM_LABELS, "app.kubernetes.io/name": "minio", "app.kubernetes.io/component": "object-store" };

/** MinIO StatefulSet: one replica, its own volume, non-root, probes, no web console. */
export function minioStatefulSetSpec(o: { image: string; storageSize: string; storageClassName?: string; secretName: string }): k8s.types.input.apps.v1.StatefulSetSpec {
  const fromSecret = (key: string) => ({ secretKeyRef: { name: o.secretName, key } });
  return {
    serviceName: MINIO_SERVICE,
    replicas: 1,
    selector: { matchLabels: { "app.kubernetes.io/name": "minio" } },
    template: {
      metadata: { labels: MINIO_LABELS },
      spec: {
        securityContext: restrictedPod(1000),
        automountServiceAccountToken: false,
        containers: [
          {
            name: "minio",
            image: o.image,
            args: ["server", "/data", "--address", `:${MINIO_PORT}`, "--certs-dir", "/tmp/certs"],
            env: [
              { name: "MINIO_ROOT_USER", valueFrom: fromSecret("AWS_ACCESS_KEY_ID") },
              { name: "MINIO_ROOT_PASSWORD", valueFrom: fromSecret("AWS_SECRET_ACCESS_KEY") },
              // No embedded console: nothing unauthenticated-looking to expose by accident.
              { name: "MINIO_BROWSER", value: "off" },
              { name: "MINIO_UPDATE", value: "off" },
            ],
            ports: [{ name: "s3", containerPort: MINIO_PORT }],
            readinessProbe: { httpGet: { path: "/minio/health/ready", port: "s3" }, periodSeconds: 10, failureThreshold: 3 },
            livenessProbe: { httpGet: { path: "/minio/health/live", port: "s3" }, initialDelaySeconds: 15, periodSeconds: 20 },
            resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: "2", memory: "2Gi" } },
            securityContext: RESTRICTED_CONTAINER,
            volumeMounts: [
              { name: "data", mountPath: "/data" },
              { name: "tmp", mountPath: "/tmp" },
            ],
          },
        ],
        volumes: [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }],
      },
    },
    volumeClaimTemplates: [
      {
        metadata: { name: "data" },
        spec: {
          accessModes: ["ReadWriteOnce"],
          storageClassName: o.storageClassName,
          resources: { requests: { storage: o.storageSize } },
        },
      },
    ],
  };
}

/** Job that creates the buckets if they do not exist (idempotent: `mc mb --ignore-existing`). */
export function bucketsJobSpec(o: { clientImage: string; secretName: string; buckets: string[] }): k8s.types.input.batch.v1.JobSpec {
  const script = [
    "set -eu",
    'mc alias set store "$AWS_ENDPOINT_URL" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null',
    `for b in ${o.buckets.join(" ")}; do mc mb --ignore-existing "store/$b"; done`,
    "mc ls store",
  ].join("\n");
  return {
    // MinIO may still be starting: retry with the Job's exponential back-off.
    backoffLimit: 8,
    template: {
      metadata: { labels: { ...PLATFORM_LABELS, "app.kubernetes.io/name": "create-buckets" } },
      spec: {
        restartPolicy: "OnFailure",
        securityContext: restrictedPod(1000),
        automountServiceAccountToken: false,
        containers: [
          {
            name: "mc",
            image: o.clientImage,
            command: ["/bin/sh", "-c", script],
            envFrom: [{ secretRef: { name: o.secretName } }],
            env: [{ name: "MC_CONFIG_DIR", value: "/tmp/mc" }],
            resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
            securityContext: RESTRICTED_CONTAINER,
            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
          },
        ],
        volumes: [{ name: "tmp", emptyDir: { sizeLimit: "16Mi" } }],
      },
    },
  };
}

export interface ObjectStoreArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Namespace MinIO (and the bucket Job) run in. */
  readonly namespace: string;
  /** Other namespaces whose workloads read the credentials Secret (role → namespace; not `namespace` itself). */
  readonly consumerNamespaces: Readonly<Record<string, string>>;
  /** Resources the namespaced objects wait for (the Namespaces component). */
  readonly dependsOn?: pulumi.Resource[];
  /** Validated `mlplatform:objectStore`. */
  readonly config: ObjectStoreConfig;
  /** external mode: the access key pair, as secrets (from `requireSecret`). */
  readonly externalCredentials?: { readonly accessKeyId: pulumi.Output<string>; readonly secretAccessKey: pulumi.Output<string> };
  /** Do not wait for MinIO or the Job (API servers without nodes). Default false. */
  readonly skipAwait?: boolean;
}

export class ObjectStore extends pulumi.ComponentResource {
  /** S3 endpoint URL workloads use (in-cluster for MinIO). */
  readonly endpoint: pulumi.Output<string>;
  readonly buckets: { readonly data: string; readonly models: string; readonly logs: string };
  /** Name of the credentials Secret in each consumer namespace. */
  readonly secretName = OBJECT_STORE_SECRET;
  /** Access key id (secret). */
  readonly accessKeyId: pulumi.Output<string>;
  /** Secret access key (secret). */
  readonly secretAccessKey: pulumi.Output<string>;

  constructor(name: string, args: ObjectStoreArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:data:ObjectStore", name, {}, opts);
    const c = args.config;
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const annotations = awaitAnnotations(args.skipAwait ?? false);
    this.buckets = { ...c.buckets };

    if (c.mode === "external") {
      if (!args.externalCredentials) throw new pulumi.ResourceError("objectStore.mode external needs credentials", this);
      this.endpoint = pulumi.output(c.endpoint!);
      this.accessKeyId = pulumi.secret(args.externalCredentials.accessKeyId);
      this.secretAccessKey = pulumi.secret(args.externalCredentials.secretAccessKey);
    } else {
      // Never MinIO's well-known defaults: a generated user and a 40-character password.
      const user = new GeneratedSecret(`${name}-access-key`, { length: 20, alphabet: "lowerAlnum", prefix: "mlp" }, { parent: this });
      const password = new GeneratedSecret(`${name}-secret-key`, { length: 40, alphabet: "alnum" }, { parent: this });
      this.endpoint = pulumi.output(minioEndpoint(args.namespace));
      // Secret twice over: the engine encrypts `value` in state, and every use is a secret Output.
      this.accessKeyId = pulumi.secret(user.value);
      this.secretAccessKey = pulumi.secret(password.value);
    }

    const data = pulumi.all([this.endpoint, this.accessKeyId, this.secretAccessKey]).apply(([endpoint, id, key]) => credentialsData(endpoint, c.region, id, key));
    const namespaces = { store: args.namespace, ...args.consumerNamespaces };
    const secrets: k8s.core.v1.Secret[] = [];
    for (const [role, ns] of Object.entries(namespaces)) {
      secrets.push(
        new k8s.core.v1.Secret(
          `${name}-credentials-${role}`,
          {
            metadata: { name: OBJECT_STORE_SECRET, namespace: ns, labels: { ...PLATFORM_LABELS } },
            type: "Opaque",
            stringData: pulumi.secret(data),
          },
          k8sOpts,
        ),
      );
    }
    const storeSecret = secrets[0]!;

    const dependsOn: pulumi.Resource[] = [...(args.dependsOn ?? []), storeSecret];
    if (c.mode === "minio") {
      const svc = new k8s.core.v1.Service(
        `${name}-minio`,
        {
          metadata: { name: MINIO_SERVICE, namespace: args.namespace, labels: MINIO_LABELS, annotations },
          spec: {
            type: "ClusterIP",
            selector: { "app.kubernetes.io/name": "minio" },
            ports: [{ name: "s3", port: MINIO_PORT, targetPort: "s3" }],
          },
        },
        k8sOpts,
      );
      const sts = new k8s.apps.v1.StatefulSet(
        `${name}-minio`,
        {
          metadata: { namespace: args.namespace, labels: MINIO_LABELS, annotations },
          spec: minioStatefulSetSpec({
            image: c.image ?? images.minio,
            storageSize: c.storageSize,
            storageClassName: c.storageClassName,
            secretName: OBJECT_STORE_SECRET,
          }),
        },
        { ...k8sOpts, dependsOn: [...(args.dependsOn ?? []), storeSecret, svc] },
      );
      dependsOn.push(sts);
    }

    new k8s.batch.v1.Job(
      `${name}-buckets`,
      {
        metadata: { namespace: args.namespace, labels: { ...PLATFORM_LABELS }, annotations },
        spec: bucketsJobSpec({
          clientImage: c.clientImage ?? images.minioClient,
          secretName: OBJECT_STORE_SECRET,
          buckets: [c.buckets.data, c.buckets.models, c.buckets.logs],
        }),
      },
      // A Job's template is immutable: a change of buckets runs a new Job.
      { ...k8sOpts, dependsOn, deleteBeforeReplace: true },
    );

    this.registerOutputs({ endpoint: this.endpoint, buckets: this.buckets, secretName: this.secretName });
  }
}
