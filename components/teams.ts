/**
 * Teams that share the platform (`mlplatform:teams`). Each team gets a namespace of its own
 * with the platform's Pod Security level, default-deny NetworkPolicies and the object store
 * Secret; a RoleBinding of its members and groups to the team role (submit Workflows and
 * TFJobs, read logs; no Secrets, and nothing outside its namespace); a ResourceQuota and a
 * LimitRange; and a Kueue ClusterQueue with a LocalQueue named after the team.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { sizeInGiB, teamNamespace, type TeamConfig } from "../config";
import { TEAM_LABEL, clusterQueueManifest, localQueueManifest, type Kueue } from "./kueue";
import { PLATFORM_LABELS, awaitAnnotations, podSecurityLabels, type PodSecurityLevel } from "./namespaces";
import { MINIO_PORT, OBJECT_STORE_SECRET, credentialsData } from "./objectStore";

type Spec = k8s.types.input.networking.v1.NetworkPolicySpec;
type Rule = k8s.types.input.rbac.v1.PolicyRule;

/** The ClusterRole every team's RoleBinding grants, in the team's namespace only. */
export const TEAM_ROLE = "mlplatform-team-member";

/** The namespace of a team (config `namespace`, default `team-<name>`). */
export function namespaceOf(t: Pick<TeamConfig, "name" | "namespace">): string {
  return t.namespace ?? teamNamespace(t.name);
}

/** A team's LocalQueue (and ClusterQueue) name: the team's. */
export function queueOf(t: Pick<TeamConfig, "name">): string {
  return t.name;
}

/**
 * What a team member may do in the team's namespace: run and manage Workflows and TFJobs
 * (and plain Jobs), read pods, logs, events and the team's queue and quota. No Secrets (a
 * workload reads the object store Secret; people need not), no RBAC, no quota changes.
 */
export const TEAM_RULES: Rule[] = [
  { apiGroups: ["argoproj.io"], resources: ["workflows", "workflowtemplates", "cronworkflows"], verbs: ["get", "list", "watch", "create", "update", "patch", "delete"] },
  { apiGroups: ["argoproj.io"], resources: ["workflowtaskresults"], verbs: ["get", "list", "watch"] },
  { apiGroups: ["kubeflow.org"], resources: ["tfjobs"], verbs: ["get", "list", "watch", "create", "update", "patch", "delete"] },
  { apiGroups: ["kubeflow.org"], resources: ["tfjobs/status"], verbs: ["get"] },
  { apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list", "watch", "create", "delete"] },
  { apiGroups: [""], resources: ["pods", "events", "services", "configmaps", "persistentvolumeclaims", "resourcequotas", "limitranges"], verbs: ["get", "list", "watch"] },
  { apiGroups: [""], resources: ["pods/log"], verbs: ["get"] },
  { apiGroups: ["kueue.x-k8s.io"], resources: ["localqueues", "workloads"], verbs: ["get", "list", "watch"] },
];

/** RoleBinding subjects: the team's users and groups. */
export function teamSubjects(t: Pick<TeamConfig, "members" | "groups">): k8s.types.input.rbac.v1.Subject[] {
  return [
    ...t.members.map((name) => ({ kind: "User", apiGroup: "rbac.authorization.k8s.io", name })),
    ...t.groups.map((name) => ({ kind: "Group", apiGroup: "rbac.authorization.k8s.io", name })),
  ];
}

/** The ResourceQuota: the team's requests at once, GPUs included. */
export function resourceQuotaSpec(q: TeamConfig["quota"]): k8s.types.input.core.v1.ResourceQuotaSpec {
  return { hard: { "requests.cpu": q.cpu, "requests.memory": q.memory, "requests.nvidia.com/gpu": String(q.gpu) } };
}

/** Millicores of a CPU quantity (`8`, `500m`, `2.5`). */
export function milliCpu(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q);
  if (!m) throw new Error(`not a CPU quantity: ${q}`);
  return m[2] ? Number(m[1]) : Math.round(Number(m[1]) * 1000);
}

/**
 * The LimitRange: defaults for containers that state no resources (the quota makes requests
 * mandatory, so without defaults such a pod would be refused), and a ceiling per container,
 * the team's whole quota. A default never exceeds the ceiling (the API server refuses that).
 */
export function limitRangeSpec(q: TeamConfig["quota"]): k8s.types.input.core.v1.LimitRangeSpec {
  const cpu = (want: string) => (milliCpu(want) <= milliCpu(q.cpu) ? want : q.cpu);
  const memory = (want: string) => (sizeInGiB(want) <= sizeInGiB(q.memory) ? want : q.memory);
  return {
    limits: [
      {
        type: "Container",
        defaultRequest: { cpu: cpu("250m"), memory: memory("512Mi") },
        default: { memory: memory("2Gi") },
        max: { cpu: q.cpu, memory: q.memory },
      },
    ],
  };
}

const inNamespace = (ns: string) => ({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } } });
const tcp = (port: number) => ({ protocol: "TCP", port });

/**
 * A team namespace's NetworkPolicies: deny everything, then DNS, the object store, pods of
 * the same namespace (TFJob replicas), the Kubernetes API (Argo's executor) and the model
 * server. Nothing reaches in from other namespaces, other teams' included.
 */
export function teamNetworkPolicies(o: { platform: string; serving: string }, apiServerPorts: number[] = [443, 6443]): { name: string; spec: Spec }[] {
  return [
    { name: "default-deny", spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } },
    { name: "allow-dns", spec: { podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [inNamespace("kube-system")], ports: [{ protocol: "UDP", port: 53 }, tcp(53)] }] } },
    {
      name: "egress-to-object-store",
      spec: {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [{ ...inNamespace(o.platform), podSelector: { matchLabels: { "app.kubernetes.io/name": "minio" } } }], ports: [tcp(MINIO_PORT)] }],
      },
    },
    {
      name: "within-namespace",
      spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [{ from: [{ podSelector: {} }] }], egress: [{ to: [{ podSelector: {} }] }] },
    },
    {
      name: "egress-to-api-and-serving",
      spec: { podSelector: {}, policyTypes: ["Egress"], egress: [{ ports: apiServerPorts.map(tcp) }, { to: [inNamespace(o.serving)], ports: [tcp(8500), tcp(8501)] }] },
    },
  ];
}

/** The policy in the platform namespace that lets team namespaces reach MinIO. */
export function minioFromTeamsSpec(): Spec {
  return {
    podSelector: { matchLabels: { "app.kubernetes.io/name": "minio" } },
    policyTypes: ["Ingress"],
    ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: TEAM_LABEL, operator: "Exists" }] } }], ports: [tcp(MINIO_PORT)] }],
  };
}

/** Labels of a team namespace: Pod Security, the team, and the opt-in the model server's policy admits. */
export function teamNamespaceLabels(team: string, level: PodSecurityLevel): Record<string, string> {
  return { ...PLATFORM_LABELS, ...podSecurityLabels(level), [TEAM_LABEL]: team, "mlplatform.io/serving-client": "true" };
}

export interface TeamsArgs {
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Validated `mlplatform:teams`. */
  readonly teams: readonly TeamConfig[];
  /** The platform's namespaces the teams' pods talk to. */
  readonly platformNamespaces: { readonly platform: string; readonly serving: string };
  /** The object store whose credentials Secret every team namespace gets. */
  readonly objectStore: {
    readonly endpoint: pulumi.Input<string>;
    readonly region: string;
    readonly accessKeyId: pulumi.Input<string>;
    readonly secretAccessKey: pulumi.Input<string>;
  };
  /** Kueue, installed: its GPU pools and what queues wait for. */
  readonly kueue: Kueue;
  /** Cohort of the teams' ClusterQueues. */
  readonly cohort: string;
  /** Pod Security level of team namespaces. Default `restricted`, as the platform's. */
  readonly podSecurity?: PodSecurityLevel;
  /** Resources the platform namespace's policy waits for. */
  readonly dependsOn?: pulumi.Resource[];
  /** Do not wait for namespace deletion (API servers without controllers). Default false. */
  readonly skipAwait?: boolean;
}

export class Teams extends pulumi.ComponentResource {
  /** Team name → namespace. */
  readonly namespaces: Readonly<Record<string, pulumi.Output<string>>>;
  /** Team name → the LocalQueue its jobs name in `kueue.x-k8s.io/queue-name`. */
  readonly queues: Readonly<Record<string, pulumi.Output<string>>>;

  constructor(name: string, args: TeamsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:teams:Teams", name, {}, opts);
    const k8sOpts = { parent: this, provider: args.provider };
    const role = new k8s.rbac.v1.ClusterRole(`${name}-role`, { metadata: { name: TEAM_ROLE, labels: { ...PLATFORM_LABELS } }, rules: TEAM_RULES }, k8sOpts);
    new k8s.networking.v1.NetworkPolicy(
      `${name}-minio-from-teams`,
      { metadata: { name: "minio-from-teams", namespace: args.platformNamespaces.platform, labels: { ...PLATFORM_LABELS } }, spec: minioFromTeamsSpec() },
      { ...k8sOpts, dependsOn: args.dependsOn },
    );
    const data = pulumi
      .all([args.objectStore.endpoint, args.objectStore.accessKeyId, args.objectStore.secretAccessKey])
      .apply(([endpoint, id, key]) => credentialsData(endpoint, args.objectStore.region, id, key));

    const namespaces: Record<string, pulumi.Output<string>> = {};
    const queues: Record<string, pulumi.Output<string>> = {};
    for (const t of args.teams) {
      const base = `${name}-${t.name}`;
      const nsObj = new k8s.core.v1.Namespace(
        `${base}-ns`,
        {
          metadata: {
            name: namespaceOf(t),
            labels: teamNamespaceLabels(t.name, args.podSecurity ?? "restricted"),
            annotations: awaitAnnotations(args.skipAwait ?? false),
          },
        },
        k8sOpts,
      );
      const ns = nsObj.metadata.name;
      const inNs = { ...k8sOpts, dependsOn: [nsObj] };
      for (const p of teamNetworkPolicies(args.platformNamespaces)) {
        new k8s.networking.v1.NetworkPolicy(`${base}-${p.name}`, { metadata: { name: p.name, namespace: ns, labels: { ...PLATFORM_LABELS } }, spec: p.spec }, inNs);
      }
      new k8s.core.v1.Secret(
        `${base}-object-store`,
        { metadata: { name: OBJECT_STORE_SECRET, namespace: ns, labels: { ...PLATFORM_LABELS } }, type: "Opaque", stringData: pulumi.secret(data) },
        inNs,
      );
      new k8s.rbac.v1.RoleBinding(
        `${base}-members`,
        {
          metadata: { name: TEAM_ROLE, namespace: ns, labels: { ...PLATFORM_LABELS } },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
          subjects: teamSubjects(t),
        },
        inNs,
      );
      new k8s.core.v1.ResourceQuota(`${base}-quota`, { metadata: { name: "team-quota", namespace: ns, labels: { ...PLATFORM_LABELS } }, spec: resourceQuotaSpec(t.quota) }, inNs);
      new k8s.core.v1.LimitRange(`${base}-limits`, { metadata: { name: "team-defaults", namespace: ns, labels: { ...PLATFORM_LABELS } }, spec: limitRangeSpec(t.quota) }, inNs);
      const cq = new k8s.apiextensions.CustomResource(
        `${base}-cq`,
        clusterQueueManifest({
          name: queueOf(t),
          namespace: namespaceOf(t),
          cohort: args.cohort,
          quota: t.quota,
          pools: args.kueue.pools,
          fairShareWeight: t.fairShareWeight,
          canBorrow: t.canBorrow,
        }) as k8s.apiextensions.CustomResourceArgs,
        { ...k8sOpts, dependsOn: args.kueue.ready },
      );
      const lq = new k8s.apiextensions.CustomResource(
        `${base}-lq`,
        localQueueManifest({ name: queueOf(t), namespace: namespaceOf(t), clusterQueue: queueOf(t) }) as k8s.apiextensions.CustomResourceArgs,
        { ...k8sOpts, dependsOn: [nsObj, cq, ...args.kueue.ready] },
      );
      namespaces[t.name] = ns;
      queues[t.name] = lq.metadata.name;
    }
    this.namespaces = namespaces;
    this.queues = queues;
    this.registerOutputs({ namespaces, queues });
  }
}
