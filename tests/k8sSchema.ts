/**
 * Validates Kubernetes objects we author against the upstream OpenAPI schemas (the
 * `kubernetes-models` package; Argo Workflows' CRD schemas from `@kubernetes-models/argo-workflows`;
 * the Prometheus Operator's from `@kubernetes-models/prometheus-operator`, also for Azure's
 * `azmonitoring.coreos.com` copies of its PodMonitor/ServiceMonitor; GKE's managed Prometheus
 * kinds from ./fixtures/gmp-schemas.ts).
 * A kind without a known schema is an error, never a silent pass.
 */
import Ajv from "ajv";
import { GMP_SCHEMAS } from "./fixtures/gmp-schemas";
import type { RecordedResource } from "./harness";

const gmpAjv = new Ajv({ allErrors: true });

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Replaces Pulumi's secret wrappers (as they appear in mock inputs) by their values. */
export function revealSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(revealSecrets);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (SECRET_SIG in o && "value" in o) return revealSecrets(o.value);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, revealSecrets(x)]));
  }
  return v;
}

/** Pulumi type tokens that are not Kubernetes objects (components, providers, Helm charts). */
export function isKubernetesObject(type: string): boolean {
  // Charts and kustomize directories are rendered by the provider; their objects are upstream's.
  return type.startsWith("kubernetes:") && !type.startsWith("kubernetes:helm.sh/") && !type.startsWith("kubernetes:yaml/") && !type.startsWith("kubernetes:kustomize/");
}

/** Module that holds the model class for an apiVersion. */
function modelModule(apiVersion: string): string {
  if (apiVersion === "argoproj.io/v1alpha1") return "@kubernetes-models/argo-workflows/argoproj.io/v1alpha1";
  // Azure's metrics add-on reads the Prometheus Operator's PodMonitor/ServiceMonitor under its own group.
  if (apiVersion === "monitoring.coreos.com/v1" || apiVersion === "azmonitoring.coreos.com/v1") return "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
  return `kubernetes-models/${apiVersion}`; // "v1" for the core group, "apps/v1", …
}

/** Validates one object (`apiVersion`, `kind` set). Throws naming the object and the schema error. */
export async function validateObject(obj: Record<string, any>, where = `${obj.kind}/${obj.metadata?.name ?? "?"}`): Promise<void> {
  const { apiVersion, kind } = obj;
  if (!apiVersion || !kind) throw new Error(`${where}: apiVersion and kind are required`);
  if (apiVersion === "monitoring.googleapis.com/v1") return validateGmp(obj, where);
  if (apiVersion === "azmonitoring.coreos.com/v1") {
    if (kind !== "PodMonitor" && kind !== "ServiceMonitor") throw new Error(`${where}: no schema known for ${apiVersion} ${kind}`);
    return validateObject({ ...obj, apiVersion: "monitoring.coreos.com/v1" }, where);
  }
  let mod: Record<string, any>;
  try {
    mod = await import(modelModule(apiVersion));
  } catch {
    throw new Error(`${where}: no schema known for apiVersion ${apiVersion}`);
  }
  const Model = mod[kind];
  if (typeof Model !== "function") throw new Error(`${where}: no schema known for ${apiVersion} ${kind}`);
  // Pulumi auto-names objects; the API server would get a name, so validate with one.
  const body = { ...obj, metadata: { name: "auto-named", ...(obj.metadata ?? {}) } };
  try {
    new Model(body).validate();
  } catch (e) {
    throw new Error(`${where} (${apiVersion} ${kind}) fails its schema: ${(e as Error).message}`, { cause: e });
  }
}

/** GKE managed Prometheus objects against ./fixtures/gmp-schemas.ts. */
async function validateGmp(obj: Record<string, any>, where: string): Promise<void> {
  const { apiVersion, kind } = obj as { apiVersion: string; kind: string };
  const schema = GMP_SCHEMAS[kind];
  if (!schema) throw new Error(`${where}: no schema known for ${apiVersion} ${kind}`);
  const check = gmpAjv.compile(schema);
  if (!check(obj)) throw new Error(`${where} (${apiVersion} ${kind}) fails its schema: ${gmpAjv.errorsText(check.errors)}`);
}

/** Validates every Kubernetes object among recorded resources; returns how many were checked. */
export async function validateRecorded(resources: readonly RecordedResource[]): Promise<number> {
  let n = 0;
  for (const r of resources) {
    if (!isKubernetesObject(r.type)) continue;
    await validateObject(revealSecrets(r.inputs) as Record<string, any>, `${r.type} ${r.name}`);
    n++;
  }
  return n;
}
