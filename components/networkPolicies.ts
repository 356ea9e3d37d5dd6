/**
 * NetworkPolicies: default deny (in and out) in every platform namespace, then only the flows
 * the architecture needs. The README's "Network flows" table is this file in prose.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PLATFORM_LABELS } from "./namespaces";
import { MINIO_PORT } from "./objectStore";

type Spec = k8s.types.input.networking.v1.NetworkPolicySpec;
type Peer = k8s.types.input.networking.v1.NetworkPolicyPeer;

/** Namespaces by role, as in `mlplatform:namespaces`. */
export interface PlatformNamespaces {
  readonly platform: string;
  readonly pipelines: string;
  readonly serving: string;
  readonly notebooks: string;
}

const inNamespace = (ns: string): Peer => ({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } } });
const app = (name: string) => ({ matchLabels: { "app.kubernetes.io/name": name } });
const tcp = (port: number) => ({ protocol: "TCP", port });

/** One named policy of a namespace. */
export interface NamedPolicy {
  /** Role of the namespace (`platform`, `pipelines`, …): names the Pulumi resource, so renaming a namespace replaces its policies in place. */
  readonly role: keyof PlatformNamespaces;
  readonly namespace: string;
  readonly name: string;
  readonly spec: Spec;
}

/**
 * Every policy, as plain values. `ingressNamespace` is where the ingress controller runs (its
 * traffic reaches the UIs); `apiServerPorts` are the ports pods use to reach the Kubernetes API.
 */
export function platformNetworkPolicies(ns: PlatformNamespaces, ingressNamespace: string, apiServerPorts: number[] = [443, 6443]): NamedPolicy[] {
  const all = [ns.platform, ns.pipelines, ns.serving, ns.notebooks];
  const roles = Object.keys(ns) as (keyof PlatformNamespaces)[];
  const policies: NamedPolicy[] = [];
  for (const role of roles) {
    const n = ns[role];
    policies.push({ role, namespace: n, name: "default-deny", spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } });
    policies.push({
      role,
      namespace: n,
      name: "allow-dns",
      spec: {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [inNamespace("kube-system")], ports: [{ protocol: "UDP", port: 53 }, tcp(53)] }],
      },
    });
  }
  // The object store: reached by every platform namespace (including its own bucket Job).
  policies.push({
    role: "platform",
    namespace: ns.platform,
    name: "minio-from-platform",
    spec: { podSelector: app("minio"), policyTypes: ["Ingress"], ingress: [{ from: all.map(inNamespace), ports: [tcp(MINIO_PORT)] }] },
  });
  // TensorBoard: only through the ingress controller (which authenticates first).
  policies.push({
    role: "platform",
    namespace: ns.platform,
    name: "tensorboard-from-ingress",
    spec: { podSelector: app("tensorboard"), policyTypes: ["Ingress"], ingress: [{ from: [inNamespace(ingressNamespace)], ports: [tcp(6006)] }] },
  });
  // Workloads that read or write data talk to MinIO.
  for (const role of roles) {
    policies.push({
      role,
      namespace: ns[role],
      name: "egress-to-object-store",
      spec: { podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [{ ...inNamespace(ns.platform), podSelector: app("minio") }], ports: [tcp(MINIO_PORT)] }] },
    });
  }
  // Pipelines: pods of a run talk to each other (TFJob replicas, TensorBoard), to the
  // Kubernetes API (Argo executor, resource steps), and to the model server (smoke test).
  policies.push({
    role: "pipelines",
    namespace: ns.pipelines,
    name: "within-namespace",
    spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [{ from: [{ podSelector: {} }] }], egress: [{ to: [{ podSelector: {} }] }] },
  });
  policies.push({
    role: "pipelines",
    namespace: ns.pipelines,
    name: "egress-to-api-and-serving",
    spec: {
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [{ ports: apiServerPorts.map(tcp) }, { to: [inNamespace(ns.serving)], ports: [tcp(8500), tcp(8501)] }],
    },
  });
  policies.push({
    role: "pipelines",
    namespace: ns.pipelines,
    name: "tensorboard-from-ingress",
    spec: { podSelector: app("tensorboard"), policyTypes: ["Ingress"], ingress: [{ from: [inNamespace(ingressNamespace)], ports: [tcp(6006)] }] },
  });
  // Serving: clients in the pipelines and notebooks namespaces, and any namespace that opts in.
  policies.push({
    role: "serving",
    namespace: ns.serving,
    name: "serving-from-clients",
    spec: {
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [inNamespace(ns.pipelines), inNamespace(ns.notebooks), { namespaceSelector: { matchLabels: { "mlplatform.io/serving-client": "true" } } }],
          ports: [tcp(8500), tcp(8501)],
        },
      ],
    },
  });
  // Notebooks: JupyterHub's chart brings its own policies for the hub, proxy and user pods;
  // ours add the model server to what notebooks may call.
  policies.push({
    role: "notebooks",
    namespace: ns.notebooks,
    name: "egress-to-serving",
    spec: { podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [inNamespace(ns.serving)], ports: [tcp(8500), tcp(8501)] }] },
  });
  return policies;
}

export interface NetworkPoliciesArgs {
  readonly provider: k8s.Provider;
  readonly namespaces: PlatformNamespaces;
  /** Namespace of the ingress controller. Default `ingress-nginx`. */
  readonly ingressNamespace?: string;
  readonly dependsOn?: pulumi.Resource[];
}

export class NetworkPolicies extends pulumi.ComponentResource {
  readonly count: number;

  constructor(name: string, args: NetworkPoliciesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:security:NetworkPolicies", name, {}, opts);
    const policies = platformNetworkPolicies(args.namespaces, args.ingressNamespace ?? "ingress-nginx");
    for (const p of policies) {
      new k8s.networking.v1.NetworkPolicy(
        `${name}-${p.role}-${p.name}`,
        { metadata: { name: p.name, namespace: p.namespace, labels: { ...PLATFORM_LABELS } }, spec: p.spec },
        { parent: this, provider: args.provider, dependsOn: args.dependsOn },
      );
    }
    this.count = policies.length;
    this.registerOutputs({ count: this.count });
  }
}
