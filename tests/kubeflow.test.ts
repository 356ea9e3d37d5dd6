import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXECUTOR_SECURITY_CONTEXT, PIPELINE_RULES, argoValues, trainingWorkflowManifest } from "../components/argoWorkflows";
import { OBJECT_STORE_SECRET, restrictedPod } from "../components/objectStore";
import { WEBHOOK_CERT_SECRET, keepOperatorWebhookCert, tfJobManifest } from "../components/trainingOperator";
import { uiIngress } from "../components/uiIngress";
import { charts, manifests } from "../components/versions";
import { FIXTURE_KUBECONFIG, TEST_SECRETS, ofType, one, runStack, stackConfig, type StackRun } from "./harness";
import { validateObject } from "./k8sSchema";

const kind = { KUBECONFIG: FIXTURE_KUBECONFIG };
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function chart(run: StackRun, name: string) {
  return ofType(run, "kubernetes:helm.sh/v4:Chart").find((c) => c.name === name)!.inputs;
}

describe("Kubeflow stack under mocks", () => {
  const runs: Record<string, StackRun> = {};
  it("every stack installs the Training Operator, Argo and JupyterHub at their pinned versions", async () => {
    runs.dev = await runStack("dev", {}, kind);
    runs.aks = await runStack("aks");
    runs.gke = await runStack("gke");
    for (const [stack, r] of Object.entries(runs)) {
      const kustomize = one(r, "kubernetes:kustomize/v2:Directory").inputs;
      expect(kustomize.directory, stack).toBe(manifests.trainingOperator.source);
      expect(kustomize.directory).toContain("ref=v1.9.");
      expect(chart(r, "argo-chart").version, stack).toBe(charts.argoWorkflows.version);
      expect(chart(r, "argo-chart").chart).toBe("argo-workflows");
      expect(chart(r, "notebooks-chart").version, stack).toBe(charts.jupyterhub.version);
      expect(r.outputs.trainingOperatorVersion).toBe("v1.9.2");
    }
  });

  it("a local chart archive (kubeflow.argo.chart, kubeflow.jupyterhub.chart) replaces the repository and version", async () => {
    const r = await runStack("dev", { "mlplatform:kubeflow": { argo: { chart: "/charts/argo.tgz" }, jupyterhub: { authenticator: "dummy", chart: "/charts/hub.tgz" } } }, kind);
    for (const [name, file] of [
      ["argo-chart", "/charts/argo.tgz"],
      ["notebooks-chart", "/charts/hub.tgz"],
    ] as const) {
      const c = chart(r, name);
      expect(c.chart).toBe(file);
      expect(c.version).toBeUndefined();
      expect(c.repositoryOpts).toBeUndefined();
    }
  });

  it("argo server: auth mode client (never server), ClusterIP, controller watching the pipelines namespace", () => {
    for (const r of Object.values(runs)) {
      const v = chart(r, "argo-chart").values;
      expect(v.server.authModes).toEqual(["client"]);
      expect(v.server.serviceType).toBe("ClusterIP");
      expect(v.controller.workflowNamespaces).toEqual(["ml-pipelines"]);
      // Pinned tags: a node that holds the image starts the pod without a registry.
      expect(v.images.pullPolicy).toBe("IfNotPresent");
    }
  });

  it("the pipeline service account has exactly these rules, in its namespace only", () => {
    const role = one(runs.dev!, "kubernetes:rbac.authorization.k8s.io/v1:Role").inputs;
    expect(role.metadata.namespace).toBe("ml-pipelines");
    const listed = role.rules.map((r: any) => `${r.apiGroups.join(",") || "core"}/${r.resources.join(",")}: ${r.verbs.join(",")}`);
    expect(listed).toEqual([
      "kubeflow.org/tfjobs: create,get,list,watch,delete,patch",
      "kubeflow.org/tfjobs/status: get",
      "core/pods: get,list,watch",
      "core/pods/log: get",
      "argoproj.io/workflowtaskresults: create,patch",
      "apps/deployments: create,get,delete",
      "core/services: create,get,delete",
    ]);
    expect(ofType(runs.dev!, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")).toEqual([]);
    const binding = one(runs.dev!, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding").inputs;
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "pipeline", namespace: "ml-pipelines" }]);
    expect(PIPELINE_RULES.some((r) => (r.verbs as string[]).includes("*") || (r.resources as string[]).includes("secrets"))).toBe(false);
  });

  it("aks/gke: JupyterHub logs in with GitHub, an allow list, and the client secret only as a Pulumi secret", () => {
    for (const stack of ["aks", "gke"]) {
      const values = chart(runs[stack]!, "notebooks-chart").values;
      expect(values[SECRET_SIG], `${stack}: chart values carrying the client secret are secret`).toBeDefined();
      const v = values.value;
      expect(v.hub.config.JupyterHub.authenticator_class).toBe("github");
      expect(v.hub.config.GitHubOAuthenticator.client_secret).toBe(TEST_SECRETS["mlplatform:githubOAuthClientSecret"]);
      expect(v.hub.config.GitHubOAuthenticator.allowed_organizations).toEqual(["example-ml-org"]);
      expect(v.proxy.service.type).toBe("ClusterIP");
      expect(v.cull).toMatchObject({ enabled: true, timeout: 3600 });
      expect(v.singleuser.storage.extraVolumeMounts).toEqual([{ name: "shared", mountPath: "/mnt/shared" }]);
      expect(v.ingress).toMatchObject({ enabled: true, hosts: ["hub.ml.example.com"] });
      const gpu = v.singleuser.profileList.find((p: any) => p.display_name === "GPU notebook");
      expect(gpu.kubespawner_override.extra_resource_limits).toEqual({ "nvidia.com/gpu": "1" });
      expect(gpu.kubespawner_override.node_selector).toEqual(runs[stack]!.outputs.gpuNodeSelector);
    }
  });

  it("dev: the dummy authenticator, no GPU profile", () => {
    const v = chart(runs.dev!, "notebooks-chart").values;
    expect(v.hub.config.JupyterHub.authenticator_class).toBe("dummy");
    expect(v.singleuser.profileList.map((p: any) => p.display_name)).toEqual(["CPU notebook"]);
  });

  it("the dummy authenticator outside dev is refused, naming the stack", async () => {
    const base = stackConfig("aks")["mlplatform:kubeflow"] as any;
    await expect(runStack("aks", { "mlplatform:kubeflow": { ...base, jupyterhub: { authenticator: "dummy" } } })).rejects.toThrow(
      /authenticator "dummy" lets anyone in and is only allowed in the dev stack; got stack "aks"/,
    );
  });

  it("github without an allow list, or without the client secret, is refused", async () => {
    const base = stackConfig("gke")["mlplatform:kubeflow"] as any;
    const open = { ...base, jupyterhub: { ...base.jupyterhub, github: { ...base.jupyterhub.github, allowedOrganizations: [] } } };
    await expect(runStack("gke", { "mlplatform:kubeflow": open })).rejects.toThrow(/allowedOrganizations or allowedUsers must name someone/);
    await expect(runStack("gke", { "mlplatform:githubOAuthClientSecret": undefined })).rejects.toThrow(
      /mlplatform:githubOAuthClientSecret is required with kubeflow.jupyterhub.authenticator "github"/,
    );
  });

  it("TensorBoard: restricted, read-only shared volume, ClusterIP; exposed only behind an auth check", async () => {
    const tb = ofType(runs.dev!, "kubernetes:apps/v1:Deployment").find((d) => d.name === "platform-tensorboard")!.inputs;
    const c = tb.spec.template.spec.containers[0];
    expect(c.command).toEqual(["tensorboard", "--logdir", "/mnt/shared/logs", "--bind_all", "--port", "6006"]);
    expect(c.volumeMounts[0]).toEqual({ name: "shared", mountPath: "/mnt/shared", readOnly: true });
    expect(ofType(runs.dev!, "kubernetes:networking.k8s.io/v1:Ingress")).toEqual([]);
    expect(runs.dev!.resources.filter((r) => r.type === "kubernetes:core/v1:Service" && r.inputs.spec.type !== "ClusterIP")).toEqual([]);
    expect(() => uiIngress({ host: "tb.example.com", serviceName: "tb", servicePort: 80, unauthenticatedUi: true })).toThrow(
      /refusing to expose tb.example.com: the UI has no login of its own, so an authUrl is required/,
    );
    const r = await runStack("dev", { "mlplatform:ingress": { tensorboard: { host: "tb.ml.example.com", authUrl: "https://auth.example.com/oauth2/auth" } } }, kind);
    const ing = one(r, "kubernetes:networking.k8s.io/v1:Ingress").inputs;
    expect(ing.metadata.annotations["nginx.ingress.kubernetes.io/auth-url"]).toBe("https://auth.example.com/oauth2/auth");
    expect(ing.spec.tls[0].hosts).toEqual(["tb.ml.example.com"]);
    await expect(runStack("dev", { "mlplatform:ingress": { tensorboard: { host: "tb.ml.example.com" } } }, kind)).rejects.toThrow(
      /mlplatform:ingress.tensorboard.authUrl is required/,
    );
  });

  it("each part can be switched off", async () => {
    const r = await runStack(
      "dev",
      {
        "mlplatform:kubeflow": { trainingOperator: { enabled: false }, argo: { enabled: false }, jupyterhub: { enabled: false }, tensorboard: { enabled: false } },
        "mlplatform:pipeline": { enabled: false },
      },
      kind,
    );
    // Only the metrics stack's chart is left (observability is not a Kubeflow part).
    expect(ofType(r, "kubernetes:helm.sh/v4:Chart").map((c) => c.name)).toEqual(["metrics-kps"]);
    expect(ofType(r, "kubernetes:kustomize/v2:Directory")).toEqual([]);
    expect(r.outputs.argoServerUrl).toBe("");
  });
});

describe("our TFJob and Workflow against the upstream schemas", () => {
  const tfJob = tfJobManifest({ name: "mnist", namespace: "ml-pipelines", image: "example.com/trainer:1.0.0", args: ["train-mnist"], gpus: 0 });

  it("the Workflow that runs a TFJob validates against Argo's Workflow schema", async () => {
    const wf = trainingWorkflowManifest({ generateName: "mnist-", namespace: "ml-pipelines", serviceAccountName: "pipeline", tfJob });
    await validateObject({ ...wf, metadata: { ...wf.metadata, name: "mnist-x" } });
    await expect(validateObject({ ...wf, metadata: { name: "x" }, spec: { ...wf.spec, templates: "train" } })).rejects.toThrow(/fails its schema/);
  });

  it("the TFJob's pod template is a valid PodTemplateSpec, restricted, with the container the operator expects", async () => {
    const tpl = tfJob.spec.tfReplicaSpecs.Chief.template;
    await validateObject({ apiVersion: "v1", kind: "PodTemplate", metadata: { name: "chief" }, template: tpl });
    expect(tpl.spec.containers[0].name).toBe("tensorflow");
    expect(tpl.spec.securityContext?.runAsNonRoot).toBe(true);
    expect(() => tfJobManifest({ name: "x", namespace: "n", image: "i:1", args: [], gpus: 1 })).toThrow(/1 GPUs asked for but the cluster has no GPU placement/);
  });
});

describe("the Training Operator pin", () => {
  it("the release the platform installs is the one whose TFJob CRD the offline tests apply", () => {
    const pins = readFileSync(join(__dirname, "..", "scripts", "tools", "versions.env"), "utf8");
    const fetched = /^TRAINING_OPERATOR_VERSION=(\S+)$/m.exec(pins)?.[1];
    expect(fetched).toBe(manifests.trainingOperator.version);
    expect(manifests.trainingOperator.source.endsWith(`?ref=${fetched}`)).toBe(true);
  });
});

/** The vendored chart archives (../shared/charts; see its README). */
const CHARTS_DIR = process.env.MLPLATFORM_CHARTS_DIR ?? join(__dirname, "..", "..", "shared", "charts");
function chartFile(archive: string, member: string): string | undefined {
  const file = join(CHARTS_DIR, archive);
  if (!existsSync(file)) {
    if (process.env.CI === "true") throw new Error(`${file} is missing: CI needs the vendored charts (MLPLATFORM_CHARTS_DIR)`);
    console.log(`SKIPPED the check against ${archive}: not in ${CHARTS_DIR}`);
    return undefined;
  }
  return execFileSync("tar", ["-xzOf", file, member], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

/** What Pod Security `restricted` asks of one container, given its pod's securityContext; [] when it passes. */
function restrictedViolations(pod: Record<string, any>, c: Record<string, any>): string[] {
  const sc = c.securityContext ?? {};
  const out: string[] = [];
  if (sc.privileged) out.push("privileged");
  if (sc.allowPrivilegeEscalation !== false) out.push("allowPrivilegeEscalation != false");
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) out.push("capabilities.drop lacks ALL");
  if ((sc.capabilities?.add ?? []).some((x: string) => x !== "NET_BIND_SERVICE")) out.push(`capabilities.add ${sc.capabilities.add}`);
  if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) out.push("runAsNonRoot != true");
  if ((sc.runAsUser ?? pod.runAsUser) === 0) out.push("runAsUser 0");
  const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") out.push("seccompProfile not RuntimeDefault/Localhost");
  return out;
}

describe("Pod Security of the pods the charts make in restricted namespaces", () => {
  it("JupyterHub user pods: no privileged iptables init container; the user pods' NetworkPolicy blocks the metadata server instead", async () => {
    for (const [stack, r] of [
      ["dev", await runStack("dev", {}, kind)],
      ["aks", await runStack("aks")],
    ] as const) {
      const v = chart(r, "notebooks-chart").values;
      const su = (v.value ?? v).singleuser;
      expect(su.cloudMetadata, stack).toEqual({ blockWithIptables: false });
      expect(su.networkPolicy, stack).toEqual({ enabled: true, egressAllowRules: { cloudMetadataServer: false } });
    }
    // The chart reads exactly these keys: the hub adds the NET_ADMIN init container only when
    // singleuser.cloudMetadata.blockWithIptables is true, and its user-pod NetworkPolicy opens
    // the metadata server only with egressAllowRules.cloudMetadataServer.
    const hubConfig = chartFile(`jupyterhub-${charts.jupyterhub.version}.tgz`, "jupyterhub/files/hub/jupyterhub_config.py");
    if (hubConfig !== undefined) {
      expect(hubConfig).toMatch(/cloud_metadata = get_config\("singleuser.cloudMetadata"\)/);
      expect(hubConfig).toMatch(/if cloud_metadata.get\("blockWithIptables"\) == True:[\s\S]{0,1200}privileged=True[\s\S]{0,200}NET_ADMIN/);
      const netpol = chartFile(`jupyterhub-${charts.jupyterhub.version}.tgz`, "jupyterhub/templates/_helpers-netpol.tpl")!;
      expect(netpol).toContain("if $netpol.egressAllowRules.cloudMetadataServer");
    }
  });

  it("JupyterHub user pods pass the restricted level: KubeSpawner's container and pod security contexts", async () => {
    for (const [stack, r] of [
      ["dev", await runStack("dev", {}, kind)],
      ["aks", await runStack("aks")],
    ] as const) {
      const v = chart(r, "notebooks-chart").values;
      const vals = v.value ?? v;
      const ks = vals.hub.config.KubeSpawner;
      const pod = { ...ks.pod_security_context, runAsUser: vals.singleuser.uid, fsGroup: vals.singleuser.fsGid };
      expect(restrictedViolations(pod, { securityContext: ks.container_security_context }), stack).toEqual([]);
      // What the chart alone gave them fails (the check can fail).
      expect(restrictedViolations({ runAsUser: vals.singleuser.uid }, { securityContext: { allowPrivilegeEscalation: false } }).length, stack).toBeGreaterThan(0);
      expect(vals.singleuser.storage.type, stack).toBe("dynamic");
    }
    const none = chart(await runStack("dev", { "mlplatform:kubeflow": { jupyterhub: { authenticator: "dummy", homeStorage: "none" } } }, kind), "notebooks-chart").values;
    expect((none.value ?? none).singleuser.storage.type).toBe("none");
  });

  it("JupyterHub's cookie secret, CryptKeeper key and proxy token come from generated secrets, not the chart's per-render random ones", async () => {
    const r = await runStack("dev", {}, kind);
    const v = chart(r, "notebooks-chart").values;
    const vals = v.value ?? v;
    const gen = ofType(r, "pulumi-nodejs:dynamic/mlplatform:GeneratedSecret").filter((g) => g.name.startsWith("notebooks-"));
    expect(gen.map((g) => [g.name, g.inputs.alphabet, g.inputs.length]).sort()).toEqual([
      ["notebooks-cookie-secret", "hex", 64],
      ["notebooks-crypt-key", "hex", 64],
      ["notebooks-proxy-token", "alnum", 64],
    ]);
    for (const value of [vals.hub.cookieSecret, vals.hub.config.CryptKeeper.keys[0], vals.proxy.secretToken]) expect(typeof value === "string" && value.length > 0).toBe(true);
    // The chart takes exactly these values before falling back to lookup/random.
    const passwords = chartFile(`jupyterhub-${charts.jupyterhub.version}.tgz`, "jupyterhub/templates/hub/_helpers-passwords.tpl");
    if (passwords !== undefined) {
      for (const key of [".Values.proxy.secretToken", ".Values.hub.cookieSecret", '.Values.hub.config | dig "CryptKeeper" "keys"']) expect(passwords).toContain(key);
    }
  });

  it("JupyterHub user pods get the object store's endpoint and credentials from its Secret, never as literals", async () => {
    const r = await runStack("dev", {}, kind);
    const v = chart(r, "notebooks-chart").values;
    const env = (v.value ?? v).singleuser.extraEnv;
    expect(env.MLPLATFORM_SHARED).toBe("/mnt/shared");
    for (const key of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"]) {
      expect(env[key], key).toEqual({ valueFrom: { secretKeyRef: { name: OBJECT_STORE_SECRET, key } } });
    }
    // The notebooks namespace holds that Secret.
    const secrets = ofType(r, "kubernetes:core/v1:Secret")
      .filter((x) => x.inputs.metadata?.name === OBJECT_STORE_SECRET)
      .map((x) => x.inputs.metadata.namespace);
    expect(secrets).toContain("ml-notebooks");
  });

  it("Argo's init and wait containers get a restricted securityContext through the chart's executor settings", () => {
    const v = argoValues({ pipelinesNamespace: "ml-pipelines", authMode: "client", installCrds: true }) as any;
    expect(v.executor.securityContext).toEqual(EXECUTOR_SECURITY_CONTEXT);
    // In a workflow pod: the templates' pod securityContext plus the executor's on init/wait.
    const pod = restrictedPod(1000);
    expect(restrictedViolations(pod, { securityContext: EXECUTOR_SECURITY_CONTEXT })).toEqual([]);
    // What the chart's default left them with fails (the check can fail).
    expect(restrictedViolations(pod, {})).toEqual(["allowPrivilegeEscalation != false", "capabilities.drop lacks ALL"]);
    // The chart renders executor.securityContext into the controller's config.
    const cm = chartFile(`argo-workflows-${charts.argoWorkflows.version}.tgz`, "argo-workflows/templates/controller/workflow-controller-config-map.yaml");
    if (cm !== undefined) expect(cm).toMatch(/\n {4}executor:\n(?: {6}.*\n)*? {6}\{\{- with \.Values\.executor\.securityContext \}\}\n {6}securityContext:/);
  });
});

describe("the Training Operator's webhook certificate", () => {
  it("Pulumi creates the Secret but leaves its data to the operator's cert rotator; nothing else is touched", async () => {
    const secret = await keepOperatorWebhookCert({ type: "kubernetes:core/v1:Secret", name: "s", props: { metadata: { name: WEBHOOK_CERT_SECRET } }, opts: {} } as any);
    expect(secret?.opts.ignoreChanges).toEqual(["data", "stringData"]);
    for (const [type, name] of [
      ["kubernetes:core/v1:Secret", "other"],
      ["kubernetes:apps/v1:Deployment", WEBHOOK_CERT_SECRET],
    ]) {
      expect(await keepOperatorWebhookCert({ type, name: "x", props: { metadata: { name } }, opts: {} } as any)).toBeUndefined();
    }
    // The release's kustomization generates that Secret, empty, under that name.
    const kustomization = join(
      process.env.HOME ?? "",
      ".cache",
      "mlplatform",
      "tools",
      "manifests",
      `training-operator-${manifests.trainingOperator.version}`,
      "overlays",
      "standalone",
      "kustomization.yaml",
    );
    if (existsSync(kustomization)) expect(readFileSync(kustomization, "utf8")).toMatch(new RegExp(`secretGenerator:\\n\\s+- name: ${WEBHOOK_CERT_SECRET}\\n`));
  });
});

describe("Argo's artifact repository", () => {
  it("is the object store's logs bucket, with the object store Secret's keys (archived step logs need it)", () => {
    const v = argoValues({
      pipelinesNamespace: "ml-pipelines",
      authMode: "client",
      installCrds: true,
      artifacts: { endpoint: "http://minio.mlplatform.svc.cluster.local:9000", bucket: "logs" },
    }) as any;
    expect(v.useStaticCredentials).toBe(true);
    expect(v.artifactRepository).toEqual({
      archiveLogs: true,
      s3: {
        endpoint: "minio.mlplatform.svc.cluster.local:9000",
        bucket: "logs",
        insecure: true,
        accessKeySecret: { name: OBJECT_STORE_SECRET, key: "AWS_ACCESS_KEY_ID" },
        secretKeySecret: { name: OBJECT_STORE_SECRET, key: "AWS_SECRET_ACCESS_KEY" },
      },
    });
    const tls = argoValues({
      pipelinesNamespace: "p",
      authMode: "client",
      installCrds: true,
      artifacts: { endpoint: "https://s3.example.test", bucket: "b", region: "eu" },
    }) as any;
    expect(tls.artifactRepository.s3).toMatchObject({ endpoint: "s3.example.test", insecure: false, region: "eu" });
    expect(argoValues({ pipelinesNamespace: "p", authMode: "client", installCrds: true })).not.toHaveProperty("artifactRepository");
    // The chart renders artifactRepository.s3 (with its secret refs) into the controller's config.
    const cm = chartFile(`argo-workflows-${charts.argoWorkflows.version}.tgz`, "argo-workflows/templates/controller/workflow-controller-config-map.yaml");
    if (cm !== undefined) expect(cm).toMatch(/if \.Values\.useStaticCredentials \}\}\n\s+accessKeySecret:/);
  });

  it("dev stack: the chart gets the stack's object store and logs bucket", async () => {
    const r = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    const chart = ofType(r, "kubernetes:helm.sh/v4:Chart").find((c) => c.inputs.name === "argo-workflows")!;
    expect(chart.inputs.values.artifactRepository.s3).toMatchObject({ endpoint: "minio.mlplatform.svc.cluster.local:9000", bucket: "logs", insecure: true });
  });
});

describe("the Argo Workflows pin", () => {
  it("the release whose CRDs the offline tests fetch is the pinned chart's appVersion", () => {
    const script = readFileSync(join(__dirname, "..", "scripts", "tools", "fetch-argo-crds.sh"), "utf8");
    const fetched = /^ARGO_WORKFLOWS_VERSION=(\S+)$/m.exec(script)?.[1];
    expect(fetched).toMatch(/^v4\.\d+\.\d+$/);
    const chartYaml = chartFile(`argo-workflows-${charts.argoWorkflows.version}.tgz`, "argo-workflows/Chart.yaml");
    if (chartYaml !== undefined) {
      expect(/^version: (\S+)$/m.exec(chartYaml)?.[1]).toBe(charts.argoWorkflows.version);
      expect(/^appVersion: (\S+)$/m.exec(chartYaml)?.[1]).toBe(fetched);
    }
  });
});
