import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ROOT, unwrap, type RecordedResource } from "./harness";
import { validateObject, validateRecorded } from "./k8sSchema";

type Module = typeof import("../components/modelServing");
let modelServing: Module;
const recorded: RecordedResource[] = [];

const IMAGE = "registry.example.test/mlplatform/trainer@sha256:" + "a".repeat(64);
const GPU = {
  nodeSelector: { "mlplatform.io/accelerator": "nvidia" },
  tolerations: [{ key: "nvidia.com/gpu", operator: "Equal" as const, value: "present", effect: "NoSchedule" as const }],
};

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs) {
        recorded.push({ type: args.type, name: args.name, inputs: args.inputs, provider: args.provider });
        const inputs = args.inputs;
        // The Kubernetes provider auto-names objects without a name.
        const state =
          args.type.startsWith("kubernetes:") && inputs.metadata && !inputs.metadata.name ? { ...inputs, metadata: { ...inputs.metadata, name: `${args.name}-x1y2z3` } } : inputs;
        return { id: `${args.name}-id`, state };
      },
      call(args: pulumi.runtime.MockCallArgs) {
        throw new Error(`unexpected invoke ${args.token}`);
      },
    },
    "mlplatform",
    "test",
    false,
  );
  modelServing = await import("../components/modelServing");
});

/** Builder spec with defaults for `opts`: one model, mnist, unless `opts` lists models. */
function spec(opts: Partial<Parameters<Module["resolveServingSpec"]>[1]> = {}) {
  const models = opts.models ?? (opts.modelName === undefined && opts.modelBasePath === undefined ? [{ name: "mnist" }] : undefined);
  return modelServing.resolveServingSpec("mnist", { image: IMAGE, ...opts, models });
}

/** One mnist model at `basePath`. */
const at = (basePath: string) => ({ models: [{ name: "mnist", basePath }] });

/** The builders' objects as the API server would get them, for schema validation. */
function objects(s: ReturnType<typeof spec>): Record<string, any>[] {
  const meta = { namespace: "ml-serving", labels: modelServing.servingLabels(s) };
  const out: Record<string, any>[] = [
    { apiVersion: "v1", kind: "ConfigMap", metadata: meta, data: { "models.config": modelServing.modelServerConfigText(s) } },
    { apiVersion: "apps/v1", kind: "Deployment", metadata: meta, spec: modelServing.modelServingDeploymentSpec(s, "mnist-models") },
    { apiVersion: "v1", kind: "Service", metadata: { ...meta, name: s.serviceName }, spec: modelServing.modelServingServiceSpec(s) },
  ];
  const hpa = modelServing.modelServingHpaSpec(s, "mnist-server");
  if (hpa) out.push({ apiVersion: "autoscaling/v2", kind: "HorizontalPodAutoscaler", metadata: meta, spec: hpa });
  const pdb = modelServing.modelServingPdbSpec(s);
  if (pdb) out.push({ apiVersion: "policy/v1", kind: "PodDisruptionBudget", metadata: meta, spec: pdb });
  return out;
}

const container = (s: ReturnType<typeof spec>): any => (modelServing.modelServingPodTemplate(s, "mnist-models").spec as any).containers[0];
const pod = (s: ReturnType<typeof spec>): any => modelServing.modelServingPodTemplate(s, "mnist-models").spec as any;

describe("ModelServing builders", () => {
  it("defaults: model on the shared volume, 1-3 replicas, no batching, the server's limits", () => {
    const s = spec();
    expect(s).toMatchObject({
      models: [{ name: "mnist", basePath: "/mnt/shared/models/mnist", versionPolicy: "latest:1", versionLabels: {} }],
      serviceName: "model-server",
      minReplicas: 1,
      maxReplicas: 3,
      targetCpuUtilizationPercent: 70,
      gpus: 0,
      grpcMaxMessageBytes: 32 * 1024 * 1024,
      restMaxBodyBytes: 64 * 1024 * 1024,
      shutdownGraceSeconds: 20,
      preStopSleepSeconds: 5,
    });
    expect(s.batching).toBeUndefined();
    expect(modelServing.servingArgs(s)).toEqual([
      "serve",
      "--model_config_file=/etc/mlp-serving/models.config",
      "--model_config_file_poll_wait_seconds=10",
      "--port=8500",
      "--rest_api_port=8501",
      "--grpc_max_message_bytes=33554432",
      "--rest_api_max_body_bytes=67108864",
      "--file_system_poll_wait_seconds=10",
      "--shutdown_grace_seconds=20",
    ]);
  });

  it("the arguments are ones the real `mlp serve` parses, to the options we meant", async () => {
    // The trainer's own flag parser: a renamed or misspelt flag fails here, not in the cluster.
    const serve = (await import(path.join(ROOT, "trainer", "src", "commands", "serve.ts"))) as {
      parseServeArgs(args: string[], env: NodeJS.ProcessEnv): Promise<{ options: any; graceMs: number }>;
    };
    // The ConfigMap's file, where the pod mounts it, read by the server's own parser.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "model-serving-"));
    const parse = async (s: ReturnType<typeof spec>) => {
      const file = path.join(dir, "models.config");
      await fs.writeFile(file, modelServing.modelServerConfigText(s));
      return serve.parseServeArgs(
        modelServing
          .servingArgs(s)
          .slice(1)
          .map((a) => a.replace(modelServing.MODEL_CONFIG_FILE, file)),
        {},
      );
    };
    const shared = await parse(spec({ batching: { maxBatchSize: 64 }, grpcMaxMessageBytes: 8 << 20, shutdownGraceSeconds: 30 }));
    expect(shared.options.models).toEqual([{ name: "mnist", basePath: "/mnt/shared/models/mnist", versionPolicy: { kind: "latest", numVersions: 1 }, versionLabels: undefined }]);
    expect(shared.options.modelConfigPollMs).toBe(10_000);
    expect(shared.options).toMatchObject({
      host: "0.0.0.0",
      grpcPort: 8500,
      restPort: 8501,
      grpcMaxMessageBytes: 8 << 20,
      restMaxBodyBytes: 64 << 20,
      pollIntervalMs: 10_000,
      batching: { maxBatchSize: 64, batchTimeoutMicros: 2000, maxQueuedRequests: 1024 },
    });
    expect(shared.graceMs).toBe(30_000);
    const s3 = await parse(spec(at("s3://models/mnist")));
    expect(s3.options.models[0].basePath).toBe("s3://models/mnist");
    expect(s3.options.batching).toBeUndefined();
    const several = await parse(
      spec({
        models: [
          { name: "mnist", versionPolicy: "specific:3,4", versionLabels: { stable: 3, canary: 4 } },
          { name: "images", basePath: "s3://models/images", versionPolicy: "all" },
          { name: "keras.v2", versionPolicy: "latest:2" },
        ],
      }),
    );
    expect(several.options.models).toEqual([
      { name: "mnist", basePath: "/mnt/shared/models/mnist", versionPolicy: { kind: "specific", versions: [3, 4] }, versionLabels: { stable: 3, canary: 4 } },
      { name: "images", basePath: "s3://models/images", versionPolicy: { kind: "all" }, versionLabels: undefined },
      { name: "keras.v2", basePath: "/mnt/shared/models/keras.v2", versionPolicy: { kind: "latest", numVersions: 2 }, versionLabels: undefined },
    ]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("the model config is mounted from the ConfigMap as a directory, so edits reach the running server", () => {
    const s = spec();
    expect(container(s).volumeMounts).toContainEqual({ name: "model-config", mountPath: "/etc/mlp-serving", readOnly: true });
    expect(pod(s).volumes).toContainEqual({ name: "model-config", configMap: { name: "mnist-models", items: [{ key: "models.config", path: "models.config" }] } });
    expect(container(s).volumeMounts.every((v: any) => v.subPath === undefined)).toBe(true);
  });

  it("the deprecated modelName/modelBasePath still serve one model under its own Service name", () => {
    const s = spec({ modelName: "digits", modelBasePath: "/mnt/shared/models/digits-v2" });
    expect(s.models).toEqual([{ name: "digits", basePath: "/mnt/shared/models/digits-v2", versionPolicy: "latest:1", versionLabels: {} }]);
    expect(s.serviceName).toBe("digits");
    expect(modelServing.servingLabels(s)["mlplatform.io/model"]).toBe("digits");
    expect(() => spec({ modelName: "a", models: [{ name: "b" }] })).toThrow(/^`models` and the deprecated `modelName`\/`modelBasePath` cannot both be given/);
  });

  it("restricted Pod Security: uid 1000, RuntimeDefault seccomp, no escalation, drop ALL, read-only root with a /tmp emptyDir", () => {
    const s = spec();
    const p = pod(s);
    const c = container(s);
    expect(p.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } });
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(c.volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" });
    expect(p.volumes).toContainEqual({ name: "tmp", emptyDir: { sizeLimit: "256Mi" } });
    expect(p.automountServiceAccountToken).toBe(false);
  });

  it("probes: startup waits for the first load, readiness is gRPC health (SERVING = model AVAILABLE), liveness needs no model", () => {
    const c = container(spec({ startupTimeoutSeconds: 900 }));
    expect(c.readinessProbe.grpc).toEqual({ port: 8500, service: "" });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/monitoring/prometheus/metrics", port: "http" });
    expect(c.startupProbe.httpGet).toEqual({ path: "/monitoring/prometheus/metrics", port: "http" });
    expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(900);
    expect(c.ports).toEqual([
      { name: "grpc", containerPort: 8500, protocol: "TCP" },
      { name: "http", containerPort: 8501, protocol: "TCP" },
    ]);
  });

  it("shutdown: a preStop pause, then SIGTERM with time for the server's grace and its exit", () => {
    const s = spec({ shutdownGraceSeconds: 45, preStopSleepSeconds: 7 });
    expect(container(s).lifecycle).toEqual({ preStop: { sleep: { seconds: 7 } } });
    expect(pod(s).terminationGracePeriodSeconds).toBe(57);
    expect(pod(s).terminationGracePeriodSeconds).toBeGreaterThanOrEqual(45 + 5);
    const none = spec({ preStopSleepSeconds: 0 });
    expect(container(none).lifecycle).toBeUndefined();
    expect(pod(none).terminationGracePeriodSeconds).toBe(25);
  });

  it("shared volume: the namespace's claim mounted read-only at /mnt/shared; no object store credentials", () => {
    const s = spec();
    expect(container(s).volumeMounts).toContainEqual({ name: "shared", mountPath: "/mnt/shared", readOnly: true });
    expect(pod(s).volumes).toContainEqual({ name: "shared", persistentVolumeClaim: { claimName: "mlplatform-shared", readOnly: true } });
    expect(container(s).envFrom).toBeUndefined();
  });

  it("s3 source: credentials from the object store Secret, no shared volume", () => {
    const s = spec(at("s3://models/mnist"));
    expect(container(s).envFrom).toEqual([{ secretRef: { name: "mlplatform-object-store" } }]);
    expect(modelServing.modelServerConfigText(s)).toContain('base_path: "s3://models/mnist"');
    expect(pod(s).volumes.map((v: any) => v.name)).toEqual(["tmp", "model-config"]);
    expect(container(s).volumeMounts.map((v: any) => v.name)).toEqual(["tmp", "model-config"]);
    // One model from each source: both the credentials and the shared volume.
    const mixed = spec({ models: [{ name: "a", basePath: "s3://models/a" }, { name: "b" }] });
    expect(container(mixed).envFrom).toEqual([{ secretRef: { name: "mlplatform-object-store" } }]);
    expect(pod(mixed).volumes.map((v: any) => v.name)).toEqual(["tmp", "model-config", "shared"]);
  });

  it("CPU: no GPU limit, no GPU placement, no CPU limit by default", () => {
    const s = spec();
    expect(container(s).resources).toEqual({ requests: { cpu: "1", memory: "1Gi" }, limits: { memory: "2Gi" } });
    expect(pod(s).nodeSelector).toBeUndefined();
    expect(pod(s).tolerations).toBeUndefined();
    expect(container(s).env).toBeUndefined();
  });

  it("GPU: nvidia.com/gpu limit, the cluster's GPU node selector and tolerations, the GPU backend", () => {
    const s = spec({ gpus: 1, gpuPlacement: GPU, resources: { requests: { cpu: "2", memory: "4Gi" }, limits: { memory: "8Gi" } } });
    expect(container(s).resources).toEqual({ requests: { cpu: "2", memory: "4Gi" }, limits: { memory: "8Gi", "nvidia.com/gpu": "1" } });
    expect(pod(s).nodeSelector).toEqual(GPU.nodeSelector);
    expect(pod(s).tolerations).toEqual(GPU.tolerations);
    expect(container(s).env).toEqual([{ name: "MLP_TFJS_BACKEND", value: "gpu" }]);
  });

  it("batching flags when asked, with the server's defaults for what is not given", () => {
    expect(modelServing.servingArgs(spec({ batching: { batchTimeoutMicros: 500 } })).slice(-4)).toEqual([
      "--enable_batching",
      "--max_batch_size=32",
      "--batch_timeout_micros=500",
      "--max_enqueued_requests=1024",
    ]);
  });

  it("Service: ClusterIP, gRPC 8500 as HTTP/2 cleartext and REST 8501, selecting this instance's pods", () => {
    const s = spec();
    expect(modelServing.modelServingServiceSpec(s)).toEqual({
      type: "ClusterIP",
      selector: { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": "mnist" },
      ports: [
        { name: "grpc", port: 8500, targetPort: "grpc", protocol: "TCP", appProtocol: "kubernetes.io/h2c" },
        { name: "http", port: 8501, targetPort: "http", protocol: "TCP", appProtocol: "http" },
      ],
    });
    expect(modelServing.modelServingDeploymentSpec(s, "c").selector).toEqual({ matchLabels: modelServing.modelServingServiceSpec(s).selector });
  });

  it("Prometheus scrape annotations on the pods", () => {
    expect((modelServing.modelServingPodTemplate(spec(), "mnist-models").metadata as any).annotations).toEqual({
      "prometheus.io/scrape": "true",
      "prometheus.io/scheme": "http",
      "prometheus.io/port": "8501",
      "prometheus.io/path": "/monitoring/prometheus/metrics",
    });
  });

  it("HPA (autoscaling/v2, CPU utilization) owns the replica count; the rollout surges and never drops below it", () => {
    const s = spec({ minReplicas: 2, maxReplicas: 6, targetCpuUtilizationPercent: 60 });
    const d = modelServing.modelServingDeploymentSpec(s, "c");
    expect(d.replicas).toBeUndefined();
    expect(d.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    expect(modelServing.modelServingHpaSpec(s, "mnist-server")).toMatchObject({
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "mnist-server" },
      minReplicas: 2,
      maxReplicas: 6,
      metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 60 } } }],
    });
  });

  it("a fixed count (min = max) has replicas and no HPA; one replica has no PDB", () => {
    const three = spec({ minReplicas: 3, maxReplicas: 3 });
    expect(modelServing.modelServingDeploymentSpec(three, "c").replicas).toBe(3);
    expect(modelServing.modelServingHpaSpec(three, "x")).toBeUndefined();
    expect(modelServing.modelServingPdbSpec(three)).toBeDefined();
    const one = spec({ minReplicas: 1, maxReplicas: 1 });
    expect(modelServing.modelServingDeploymentSpec(one, "c").replicas).toBe(1);
    expect(modelServing.modelServingPdbSpec(one)).toBeUndefined();
  });

  it("PDB: one replica disrupted at a time, and unhealthy pods never block a drain", () => {
    expect(modelServing.modelServingPdbSpec(spec())).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": "mnist" } },
      unhealthyPodEvictionPolicy: "AlwaysAllow",
    });
  });

  it("endpoints are the Service's in-cluster DNS names", () => {
    expect(modelServing.grpcEndpoint("mnist", "ml-serving")).toBe("mnist.ml-serving.svc.cluster.local:8500");
    expect(modelServing.restUrl("mnist", "ml-serving")).toBe("http://mnist.ml-serving.svc.cluster.local:8501");
  });

  it("every object of every variant validates against the Kubernetes schemas", async () => {
    const variants = [
      spec(),
      spec({ ...at("s3://models/prod/mnist"), batching: {} }),
      spec({ gpus: 2, gpuPlacement: GPU, minReplicas: 2, maxReplicas: 4 }),
      spec({ minReplicas: 1, maxReplicas: 1, preStopSleepSeconds: 0, command: ["node", "/app/dist/src/cli.js"] }),
    ];
    let n = 0;
    for (const s of variants) {
      for (const o of objects(s)) {
        await validateObject(o);
        n++;
      }
    }
    expect(n).toBe(5 + 5 + 5 + 3);
  });

  it.each([
    [{ modelName: "my model" }, /^`modelName` must be 1-63 letters, digits.*; got "my model"$/],
    [{ models: [{ name: "mnist" }, { name: "my model" }] }, /^`models\[1\].name` must be 1-63 letters, digits.*; got "my model"$/],
    [at("/models/mnist"), /^`models\[0\].basePath` must be a path on the shared volume \(under \/mnt\/shared\/\) or s3:\/\/bucket\/prefix; got "\/models\/mnist"$/],
    [at("/mnt/shared/../etc"), /^`models\[0\].basePath` must be a path on the shared volume/],
    [at("s3://X_bad/m"), /^`models\[0\].basePath` must be s3:\/\/bucket\/prefix with a valid bucket name; got "s3:\/\/X_bad\/m"$/],
    [{ modelBasePath: "/models/mnist", modelName: "mnist" }, /^`modelBasePath` must be a path on the shared volume/],
    [{ models: [] }, /^`models` must list at least one model/],
    [{ models: [{ name: "a" }, { name: "a" }] }, /^`models` names "a" twice/],
    [{ models: [{ name: "a", versionPolicy: "newest" }] }, /^`models\[0\].versionPolicy` must be latest:N, all or specific:V1,V2,\.\.\. \(N, V ≥ 1\); got "newest"$/],
    [{ models: [{ name: "a", versionLabels: { stable: 0 } }] }, /^`models\[0\].versionLabels.stable` must be a version ≥ 1; got 0$/],
    [{ gpus: 1, gpuPlacement: GPU, targetInflightRequestsPerReplica: 0 }, /^`targetInflightRequestsPerReplica` must be an integer in \[1, 10000\]; got 0$/],
    [{ minReplicas: 0 }, /^`minReplicas` must be an integer ≥ 1; got 0$/],
    [{ minReplicas: 4, maxReplicas: 2 }, /^`maxReplicas` must be ≥ minReplicas \(4\); got 2$/],
    [{ gpus: 1 }, /^`gpus` is 1 but no `gpuPlacement` was given; pass the cluster's GPU placement/],
    [{ targetCpuUtilizationPercent: 150 }, /^`targetCpuUtilizationPercent` must be an integer in \[1, 100\]; got 150$/],
    [{ batching: { maxBatchSize: 0 } }, /^`batching.maxBatchSize` must be an integer ≥ 1; got 0$/],
  ])("rejects %j naming the option, the value and the fix", (bad, message) => {
    expect(() => spec(bad as any)).toThrow(message);
  });

  it("GPU servers scale on in-flight requests per pod, never on CPU; CPU servers on CPU", () => {
    const gpu = modelServing.modelServingHpaSpec(spec({ gpus: 1, gpuPlacement: GPU, minReplicas: 1, maxReplicas: 4, targetInflightRequestsPerReplica: 6 }), "d")!;
    expect(gpu.metrics).toEqual([{ type: "Pods", pods: { metric: { name: "mlp_serving_inflight_requests" }, target: { type: "AverageValue", averageValue: "6" } } }]);
    expect(JSON.stringify(gpu.metrics)).not.toContain("cpu");
    const cpu = modelServing.modelServingHpaSpec(spec({ minReplicas: 1, maxReplicas: 4 }), "d")!;
    expect(cpu.metrics).toEqual([{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } }]);
  });

  it("several models become TF Serving's text model config, one config { } each, which the server parses back", async () => {
    const s = spec({
      models: [
        { name: "mnist", versionPolicy: "specific:3,4", versionLabels: { stable: 3, canary: 4 } },
        { name: "images", versionPolicy: "all" },
      ],
    });
    const text = modelServing.modelServerConfigText(s);
    expect(text).toContain(
      'config {\n    name: "mnist"\n    base_path: "/mnt/shared/models/mnist"\n    model_platform: "tensorflow"\n    model_version_policy { specific { versions: 3 versions: 4 } }\n    version_labels { key: "stable" value: 3 }\n    version_labels { key: "canary" value: 4 }\n  }',
    );
    expect(text).toContain('name: "images"');
    expect(text).toContain("model_version_policy { all {} }");
    const mc = (await import(path.join(ROOT, "trainer", "src", "serve", "model-config.ts"))) as { parseModelConfigText(file: string, text: string): unknown[] };
    expect(mc.parseModelConfigText("/etc/mlp-serving/models.config", text)).toEqual([
      { name: "mnist", basePath: "/mnt/shared/models/mnist", versionPolicy: { kind: "specific", versions: [3, 4] }, versionLabels: { stable: 3, canary: 4 } },
      { name: "images", basePath: "/mnt/shared/models/images", versionPolicy: { kind: "all" }, versionLabels: undefined },
    ]);
    expect(modelServing.servingLabels(s)["mlplatform.io/model"]).toBeUndefined();
  });

  it("config: the pipelines' models (mnist, images) are served by default; serving.modelName is refused with the fix", async () => {
    const { parseConfig } = await import("../config");
    const existing = { provider: "existing", kubeconfig: "~/.kube/config" };
    const cfg = parseConfig({ cluster: existing, trainerImage: { image: IMAGE } });
    expect(cfg.serving.models).toEqual([{ name: "mnist" }, { name: "images" }]);
    const s = spec({ models: cfg.serving.models });
    expect(s.models.map((x) => [x.name, x.basePath])).toEqual([
      ["mnist", "/mnt/shared/models/mnist"],
      ["images", "/mnt/shared/models/images"],
    ]);
    expect(() => parseConfig({ cluster: existing, trainerImage: { image: IMAGE }, serving: { modelName: "digits" } })).toThrow(
      /mlplatform:serving.modelName was replaced by serving.models, a list of models; write models: \[\{ name: "digits" \}\]/,
    );
    expect(() => parseConfig({ cluster: existing, trainerImage: { image: IMAGE }, serving: { models: [{ name: "a" }, { name: "a" }] } })).toThrow(
      /mlplatform:serving.models\[1\].name names a model listed before it/,
    );
    expect(() => parseConfig({ cluster: existing, trainerImage: { image: IMAGE }, serving: { models: [{ name: "a", versionPolicy: "newest" }] } })).toThrow(
      /mlplatform:serving.models\[0\].versionPolicy must be latest:N, all or specific/,
    );
  });

  it("a floor above the default ceiling raises the ceiling with it", () => {
    expect(spec({ minReplicas: 5 })).toMatchObject({ minReplicas: 5, maxReplicas: 5 });
  });
});

describe("ModelServing under mocks", () => {
  beforeEach(() => {
    recorded.length = 0;
  });

  async function build(name: string, args: Partial<ConstructorParameters<Module["ModelServing"]>[1]> = {}) {
    const provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: "{}" });
    const c = new modelServing.ModelServing(name, { provider, namespace: "ml-serving", image: IMAGE, models: [{ name: "mnist" }], ...args });
    const out = { grpc: (await unwrap(c.grpcEndpoint)).value, rest: (await unwrap(c.restUrl)).value };
    // Let every registration arrive.
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
    const k8sObjects = recorded.filter((r) => r.type.startsWith("kubernetes:") && !r.type.startsWith("pulumi:providers"));
    const byType = (t: string) => k8sObjects.filter((r) => r.type === t);
    return { c, out, k8sObjects, byType, providerName: `${name}-k8s` };
  }

  it("registers the Deployment, Service, HPA and PDB, each with the explicit provider, and outputs the endpoints", async () => {
    const r = await build("mnist", { minReplicas: 2, maxReplicas: 5 });
    expect(r.k8sObjects.map((o) => `${o.type} ${o.name}`).sort()).toEqual([
      "kubernetes:apps/v1:Deployment mnist-server",
      "kubernetes:autoscaling/v2:HorizontalPodAutoscaler mnist-hpa",
      "kubernetes:core/v1:ConfigMap mnist-models",
      "kubernetes:core/v1:Service mnist-service",
      "kubernetes:policy/v1:PodDisruptionBudget mnist-pdb",
    ]);
    for (const o of r.k8sObjects) {
      expect(o.provider, o.name).toMatch(new RegExp(`pulumi:providers:kubernetes::${r.providerName}::`));
      expect(o.inputs.metadata.namespace).toBe("ml-serving");
      expect(o.inputs.metadata.annotations ?? {}).toEqual({});
    }
    expect(r.out).toEqual({ grpc: "model-server.ml-serving.svc.cluster.local:8500", rest: "http://model-server.ml-serving.svc.cluster.local:8501" });
    const hpa = r.byType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")[0]!.inputs;
    // The HPA targets the Deployment by its (auto-generated) name.
    expect(hpa.spec.scaleTargetRef.name).toBe("mnist-server-x1y2z3");
    const d = r.byType("kubernetes:apps/v1:Deployment")[0]!.inputs;
    expect(d.spec.template.spec.containers[0].image).toBe(IMAGE);
    expect(d.spec.template.spec.containers[0].readinessProbe.grpc.port).toBe(8500);
    expect(d.metadata.name).toBeUndefined();
    // The pod mounts the ConfigMap by its (auto-generated) name, which holds the models.
    const cm = r.byType("kubernetes:core/v1:ConfigMap")[0]!.inputs;
    expect(d.spec.template.spec.volumes).toContainEqual({
      name: "model-config",
      configMap: { name: "mnist-models-x1y2z3", items: [{ key: "models.config", path: "models.config" }] },
    });
    expect(cm.data["models.config"]).toContain('name: "mnist"');
    expect(await validateRecorded(r.k8sObjects)).toBe(5);
  });

  it("GPU and s3 variant with skipAwait: placement, GPU limit, credentials, and the skipAwait annotation on every object", async () => {
    const r = await build("mnist-gpu", {
      gpus: 1,
      gpuPlacement: GPU,
      models: [{ name: "mnist", basePath: "s3://models/mnist" }],
      serviceName: "mnist-gpu",
      batching: { maxBatchSize: 16 },
      skipAwait: true,
    });
    for (const o of r.k8sObjects) expect(o.inputs.metadata.annotations, o.name).toEqual({ "pulumi.com/skipAwait": "true" });
    const p = r.byType("kubernetes:apps/v1:Deployment")[0]!.inputs.spec.template.spec;
    expect(p.nodeSelector).toEqual(GPU.nodeSelector);
    expect(p.tolerations).toEqual(GPU.tolerations);
    expect(p.containers[0].resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(p.containers[0].envFrom).toEqual([{ secretRef: { name: "mlplatform-object-store" } }]);
    expect(p.containers[0].args).toContain("--max_batch_size=16");
    expect(r.out.grpc).toBe("mnist-gpu.ml-serving.svc.cluster.local:8500");
    expect(await validateRecorded(r.k8sObjects)).toBe(5);
  });

  it("a single fixed replica: only the Deployment and the Service", async () => {
    const r = await build("single", { minReplicas: 1, maxReplicas: 1 });
    expect(r.k8sObjects.map((o) => o.type).sort()).toEqual(["kubernetes:apps/v1:Deployment", "kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Service"]);
    expect(r.byType("kubernetes:apps/v1:Deployment")[0]!.inputs.spec.replicas).toBe(1);
  });

  it("the component's type token, and children parented to it", async () => {
    const r = await build("tokens");
    const comp = recorded.find((o) => o.type === "mlplatform:serving:ModelServing");
    expect(comp?.name).toBe("tokens");
    const urn = await unwrap(r.c.urn);
    expect(urn.value).toContain("mlplatform:serving:ModelServing::tokens");
  });

  it("bad options fail as a ResourceError naming the option", async () => {
    const provider = new k8s.Provider("bad-k8s", { kubeconfig: "{}" });
    expect(() => new modelServing.ModelServing("bad", { provider, namespace: "ml-serving", image: IMAGE, modelName: "mnist", gpus: 1 })).toThrow(pulumi.ResourceError);
    expect(() => new modelServing.ModelServing("bad2", { provider, namespace: "ml-serving", image: IMAGE, modelName: "mnist", gpus: 1 })).toThrow(/`gpus` is 1/);
  });
});
