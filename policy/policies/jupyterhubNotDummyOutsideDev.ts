/**
 * JupyterHub's dummy authenticator only in development stacks.
 *
 * Two places show which authenticator a Zero to JupyterHub install uses:
 * - the `values` of the Helm install: a `helm.v3.Release`, or a `helm.v4.Chart` under mocks
 *   (the real engine hands a v4 Chart to policies without its inputs: it is a component that
 *   the provider registers itself);
 * - the hub Secret the chart renders, which carries every chart value as `values.yaml` (the
 *   hub reads its configuration from there), and which the engine checks like any object.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import * as YAML from "yaml";
import { UNKNOWN, at, keysOf, levelOf, read, stackOf, str, type PolicyOptions, type Unknown } from "./common";
import { helmInstall, isChart } from "./helmCharts";

const SECRET = /^kubernetes:core\/v1:Secret$/;

/**
 * The chart values in a hub Secret rendered by the jupyterhub chart (`values.yaml`, with the
 * chart's name under `Chart.Name`), or `undefined` for any other object.
 */
export function renderedHubValues(type: string, props: unknown): unknown {
  if (!SECRET.test(type)) return undefined;
  const encoded = str(at(props, "data", "values.yaml"));
  const plain = encoded !== undefined ? Buffer.from(encoded, "base64").toString("utf8") : str(at(props, "stringData", "values.yaml"));
  if (plain === undefined) return undefined;
  let values: unknown;
  try {
    values = YAML.parse(plain);
  } catch {
    return undefined;
  }
  return at(values, "Chart", "Name") === "jupyterhub" ? values : undefined;
}

/** Stacks where the dummy authenticator is acceptable. */
export const DEFAULT_DEV_STACKS: readonly string[] = ["dev"];

export interface JupyterHubPolicyConfig {
  /** Stacks where the dummy authenticator is allowed. Default {@link DEFAULT_DEV_STACKS}. */
  readonly devStacks?: readonly string[];
}

/** `dummy`, or the class by its import path (`dummyauthenticator.DummyAuthenticator`, `jupyterhub.auth.DummyAuthenticator`). */
export function isDummyAuthenticator(authenticator: string): boolean {
  return /^dummy$/i.test(authenticator.trim()) || /(^|\.)DummyAuthenticator$/.test(authenticator.trim());
}

const EXTRA_CONFIG_AUTHENTICATOR = /c\.JupyterHub\.authenticator_class\s*=\s*["']([^"']+)["']/g;

/**
 * The authenticator the Zero to JupyterHub chart ends up with, and which value decided it.
 * `hub.extraConfig` snippets run last (in key order), then `hub.config`, then the pre-1.0
 * `auth.type`; with none of them the chart's default applies, which is `dummy`.
 */
export function effectiveAuthenticator(values: unknown): { authenticator: string | Unknown; from: string } {
  const extraConfig = at(values, "hub", "extraConfig");
  if (extraConfig === UNKNOWN) return { authenticator: UNKNOWN, from: "hub.extraConfig" };
  let fromExtra: { authenticator: string | Unknown; from: string } | undefined;
  for (const key of keysOf(extraConfig).sort()) {
    const snippet = read(extraConfig, key);
    if (snippet === UNKNOWN) return { authenticator: UNKNOWN, from: `hub.extraConfig.${key}` };
    if (typeof snippet !== "string") continue;
    for (const m of snippet.matchAll(EXTRA_CONFIG_AUTHENTICATOR)) fromExtra = { authenticator: m[1]!, from: `hub.extraConfig.${key}` };
  }
  if (fromExtra) return fromExtra;
  const configured = at(values, "hub", "config", "JupyterHub", "authenticator_class");
  if (configured === UNKNOWN || typeof configured === "string") {
    return { authenticator: configured, from: "hub.config.JupyterHub.authenticator_class" };
  }
  const legacy = at(values, "auth", "type");
  if (legacy === UNKNOWN || typeof legacy === "string") return { authenticator: legacy, from: "auth.type" };
  return { authenticator: "dummy", from: "the chart's default (hub.config.JupyterHub.authenticator_class unset)" };
}

export function jupyterhubNotDummyOutsideDev(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "jupyterhub-not-dummy-outside-dev",
    description:
      "JupyterHub's dummy authenticator lets anyone who reaches the hub log in under any name and run code with " +
      "the notebooks' access to the shared volume, the object store and the GPUs. It is for development stacks " +
      "only; every other stack must use a real authenticator (GitHub OAuth in this platform).",
    enforcementLevel: levelOf(opts),
    severity: "critical",
    configSchema: {
      properties: {
        devStacks: {
          type: "array",
          items: { type: "string" },
          default: [...DEFAULT_DEV_STACKS],
          description: "Stacks where the dummy authenticator is allowed.",
        },
      },
    },
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      let values: unknown;
      let where = "";
      const install = helmInstall(args.type, args.props);
      if (install === UNKNOWN) return;
      if (install !== undefined) {
        if (!isChart(install.chart, "jupyterhub")) return args.notApplicable("not the jupyterhub chart");
        values = install.values;
      } else {
        values = renderedHubValues(args.type, args.props);
        if (values === undefined) return args.notApplicable("neither a jupyterhub Helm install nor its hub Secret");
        where = " in the hub Secret's values.yaml";
      }
      const devStacks = args.getConfig<JupyterHubPolicyConfig>().devStacks ?? DEFAULT_DEV_STACKS;
      const stack = stackOf(args.urn);
      if (devStacks.includes(stack)) return;
      const { authenticator, from } = effectiveAuthenticator(values);
      if (authenticator === UNKNOWN || !isDummyAuthenticator(authenticator)) return;
      reportViolation(
        `stack "${stack}" (development stacks: ${devStacks.join(", ") || "(none)"}) installs JupyterHub with the dummy ` +
          `authenticator ("${authenticator}" from ${from}${where}); set hub.config.JupyterHub.authenticator_class to a real ` +
          "authenticator such as github.",
      );
    },
  };
}
