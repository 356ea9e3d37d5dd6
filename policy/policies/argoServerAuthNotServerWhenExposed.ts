/**
 * The Argo Workflows server never runs in `server` auth mode when it is reachable from outside
 * the cluster.
 *
 * Auth mode and exposure are often set on different objects (chart values and a separately
 * written Ingress; a rendered Deployment and its Service), so this is a stack policy. It finds
 * Argo servers in `server` mode in two forms:
 * - the `values` of an argo-workflows Helm install (a `helm.v3.Release`, or a `helm.v4.Chart`
 *   under mocks: the real engine hands a v4 Chart to policies without its inputs);
 * - any rendered workload whose container runs with `--auth-mode server` (what the chart
 *   renders, and what the real engine shows policies for a v4 Chart);
 * and calls them exposed when the chart's values enable its ingress or a LoadBalancer/NodePort
 * Service, or when a Service of type LoadBalancer/NodePort selects the server's pods, or an
 * Ingress or Gateway API route sends traffic to a Service of the server.
 */
import type { PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, at, elements, isRecord, keysOf, levelOf, read, str, type PolicyOptions } from "./common";
import { helmInstall, isChart } from "./helmCharts";
import { findContainers, isKubernetesObject, namespaceOf } from "./workloads";

/** Where chart values turn on `server` auth mode (empty when they do not). */
export function serverAuthModeSettings(server: unknown): string[] {
  const found: string[] = [];
  if (elements(read(server, "authModes"))?.includes("server")) found.push("server.authModes contains server");
  if (read(server, "authMode") === "server") found.push("server.authMode is server");
  authModeArgs(elements(read(server, "extraArgs")) ?? []).forEach((i) => found.push(`server.extraArgs[${i}] sets --auth-mode server`));
  return found;
}

/** Indexes of arguments that set `--auth-mode server` (`--auth-mode=server`, `--auth-mode server`, lists). */
export function authModeArgs(args: readonly unknown[]): number[] {
  const found: number[] = [];
  args.forEach((arg, i) => {
    if (typeof arg !== "string") return;
    const inline = /^--auth-mode[= ](.+)$/.exec(arg.trim());
    const value = inline ? inline[1] : arg.trim() === "--auth-mode" ? args[i + 1] : undefined;
    if (
      typeof value === "string" &&
      value
        .split(",")
        .map((v) => v.trim())
        .includes("server")
    )
      found.push(i);
  });
  return found;
}

/** How chart values expose the server outside the cluster (empty when they do not). */
export function serverExposure(server: unknown): string[] {
  const found: string[] = [];
  if (at(server, "ingress", "enabled") === true) found.push("server.ingress.enabled is true");
  const serviceType = read(server, "serviceType");
  if (serviceType === "LoadBalancer" || serviceType === "NodePort") found.push(`server.serviceType is ${serviceType}`);
  return found;
}

const SERVICE = /^kubernetes:core\/v1:Service$/;
const INGRESS = /^kubernetes:(networking\.k8s\.io|extensions)\/[^:]+:Ingress$/;
const GATEWAY_ROUTE = /^kubernetes:gateway\.networking\.k8s\.io\/[^:]+:(HTTPRoute|GRPCRoute|TLSRoute|TCPRoute)$/;
const EXTERNAL_SERVICE_TYPES = ["LoadBalancer", "NodePort"];

interface Service {
  readonly namespace: string;
  readonly name: string;
  readonly type: string;
  readonly selector: Record<string, unknown>;
}
interface Route {
  readonly namespace: string;
  readonly what: string;
  readonly services: string[];
}

function namespaceIn(r: PolicyResource): string | undefined {
  const ns = namespaceOf(r);
  return ns === UNKNOWN ? undefined : ns;
}

function services(resources: readonly PolicyResource[]): Service[] {
  return resources.flatMap((r) => {
    const name = str(at(r.props, "metadata", "name"));
    const namespace = namespaceIn(r);
    if (!SERVICE.test(r.type) || !name || !namespace) return [];
    const selector = at(r.props, "spec", "selector");
    return [{ namespace, name, type: str(at(r.props, "spec", "type")) ?? "ClusterIP", selector: isRecord(selector) ? selector : {} }];
  });
}

/** Ingresses and Gateway API routes, with the Services they send traffic to. */
function routes(resources: readonly PolicyResource[]): Route[] {
  return resources.flatMap((r) => {
    const namespace = namespaceIn(r);
    if (!namespace) return [];
    const what = `${r.type.split(":").pop()} ${str(at(r.props, "metadata", "name")) ?? r.name}`;
    if (INGRESS.test(r.type)) {
      const backends = [at(r.props, "spec", "defaultBackend"), at(r.props, "spec", "backend")];
      for (const rule of elements(at(r.props, "spec", "rules")) ?? []) {
        for (const path of elements(at(rule, "http", "paths")) ?? []) backends.push(read(path, "backend"));
      }
      const names = backends.map((b) => str(at(b, "service", "name")) ?? str(read(b, "serviceName"))).filter((n): n is string => !!n);
      return [{ namespace, what, services: names }];
    }
    if (GATEWAY_ROUTE.test(r.type)) {
      const names = (elements(at(r.props, "spec", "rules")) ?? [])
        .flatMap((rule) => elements(read(rule, "backendRefs")) ?? [])
        .filter((ref) => (str(read(ref, "kind")) ?? "Service") === "Service" && (str(read(ref, "namespace")) ?? namespace) === namespace)
        .map((ref) => str(read(ref, "name")))
        .filter((n): n is string => !!n);
      return [{ namespace, what, services: names }];
    }
    return [];
  });
}

function selects(selector: Record<string, unknown>, labels: unknown): boolean {
  const keys = keysOf(selector);
  return keys.length > 0 && keys.every((k) => read(labels, k) === read(selector, k));
}

/** The chart's fullname helper: the release name if it contains the chart name, else `<release>-argo-workflows`. */
function chartFullname(release: string, values: unknown): string {
  const override = str(read(values, "fullnameOverride"));
  if (override) return override;
  return release.includes("argo-workflows") ? release : `${release}-argo-workflows`;
}

interface ServerInMode {
  readonly urn: string;
  readonly mode: string[];
  readonly exposure: string[];
}

/** Argo servers in `server` mode declared by Helm values, and how they are exposed. */
function fromHelmValues(resources: readonly PolicyResource[], svcs: Service[], rts: Route[]): ServerInMode[] {
  return resources.flatMap((r) => {
    const install = helmInstall(r.type, r.props);
    if (install === undefined || install === UNKNOWN || !isChart(install.chart, "argo-workflows")) return [];
    const server = read(install.values, "server");
    if (read(server, "enabled") === false) return [];
    const mode = serverAuthModeSettings(server);
    if (mode.length === 0) return [];
    // A Helm install's namespace is its `namespace` property, not object metadata.
    const namespace = str(read(r.props, "namespace")) ?? str(read(r.provider?.props, "namespace")) ?? "default";
    const serviceName = `${chartFullname(str(read(r.props, "name")) ?? r.name, install.values)}-server`;
    const exposure = [...serverExposure(server)];
    for (const s of svcs) {
      if (s.namespace === namespace && s.name === serviceName && EXTERNAL_SERVICE_TYPES.includes(s.type)) exposure.push(`Service ${s.name} is ${s.type}`);
    }
    for (const route of rts) {
      if (route.namespace === namespace && route.services.includes(serviceName)) exposure.push(`${route.what} routes to Service ${serviceName}`);
    }
    return [{ urn: r.urn, mode, exposure }];
  });
}

/** Rendered workloads whose containers run with `--auth-mode server`, and how they are exposed. */
function fromWorkloads(resources: readonly PolicyResource[], svcs: Service[], rts: Route[]): ServerInMode[] {
  return resources.flatMap((r) => {
    if (!isKubernetesObject(r.type)) return [];
    const mode = findContainers(r.props).flatMap((c) => {
      const args = [...(elements(read(c.container, "command")) ?? []), ...(elements(read(c.container, "args")) ?? [])];
      return authModeArgs(args).length > 0 ? [`${c.label} runs with --auth-mode server`] : [];
    });
    if (mode.length === 0) return [];
    const namespace = namespaceIn(r);
    const podLabels = at(r.props, "spec", "template", "metadata", "labels") ?? at(r.props, "metadata", "labels");
    const own = svcs.filter((s) => s.namespace === namespace && selects(s.selector, podLabels));
    const exposure = own.filter((s) => EXTERNAL_SERVICE_TYPES.includes(s.type)).map((s) => `Service ${s.name} is ${s.type}`);
    for (const route of rts) {
      for (const s of own) if (route.namespace === s.namespace && route.services.includes(s.name)) exposure.push(`${route.what} routes to Service ${s.name}`);
    }
    return [{ urn: r.urn, mode, exposure }];
  });
}

export function argoServerAuthNotServerWhenExposed(opts?: PolicyOptions): StackValidationPolicy {
  return {
    name: "argo-server-auth-not-server-when-exposed",
    description:
      "In `server` auth mode the Argo Workflows server serves every request with its own service account, so anyone " +
      "who can reach it can submit workflows (arbitrary pods, with the pipelines' credentials) without logging in. " +
      "An Argo server exposed through an ingress, a Gateway route, a LoadBalancer or a NodePort must use client or sso auth.",
    enforcementLevel: levelOf(opts),
    severity: "critical",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
      const svcs = services(args.resources);
      const rts = routes(args.resources);
      for (const s of [...fromHelmValues(args.resources, svcs, rts), ...fromWorkloads(args.resources, svcs, rts)]) {
        if (s.exposure.length === 0) continue;
        reportViolation(`${s.mode.join("; ")}, and the server is exposed (${s.exposure.join("; ")}); use server.authModes [client] or [sso].`, s.urn);
      }
    },
  };
}
