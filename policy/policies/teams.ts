/**
 * Teams share the cluster through quotas and queues: a team namespace without a
 * ResourceQuota, or a GPU workload that bypasses Kueue while teams are on, lets one team take
 * what others were promised.
 */
import type { PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import * as YAML from "yaml";
import { UNKNOWN, at, elements, isRecord, levelOf, read, str, type PolicyOptions } from "./common";
import { findContainers, isKubernetesObject, namespaceOf } from "./workloads";

/** Namespace label that marks a team namespace (components/kueue.ts TEAM_LABEL). */
export const TEAM_LABEL = "mlplatform.io/team";
/** The label that submits a job to a Kueue LocalQueue. */
export const QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name";
const GPU_RESOURCE = "nvidia.com/gpu";

/** Batch kinds Kueue admits; long-running services (Deployments, StatefulSets) are not queued. */
const BATCH_KINDS: ReadonlySet<string> = new Set(["TFJob", "Job", "Pod", "CronJob", "Workflow", "WorkflowTemplate", "CronWorkflow", "ClusterWorkflowTemplate"]);

function kindOf(r: Pick<PolicyResource, "type" | "props">): string | undefined {
  const k = str(read(r.props, "kind"));
  if (k) return k;
  const m = /^kubernetes:[^:]+:([A-Za-z]+)$/.exec(r.type);
  return m?.[1];
}

/** Team namespaces the stack creates: name → team. */
function teamNamespaces(resources: readonly PolicyResource[]): Map<string, PolicyResource> {
  const found = new Map<string, PolicyResource>();
  for (const r of resources) {
    if (r.type !== "kubernetes:core/v1:Namespace") continue;
    const labels = at(r.props, "metadata", "labels");
    const team = read(labels, TEAM_LABEL);
    const name = str(at(r.props, "metadata", "name"));
    if (team !== undefined && team !== UNKNOWN && name) found.set(name, r);
  }
  return found;
}

export function teamNamespacesHaveQuota(opts?: PolicyOptions): StackValidationPolicy {
  return {
    name: "team-namespaces-have-quota",
    description:
      "Every team namespace (labelled mlplatform.io/team) has a ResourceQuota: without one, a team's pods can take the CPU, memory " +
      "and GPUs the other teams were promised, and Kueue's nominal quotas no longer say what a team can use.",
    enforcementLevel: levelOf(opts),
    severity: "high",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
      const teams = teamNamespaces(args.resources);
      if (teams.size === 0) return;
      const withQuota = new Set<string>();
      for (const r of args.resources) {
        if (r.type !== "kubernetes:core/v1:ResourceQuota") continue;
        const ns = namespaceOf(r);
        if (ns === UNKNOWN) return; // decided again on `pulumi up`
        withQuota.add(ns);
      }
      for (const [ns, r] of teams) {
        if (!withQuota.has(ns)) {
          reportViolation(
            `team namespace "${ns}" has no ResourceQuota; add one (components/teams.ts resourceQuotaSpec) limiting requests.cpu, requests.memory and requests.${GPU_RESOURCE}.`,
            r.urn,
          );
        }
      }
    },
  };
}

/** Whether a container asks for GPUs (a number > 0, or an expression filled in at run time). */
function asksForGpu(container: Record<string, unknown>): boolean {
  for (const part of ["limits", "requests"]) {
    const v = at(container, "resources", part, GPU_RESOURCE);
    if (v === undefined || v === null || v === UNKNOWN) continue;
    if (typeof v === "number") {
      if (v > 0) return true;
    } else if (typeof v === "string" && !/^0+$/.test(v.trim())) return true;
  }
  return false;
}

/** A GPU batch workload found in a resource, and the queue it names (if any). */
interface Workload {
  readonly what: string;
  readonly queue: string | undefined;
}

const ARGO_KINDS: ReadonlySet<string> = new Set(["Workflow", "WorkflowTemplate", "CronWorkflow", "ClusterWorkflowTemplate"]);

/**
 * A resource manifest with Argo's `{{…}}` expressions (filled in at run time) taken out so it
 * parses: inside a string an expression becomes `x`; in a value position (`"replicas": {{…}}`)
 * a number; elsewhere (an optional fragment such as `,"Worker":{…}` or nothing) nothing.
 */
export function withoutExpressions(text: string): string {
  let out = "";
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    if (!escaped && text.startsWith("{{", i)) {
      const end = text.indexOf("}}", i + 2);
      if (end < 0) return out + text.slice(i);
      out += inString ? "x" : out.trimEnd().endsWith(":") ? "1" : "";
      i = end + 1;
      continue;
    }
    const c = text[i]!;
    if (inString && c === "\\" && !escaped) escaped = true;
    else {
      if (c === '"' && !escaped) inString = !inString;
      escaped = false;
    }
    out += c;
  }
  return out;
}

/** Objects an Argo workflow spec creates from `resource.manifest` (the pipelines' TFJobs), with their queue labels. */
function embeddedGpuManifests(spec: unknown): Workload[] {
  const found: Workload[] = [];
  for (const [i, t] of (elements(read(spec, "templates")) ?? []).entries()) {
    const manifest = at(t, "resource", "manifest");
    if (typeof manifest !== "string") continue;
    let obj: unknown;
    try {
      obj = YAML.parse(withoutExpressions(manifest));
    } catch {
      continue; // not parseable: not this policy's to judge
    }
    if (!isRecord(obj) || !findContainers(obj).some((c) => asksForGpu(c.container))) continue;
    found.push({
      what: `spec.templates[${i}] ("${str(read(t, "name")) ?? "?"}") creates a ${str(obj.kind) ?? "resource"} that`,
      queue: str(at(obj, "metadata", "labels", QUEUE_NAME_LABEL)),
    });
  }
  return found;
}

/** The GPU workloads of one resource. */
function gpuWorkloads(r: Pick<PolicyResource, "type" | "props">, kind: string): Workload[] {
  if (!ARGO_KINDS.has(kind)) {
    if (!findContainers(r.props).some((c) => asksForGpu(c.container))) return [];
    return [{ what: kind, queue: str(at(r.props, "metadata", "labels", QUEUE_NAME_LABEL)) }];
  }
  const spec = kind === "CronWorkflow" ? at(r.props, "spec", "workflowSpec") : read(r.props, "spec");
  const found = embeddedGpuManifests(spec);
  // Pods Argo runs itself take their labels from podMetadata.
  const own = findContainers(spec).filter((c) => asksForGpu(c.container));
  if (own.length > 0) found.push({ what: `${kind} step ${own.map((c) => c.label).join(", ")}`, queue: str(at(spec, "podMetadata", "labels", QUEUE_NAME_LABEL)) });
  return found;
}

export function gpuWorkloadsQueued(opts?: PolicyOptions): StackValidationPolicy {
  return {
    name: "gpu-workloads-queued",
    description:
      "While teams share the cluster (a namespace labelled mlplatform.io/team exists), every batch workload that asks for GPUs " +
      "(TFJob, Job, Pod, Argo templates and the TFJobs they create) carries the kueue.x-k8s.io/queue-name label: Kueue only " +
      "counts what is queued, so an unqueued GPU job takes GPUs outside every team's quota.",
    enforcementLevel: levelOf(opts),
    severity: "high",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
      if (teamNamespaces(args.resources).size === 0) return;
      for (const r of args.resources) {
        if (!isKubernetesObject(r.type)) continue;
        const kind = kindOf(r);
        if (!kind || !BATCH_KINDS.has(kind)) continue;
        for (const w of gpuWorkloads(r, kind)) {
          if (w.queue) continue;
          reportViolation(
            `${w.what} asks for ${GPU_RESOURCE} but names no Kueue queue; add the label ${QUEUE_NAME_LABEL}: <the team's LocalQueue> (stack output teamQueues).`,
            r.urn,
          );
        }
      }
    },
  };
}
