import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ROOT, unwrap, type RecordedResource } from "./harness";
import { validateObject, validateRecorded } from "./k8sSchema";

type Module = typeof import("../components/modelServing");
let m: Module;
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
        const state = args.type.startsWith("kubernetes:") && inputs.metadata && !inputs.metadata.name
          ? { ...inputs, metadata: { ...inputs.metadata, name: `${args.name}-x1y2z3` } }
          : inputs;
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
  m = await import("../components/modelServing");
});

/** Builder spec with defaults for `opts`. */
function spec(opts: Partial<Parameters<Module["resolveServingSpec"]>[1]> = {}) {
  return m.resolveServingSpec("mnist", { image: IMAGE, modelName: "mnist", ...opts });
}

/** The builders' objects as the API server would get them, for schema validation. */
function objects(s: ReturnType<typeof spec>): Record<string, any>[] {
  const meta = { namespace: "ml-serving", labels: m.servingLabels(s) };
  const out: Record<string, any>[] = [
    { apiVersion: "apps/v1", kind: "Deployment", metadata: meta, spec: m.modelServingDeploymentSpec(s) },
    { apiVersion: "v1", kind: "Service", metadata: { ...meta, name: s.serviceName }, spec: m.modelServingServiceSpec(s) },
  ];
  const hpa = m.modelServingHpaSpec(s, "mnist-server");
  if (hpa) out.push({ apiVersion: "autoscaling/v2", kind: "HorizontalPodAutoscaler", metadata: meta, spec: hpa });
  const pdb = m.modelServingPdbSpec(s);
  if (pdb) out.push({ apiVersion: "policy/v1", kind: "PodDisruptionBudget", metadata: meta, spec: pdb });
  return out;
}

const container = (s: ReturnType<typeof spec>): any => (m.modelServingPodTemplate(s).spec as any).containers[0];
const pod = (s: ReturnType<typeof spec>): any => m.modelServingPodTemplate(s).spec as any;

describe("ModelServing builders", () => {
  it("defaults: model on the shared volume, 1-3 replicas, no batching, the server's limits", () => {
    const s = spec();
    expect(s).toMatchObject({
      modelBasePath: "/mnt/shared/models/mnist",
      serviceName: "mnist",
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
    expect(m.servingArgs(s)).toEqual([
      "serve",
      "--model_name=mnist",
      "--model_base_path=/mnt/shared/models/mnist",
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
    const parse = (s: ReturnType<typeof spec>) => serve.parseServeArgs(m.servingArgs(s).slice(1), {});
    const shared = await parse(spec({ batching: { maxBatchSize: 64 }, grpcMaxMessageBytes: 8 << 20, shutdownGraceSeconds: 30 }));
    expect(shared.options.models).toEqual([{ name: "mnist", basePath: "/mnt/shared/models/mnist", versionPolicy: undefined, versionLabels: undefined }]);
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
    const s3 = await parse(spec({ modelBasePath: "s3://models/mnist" }));
    expect(s3.options.models[0].basePath).toBe("s3://models/mnist");
    expect(s3.options.batching).toBeUndefined();
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
    const s = spec({ modelBasePath: "s3://models/mnist" });
    expect(container(s).envFrom).toEqual([{ secretRef: { name: "mlplatform-object-store" } }]);
    expect(container(s).args).toContain("--model_base_path=s3://models/mnist");
    expect(pod(s).volumes.map((v: any) => v.name)).toEqual(["tmp"]);
    expect(container(s).volumeMounts.map((v: any) => v.name)).toEqual(["tmp"]);
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
    expect(m.servingArgs(spec({ batching: { batchTimeoutMicros: 500 } })).slice(-4)).toEqual([
      "--enable_batching",
      "--max_batch_size=32",
      "--batch_timeout_micros=500",
      "--max_enqueued_requests=1024",
    ]);
  });

  it("Service: ClusterIP, gRPC 8500 as HTTP/2 cleartext and REST 8501, selecting this instance's pods", () => {
    const s = spec();
    expect(m.modelServingServiceSpec(s)).toEqual({
      type: "ClusterIP",
      selector: { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": "mnist" },
      ports: [
        { name: "grpc", port: 8500, targetPort: "grpc", protocol: "TCP", appProtocol: "kubernetes.io/h2c" },
        { name: "http", port: 8501, targetPort: "http", protocol: "TCP", appProtocol: "http" },
      ],
    });
    expect(m.modelServingDeploymentSpec(s).selector).toEqual({ matchLabels: m.modelServingServiceSpec(s).selector });
  });

  it("Prometheus scrape annotations on the pods", () => {
    expect((m.modelServingPodTemplate(spec()).metadata as any).annotations).toEqual({
      "prometheus.io/scrape": "true",
      "prometheus.io/scheme": "http",
      "prometheus.io/port": "8501",
      "prometheus.io/path": "/monitoring/prometheus/metrics",
    });
  });

  it("HPA (autoscaling/v2, CPU utilization) owns the replica count; the rollout surges and never drops below it", () => {
    const s = spec({ minReplicas: 2, maxReplicas: 6, targetCpuUtilizationPercent: 60 });
    const d = m.modelServingDeploymentSpec(s);
    expect(d.replicas).toBeUndefined();
    expect(d.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    expect(m.modelServingHpaSpec(s, "mnist-server")).toMatchObject({
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "mnist-server" },
      minReplicas: 2,
      maxReplicas: 6,
      metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 60 } } }],
    });
  });

  it("a fixed count (min = max) has replicas and no HPA; one replica has no PDB", () => {
    const three = spec({ minReplicas: 3, maxReplicas: 3 });
    expect(m.modelServingDeploymentSpec(three).replicas).toBe(3);
    expect(m.modelServingHpaSpec(three, "x")).toBeUndefined();
    expect(m.modelServingPdbSpec(three)).toBeDefined();
    const one = spec({ minReplicas: 1, maxReplicas: 1 });
    expect(m.modelServingDeploymentSpec(one).replicas).toBe(1);
    expect(m.modelServingPdbSpec(one)).toBeUndefined();
  });

  it("PDB: one replica disrupted at a time, and unhealthy pods never block a drain", () => {
    expect(m.modelServingPdbSpec(spec())).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": "mnist" } },
      unhealthyPodEvictionPolicy: "AlwaysAllow",
    });
  });

  it("endpoints are the Service's in-cluster DNS names", () => {
    expect(m.grpcEndpoint("mnist", "ml-serving")).toBe("mnist.ml-serving.svc.cluster.local:8500");
    expect(m.restUrl("mnist", "ml-serving")).toBe("http://mnist.ml-serving.svc.cluster.local:8501");
  });

  it("every object of every variant validates against the Kubernetes schemas", async () => {
    const variants = [
      spec(),
      spec({ modelBasePath: "s3://models/prod/mnist", batching: {} }),
      spec({ gpus: 2, gpuPlacement: GPU, minReplicas: 2, maxReplicas: 4 }),
      spec({ minReplicas: 1, maxReplicas: 1, preStopSleepSeconds: 0, command: ["node", "/app/dist/src/cli.js"] }),
    ];
    let n = 0;
    for (const s of variants) for (const o of objects(s)) (await validateObject(o), n++);
    expect(n).toBe(4 + 4 + 4 + 2);
  });

  it.each([
    [{ modelName: "my model" }, /^`modelName` must be 1-63 letters, digits.*; got "my model"$/],
    [{ modelBasePath: "/models/mnist" }, /^`modelBasePath` must be a path on the shared volume \(under \/mnt\/shared\/\) or s3:\/\/bucket\/prefix; got "\/models\/mnist"$/],
    [{ modelBasePath: "/mnt/shared/../etc" }, /^`modelBasePath` must be a path on the shared volume/],
    [{ modelBasePath: "s3://X_bad/m" }, /^`modelBasePath` must be s3:\/\/bucket\/prefix with a valid bucket name; got "s3:\/\/X_bad\/m"$/],
    [{ minReplicas: 0 }, /^`minReplicas` must be an integer ≥ 1; got 0$/],
    [{ minReplicas: 4, maxReplicas: 2 }, /^`maxReplicas` must be ≥ minReplicas \(4\); got 2$/],
    [{ gpus: 1 }, /^`gpus` is 1 but no `gpuPlacement` was given; pass the cluster's GPU placement/],
    [{ targetCpuUtilizationPercent: 150 }, /^`targetCpuUtilizationPercent` must be an integer in \[1, 100\]; got 150$/],
    [{ batching: { maxBatchSize: 0 } }, /^`batching.maxBatchSize` must be an integer ≥ 1; got 0$/],
  ])("rejects %j naming the option, the value and the fix", (bad, message) => {
    expect(() => spec(bad as any)).toThrow(message);
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
    const c = new m.ModelServing(name, { provider, namespace: "ml-serving", image: IMAGE, modelName: "mnist", ...args });
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
      "kubernetes:core/v1:Service mnist-service",
      "kubernetes:policy/v1:PodDisruptionBudget mnist-pdb",
    ]);
    for (const o of r.k8sObjects) {
      expect(o.provider, o.name).toMatch(new RegExp(`pulumi:providers:kubernetes::${r.providerName}::`));
      expect(o.inputs.metadata.namespace).toBe("ml-serving");
      expect(o.inputs.metadata.annotations ?? {}).toEqual({});
    }
    expect(r.out).toEqual({ grpc: "mnist.ml-serving.svc.cluster.local:8500", rest: "http://mnist.ml-serving.svc.cluster.local:8501" });
    const hpa = r.byType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")[0]!.inputs;
    // The HPA targets the Deployment by its (auto-generated) name.
    expect(hpa.spec.scaleTargetRef.name).toBe("mnist-server-x1y2z3");
    const d = r.byType("kubernetes:apps/v1:Deployment")[0]!.inputs;
    expect(d.spec.template.spec.containers[0].image).toBe(IMAGE);
    expect(d.spec.template.spec.containers[0].readinessProbe.grpc.port).toBe(8500);
    expect(d.metadata.name).toBeUndefined();
    expect(await validateRecorded(r.k8sObjects)).toBe(4);
  });

  it("GPU and s3 variant with skipAwait: placement, GPU limit, credentials, and the skipAwait annotation on every object", async () => {
    const r = await build("mnist-gpu", {
      gpus: 1,
      gpuPlacement: GPU,
      modelBasePath: "s3://models/mnist",
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
    expect(await validateRecorded(r.k8sObjects)).toBe(4);
  });

  it("a single fixed replica: only the Deployment and the Service", async () => {
    const r = await build("single", { minReplicas: 1, maxReplicas: 1 });
    expect(r.k8sObjects.map((o) => o.type).sort()).toEqual(["kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service"]);
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
    expect(() => new m.ModelServing("bad", { provider, namespace: "ml-serving", image: IMAGE, modelName: "mnist", gpus: 1 })).toThrow(
      pulumi.ResourceError,
    );
    expect(() => new m.ModelServing("bad2", { provider, namespace: "ml-serving", image: IMAGE, modelName: "mnist", gpus: 1 })).toThrow(/`gpus` is 1/);
  });
});
