/**
 * Credentials live in Kubernetes Secrets, referenced from containers; and no Secret holds a
 * well-known default credential.
 *
 * Whether a value is a *Pulumi* secret (encrypted in state) cannot be checked here:
 * @pulumi/policy (1.21) unwraps secret values before a validation sees them, and only
 * remediations get them marked. The program's tests check that instead (tests/policy).
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, elements, keysOf, levelOf, read, type PolicyOptions } from "./common";
import { findContainers, isKubernetesObject, type FoundContainer } from "./workloads";

// Whole words of a name (UPPER_SNAKE after normalisation), so TOKENIZERS_PARALLELISM is no token.
const CREDENTIAL_WORD = /(^|_)(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY)(_|$)/;
// Names that point at a credential rather than hold one.
const REFERENCE_SUFFIX = /_(FILE|PATH|DIR|NAME|REF|URL|URI|ENDPOINT)$/;

/** `clientSecret`, `client-secret`, `client.secret` → `CLIENT_SECRET`. */
function normalise(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .toUpperCase();
}

/** Whether a variable or key name says it holds a credential (PASSWORD, SECRET, TOKEN, ACCESS_KEY, PRIVATE_KEY, …). */
export function isCredentialName(name: string): boolean {
  const n = normalise(name);
  return CREDENTIAL_WORD.test(n) && !REFERENCE_SUFFIX.test(n);
}

/** Defaults that are never acceptable in a Secret, whatever the key (MinIO's, AWS's documentation example keys, …). */
export const WELL_KNOWN_DEFAULT_CREDENTIALS: readonly string[] = [
  "minioadmin",
  "minio123",
  "changeme",
  "change-me",
  "changeit",
  "password",
  "passw0rd",
  "p@ssw0rd",
  "secret",
  "letmein",
  "123456",
  "12345678",
  "admin123",
  "AKIAIOSFODNN7EXAMPLE",
  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
];
/** Defaults that are names as often as passwords: flagged only under a credential-like key. */
const WEAK_UNDER_CREDENTIAL_KEY: readonly string[] = ["admin", "root", "default", "test", "guest", "user"];

/** Why a Secret value is a well-known default, or `undefined`. */
export function defaultCredential(key: string, value: string): string | undefined {
  const v = value.trim().toLowerCase();
  if (WELL_KNOWN_DEFAULT_CREDENTIALS.some((d) => d.toLowerCase() === v)) return `"${value.trim()}" is a well-known default credential`;
  if (isCredentialName(key) && WEAK_UNDER_CREDENTIAL_KEY.includes(v)) return `"${value.trim()}" is a well-known default password`;
  return undefined;
}

const PEM_PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;
// `$(OTHER_VAR)`: Kubernetes expands it from another variable, which may come from a Secret.
const ENV_REFERENCE = /^\$\([A-Za-z_][A-Za-z0-9_]*\)$/;

const CONFIG_MAP = /^kubernetes:core\/v1:ConfigMap$/;
const SECRET = /^kubernetes:core\/v1:Secret$/;

function checkConfigMap(props: unknown, report: (m: string) => void): void {
  for (const field of ["data", "binaryData"] as const) {
    const data = read(props, field);
    for (const key of keysOf(data)) {
      const value = read(data, key);
      if (typeof value !== "string" || value === "") continue;
      const text = field === "binaryData" ? Buffer.from(value, "base64").toString("utf8") : value;
      if (isCredentialName(key)) {
        report(`${field}.${key} looks like a credential in a ConfigMap (readable by anyone who can read ConfigMaps, and printed by kubectl); move it to a Secret.`);
      } else if (PEM_PRIVATE_KEY.test(text)) {
        report(`${field}.${key} contains a PEM private key in a ConfigMap; move it to a Secret.`);
      }
    }
  }
}

function checkSecret(props: unknown, report: (m: string) => void): void {
  for (const field of ["stringData", "data"] as const) {
    const data = read(props, field);
    for (const key of keysOf(data)) {
      const value = read(data, key);
      if (typeof value !== "string" || value === "") continue;
      const plain = field === "data" ? Buffer.from(value, "base64").toString("utf8") : value;
      const problem = defaultCredential(key, plain);
      if (problem) report(`${field}.${key}: ${problem}; generate it (GeneratedSecret, @pulumi/random) or read it with config.requireSecret.`);
    }
  }
}

function checkContainerEnv(containers: readonly FoundContainer[], report: (m: string) => void): void {
  for (const c of containers) {
    const env = read(c.container, "env");
    if (env === UNKNOWN) continue;
    (elements(env) ?? []).forEach((e, i) => {
      const name = read(e, "name");
      const value = read(e, "value");
      if (typeof name !== "string" || typeof value !== "string" || value === "") return;
      if (!isCredentialName(name) || ENV_REFERENCE.test(value)) return;
      report(`${c.label} env[${i}] ${name} has a literal value; use valueFrom.secretKeyRef (or envFrom a Secret).`);
    });
  }
}

export function credentialsOnlyAsSecrets(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "credentials-only-as-secrets",
    description:
      "Credentials (passwords, secret and access keys, tokens, private keys) must live in Kubernetes Secrets and " +
      "reach containers through secretKeyRef/envFrom: a literal in a ConfigMap or a pod spec is readable by anyone " +
      "with read access to those objects, shows up in kubectl output and `pulumi preview` diffs, and stays in the " +
      "workload's history. Secrets must never hold well-known defaults such as MinIO's minioadmin.",
    enforcementLevel: levelOf(opts),
    severity: "high",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      if (!isKubernetesObject(args.type)) return args.notApplicable("not a Kubernetes object");
      if (CONFIG_MAP.test(args.type)) return checkConfigMap(args.props, reportViolation);
      if (SECRET.test(args.type)) return checkSecret(args.props, reportViolation);
      const containers = findContainers(args.props);
      if (containers.length === 0) return args.notApplicable("no ConfigMap or Secret data and no containers");
      checkContainerEnv(containers, reportViolation);
    },
  };
}
