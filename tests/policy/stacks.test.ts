/**
 * Every stack file through the real program under mocks, and every resource it registers
 * through every policy of the pack, as the analyzer would see it (type token, inputs, URN with
 * the stack's name, provider). Objects rendered by Helm charts are not registered under mocks:
 * the real engine checks those one by one (tests/integration/policy.test.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { mlplatformPolicies } from "../../policy/policies";
import { FIXTURE_KUBECONFIG, runStack, type RecordedResource, type StackRun } from "../harness";
import { SECRET_SIG, check, checkStack as checkStackPolicy, schemaDefaults, type Target } from "./support";

const policies = mlplatformPolicies();
const STACKS = ["dev", "aks", "gke"] as const;
type Stack = (typeof STACKS)[number];

/** The analyzer's view of a recorded resource; its provider is resolved to the provider resource's inputs. */
function targetOf(stack: Stack, r: RecordedResource, all: readonly RecordedResource[]): Target {
  let provider: Target["provider"];
  if (r.provider) {
    // `urn:pulumi:<stack>::<project>::<parent types>$pulumi:providers:<pkg>::<name>::<id>`
    const urn = r.provider.slice(0, r.provider.lastIndexOf("::"));
    const [type, name] = [urn.split("::")[2]!.split("$").pop()!, urn.split("::")[3]!];
    const p = all.find((x) => x.type === type && x.name === name);
    if (p) provider = { type, name, urn, props: p.inputs };
  }
  return { type: r.type, name: r.name, props: r.inputs, stack, provider };
}

interface Checked {
  readonly violations: string[];
  /** policy → resources (`type name`) it applied to. */
  readonly applied: Record<string, string[]>;
}

async function checkStack(stack: Stack, run: StackRun, mutate?: (r: RecordedResource) => RecordedResource): Promise<Checked> {
  const violations: string[] = [];
  const applied: Record<string, string[]> = {};
  const resources = run.resources.map((r) => (mutate ? mutate(r) : r));
  const targets = resources.map((r) => targetOf(stack, r, resources));
  for (const p of policies) {
    if ("validateStack" in p) {
      const outcome = await checkStackPolicy(p, targets, schemaDefaults(p));
      for (const v of outcome.violations) {
        const t = targets.find((x) => v.urn?.endsWith(`::${x.type}::${x.name}`));
        violations.push(`${p.name}: ${t ? `${t.type} ${t.name}` : "(stack)"}: ${v.message}`);
      }
      continue;
    }
    for (const t of targets) {
      const outcome = await check(p, t, schemaDefaults(p));
      if (outcome.notApplicable === undefined) (applied[p.name] ??= []).push(`${t.type} ${t.name}`);
      for (const v of outcome.violations) violations.push(`${p.name}: ${t.type} ${t.name}: ${v}`);
    }
  }
  return { violations, applied };
}

const runs = {} as Record<Stack, StackRun>;
const checked = {} as Record<Stack, Checked>;

beforeAll(async () => {
  for (const stack of STACKS) {
    runs[stack] = await runStack(stack, {}, stack === "dev" ? { KUBECONFIG: FIXTURE_KUBECONFIG } : {});
    checked[stack] = await checkStack(stack, runs[stack]);
  }
  // Three whole stacks under mocks and every policy over them: beyond the 10 s hook default on a loaded machine.
}, 60_000);

describe("the stack files pass every policy", () => {
  it.each(STACKS)("%s: no violations", (stack) => {
    expect(checked[stack].violations).toEqual([]);
  });

  it("the policies really examined the stacks' resources", () => {
    const applied = (stack: Stack, policy: string) => checked[stack].applied[policy] ?? [];
    for (const stack of STACKS) {
      for (const r of ["kubernetes:apps/v1:StatefulSet objects-minio", "kubernetes:batch/v1:Job objects-buckets"]) {
        expect(applied(stack, "containers-have-requests-and-limits"), stack).toContain(r);
        expect(applied(stack, "no-latest-or-untagged-images"), stack).toContain(r);
        expect(applied(stack, "credentials-only-as-secrets"), stack).toContain(r);
      }
      expect(applied(stack, "credentials-only-as-secrets"), stack).toContain("kubernetes:core/v1:Secret objects-credentials-store");
      expect(applied(stack, "no-unapproved-load-balancer"), stack).toContain("kubernetes:core/v1:Service objects-minio");
      expect(applied(stack, "no-privileged-outside-system-namespaces"), stack).toContain("kubernetes:core/v1:Namespace platform-notebooks");
    }
    expect(applied("dev", "no-privileged-outside-system-namespaces")).toContain("kubernetes:apps/v1:Deployment shared-nfs");
    expect(applied("aks", "gpu-pools-tainted").sort()).toEqual([
      "azure-native:containerservice:AgentPool platform-gpu",
      "azure-native:containerservice:ManagedCluster platform-aks",
    ]);
    expect(applied("gke", "gpu-pools-tainted").sort()).toEqual([
      "gcp:container/cluster:Cluster platform-gke",
      "gcp:container/nodePool:NodePool platform-gpu",
      "gcp:container/nodePool:NodePool platform-system",
    ]);
    expect(applied("dev", "gpu-pools-tainted")).toEqual([]);
  });

  it("every Kubernetes Secret's data is a Pulumi secret (encrypted in state): what the policy SDK cannot see", () => {
    for (const stack of STACKS) {
      for (const s of runs[stack].resources.filter((r) => r.type === "kubernetes:core/v1:Secret")) {
        for (const field of ["data", "stringData"] as const) {
          const v = s.inputs[field] as Record<string, unknown> | undefined;
          if (v === undefined) continue;
          const wholeSecret = SECRET_SIG in v;
          const eachSecret = Object.values(v).every((x) => typeof x === "object" && x !== null && SECRET_SIG in x);
          expect(wholeSecret || eachSecret, `${stack} ${s.name}.${field}`).toBe(true);
        }
      }
    }
  });
});

describe("the same resources, broken, fail the right policy", () => {
  const replace = (name: string, type: string, f: (inputs: any) => any) => (r: RecordedResource) =>
    r.name === name && r.type === type ? { ...r, inputs: f(structuredClone(r.inputs)) } : r;

  it("aks: the GPU agent pool without its taint", async () => {
    const { violations } = await checkStack(
      "aks",
      runs.aks,
      replace("platform-gpu", "azure-native:containerservice:AgentPool", (i) => ({ ...i, nodeTaints: [] })),
    );
    expect(violations).toEqual([expect.stringMatching(/^gpu-pools-tainted: azure-native:containerservice:AgentPool platform-gpu: GPU pool \(vmSize "Standard_NC4as_T4_v3"\)/)]);
  });

  it("gke: the GPU node pool without its taint", async () => {
    const { violations } = await checkStack(
      "gke",
      runs.gke,
      replace("platform-gpu", "gcp:container/nodePool:NodePool", (i) => ({ ...i, nodeConfig: { ...i.nodeConfig, taints: [] } })),
    );
    expect(violations).toEqual([
      expect.stringMatching(/^gpu-pools-tainted: gcp:container\/nodePool:NodePool platform-gpu: nodeConfig: GPU pool \(machineType "g2-standard-8" with guestAccelerators\)/),
    ]);
  });

  it("dev: the privileged NFS server moved out of its namespace", async () => {
    const { violations } = await checkStack(
      "dev",
      runs.dev,
      replace("shared-nfs", "kubernetes:apps/v1:Deployment", (i) => ({ ...i, metadata: { ...i.metadata, namespace: "ml-serving" } })),
    );
    expect(violations).toEqual([
      expect.stringMatching(
        /^no-privileged-outside-system-namespaces: kubernetes:apps\/v1:Deployment shared-nfs: spec.template.spec.containers\[0\] \("nfs"\) is privileged in namespace "ml-serving"/,
      ),
    ]);
  });

  it("dev: MinIO with an untagged image and no resources, its Service a LoadBalancer, its Secret with default credentials", async () => {
    const sts = replace("objects-minio", "kubernetes:apps/v1:StatefulSet", (i) => {
      const c = i.spec.template.spec.containers[0];
      c.image = "quay.io/minio/minio";
      delete c.resources;
      return i;
    });
    const svc = replace("objects-minio", "kubernetes:core/v1:Service", (i) => ({ ...i, spec: { ...i.spec, type: "LoadBalancer" } }));
    const secret = replace("objects-credentials-store", "kubernetes:core/v1:Secret", (i) => ({
      ...i,
      stringData: { AWS_ACCESS_KEY_ID: "minioadmin", AWS_SECRET_ACCESS_KEY: "minioadmin" },
    }));
    const { violations } = await checkStack("dev", runs.dev, (r) => secret(svc(sts(r))));
    expect(violations.map((v) => v.split(": ").slice(0, 2).join(": ")).sort()).toEqual([
      "containers-have-requests-and-limits: kubernetes:apps/v1:StatefulSet objects-minio",
      "credentials-only-as-secrets: kubernetes:core/v1:Secret objects-credentials-store",
      "credentials-only-as-secrets: kubernetes:core/v1:Secret objects-credentials-store",
      "no-latest-or-untagged-images: kubernetes:apps/v1:StatefulSet objects-minio",
      "no-unapproved-load-balancer: kubernetes:core/v1:Service objects-minio",
    ]);
  });

  it("dev: Argo in server auth mode behind the platform's UI ingress", async () => {
    const argo = runs.dev.resources.find((r) => r.type === "kubernetes:helm.sh/v4:Chart" && r.inputs.chart === "argo-workflows");
    if (!argo) throw new Error("the dev stack installs no argo-workflows chart");
    const serverMode = replace(argo.name, argo.type, (i) => ({ ...i, values: { ...i.values, server: { ...i.values.server, authModes: ["server"] } } }));
    const ingress: RecordedResource = {
      type: "kubernetes:networking.k8s.io/v1:Ingress",
      name: "argo-ui",
      inputs: {
        metadata: { name: "argo-ui", namespace: argo.inputs.namespace },
        spec: { rules: [{ http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "argo-workflows-server", port: { number: 2746 } } } }] } }] },
      },
    };
    const withIngress = { ...runs.dev, resources: [...runs.dev.resources, ingress] };
    expect((await checkStack("dev", withIngress)).violations).toEqual([]);
    expect((await checkStack("dev", withIngress, serverMode)).violations).toEqual([
      expect.stringMatching(
        /^argo-server-auth-not-server-when-exposed: kubernetes:helm.sh\/v4:Chart argo-chart: server.authModes contains server, and the server is exposed \(Ingress argo-ui routes to Service argo-workflows-server\)/,
      ),
    ]);
  });

  it("dev: the dummy-authenticator JupyterHub of the dev stack is refused in any other stack", async () => {
    const hub = runs.dev.resources.find((r) => r.type === "kubernetes:helm.sh/v4:Chart" && r.inputs.chart === "jupyterhub");
    if (!hub) throw new Error("the dev stack installs no jupyterhub chart");
    const policy = policies.find((p) => p.name === "jupyterhub-not-dummy-outside-dev")!;
    const asIn = (stack: string): Target => ({ type: hub.type, name: hub.name, props: hub.inputs, stack: stack as Stack });
    expect((await check(policy, asIn("dev"), schemaDefaults(policy))).violations).toEqual([]);
    expect((await check(policy, asIn("prod"), schemaDefaults(policy))).violations).toEqual([expect.stringMatching(/^stack "prod" .* dummy authenticator/)]);
  });
});
