/**
 * Helm installs as Pulumi sees them: `kubernetes:helm.sh/v4:Chart` (every rendered object is
 * also its own resource) and `kubernetes:helm.sh/v3:Release` (one opaque resource). Policies
 * about a chart's configuration read the `values` given to either.
 */
import { UNKNOWN, read, type Unknown } from "./common";

const HELM_INSTALL = /^kubernetes:helm\.sh\/(v4:Chart|v3:Release)$/;

export interface HelmInstall {
  /** The `chart` property as given (a name, `repo/name`, an OCI or HTTP URL, or a local path). */
  readonly chart: string;
  /** The inline `values` (value files are not read). */
  readonly values: unknown;
}

/** The chart and values of a Helm install, or `undefined` for any other resource. */
export function helmInstall(type: string, props: unknown): HelmInstall | Unknown | undefined {
  if (!HELM_INSTALL.test(type)) return undefined;
  const chart = read(props, "chart");
  if (chart === UNKNOWN) return UNKNOWN;
  return typeof chart === "string" ? { chart, values: read(props, "values") } : undefined;
}

/**
 * Whether `chart` names the chart `name`: `name`, `repo/name`, `oci://…/name`, `./charts/name`,
 * or an archive `…/name-1.2.3.tgz`.
 */
export function isChart(chart: string, name: string): boolean {
  const base = chart.replace(/\/+$/, "").split("/").pop() ?? "";
  if (base === name) return true;
  const archive = /^(.+)\.tgz$/.exec(base)?.[1];
  return archive !== undefined && (archive === name || (archive.startsWith(`${name}-`) && /^\d/.test(archive.slice(name.length + 1))));
}
