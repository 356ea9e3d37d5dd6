import { describe, expect, it } from "vitest";
import { generatedSecretProvider } from "../components/generatedSecret";
import { OBJECT_STORE_SECRET } from "../components/objectStore";
import { images } from "../components/versions";
import { FAKE, FIXTURE_KUBECONFIG, ofType, one, runStack, stackConfig, type RecordedResource, type StackRun } from "./harness";

const kind = { KUBECONFIG: FIXTURE_KUBECONFIG };
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const NAMESPACES = ["ml-notebooks", "ml-pipelines", "ml-serving", "mlplatform"];

/** Paths in `v` where one of `secrets` appears as a plain string (not inside a secret wrapper). */
function plaintextLeaks(v: unknown, secrets: string[], at = "$"): string[] {
  if (typeof v === "string") return secrets.filter((s) => v.includes(s)).map(() => at);
  if (Array.isArray(v)) return v.flatMap((x, i) => plaintextLeaks(x, secrets, `${at}[${i}]`));
  if (v && typeof v === "object") {
    if (SECRET_SIG in (v as object)) return []; // a secret: encrypted in state, masked in output
    return Object.entries(v).flatMap(([k, x]) => plaintextLeaks(x, secrets, `${at}.${k}`));
  }
  return [];
}

function leaksIn(run: StackRun, secrets: string[]): string[] {
  const fromInputs = run.resources.flatMap((r: RecordedResource) =>
    // Our dynamic secrets hold their value as an output, never as an input.
    plaintextLeaks(r.inputs, secrets, `${r.type} ${r.name}`),
  );
  const fromOutputs = Object.entries(run.outputs)
    .filter(([k]) => !run.secretOutputs.includes(k))
    .flatMap(([k, v]) => plaintextLeaks(v, secrets, `output ${k}`));
  return [...fromInputs, ...fromOutputs];
}

const generated = ["mlpgenerated-objects-access-key", "generated-objects-secret-key"];

describe("object store (MinIO) under mocks", () => {
  let dev: StackRun;
  it("dev: MinIO StatefulSet with a pinned image, non-root, probes, its own volume", async () => {
    dev = await runStack("dev", {}, kind);
    const sts = one(dev, "kubernetes:apps/v1:StatefulSet").inputs;
    expect(sts.metadata.namespace).toBe("mlplatform");
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    expect(c.image).toBe(images.minio);
    expect(c.image).not.toMatch(/:latest$/);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(c.readinessProbe.httpGet.path).toBe("/minio/health/ready");
    expect(c.livenessProbe.httpGet.path).toBe("/minio/health/live");
    expect(c.resources.requests).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe("50Gi");
    // Root credentials come from the Secret, never literal values.
    expect(c.env.find((e: any) => e.name === "MINIO_ROOT_PASSWORD").valueFrom.secretKeyRef).toEqual({
      name: OBJECT_STORE_SECRET,
      key: "AWS_SECRET_ACCESS_KEY",
    });
    expect(ofType(dev, "kubernetes:core/v1:Service").find((x) => x.name === "objects-minio")?.inputs.metadata.name).toBe("minio");
  });

  it("credentials are generated (never MinIO's defaults), and exported only as secrets", () => {
    // The object store's pair (the metrics stack generates Grafana's own, tests/observability-stacks.test.ts).
    expect(ofType(dev, "pulumi-nodejs:dynamic/mlplatform:GeneratedSecret").filter((g) => g.name.startsWith("objects-"))).toHaveLength(2);
    expect(dev.secretOutputs.sort()).toEqual(["kubeconfig", "objectStoreAccessKeyId", "objectStoreSecretAccessKey"]);
    expect(dev.outputs.objectStoreAccessKeyId).toBe(generated[0]);
    expect(dev.outputs.objectStoreAccessKeyId).not.toBe("minioadmin");
  });

  it("the credentials Secret exists in the store's and every consumer namespace, as a secret", () => {
    const secrets = ofType(dev, "kubernetes:core/v1:Secret")
      .filter((s) => s.name.startsWith("objects-"))
      .map((s) => s.inputs);
    expect(secrets.map((s) => s.metadata.namespace).sort()).toEqual(NAMESPACES);
    for (const s of secrets) {
      expect(s.metadata.name).toBe(OBJECT_STORE_SECRET);
      expect(s.stringData[SECRET_SIG]).toBeDefined();
      expect(s.stringData.value).toEqual({
        AWS_ACCESS_KEY_ID: generated[0],
        AWS_SECRET_ACCESS_KEY: generated[1],
        AWS_ENDPOINT_URL: "http://minio.mlplatform.svc.cluster.local:9000",
        AWS_REGION: "us-east-1",
        S3_FORCE_PATH_STYLE: "true",
      });
    }
    expect(dev.outputs.objectStoreEndpoint).toBe("http://minio.mlplatform.svc.cluster.local:9000");
    expect(dev.outputs.objectStoreSecretName).toBe(OBJECT_STORE_SECRET);
  });

  it("a Job creates the three buckets idempotently", () => {
    const job = one(dev, "kubernetes:batch/v1:Job").inputs;
    const script = job.spec.template.spec.containers[0].command.join(" ");
    expect(script).toContain("for b in data models logs; do mc mb --ignore-existing");
    expect(job.spec.template.spec.containers[0].envFrom).toEqual([{ secretRef: { name: OBJECT_STORE_SECRET } }]);
    expect([dev.outputs.objectStoreDataBucket, dev.outputs.objectStoreModelsBucket, dev.outputs.objectStoreLogsBucket]).toEqual(["data", "models", "logs"]);
  });

  it("no credential appears in plaintext in any resource input or stack output, in any stack", async () => {
    expect(leaksIn(dev, generated)).toEqual([]);
    const aks = await runStack("aks");
    expect(leaksIn(aks, [...generated, FAKE.storageKey])).toEqual([]);
    const gke = await runStack("gke");
    expect(leaksIn(gke, generated)).toEqual([]);
    // The check itself finds a leak when there is one.
    expect(plaintextLeaks({ a: { b: `x${generated[1]}` } }, generated)).toEqual(["$.a.b"]);
  });

  it("external mode: no MinIO, the configured endpoint, credentials from secret config only", async () => {
    const secretId = "AKIAEXAMPLEEXTERNAL1";
    const secretKey = "external-secret-key-value-000000000000000";
    const r = await runStack(
      "dev",
      {
        "mlplatform:objectStore": {
          mode: "external",
          endpoint: "https://s3.eu-west-1.amazonaws.com",
          region: "eu-west-1",
          buckets: { data: "acme-ml-data", models: "acme-ml-models", logs: "acme-ml-logs" },
        },
        "mlplatform:objectStoreAccessKeyId": secretId,
        "mlplatform:objectStoreSecretAccessKey": secretKey,
      },
      kind,
    );
    expect(ofType(r, "kubernetes:apps/v1:StatefulSet")).toEqual([]);
    expect(ofType(r, "pulumi-nodejs:dynamic/mlplatform:GeneratedSecret").filter((g) => g.name.startsWith("objects-"))).toEqual([]);
    expect(r.outputs.objectStoreEndpoint).toBe("https://s3.eu-west-1.amazonaws.com");
    expect(r.outputs.objectStoreAccessKeyId).toBe(secretId);
    expect(r.secretOutputs).toContain("objectStoreSecretAccessKey");
    expect(leaksIn(r, [secretId, secretKey])).toEqual([]);
  });

  it("external mode without the secret keys fails naming them and how to set them", async () => {
    await expect(runStack("dev", { "mlplatform:objectStore": { mode: "external", endpoint: "https://s3.example.test" } }, kind)).rejects.toThrow(
      /mlplatform:objectStoreAccessKeyId is required with objectStore.mode "external"; set it with `pulumi config set --secret/,
    );
  });
});

describe("shared RWX storage under mocks", () => {
  function claimsAndVolumes(run: StackRun) {
    const pvs = ofType(run, "kubernetes:core/v1:PersistentVolume").map((p) => p.inputs.spec);
    const pvcs = ofType(run, "kubernetes:core/v1:PersistentVolumeClaim")
      .map((p) => p.inputs)
      .filter((p) => p.metadata.name === "mlplatform-shared");
    return { pvs, pvcs };
  }

  it("dev: an in-cluster NFS server (privileged, alone in its namespace) behind one claim per namespace", async () => {
    const r = await runStack("dev", {}, kind);
    expect(r.outputs.sharedStorageBackend).toBe("nfs");
    const nfs = ofType(r, "kubernetes:apps/v1:Deployment").find((d) => d.name === "shared-nfs")!.inputs;
    expect(nfs.metadata.namespace).toBe("mlplatform-storage");
    expect(nfs.spec.template.spec.containers[0].securityContext).toEqual({ privileged: true });
    const { pvs, pvcs } = claimsAndVolumes(r);
    expect(pvcs.map((p) => p.metadata.namespace).sort()).toEqual(NAMESPACES);
    for (const pvc of pvcs) {
      expect(pvc.spec.accessModes).toEqual(["ReadWriteMany"]);
      expect(pvc.spec.storageClassName).toBe("");
      expect(pvc.spec.volumeName).toMatch(/^shared-/);
    }
    expect(pvs).toHaveLength(4);
    for (const pv of pvs) {
      expect(pv.nfs).toEqual({ server: "10.0.0.42", path: "/" });
      expect(pv.persistentVolumeReclaimPolicy).toBe("Retain");
      expect(pv.accessModes).toEqual(["ReadWriteMany"]);
    }
    expect(pvs.map((p) => p.claimRef.namespace).sort()).toEqual(NAMESPACES);
    expect(r.outputs.sharedClaimName).toBe("mlplatform-shared");
    expect(r.outputs.sharedMountPath).toBe("/mnt/shared");
  });

  it("aks: an Azure Files share, its key in a Secret per namespace, CSI volumes", async () => {
    const r = await runStack("aks");
    expect(r.outputs.sharedStorageBackend).toBe("azureFiles");
    const acct = one(r, "azure-native:storage:StorageAccount").inputs;
    expect(acct).toMatchObject({ minimumTlsVersion: "TLS1_2", allowBlobPublicAccess: false, enableHttpsTrafficOnly: true, sku: { name: "Standard_LRS" } });
    expect(one(r, "azure-native:storage:FileShare").inputs).toMatchObject({ shareQuota: 100, enabledProtocols: "SMB" });
    const keySecrets = ofType(r, "kubernetes:core/v1:Secret").filter((s) => s.inputs.metadata.name === "mlplatform-azure-files");
    expect(keySecrets.map((s) => s.inputs.metadata.namespace).sort()).toEqual(NAMESPACES);
    for (const s of keySecrets) {
      expect(s.inputs.stringData[SECRET_SIG]).toBeDefined();
      expect(s.inputs.stringData.value.azurestorageaccountkey).toBe(FAKE.storageKey);
    }
    const { pvs } = claimsAndVolumes(r);
    expect(pvs).toHaveLength(4);
    for (const pv of pvs) {
      expect(pv.csi.driver).toBe("file.csi.azure.com");
      expect(pv.csi.volumeAttributes.shareName).toBe("shared");
      expect(pv.csi.nodeStageSecretRef).toEqual({ name: "mlplatform-azure-files", namespace: pv.claimRef.namespace });
    }
    expect(new Set(pvs.map((p) => p.csi.volumeHandle)).size).toBe(4);
  });

  it("gke: a 1 TiB Filestore instance, NFS volumes pointing at it", async () => {
    const r = await runStack("gke");
    expect(r.outputs.sharedStorageBackend).toBe("filestore");
    const fs = one(r, "gcp:filestore/instance:Instance").inputs;
    expect(fs).toMatchObject({ tier: "BASIC_HDD", location: "europe-west4-a", fileShares: { name: "shared", capacityGb: 1024 } });
    for (const pv of claimsAndVolumes(r).pvs) expect(pv.nfs).toEqual({ server: "10.20.0.2", path: "/shared" });
  });

  it("externalNfs: volumes point at the given export; no server of ours", async () => {
    const r = await runStack("dev", { "mlplatform:sharedStorage": { backend: "externalNfs", server: "nas.example.internal", path: "/ml", size: "2Ti" } }, kind);
    expect(ofType(r, "kubernetes:apps/v1:Deployment").filter((d) => d.name === "shared-nfs")).toEqual([]);
    for (const pv of claimsAndVolumes(r).pvs) {
      expect(pv.nfs).toEqual({ server: "nas.example.internal", path: "/ml" });
      expect(pv.capacity.storage).toBe("2Ti");
    }
  });

  it("hostPath (single-node existing clusters): every namespace's volume is the node directory; no server of ours", async () => {
    const r = await runStack("dev", { "mlplatform:sharedStorage": { backend: "hostPath", hostPath: "/srv/mlplatform/shared" } }, kind);
    expect(r.outputs.sharedStorageBackend).toBe("hostPath");
    expect(ofType(r, "kubernetes:apps/v1:Deployment").filter((d) => d.name === "shared-nfs")).toEqual([]);
    const { pvs, pvcs } = claimsAndVolumes(r);
    expect(pvcs.map((p) => p.metadata.namespace).sort()).toEqual(NAMESPACES);
    for (const pv of pvs) {
      expect(pv.hostPath).toEqual({ path: "/srv/mlplatform/shared", type: "Directory" });
      expect(pv.nfs).toBeUndefined();
      expect(pv.accessModes).toEqual(["ReadWriteMany"]);
    }
    await expect(runStack("dev", { "mlplatform:sharedStorage": { backend: "hostPath" } }, kind)).rejects.toThrow(
      /mlplatform:sharedStorage.hostPath is required with backend hostPath/,
    );
    await expect(runStack("aks", { ...stackConfig("aks"), "mlplatform:sharedStorage": { backend: "hostPath", hostPath: "/x" } })).rejects.toThrow(
      /mlplatform:sharedStorage.backend "hostPath" needs cluster.provider "existing"; got "aks"/,
    );
  });

  it("a backend that does not fit the cluster is a config error", async () => {
    const base = stackConfig("gke");
    await expect(runStack("gke", { ...base, "mlplatform:sharedStorage": { backend: "azureFiles" } })).rejects.toThrow(
      /mlplatform:sharedStorage.backend "azureFiles" needs cluster.provider "aks"; got "gke"/,
    );
    await expect(runStack("gke", { "mlplatform:sharedStorage": { size: "100Gi" } })).rejects.toThrow(/mlplatform:sharedStorage.size must be at least 1Ti with Filestore/);
  });
});

describe("GeneratedSecret provider", () => {
  it("generates values of the asked length, alphabet and prefix, different every time", async () => {
    const values = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const r = await generatedSecretProvider.create({ length: 20, alphabet: "lowerAlnum", prefix: "mlp" });
      expect(r.outs.value).toMatch(/^mlp[a-z0-9]{20}$/);
      values.add(r.outs.value);
    }
    expect(values.size).toBe(50);
    const key = await generatedSecretProvider.create({ length: 40, alphabet: "alnum", prefix: "" });
    expect(key.outs.value).toMatch(/^[A-Za-z0-9]{40}$/);
    const hex = await generatedSecretProvider.create({ length: 64, alphabet: "hex", prefix: "" });
    expect(hex.outs.value).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(hex.outs.value).size).toBeGreaterThan(8);
  });

  it("replaces the value only when its shape changes", async () => {
    const same = { length: 20, alphabet: "alnum", prefix: "" };
    expect(await generatedSecretProvider.diff!("id", same, same)).toMatchObject({ changes: false, replaces: [] });
    expect(await generatedSecretProvider.diff!("id", same, { ...same, length: 30 })).toMatchObject({ changes: true, replaces: ["length"] });
  });
});
