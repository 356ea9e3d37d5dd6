/**
 * The platform's namespaces, each with Pod Security Admission labels.
 *
 * Names are part of the contract with consuming teams (they are stack outputs), so they are
 * set explicitly rather than auto-named.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

export type PodSecurityLevel = "privileged" | "baseline" | "restricted";

/** Pod Security Admission labels: enforce `level`, and warn/audit at `restricted` regardless. */
export function podSecurityLabels(level: PodSecurityLevel): Record<string, string> {
  return {
    "pod-security.kubernetes.io/enforce": level,
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": "latest",
  };
}

/**
 * Annotations for objects that would otherwise be awaited until Ready. `skipAwait` is only
 * for API servers without nodes (config `kubernetes.skipAwait`, the offline tests).
 */
export function awaitAnnotations(skipAwait: boolean): Record<string, string> {
  return skipAwait ? { "pulumi.com/skipAwait": "true" } : {};
}

/** Labels on every object the platform authors. */
export const PLATFORM_LABELS = { "app.kubernetes.io/part-of": "mlplatform", "app.kubernetes.io/managed-by": "pulumi" } as const;

export interface NamespacesArgs<R extends string> {
  /** Role → namespace name, e.g. `{ pipelines: "ml-pipelines" }`. */
  readonly names: Readonly<Record<R, string>>;
  /** Explicit provider of the target cluster. */
  readonly provider: k8s.Provider;
  /** Pod Security level enforced in every namespace. Default `restricted`. */
  readonly podSecurity?: PodSecurityLevel;
  /** Do not wait for deletion to finish (API servers without a namespace controller). Default false. */
  readonly skipAwait?: boolean;
  /**
   * What each namespace is created after and deleted before: the shared volumes, whose
   * deletion waits for the claims that only the namespaces' deletion removes.
   */
  readonly after?: pulumi.Input<pulumi.Resource>[];
}

export class Namespaces<R extends string> extends pulumi.ComponentResource {
  /** Role → namespace name, resolved once the namespace exists. */
  readonly names: Readonly<Record<R, pulumi.Output<string>>>;
  /** Role → the Namespace resource (for `deletedWith` on what lives and dies with it). */
  readonly resources: Readonly<Record<R, k8s.core.v1.Namespace>>;

  constructor(name: string, args: NamespacesArgs<R>, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:platform:Namespaces", name, {}, opts);
    const names = {} as Record<R, pulumi.Output<string>>;
    const resources = {} as Record<R, k8s.core.v1.Namespace>;
    for (const [role, ns] of Object.entries(args.names) as [R, string][]) {
      const created = new k8s.core.v1.Namespace(
        `${name}-${role}`,
        {
          metadata: {
            name: ns,
            labels: { ...PLATFORM_LABELS, "mlplatform.io/role": role, ...podSecurityLabels(args.podSecurity ?? "restricted") },
            annotations: awaitAnnotations(args.skipAwait ?? false),
          },
        },
        { parent: this, provider: args.provider, dependsOn: args.after },
      );
      names[role] = created.metadata.name;
      resources[role] = created;
    }
    this.names = names;
    this.resources = resources;
    this.registerOutputs({ names });
  }
}
