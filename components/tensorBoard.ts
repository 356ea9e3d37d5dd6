/**
 * TensorBoard reading a log directory on the shared volume. TensorBoard has no login of its
 * own, so it is only ever a ClusterIP Service, or behind an ingress that authenticates first.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PLATFORM_LABELS, awaitAnnotations } from "./namespaces";
import { RESTRICTED_CONTAINER, restrictedPod } from "./objectStore";
import { SHARED_CLAIM, SHARED_MOUNT_PATH } from "./sharedStorage";
import { images } from "./versions";

export const TENSORBOARD_PORT = 6006;

/** The log directory inside the container for a path relative to the shared volume. */
export function tensorBoardLogDir(relative: string): string {
  if (relative.startsWith("/") || relative.split("/").includes("..")) {
    throw new Error(`TensorBoard logDir must be relative to the shared volume, without "..": got "${relative}"`);
  }
  return `${SHARED_MOUNT_PATH}/${relative}`;
}

/** Labels that select one TensorBoard's pods. */
export function tensorBoardSelector(app: string): Record<string, string> {
  return { "app.kubernetes.io/name": "tensorboard", "app.kubernetes.io/instance": app };
}

/** Deployment spec: one TensorBoard, read-only mount of the shared volume, restricted pod. */
export function tensorBoardDeploymentSpec(o: { image: string; logDir: string; app: string }): k8s.types.input.apps.v1.DeploymentSpec {
  const labels = { ...PLATFORM_LABELS, ...tensorBoardSelector(o.app) };
  return {
    replicas: 1,
    selector: { matchLabels: tensorBoardSelector(o.app) },
    template: {
      metadata: { labels },
      spec: {
        automountServiceAccountToken: false,
        securityContext: restrictedPod(1000),
        containers: [
          {
            name: "tensorboard",
            image: o.image,
            command: ["tensorboard", "--logdir", tensorBoardLogDir(o.logDir), "--bind_all", "--port", String(TENSORBOARD_PORT)],
            env: [{ name: "HOME", value: "/tmp" }],
            ports: [{ name: "http", containerPort: TENSORBOARD_PORT }],
            readinessProbe: { httpGet: { path: "/", port: "http" }, periodSeconds: 10 },
            livenessProbe: { httpGet: { path: "/", port: "http" }, initialDelaySeconds: 30, periodSeconds: 30 },
            resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "2Gi" } },
            securityContext: RESTRICTED_CONTAINER,
            volumeMounts: [
              { name: "shared", mountPath: SHARED_MOUNT_PATH, readOnly: true },
              { name: "tmp", mountPath: "/tmp" },
            ],
          },
        ],
        volumes: [
          { name: "shared", persistentVolumeClaim: { claimName: SHARED_CLAIM, readOnly: true } },
          { name: "tmp", emptyDir: { sizeLimit: "256Mi" } },
        ],
      },
    },
  };
}

export interface TensorBoardArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  readonly namespace: string;
  /** Log directory relative to the shared volume. Default `logs`. */
  readonly logDir?: string;
  /** Image; default pinned in versions.ts. */
  readonly image?: string;
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for readiness. Default false. */
  readonly skipAwait?: boolean;
}

export class TensorBoard extends pulumi.ComponentResource {
  /** In-cluster URL. */
  readonly url: pulumi.Output<string>;
  /** Service name (for an ingress). */
  readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: TensorBoardArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:kubeflow:TensorBoard", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider, dependsOn: args.dependsOn };
    const annotations = awaitAnnotations(args.skipAwait ?? false);
    const spec = tensorBoardDeploymentSpec({ image: args.image ?? images.tensorboard, logDir: args.logDir ?? "logs", app: name });
    new k8s.apps.v1.Deployment(`${name}-tensorboard`, { metadata: { namespace: args.namespace, labels: { ...PLATFORM_LABELS }, annotations }, spec }, k8sOpts);
    const svc = new k8s.core.v1.Service(
      `${name}-tensorboard`,
      {
        metadata: { namespace: args.namespace, labels: { ...PLATFORM_LABELS }, annotations },
        spec: {
          type: "ClusterIP",
          selector: tensorBoardSelector(name),
          ports: [{ name: "http", port: 80, targetPort: "http" }],
        },
      },
      k8sOpts,
    );
    this.serviceName = svc.metadata.name;
    this.url = pulumi.interpolate`http://${svc.metadata.name}.${args.namespace}.svc.cluster.local`;
    this.registerOutputs({ url: this.url });
  }
}
