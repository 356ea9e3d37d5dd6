/**
 * Privileged containers only in the namespaces allowed to run them; and only those namespaces
 * may carry the `privileged` Pod Security level.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, at, levelOf, type PolicyOptions } from "./common";
import { findContainers, isKubernetesObject, namespaceOf } from "./workloads";

/**
 * Namespaces whose workloads need host access: the NVIDIA device plugin (the kubelet's device
 * plugin socket), the in-cluster NFS server (the kernel NFS server), the metrics stack's
 * `monitoring` (node-exporter reads the host with hostNetwork, hostPID and hostPath; the DCGM
 * exporter needs SYS_ADMIN and the kubelet's pod-resources socket), and kube-system.
 */
export const DEFAULT_PRIVILEGED_NAMESPACES: readonly string[] = ["nvidia-device-plugin", "mlplatform-storage", "monitoring", "kube-system"];

/** The Pod Security Admission label whose `privileged` value lets privileged pods in. */
export const POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce";

export interface PrivilegedNamespacesConfig {
  /** Namespaces where privileged containers may run. Default {@link DEFAULT_PRIVILEGED_NAMESPACES}. */
  readonly allowedNamespaces?: readonly string[];
}

const NAMESPACE = /^kubernetes:core\/v1:Namespace$/;

export function noPrivilegedOutsideSystemNamespaces(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "no-privileged-outside-system-namespaces",
    description:
      "Privileged containers have every capability and the host's devices, so one compromised container owns its " +
      "node (and the GPUs and data on it). They may only run in the namespaces allowed for them (the NVIDIA device " +
      "plugin, the in-cluster NFS server, kube-system), and only those namespaces may be labelled " +
      `${POD_SECURITY_ENFORCE}: privileged; everything else runs under the restricted or baseline level.`,
    enforcementLevel: levelOf(opts),
    severity: "critical",
    configSchema: {
      properties: {
        allowedNamespaces: {
          type: "array",
          items: { type: "string" },
          default: [...DEFAULT_PRIVILEGED_NAMESPACES],
          description: "Namespaces where privileged containers may run (and which may be labelled privileged).",
        },
      },
    },
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      if (!isKubernetesObject(args.type)) return args.notApplicable("not a Kubernetes object");
      const allowed = args.getConfig<PrivilegedNamespacesConfig>().allowedNamespaces ?? DEFAULT_PRIVILEGED_NAMESPACES;
      const allowList = `allowed: ${allowed.join(", ") || "(none)"}`;

      if (NAMESPACE.test(args.type)) {
        const name = at(args.props, "metadata", "name");
        const level = at(args.props, "metadata", "labels", POD_SECURITY_ENFORCE);
        if (level !== "privileged" || name === UNKNOWN) return;
        if (typeof name !== "string" || !allowed.includes(name)) {
          reportViolation(
            `namespace ${JSON.stringify(name ?? "(auto-named)")} is labelled ${POD_SECURITY_ENFORCE}: privileged but is not ` +
              `allowed privileged workloads (${allowList}); use baseline or restricted, or add it to the policy's allowedNamespaces.`,
          );
        }
        return;
      }

      const privileged = findContainers(args.props).filter((c) => at(c.container, "securityContext", "privileged") === true);
      if (privileged.length === 0) return;
      const ns = namespaceOf(args);
      if (ns === UNKNOWN || allowed.includes(ns)) return;
      for (const c of privileged) {
        reportViolation(
          `${c.label} is privileged in namespace "${ns}" (${allowList}); drop securityContext.privileged ` +
            "(add only the capabilities it needs), or run it in an allowed namespace.",
        );
      }
    },
  };
}
