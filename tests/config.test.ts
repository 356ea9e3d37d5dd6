import { describe, expect, it } from "vitest";
import { CONFIG_KEYS, ConfigError, SECRET_KEYS, parseConfig } from "../config";
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, lastRunResources, projectConfigSchema, runStack } from "./harness";

const aks = { provider: "aks", location: "westeurope" };
const gke = { provider: "gke", project: "my-ml-project", location: "europe-west4" };
const existing = { provider: "existing" };
/** Existing clusters do not build the image: a prebuilt reference is required. */
const prebuilt = { trainerImage: { image: "localhost:5001/mlplatform/trainer:0.1.0" } };

/** The problems parseConfig reports for `raw`. */
function problems(raw: Record<string, unknown>): string[] {
  try {
    parseConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error("expected a ConfigError");
}

describe("config: defaults", () => {
  it("fills every default and freezes the result", () => {
    const c = parseConfig({ cluster: aks });
    expect(c.cluster).toMatchObject({
      provider: "aks",
      skuTier: "Standard",
      networkPolicy: "azure",
      gpuPool: { vmSize: "Standard_NC4as_T4_v3", minCount: 0, maxCount: 4, spot: { enabled: false, maxPrice: -1 } },
      systemPool: { minCount: 1, maxCount: 3 },
    });
    expect(c.namespaces).toEqual({ platform: "mlplatform", pipelines: "ml-pipelines", serving: "ml-serving", notebooks: "ml-notebooks" });
    expect(c.burst.enabled).toBe(false);
    expect(c.devicePlugin.install).toBe("auto");
    expect(c.kubernetes.skipAwait).toBe(false);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.cluster)).toBe(true);
    expect(() => {
      (c.namespaces as { platform: string }).platform = "x";
    }).toThrow(TypeError);
  });

  it("existing cluster defaults to CPU only", () => {
    expect(parseConfig({ cluster: existing, ...prebuilt }).cluster).toMatchObject({ provider: "existing", gpu: "none", inCluster: false });
  });

  it("gke defaults: REGULAR channel, deletion protection, T4 with LATEST drivers", () => {
    expect(parseConfig({ cluster: gke }).cluster).toMatchObject({
      releaseChannel: "REGULAR",
      deletionProtection: true,
      gpuPool: { acceleratorType: "nvidia-tesla-t4", acceleratorCount: 1, driverVersion: "LATEST", minCount: 0 },
    });
  });
});

describe("config: each rule names the key, the value and what is allowed", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["cluster is required", {}, /^mlplatform:cluster is required/],
    ["cluster.provider", { cluster: { provider: "eks" } }, /^mlplatform:cluster.provider must be one of "aks", "gke", "existing"; got "eks"$/],
    ["unknown key", { cluster: existing, clsuter: {} }, /^mlplatform:clsuter is not a key this program reads; known keys: cluster, devicePlugin/],
    ["unknown nested key", { cluster: { ...aks, gpupool: {} } }, /^mlplatform:cluster.gpupool is not a known setting \(typo\?\); remove it$/],
    ["aks location", { cluster: { provider: "aks" } }, /^mlplatform:cluster.location is required \(a string\)$/],
    [
      "aks GPU VM size",
      { cluster: { ...aks, gpuPool: { vmSize: "Standard_D4s_v5" } } },
      /^mlplatform:cluster.gpuPool.vmSize must be an NC, ND or NV series size .*; got "Standard_D4s_v5"$/,
    ],
    ["GPU minCount ≥ 0", { cluster: { ...aks, gpuPool: { minCount: -1 } } }, /^mlplatform:cluster.gpuPool.minCount must be ≥ 0; got -1$/],
    ["GPU minCount integer", { cluster: { ...aks, gpuPool: { minCount: 1.5 } } }, /^mlplatform:cluster.gpuPool.minCount must be a whole number; got 1.5$/],
    ["GPU minCount type", { cluster: { ...aks, gpuPool: { minCount: "0" } } }, /^mlplatform:cluster.gpuPool.minCount must be a number; got "0"$/],
    ["GPU maxCount ≥ minCount", { cluster: { ...aks, gpuPool: { minCount: 3, maxCount: 2 } } }, /^mlplatform:cluster.gpuPool.maxCount must be ≥ minCount \(3\); got 2$/],
    ["GPU maxCount ≥ 1", { cluster: { ...gke, gpuPool: { minCount: 0, maxCount: 0 } } }, /^mlplatform:cluster.gpuPool.maxCount must be ≥ 1 so the pool can scale up; got 0$/],
    ["system minCount ≥ 1", { cluster: { ...aks, systemPool: { minCount: 0 } } }, /^mlplatform:cluster.systemPool.minCount must be ≥ 1; got 0$/],
    [
      "spot maxPrice",
      { cluster: { ...aks, gpuPool: { spot: { enabled: true, maxPrice: 0 } } } },
      /^mlplatform:cluster.gpuPool.spot.maxPrice must be -1 \(on-demand cap\) or a positive price; got 0$/,
    ],
    ["kubernetesVersion", { cluster: { ...aks, kubernetesVersion: "latest" } }, /^mlplatform:cluster.kubernetesVersion must look like 1.33 or 1.33.2; got "latest"$/],
    [
      "kubernetesVersion ≥ 1.30",
      { cluster: { ...aks, kubernetesVersion: "1.29.9" } },
      /^mlplatform:cluster.kubernetesVersion must be 1.30 or later \(the model server's preStop sleep action\); got "1.29.9"$/,
    ],
    ["networkPolicy", { cluster: { ...aks, networkPolicy: "none" } }, /^mlplatform:cluster.networkPolicy must be one of "azure", "calico", "cilium"; got "none"$/],
    ["vnetCidr", { cluster: { ...aks, vnetCidr: "10.0.0.0/24" } }, /^mlplatform:cluster.vnetCidr must be an IPv4 CIDR of \/8 to \/16; got "10.0.0.0\/24"$/],
    ["acrSku", { cluster: { ...aks, acrSku: "Gold" } }, /^mlplatform:cluster.acrSku must be one of "Basic", "Standard", "Premium"; got "Gold"$/],
    ["skuTier", { cluster: { ...aks, skuTier: "Premium" } }, /^mlplatform:cluster.skuTier must be one of "Free", "Standard"; got "Premium"$/],
    ["gke project", { cluster: { ...gke, project: "My Project" } }, /^mlplatform:cluster.project must be a Google Cloud project id; got "My Project"$/],
    ["gke location", { cluster: { provider: "gke", project: "my-ml-project" } }, /^mlplatform:cluster.location is required/],
    [
      "gke accelerator",
      { cluster: { ...gke, gpuPool: { acceleratorType: "tesla-t4" } } },
      /^mlplatform:cluster.gpuPool.acceleratorType must be a GKE accelerator type .*; got "tesla-t4"$/,
    ],
    ["gke accelerator count", { cluster: { ...gke, gpuPool: { acceleratorCount: 32 } } }, /^mlplatform:cluster.gpuPool.acceleratorCount must be ≤ 16; got 32$/],
    [
      "gke driver version",
      { cluster: { ...gke, gpuPool: { driverVersion: "INSTALLATION_DISABLED" } } },
      /^mlplatform:cluster.gpuPool.driverVersion must be one of "DEFAULT", "LATEST"; got "INSTALLATION_DISABLED"$/,
    ],
    ["gke release channel", { cluster: { ...gke, releaseChannel: "stable" } }, /^mlplatform:cluster.releaseChannel must be one of "RAPID", "REGULAR", "STABLE"; got "stable"$/],
    ["existing gpu", { cluster: { ...existing, gpu: "amd" } }, /^mlplatform:cluster.gpu must be one of "none", "nvidia"; got "amd"$/],
    [
      "existing inCluster with kubeconfig",
      { cluster: { ...existing, inCluster: true, context: "kind" } },
      /^mlplatform:cluster.inCluster cannot be combined with kubeconfig or context .*; got true$/,
    ],
    [
      "existing toleration operator",
      { cluster: { ...existing, gpu: "nvidia", gpuTolerations: [{ key: "k", operator: "In" }] } },
      /^mlplatform:cluster.gpuTolerations\[0\].operator must be one of "Equal", "Exists"; got "In"$/,
    ],
    ["namespace name", { cluster: existing, namespaces: { serving: "ML_Serving" } }, /^mlplatform:namespaces.serving must be a DNS-1123 label .*; got "ML_Serving"$/],
    ["namespaces distinct", { cluster: existing, namespaces: { serving: "mlplatform" } }, /^mlplatform:namespaces.serving must differ from namespaces.platform; got "mlplatform"$/],
    ["burst only on aks", { cluster: gke, burst: { enabled: true } }, /^mlplatform:burst.enabled is only supported with cluster.provider "aks" .*got provider "gke".*; got true$/],
    ["burst subnet", { cluster: aks, burst: { enabled: true, subnetCidr: "x" } }, /^mlplatform:burst.subnetCidr must be an IPv4 CIDR; got "x"$/],
    ["device plugin install", { cluster: existing, devicePlugin: { install: "yes" } }, /^mlplatform:devicePlugin.install must be one of "auto", "always", "never"; got "yes"$/],
    ["device plugin on gke", { cluster: gke, devicePlugin: { install: "always" } }, /^mlplatform:devicePlugin.install must not be "always" on GKE/],
    ["skipAwait type", { cluster: existing, kubernetes: { skipAwait: "yes" } }, /^mlplatform:kubernetes.skipAwait must be a boolean; got "yes"$/],
    ["tag keys", { cluster: aks, tags: { Team: "ml" } }, /^mlplatform:tags.Team tag keys must be lowercase \(GCP label rules\)$/],
    ["trainer image on an existing cluster", { cluster: existing }, /^mlplatform:trainerImage.image is required when the trainer image is not built here/],
    ["trainer image tag", { cluster: existing, trainerImage: { image: "example.com/trainer:latest" } }, /^mlplatform:trainerImage.image must not use the latest tag/],
    ["pipeline without Argo", { cluster: aks, kubeflow: { argo: { enabled: false } } }, /^mlplatform:pipeline.enabled needs kubeflow.argo and kubeflow.trainingOperator enabled/],
    ["serving replicas", { cluster: aks, serving: { minReplicas: 3, maxReplicas: 2 } }, /^mlplatform:serving.maxReplicas must be ≥ minReplicas \(3\); got 2$/],
  ];
  for (const [rule, raw, message] of cases) {
    it(rule, () => {
      const found = problems(raw);
      expect(
        found.some((p) => message.test(p)),
        `problems were:\n${found.join("\n")}`,
      ).toBe(true);
    });
  }

  it("reports every problem at once", () => {
    const found = problems({ cluster: { ...aks, gpuPool: { minCount: -1 }, networkPolicy: "none" }, namespaces: { serving: "A" } });
    expect(found).toHaveLength(3);
    expect(new ConfigError(found).message).toMatch(/^Invalid configuration \(3 problems\):\n {2}- /);
  });
});

describe("config: read from the stack", () => {
  it("a bad value stops the program before any resource is registered", async () => {
    await expect(runStack("aks", { "mlplatform:cluster": { provider: "aks", location: "westeurope", gpuPool: { minCount: -1 } } })).rejects.toThrow(
      "Invalid configuration: mlplatform:cluster.gpuPool.minCount must be ≥ 0; got -1",
    );
    expect(lastRunResources).toEqual([]);
  });

  it("a typo in a key stops the program too", async () => {
    await expect(runStack("gke", { "mlplatform:namespace": { serving: "x" } })).rejects.toThrow(/mlplatform:namespace is not a key this program reads/);
    expect(lastRunResources).toEqual([]);
  });
});

describe("config: Pulumi.yaml documents every key", () => {
  const schema = projectConfigSchema();
  it("the same keys as config.ts, each with a description that states defaults", () => {
    expect(Object.keys(schema).sort()).toEqual([...CONFIG_KEYS].sort());
    // Secret keys cannot be declared without making them mandatory: they are documented in the header.
    const text = fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");
    for (const key of SECRET_KEYS) expect(text, key).toMatch(new RegExp(`#\\s+mlplatform:${key}\\s+\\S`));
    for (const [key, spec] of Object.entries(schema)) {
      expect(spec.description, key).toMatch(/default/i);
    }
  });

  it("the project file's defaults are valid configuration", () => {
    const defaults = Object.fromEntries(
      Object.entries(schema)
        .filter(([k, v]) => v.default !== undefined && !SECRET_KEYS.includes(k))
        .map(([k, v]) => [k, v.default]),
    );
    expect(() => parseConfig({ ...defaults, cluster: { provider: "existing" }, ...prebuilt })).not.toThrow();
  });
});
