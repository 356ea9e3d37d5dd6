/**
 * Finding the containers of a Kubernetes object by shape rather than by kind, so the same
 * rules cover Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods as
 * well as custom resources that embed pod templates (TFJob replica specs, Argo Workflow
 * templates, …) that other components add.
 */
import type { ResourceValidationArgs } from "@pulumi/policy";
import { UNKNOWN, elements, isRecord, keysOf, read, str, type Unknown } from "./common";

export type ContainerKind = "container" | "initContainer" | "ephemeralContainer";

export interface FoundContainer {
  /** The container object (`name`, `image`, `resources`, `env`, …). */
  readonly container: Record<string, unknown>;
  /** Property path from the resource's root, e.g. `spec.template.spec.containers[0]`. */
  readonly path: string;
  /** `path` and the container's name, for messages. */
  readonly label: string;
  readonly kind: ContainerKind;
  /** The pod spec holding the container, when it is in a pod spec's container list. */
  readonly podSpec?: Record<string, unknown>;
}

/** Pod-spec keys that hold lists of containers (`sidecars`: Argo Workflow templates). */
const CONTAINER_LISTS: Readonly<Record<string, ContainerKind>> = {
  containers: "container",
  initContainers: "initContainer",
  ephemeralContainers: "ephemeralContainer",
  sidecars: "container",
};
/** Keys that hold a single container (Argo Workflow `container` and `script` templates). */
const SINGLE_CONTAINERS = ["container", "script"] as const;

/**
 * Whether a type token is a Kubernetes object whose properties are the object itself: not the
 * provider, not Helm/YAML/Kustomize components (whose rendered objects the engine checks one
 * by one), not CRD definitions (whose schemas mention `containers` too).
 */
export function isKubernetesObject(type: string): boolean {
  return type.startsWith("kubernetes:") && !/^kubernetes:(helm\.sh|yaml|kustomize)[/:]/.test(type) && !type.startsWith("kubernetes:apiextensions.k8s.io/");
}

function looksLikeContainer(v: unknown): v is Record<string, unknown> {
  if (!isRecord(v)) return false;
  const image = read(v, "image");
  return typeof image === "string" || image === UNKNOWN;
}

/** Every container in a Kubernetes object's properties, wherever pod specs are embedded. */
export function findContainers(props: unknown): FoundContainer[] {
  const found: FoundContainer[] = [];
  const visit = (node: unknown, path: string, depth: number): void => {
    if (depth > 64) return; // property trees are acyclic; this only guards against pathological input
    if (Array.isArray(node)) {
      elements(node)!.forEach((el, i) => visit(el, `${path}[${i}]`, depth + 1));
      return;
    }
    if (!isRecord(node)) return;
    for (const key of keysOf(node)) {
      const child = read(node, key);
      const childPath = path ? `${path}.${key}` : key;
      const listKind = CONTAINER_LISTS[key];
      if (listKind) {
        elements(child)?.forEach((el, i) => {
          if (looksLikeContainer(el)) found.push(container(el, `${childPath}[${i}]`, listKind, node));
        });
      } else if ((SINGLE_CONTAINERS as readonly string[]).includes(key) && looksLikeContainer(child)) {
        found.push(container(child, childPath, "container", undefined));
      }
      visit(child, childPath, depth + 1);
    }
  };
  visit(props, "", 0);
  return found;
}

function container(c: Record<string, unknown>, path: string, kind: ContainerKind, podSpec: Record<string, unknown> | undefined): FoundContainer {
  const name = str(read(c, "name"));
  return { container: c, path, label: name ? `${path} ("${name}")` : path, kind, podSpec };
}

/**
 * The namespace a namespaced object lands in: its `metadata.namespace`, else the provider's
 * default namespace, else `default`. {@link UNKNOWN} while it depends on another resource.
 */
export function namespaceOf(args: Pick<ResourceValidationArgs, "props" | "provider">): string | Unknown {
  const ns = read(read(args.props, "metadata"), "namespace");
  if (ns === UNKNOWN) return UNKNOWN;
  if (typeof ns === "string" && ns !== "") return ns;
  const fromProvider = read(args.provider?.props, "namespace");
  if (fromProvider === UNKNOWN) return UNKNOWN;
  return typeof fromProvider === "string" && fromProvider !== "" ? fromProvider : "default";
}
