/**
 * One ReadWriteMany volume shared by every platform namespace: datasets, TensorBoard logs,
 * checkpoints and exported models, mounted by trainers, TensorBoard, notebooks and model
 * servers alike.
 *
 * A PersistentVolumeClaim belongs to one namespace, and a dynamically provisioned claim gets
 * a volume of its own. To share one volume across namespaces, each namespace gets a claim
 * bound to a static PersistentVolume, and all those volumes point at the same share:
 * an Azure Files share (AKS), a Filestore instance (GKE), an in-cluster NFS server, an
 * NFS export you already run, or (single-node clusters only) one directory on the node.
 */
import type * as storageTypes from "@pulumi/azure-native/storage";
import type * as gcpTypes from "@pulumi/gcp";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { type SharedStorageConfig, sizeInGiB } from "../config";
import { alphanumeric } from "./cluster";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels } from "./namespaces";
import { images } from "./versions";

/** Claim name in every namespace (part of the output contract). */
export const SHARED_CLAIM = "mlplatform-shared";
/** Where our workloads mount the shared volume. */
export const SHARED_MOUNT_PATH = "/mnt/shared";

export type StorageBackend = Exclude<SharedStorageConfig["backend"], "auto">;

/** The backend `auto` means for each cluster provider. */
export function resolveBackend(backend: SharedStorageConfig["backend"], provider: "aks" | "gke" | "existing"): StorageBackend {
  if (backend !== "auto") return backend;
  return provider === "aks" ? "azureFiles" : provider === "gke" ? "filestore" : "nfs";
}

/** Where a static PersistentVolume points. */
export type VolumeSource =
  | { readonly kind: "nfs"; readonly server: string; readonly path: string }
  /** A directory on the node: only for single-node clusters (every pod sees the same disk). */
  | { readonly kind: "hostPath"; readonly path: string }
  | {
      readonly kind: "azureFile";
      readonly resourceGroup: string;
      readonly storageAccount: string;
      readonly shareName: string;
      /** Secret (in `secretNamespace`) holding azurestorageaccountname/azurestorageaccountkey. */
      readonly secretName: string;
      readonly secretNamespace: string;
    };

/** Mount options for Azure Files: group-writable for our non-root users, sane caching. */
export const AZURE_FILE_MOUNT_OPTIONS = ["dir_mode=0775", "file_mode=0664", "uid=1000", "gid=1000", "mfsymlinks", "cache=strict", "actimeo=30", "nosharesock"];

/** A static PersistentVolume for `namespace`'s claim, pointing at the shared backend. */
export function sharedVolumeSpec(source: VolumeSource, namespace: string, size: string): k8s.types.input.core.v1.PersistentVolumeSpec {
  const common = {
    capacity: { storage: size },
    accessModes: ["ReadWriteMany"],
    // The data outlives the claims: deleting the stack never deletes datasets and models.
    persistentVolumeReclaimPolicy: "Retain",
    storageClassName: "",
    // Only this namespace's claim may bind this volume.
    claimRef: { namespace, name: SHARED_CLAIM },
  };
  if (source.kind === "nfs") {
    return { ...common, mountOptions: ["nfsvers=4.1", "hard"], nfs: { server: source.server, path: source.path } };
  }
  if (source.kind === "hostPath") {
    return { ...common, hostPath: { path: source.path, type: "Directory" } };
  }
  return {
    ...common,
    mountOptions: AZURE_FILE_MOUNT_OPTIONS,
    csi: {
      driver: "file.csi.azure.com",
      // Unique per volume: the CSI driver keys its mounts by this handle.
      volumeHandle: `${source.resourceGroup}#${source.storageAccount}#${source.shareName}#${namespace}`,
      volumeAttributes: { resourceGroup: source.resourceGroup, storageAccount: source.storageAccount, shareName: source.shareName },
      nodeStageSecretRef: { name: source.secretName, namespace: source.secretNamespace },
    },
  };
}

/**
 * `value`, except in a preview where it is not known (or empty) yet: then `placeholder`.
 * The Kubernetes provider previews a create with a server-side dry run, and the API server
 * rejects an object whose required field is missing (an unknown is left out), so the first
 * preview of a new stack would fail where `pulumi up` works. Updates always wait for the
 * real value; only previews show the placeholder.
 */
export function previewPlaceholder(value: pulumi.Output<string>, placeholder: pulumi.Input<string>): pulumi.Output<string> {
  if (!pulumi.runtime.isDryRun()) return value;
  // `isKnown` is left out of the SDK's typings but is part of every Output (SDK 1.x to 3.x);
  // without it, behave as before.
  const isKnown = (value as unknown as { isKnown?: unknown }).isKnown;
  if (!(isKnown instanceof Promise)) return value;
  const fallback = pulumi.output(placeholder);
  return pulumi
    .output(isKnown as Promise<boolean>)
    .apply((known) => (known ? value : fallback))
    .apply((v) => (v ? pulumi.output(v) : fallback));
}

/** The in-cluster NFS server's Deployment: a kernel NFS server exporting its own volume. */
export function nfsServerDeploymentSpec(image: string, claimName: pulumi.Input<string>): k8s.types.input.apps.v1.DeploymentSpec {
  const labels = { ...PLATFORM_LABELS, "app.kubernetes.io/name": "nfs-server" };
  return {
    replicas: 1,
    // One writer to the backing disk: never two servers during a rollout.
    strategy: { type: "Recreate" },
    selector: { matchLabels: { "app.kubernetes.io/name": "nfs-server" } },
    template: {
      metadata: { labels },
      spec: {
        automountServiceAccountToken: false,
        containers: [
          {
            name: "nfs",
            image,
            env: [{ name: "SHARED_DIRECTORY", value: "/exports" }],
            ports: [{ name: "nfs", containerPort: 2049 }],
            // The kernel NFS server needs privileges no other workload of ours gets; it runs
            // alone in a namespace whose Pod Security level allows it.
            securityContext: { privileged: true },
            readinessProbe: { tcpSocket: { port: "nfs" }, periodSeconds: 10 },
            livenessProbe: { tcpSocket: { port: "nfs" }, initialDelaySeconds: 20, periodSeconds: 20 },
            resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
            volumeMounts: [{ name: "exports", mountPath: "/exports" }],
          },
        ],
        volumes: [{ name: "exports", persistentVolumeClaim: { claimName } }],
      },
    },
  };
}

export interface SharedStorageArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Validated `mlplatform:sharedStorage`. */
  readonly config: SharedStorageConfig;
  /** Which cluster it runs on (decides what `auto` means). */
  readonly clusterProvider: "aks" | "gke" | "existing";
  /** Namespaces that get a volume and, through {@link SharedStorage.claims}, a claim (role → namespace name). */
  readonly namespaces: Readonly<Record<string, string>>;
  /** AKS: resource group and region for the storage account. */
  readonly azure?: { readonly resourceGroupName: pulumi.Input<string>; readonly location: string };
  /** GKE: project and cluster location for Filestore. */
  readonly gcp?: { readonly project: string; readonly location: string };
  /** Tags/labels on cloud resources. */
  readonly tags?: Readonly<Record<string, string>>;
  /** Do not wait for the NFS server (API servers without nodes). Default false. */
  readonly skipAwait?: boolean;
}

/**
 * Destroy order. Finished workflow and TFJob pods keep using a namespace's claim, and only the
 * namespace's deletion removes them, so each claim goes with its namespace (`deletedWith`) and
 * a volume can only be deleted once that namespace is gone (its protection finalizer holds it
 * while a claim is bound). Pulumi deletes in waves, dependents first, so the namespaces depend
 * on the volumes (`volumes`, created first) and the claims and anything else per namespace come
 * after both ({@link SharedStorage.claims}). Any other order, or none, deadlocked the destroy:
 * a volume waiting in an early wave for a namespace deleted in a later one.
 */
export class SharedStorage extends pulumi.ComponentResource {
  readonly backend: StorageBackend;
  /** Claim name, the same in every namespace. */
  readonly claimName = SHARED_CLAIM;
  readonly mountPath = SHARED_MOUNT_PATH;
  /** The cluster-scoped volumes, one per namespace: the namespaces depend on these. */
  readonly volumes: k8s.core.v1.PersistentVolume[] = [];
  private readonly args: SharedStorageArgs;
  private readonly baseName: string;
  private readonly size: string;
  /** Namespaced objects a backend needs beside each claim (Azure Files: the account key). */
  private perNamespace: (namespace: string, opts: pulumi.CustomResourceOptions) => void = () => {};

  constructor(name: string, args: SharedStorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:data:SharedStorage", name, {}, opts);
    this.args = args;
    this.baseName = name;
    const c = args.config;
    const k8sOpts = { parent: this, provider: args.provider };
    this.backend = resolveBackend(c.backend, args.clusterProvider);
    const size = c.size ?? (this.backend === "filestore" ? "1Ti" : "100Gi");
    this.size = size;
    const tags = { ...(args.tags ?? {}), "managed-by": "pulumi", platform: "mlplatform" };

    // Each branch yields where the volume of a namespace points (creating what it needs there).
    let source: (namespace: string) => pulumi.Output<VolumeSource>;
    switch (this.backend) {
      case "externalNfs": {
        const nfs = pulumi.output({ kind: "nfs" as const, server: c.server!, path: c.path! });
        source = () => nfs;
        break;
      }
      case "hostPath": {
        const dir = pulumi.output({ kind: "hostPath" as const, path: c.hostPath! });
        source = () => dir;
        break;
      }
      case "nfs": {
        const nfs = this.inClusterNfs(name, c, size, k8sOpts, args.skipAwait ?? false);
        source = () => nfs;
        break;
      }
      case "filestore": {
        const nfs = this.filestore(name, c, size, args, tags);
        source = () => nfs;
        break;
      }
      case "azureFiles":
        source = this.azureFiles(name, c, size, args, tags);
        break;
    }

    for (const [role, ns] of Object.entries(args.namespaces)) {
      this.volumes.push(
        new k8s.core.v1.PersistentVolume(
          `${name}-${role}`,
          {
            metadata: {
              labels: { ...PLATFORM_LABELS, "mlplatform.io/shared-volume": name },
              annotations: awaitAnnotations(args.skipAwait ?? false),
            },
            spec: source(ns).apply((src) => sharedVolumeSpec(src, ns, size)),
          },
          k8sOpts,
        ),
      );
    }
    this.registerOutputs({ backend: this.backend, claimName: this.claimName, mountPath: this.mountPath });
  }

  /**
   * Each namespace's claim on its volume (and what the backend needs there), created once the
   * namespaces exist and deleted with them. `namespaces` holds the Namespace resources by the
   * roles of `args.namespaces`; they must depend on {@link volumes} (see the class comment).
   */
  claims(namespaces: Readonly<Record<string, pulumi.Resource>>): void {
    const roles = Object.keys(this.args.namespaces);
    const missing = roles.filter((r) => namespaces[r] === undefined);
    if (missing.length > 0) throw new pulumi.ResourceError(`shared storage: no Namespace resource for ${missing.join(", ")}`, this);
    const name = this.baseName;
    roles.forEach((role, i) => {
      const ns = this.args.namespaces[role]!;
      const opts = { parent: this, provider: this.args.provider, dependsOn: [namespaces[role]!], deletedWith: namespaces[role] };
      this.perNamespace(ns, opts);
      new k8s.core.v1.PersistentVolumeClaim(
        `${name}-${role}`,
        {
          metadata: { name: SHARED_CLAIM, namespace: ns, labels: { ...PLATFORM_LABELS }, annotations: awaitAnnotations(this.args.skipAwait ?? false) },
          spec: {
            accessModes: ["ReadWriteMany"],
            storageClassName: "",
            volumeName: this.volumes[i]!.metadata.name,
            resources: { requests: { storage: this.size } },
          },
        },
        opts,
      );
    });
  }

  /** A kernel NFS server in its own privileged namespace, exporting a disk from the default (or named) class. */
  private inClusterNfs(name: string, c: SharedStorageConfig, size: string, k8sOpts: pulumi.CustomResourceOptions, skipAwait: boolean): pulumi.Output<VolumeSource> {
    const annotations = awaitAnnotations(skipAwait);
    const ns = new k8s.core.v1.Namespace(
      `${name}-nfs`,
      // privileged: the kernel NFS server needs it (see the Deployment); nothing else runs here.
      { metadata: { name: "mlplatform-storage", labels: { ...PLATFORM_LABELS, ...podSecurityLabels("privileged") }, annotations } },
      k8sOpts,
    );
    const disk = new k8s.core.v1.PersistentVolumeClaim(
      `${name}-nfs-disk`,
      {
        metadata: { namespace: ns.metadata.name, labels: { ...PLATFORM_LABELS }, annotations },
        spec: { accessModes: ["ReadWriteOnce"], storageClassName: c.storageClassName, resources: { requests: { storage: size } } },
      },
      k8sOpts,
    );
    new k8s.apps.v1.Deployment(
      `${name}-nfs`,
      {
        metadata: { namespace: ns.metadata.name, labels: { ...PLATFORM_LABELS }, annotations },
        spec: nfsServerDeploymentSpec(c.nfsImage ?? images.nfsServer, disk.metadata.name),
      },
      k8sOpts,
    );
    const svc = new k8s.core.v1.Service(
      `${name}-nfs`,
      {
        metadata: { namespace: ns.metadata.name, labels: { ...PLATFORM_LABELS }, annotations },
        spec: { type: "ClusterIP", selector: { "app.kubernetes.io/name": "nfs-server" }, ports: [{ name: "nfs", port: 2049, targetPort: "nfs" }] },
      },
      k8sOpts,
    );
    // Nodes mount NFS outside cluster DNS, so the volume names the Service's IP, not its name.
    // Before the Service exists that IP is unknown; a preview shows the Service's DNS name.
    const server = previewPlaceholder(svc.spec.clusterIP, pulumi.interpolate`${svc.metadata.name}.${ns.metadata.name}.svc`);
    return server.apply((ip) => ({ kind: "nfs" as const, server: ip, path: "/" }));
  }

  private filestore(name: string, c: SharedStorageConfig, size: string, args: SharedStorageArgs, labels: Record<string, string>): pulumi.Output<VolumeSource> {
    if (!args.gcp) throw new pulumi.ResourceError("the filestore backend needs the GKE cluster's project and location", this);
    const loc = args.gcp.location;
    const zone = c.filestoreLocation ?? (/-[a-z]$/.test(loc) ? loc : `${loc}-a`);
    // Loaded only when used: each cloud SDK costs hundreds of milliseconds to import.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, as said above
    const gcp = require("@pulumi/gcp") as typeof gcpTypes;
    const instance = new gcp.filestore.Instance(
      `${name}-filestore`,
      {
        project: args.gcp.project,
        location: zone,
        tier: c.filestoreTier,
        fileShares: { name: "shared", capacityGb: Math.ceil(sizeInGiB(size)) },
        networks: [{ network: c.filestoreNetwork, modes: ["MODE_IPV4"] }],
        labels,
      },
      // Deleting the instance deletes the data: Pulumi refuses unless this is removed first.
      { parent: this, protect: true },
    );
    return instance.networks.apply((n) => ({ kind: "nfs" as const, server: n[0]?.ipAddresses?.[0] ?? "", path: "/shared" }));
  }

  private azureFiles(
    name: string,
    c: SharedStorageConfig,
    size: string,
    args: SharedStorageArgs,
    tags: Record<string, string>,
  ): (namespace: string) => pulumi.Output<VolumeSource> {
    if (!args.azure) throw new pulumi.ResourceError("the azureFiles backend needs the AKS resource group and location", this);
    const { resourceGroupName, location } = args.azure;
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, like @pulumi/gcp above
    const storage = require("@pulumi/azure-native/storage") as typeof storageTypes;
    const premium = c.azureFilesSku.startsWith("Premium");
    const account = new storage.StorageAccount(
      `${alphanumeric(name, 10)}files`,
      {
        resourceGroupName,
        location,
        kind: premium ? "FileStorage" : "StorageV2",
        sku: { name: c.azureFilesSku },
        minimumTlsVersion: "TLS1_2",
        allowBlobPublicAccess: false,
        enableHttpsTrafficOnly: true,
        tags,
      },
      { parent: this, protect: true },
    );
    const share = new storage.FileShare(
      `${name}-share`,
      { resourceGroupName, accountName: account.name, shareName: "shared", shareQuota: Math.ceil(sizeInGiB(size)), enabledProtocols: "SMB" },
      { parent: this, protect: true },
    );
    const key = storage.listStorageAccountKeysOutput({ resourceGroupName, accountName: account.name }, { parent: this }).keys.apply((ks) => ks[0]?.value ?? "");
    const secretName = "mlplatform-azure-files";
    // The CSI driver reads the account key from a Secret in each namespace that mounts the share.
    this.perNamespace = (namespace, opts) => {
      new k8s.core.v1.Secret(
        `${name}-azure-files-${namespace}`,
        {
          metadata: { name: secretName, namespace, labels: { ...PLATFORM_LABELS } },
          stringData: { azurestorageaccountname: account.name, azurestorageaccountkey: pulumi.secret(key) },
        },
        opts,
      );
    };
    return (namespace: string) => {
      return pulumi.all([resourceGroupName, account.name, share.name]).apply(([rg, acct, shareName]) => ({
        kind: "azureFile" as const,
        resourceGroup: rg,
        storageAccount: acct,
        shareName,
        secretName,
        secretNamespace: namespace,
      }));
    };
  }
}
