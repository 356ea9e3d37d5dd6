/**
 * Every chart and image version the platform installs, in one place.
 *
 * `repository` is where the chart is pulled from by default; each component lets a stack
 * override it (config `…repository`) for mirrored or air-gapped installs. Bump a version
 * here, run `npm test`, and the pull request's `pulumi preview` shows what changes.
 */
export interface ChartPin {
  /** Chart name in its repository. */
  readonly chart: string;
  /** Exact chart version (never a range). */
  readonly version: string;
  /** Default Helm repository URL. */
  readonly repository: string;
}

export const charts = {
  /** NVIDIA device plugin: advertises `nvidia.com/gpu` on nodes whose cloud does not manage it. */
  nvidiaDevicePlugin: {
    chart: "nvidia-device-plugin",
    version: "0.20.1",
    repository: "https://nvidia.github.io/k8s-device-plugin",
  },
} as const satisfies Record<string, ChartPin>;

/** Container images the platform runs, by tag (never `latest`); each is overridable in config. */
export const images = {
  /** MinIO server. The community edition is in maintenance mode: override with a mirror or use `objectStore.mode: external`. */
  minio: "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
  /** MinIO client, for the bucket-creation Job. */
  minioClient: "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
  /** Kernel NFS server for the in-cluster shared volume (existing clusters without an RWX class). */
  nfsServer: "itsthenetwork/nfs-server-alpine:12",
} as const;
