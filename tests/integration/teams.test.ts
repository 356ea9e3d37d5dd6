/**
 * Teams and Kueue against a real kube-apiserver of our own (scripts/localcluster/up.sh
 * --only apiserver, state in a temp dir): the Kueue CRDs rendered from the vendored chart
 * with the platform's values, and our ResourceFlavors, ClusterQueues, LocalQueues, team
 * namespaces, quotas, limit ranges, Secrets and RBAC, accepted as the components build them.
 * The API server's own authorizer (RBAC, through SubjectAccessReview) shows what a team
 * member may do; its quota admission shows the team's GPU quota refusing a pod beyond it.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config";
import { KUEUE_API_VERSION, clusterQueueManifest, gpuPools, localQueueManifest, resourceFlavorManifests } from "../../components/kueue";
import { OBJECT_STORE_SECRET, RESTRICTED_CONTAINER, restrictedPod } from "../../components/objectStore";
import { TEAM_RULES, TEAM_ROLE, limitRangeSpec, namespaceOf, queueOf, resourceQuotaSpec, teamNamespaceLabels, teamNetworkPolicies, teamSubjects } from "../../components/teams";
import { KUEUE_CHART, helmPath, renderKueueChart } from "../fixtures/kueue";
import { Kube, missingTools, startLocal, stopLocal } from "./support";

const missing = [
  ...missingTools(["etcd", "kube-apiserver"]),
  ...(fs.existsSync(KUEUE_CHART) ? [] : [KUEUE_CHART]),
  ...(fs.existsSync(helmPath()) ? [] : ["helm (scripts/tools/build-helm.sh)"]),
];
if (missing.length > 0) {
  if (process.env.CI === "true") throw new Error(`team tests cannot run: missing ${missing.join(", ")}`);
  console.log(`SKIPPED team tests: missing ${missing.join(", ")} (scripts/tools/build.sh, scripts/tools/build-helm.sh; ../shared/charts)`);
}

// Two teams as a stack would configure them, parsed by the real config schema.
const cfg = parseConfig({
  cluster: { provider: "existing", gpu: "nvidia" },
  trainerImage: { image: "registry.example.com/mlplatform/trainer:0.1.0" },
  kubeflow: { jupyterhub: { authenticator: "dummy" } },
  teams: [
    { name: "vision", members: ["alice"], groups: ["vision-researchers"], quota: { gpu: 2, cpu: "16", memory: "64Gi" } },
    { name: "nlp", members: ["bob"], quota: { gpu: 1, cpu: "8", memory: "32Gi" }, canBorrow: false },
  ],
});
const [vision, nlp] = cfg.teams as [(typeof cfg.teams)[number], (typeof cfg.teams)[number]];
const GPU = { nodeSelector: { "nvidia.com/gpu.present": "true" }, tolerations: [{ key: "nvidia.com/gpu", operator: "Exists" as const, effect: "NoSchedule" as const }] };

describe.skipIf(missing.length > 0)("teams and Kueue in a real kube-apiserver", () => {
  let work: string;
  let kube: Kube;

  const create = async (apiPath: string, body: any) => {
    const r = await kube.request("POST", apiPath, body);
    expect(r.status, `${body.kind} ${body.metadata?.name}: ${JSON.stringify(r.body).slice(0, 600)}`).toBe(201);
    return r.body;
  };
  /** What the API server's authorizer answers for `user` (in `groups`). */
  const can = async (user: string, groups: string[], attrs: Record<string, string>): Promise<boolean> => {
    const r = await kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SubjectAccessReview",
      spec: { user, groups: [...groups, "system:authenticated"], resourceAttributes: attrs },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.status.allowed === true;
  };

  /**
   * Quota admission charges against a quota's `status.hard`, which the quota controller fills
   * in. Waits for it, or records it as the controller would (nothing used yet) when no
   * kube-controller-manager runs (up.sh without the optional tools), re-reading on conflicts.
   */
  const quotaStatusSynced = async (ns: string, name: string) => {
    const url = `/api/v1/namespaces/${ns}/resourcequotas/${name}`;
    for (let i = 0; i < 20; i++) {
      const q = await kube.get(url);
      if (q.status?.hard && JSON.stringify(q.status.hard) === JSON.stringify(q.spec.hard)) return;
      const r = await kube.request("PUT", `${url}/status`, { ...q, status: { hard: q.spec.hard, used: Object.fromEntries(Object.keys(q.spec.hard).map((k) => [k, "0"])) } });
      if (r.status === 200) return;
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`${url}: status not recorded after 20 tries`);
  };

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-teams-"));
    const started = Date.now();
    const local = startLocal(path.join(work, "cluster"), "apiserver");
    kube = new Kube(local.KUBECONFIG!);
    console.log(`API server up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  afterAll(() => {
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it("accepts the Kueue CRDs rendered from the vendored chart, and they become Established", async () => {
    const started = Date.now();
    const rendered = renderKueueChart(helmPath(), ["ml-pipelines", namespaceOf(vision), namespaceOf(nlp)]);
    const crds = rendered.filter((o) => o.kind === "CustomResourceDefinition");
    console.log(`rendered ${crds.length} Kueue CRDs in ${Date.now() - started} ms`);
    expect(crds.map((c) => c.metadata.name)).toEqual(
      expect.arrayContaining(["clusterqueues.kueue.x-k8s.io", "localqueues.kueue.x-k8s.io", "resourceflavors.kueue.x-k8s.io", "workloads.kueue.x-k8s.io"]),
    );
    for (const crd of crds) await create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
    for (const crd of crds) {
      for (let i = 0; ; i++) {
        const got = await kube.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        if (got?.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True")) break;
        if (i > 150) throw new Error(`CRD ${crd.metadata.name} not Established after 30 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // The pod webhook fails closed: the chart scopes it (like every Kueue webhook) to the
    // namespaces Kueue manages, so a Kueue outage cannot stop pods of the platform itself.
    const hooks = rendered.filter((o) => /WebhookConfiguration$/.test(o.kind)).flatMap((o) => o.webhooks);
    expect(hooks.find((w: any) => w.name === "mpod.kb.io").failurePolicy).toBe("Fail");
    const scoped = hooks.filter((w: any) => w.namespaceSelector !== undefined);
    expect(scoped.map((w: any) => w.name)).toEqual(expect.arrayContaining(["mpod.kb.io", "vpod.kb.io", "mtfjob.kb.io", "vtfjob.kb.io", "mjob.kb.io"]));
    for (const w of scoped) {
      expect(w.namespaceSelector, w.name).toEqual({
        matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["ml-pipelines", "team-nlp", "team-vision"] }],
      });
    }
    // We author the storage version: no conversion webhook is needed to store our objects.
    const cq = crds.find((c) => c.metadata.name === "clusterqueues.kueue.x-k8s.io")!;
    expect(cq.spec.versions.find((v: any) => v.storage).name).toBe(KUEUE_API_VERSION.split("/")[1]);
  });

  it("accepts the team namespaces, NetworkPolicies, object store Secrets, quotas, limit ranges and RBAC", async () => {
    await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: TEAM_ROLE },
      rules: TEAM_RULES,
    });
    for (const t of [vision, nlp]) {
      const ns = namespaceOf(t);
      await create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: teamNamespaceLabels(t.name, "restricted") } });
      for (const p of teamNetworkPolicies({ platform: "mlplatform", serving: "ml-serving" })) {
        await create(`/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`, {
          apiVersion: "networking.k8s.io/v1",
          kind: "NetworkPolicy",
          metadata: { name: p.name },
          spec: p.spec,
        });
      }
      await create(`/api/v1/namespaces/${ns}/secrets`, {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: OBJECT_STORE_SECRET },
        type: "Opaque",
        stringData: { AWS_ACCESS_KEY_ID: `${t.name}-key`, AWS_SECRET_ACCESS_KEY: "not-a-real-secret-0123456789" },
      });
      await create(`/api/v1/namespaces/${ns}/resourcequotas`, { apiVersion: "v1", kind: "ResourceQuota", metadata: { name: "team-quota" }, spec: resourceQuotaSpec(t.quota) });
      await quotaStatusSynced(ns, "team-quota");
      await create(`/api/v1/namespaces/${ns}/limitranges`, { apiVersion: "v1", kind: "LimitRange", metadata: { name: "team-defaults" }, spec: limitRangeSpec(t.quota) });
      await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: TEAM_ROLE },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: TEAM_ROLE },
        subjects: teamSubjects(t),
      });
    }
  });

  it("accepts the LimitRange of a team whose quota is below the usual defaults (defaults capped at the ceiling)", async () => {
    await create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "team-tiny", labels: teamNamespaceLabels("tiny", "restricted") } });
    await create("/api/v1/namespaces/team-tiny/limitranges", {
      apiVersion: "v1",
      kind: "LimitRange",
      metadata: { name: "team-defaults" },
      spec: limitRangeSpec({ gpu: 0, cpu: "100m", memory: "1Gi" }),
    });
    // The uncapped defaults are what the API server would refuse.
    const r = await kube.request("POST", "/api/v1/namespaces/team-tiny/limitranges", {
      apiVersion: "v1",
      kind: "LimitRange",
      metadata: { name: "uncapped" },
      spec: { limits: [{ type: "Container", defaultRequest: { cpu: "250m", memory: "512Mi" }, default: { memory: "2Gi" }, max: { cpu: "100m", memory: "1Gi" } }] },
    });
    expect(r.status).toBe(422);
  });

  it("accepts our ResourceFlavors, ClusterQueues (one cohort) and LocalQueues, and refuses a malformed ClusterQueue", async () => {
    const pools = gpuPools(GPU);
    for (const f of resourceFlavorManifests(pools)) await create("/apis/kueue.x-k8s.io/v1beta2/resourceflavors", f);
    for (const t of [vision, nlp]) {
      const cq = clusterQueueManifest({
        name: queueOf(t),
        namespace: namespaceOf(t),
        cohort: cfg.kueue.cohort,
        quota: t.quota,
        pools,
        fairShareWeight: t.fairShareWeight,
        canBorrow: t.canBorrow,
      });
      await create("/apis/kueue.x-k8s.io/v1beta2/clusterqueues", cq);
      await create(
        `/apis/kueue.x-k8s.io/v1beta2/namespaces/${namespaceOf(t)}/localqueues`,
        localQueueManifest({ name: queueOf(t), namespace: namespaceOf(t), clusterQueue: queueOf(t) }),
      );
    }
    const stored = await kube.get("/apis/kueue.x-k8s.io/v1beta2/clusterqueues/nlp");
    expect(stored.spec.cohortName).toBe("mlplatform");
    expect(stored.spec.resourceGroups[0].flavors.map((f: any) => f.name)).toEqual(["gpu", "cpu"]);
    expect(stored.spec.resourceGroups[0].flavors[0].resources.find((r: any) => r.name === "nvidia.com/gpu")).toEqual({
      name: "nvidia.com/gpu",
      nominalQuota: "1",
      borrowingLimit: "0",
    });

    const bad = clusterQueueManifest({ name: "bad", namespace: "x", cohort: "mlplatform", quota: vision.quota, pools, fairShareWeight: 1, canBorrow: true });
    delete bad.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota;
    const r = await kube.request("POST", "/apis/kueue.x-k8s.io/v1beta2/clusterqueues", bad);
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toContain("nominalQuota");
  });

  it("RBAC: a team member submits TFJobs and Workflows and reads logs in the team namespace, and reads no Secret, neither the other team's nor its own", async () => {
    const alice = (attrs: Record<string, string>) => can("alice", [], attrs);
    const viaGroup = (attrs: Record<string, string>) => can("carol", ["vision-researchers"], attrs);
    const own = namespaceOf(vision);
    const other = namespaceOf(nlp);
    for (const check of [alice, viaGroup]) {
      expect(await check({ namespace: own, verb: "create", group: "kubeflow.org", resource: "tfjobs" })).toBe(true);
      expect(await check({ namespace: own, verb: "create", group: "argoproj.io", resource: "workflows" })).toBe(true);
      expect(await check({ namespace: own, verb: "get", resource: "pods", subresource: "log" })).toBe(true);
      expect(await check({ namespace: own, verb: "list", group: "kueue.x-k8s.io", resource: "workloads" })).toBe(true);
      // Other teams' secrets, and any other secret.
      expect(await check({ namespace: other, verb: "get", resource: "secrets", name: OBJECT_STORE_SECRET })).toBe(false);
      expect(await check({ namespace: other, verb: "list", resource: "secrets" })).toBe(false);
      expect(await check({ namespace: own, verb: "get", resource: "secrets", name: OBJECT_STORE_SECRET })).toBe(false);
      // Nothing in the other team's or the platform's namespaces; no quota or RBAC changes.
      expect(await check({ namespace: other, verb: "create", group: "kubeflow.org", resource: "tfjobs" })).toBe(false);
      expect(await check({ namespace: "ml-pipelines", verb: "create", group: "argoproj.io", resource: "workflows" })).toBe(false);
      expect(await check({ namespace: "mlplatform", verb: "delete", group: "apps", resource: "deployments" })).toBe(false);
      expect(await check({ namespace: own, verb: "update", resource: "resourcequotas" })).toBe(false);
      expect(await check({ namespace: own, verb: "create", group: "rbac.authorization.k8s.io", resource: "rolebindings" })).toBe(false);
      expect(await check({ verb: "update", group: "kueue.x-k8s.io", resource: "clusterqueues" })).toBe(false);
    }
    // bob, of the other team, the other way round.
    expect(await can("bob", [], { namespace: own, verb: "get", resource: "secrets", name: OBJECT_STORE_SECRET })).toBe(false);
    expect(await can("bob", [], { namespace: other, verb: "create", group: "kubeflow.org", resource: "tfjobs" })).toBe(true);
  });

  it("quota admission: a pod within the team's GPU quota is admitted with LimitRange defaults; one beyond it is refused", async () => {
    const ns = namespaceOf(nlp);
    const pod = (name: string, gpus: number) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name },
      spec: {
        securityContext: restrictedPod(1000),
        nodeSelector: GPU.nodeSelector,
        tolerations: GPU.tolerations,
        containers: [
          {
            name: "main",
            image: "registry.example.com/mlplatform/trainer:0.1.0",
            securityContext: RESTRICTED_CONTAINER,
            resources: { limits: { "nvidia.com/gpu": String(gpus) } },
          },
        ],
      },
    });
    const over = await kube.request("POST", `/api/v1/namespaces/${ns}/pods`, pod("too-many-gpus", 2));
    expect(over.status, JSON.stringify(over.body)).toBe(403);
    expect(over.body.message).toMatch(/exceeded quota: team-quota.*requests\.nvidia\.com\/gpu/);
    const ok = await create(`/api/v1/namespaces/${ns}/pods`, pod("one-gpu", 1));
    expect(ok.spec.containers[0].resources.requests).toEqual({ cpu: "250m", memory: "512Mi", "nvidia.com/gpu": "1" });
    expect(ok.spec.containers[0].resources.limits.memory).toBe("2Gi");
  });
});
