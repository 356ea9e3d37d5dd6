/**
 * Every container states cpu and memory requests and a memory limit.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, at, levelOf, type PolicyOptions } from "./common";
import { findContainers, isKubernetesObject, type FoundContainer } from "./workloads";

function present(v: unknown): boolean {
  return v === UNKNOWN || (v !== undefined && v !== null && v !== "");
}

/**
 * What a container lacks of cpu request, memory request and memory limit. A limit without a
 * request counts as the request (Kubernetes copies it), and pod-level `resources` (Kubernetes
 * 1.34+) cover every container of the pod.
 */
export function missingResources(c: FoundContainer): string[] {
  const sources = [c.container, c.podSpec].filter((s) => s !== undefined);
  const has = (...path: string[]) => sources.some((s) => present(at(s, "resources", ...path)));
  const missing: string[] = [];
  if (!has("requests", "cpu") && !has("limits", "cpu")) missing.push("a cpu request");
  if (!has("requests", "memory") && !has("limits", "memory")) missing.push("a memory request");
  if (!has("limits", "memory")) missing.push("a memory limit");
  return missing;
}

export function containersHaveRequestsAndLimits(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "containers-have-requests-and-limits",
    description:
      "Every container must request cpu and memory and set a memory limit: the scheduler and the cluster " +
      "autoscaler size (GPU) nodes from requests, so a container without them is packed onto full nodes and " +
      "starves its neighbours, and one without a memory limit can take a whole node's memory down with it.",
    enforcementLevel: levelOf(opts),
    severity: "medium",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      if (!isKubernetesObject(args.type)) return args.notApplicable("not a Kubernetes object");
      const containers = findContainers(args.props).filter((c) => c.kind !== "ephemeralContainer");
      if (containers.length === 0) return args.notApplicable("no containers");
      for (const c of containers) {
        if (at(c.container, "resources") === UNKNOWN) continue;
        const missing = missingResources(c);
        if (missing.length > 0) {
          reportViolation(`${c.label} has no ${missing.join(", ")}; set resources.requests.cpu, resources.requests.memory and resources.limits.memory.`);
        }
      }
    },
  };
}
