/**
 * Runs the real program (index.ts) under Pulumi's mocks with a stack file's configuration and
 * records every resource it registers. The mock `call` knows only the data sources the
 * program is expected to use: any other invoke fails the run loudly.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";

export const ROOT = path.resolve(__dirname, "..");

export interface RecordedResource {
  /** Type token, e.g. `azure-native:containerservice:ManagedCluster`. */
  readonly type: string;
  /** Pulumi resource name. */
  readonly name: string;
  /** Inputs as the provider would receive them (outputs resolved). */
  readonly inputs: Record<string, any>;
  /** Provider reference, when the resource was given an explicit one. */
  readonly provider?: string;
}

export interface StackRun {
  readonly resources: RecordedResource[];
  readonly outputs: Record<string, unknown>;
  /** Names of outputs that were secrets. */
  readonly secretOutputs: string[];
  /** Invoke tokens the program called. */
  readonly invokes: string[];
}

/** Test-only fake values the mock cloud hands back. */
export const FAKE = {
  subscriptionId: "00000000-0000-0000-0000-000000000001",
  kubeletObjectId: "11111111-1111-1111-1111-111111111111",
  clusterPrincipalId: "22222222-2222-2222-2222-222222222222",
  aciObjectId: "33333333-3333-3333-3333-333333333333",
  storageKey: "fake-storage-account-key-value==",
  gcpAccessToken: "ya29.fake-gcp-access-token",
  kubeconfig: "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: fake-aks-token-value\n",
} as const;

/** The `config:` block of the project file: key → { description, default, … }. */
export function projectConfigSchema(dir = ROOT): Record<string, { description?: string; default?: unknown }> {
  const doc = YAML.parse(fs.readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as { config?: Record<string, any> };
  return doc.config ?? {};
}

/**
 * The config the engine hands the program for `stack`: the project file's defaults
 * (namespaced with the project name), overlaid with `Pulumi.<stack>.yaml`.
 */
export function stackConfig(stack: string): Record<string, unknown> {
  const defaults = Object.fromEntries(
    Object.entries(projectConfigSchema())
      .filter(([, spec]) => spec.default !== undefined)
      .map(([key, spec]) => [`mlplatform:${key}`, spec.default]),
  );
  const file = path.join(ROOT, `Pulumi.${stack}.yaml`);
  const doc = YAML.parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> };
  return { ...defaults, ...(doc.config ?? {}) };
}

function engineConfig(values: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

/** Outputs the mock cloud computes for a resource, by type. */
function mockState(type: string, name: string, inputs: Record<string, any>): Record<string, any> {
  switch (type) {
    case "azure-native:containerservice:ManagedCluster":
      return {
        ...inputs,
        name: `${name}-cluster`,
        identity: { ...inputs.identity, principalId: FAKE.clusterPrincipalId },
        identityProfile: { kubeletidentity: { objectId: FAKE.kubeletObjectId } },
        addonProfiles: inputs.addonProfiles?.aciConnectorLinux
          ? { aciConnectorLinux: { ...inputs.addonProfiles.aciConnectorLinux, identity: { objectId: FAKE.aciObjectId } } }
          : inputs.addonProfiles,
        oidcIssuerProfile: { enabled: true, issuerURL: "https://oidc.example.test/issuer/" },
      };
    case "azure-native:containerregistry:Registry":
      return { ...inputs, name: inputs.registryName, loginServer: `${inputs.registryName}.azurecr.io` };
    case "docker-build:index:Image":
      return { ...inputs, digest: "sha256:" + "ab".repeat(32), ref: `${inputs.tags?.[0]}@sha256:${"ab".repeat(32)}` };
    case "random:index/randomString:RandomString":
      return { ...inputs, result: "a1b2c3d4" };
    case "gcp:container/cluster:Cluster":
      return { ...inputs, name: `${name}-cluster`, endpoint: "203.0.113.10", masterAuth: { clusterCaCertificate: "Q0EK" } };
    case "pulumi-nodejs:dynamic/mlplatform:GeneratedSecret":
      return { ...inputs, value: `${inputs.prefix}generated-${name}` };
    case "kubernetes:core/v1:Service":
      return { ...inputs, spec: { ...inputs.spec, clusterIP: "10.0.0.42" } };
    case "gcp:filestore/instance:Instance":
      return { ...inputs, networks: [{ ...inputs.networks[0], ipAddresses: ["10.20.0.2"] }] };
    case "azure-native:storage:StorageAccount":
      return { ...inputs, name: `${name}acct` };
    case "azure-native:storage:FileShare":
      return { ...inputs, name: inputs.shareName };
    case "gcp:serviceaccount/account:Account":
      return { ...inputs, email: `${inputs.accountId}@${inputs.project}.iam.gserviceaccount.com` };
    default:
      if (type.startsWith("kubernetes:") && inputs.metadata && !inputs.metadata.name) {
        // The Kubernetes provider auto-names objects: the logical name plus a random suffix.
        return { ...inputs, metadata: { ...inputs.metadata, name: `${name}-x1y2z3` } };
      }
      return { ...inputs, name: inputs.name ?? inputs.resourceName ?? `${name}-physical` };
  }
}

function mockCall(token: string, args: Record<string, any>): Record<string, any> {
  switch (token) {
    case "azure-native:authorization:getClientConfig":
      return { subscriptionId: FAKE.subscriptionId, tenantId: "t", clientId: "c", objectId: "o" };
    case "gcp:organizations/getClientConfig:getClientConfig":
      return { accessToken: FAKE.gcpAccessToken, project: "my-ml-project", region: "europe-west4", zone: "europe-west4-a", id: "x" };
    case "azure-native:storage:listStorageAccountKeys":
      return { keys: [{ keyName: "key1", permissions: "FULL", value: FAKE.storageKey }] };
    case "azure-native:containerservice:listManagedClusterUserCredentials":
      if (!args.resourceGroupName || !args.resourceName) throw new Error(`${token}: missing arguments`);
      return { kubeconfigs: [{ name: "clusterUser", value: Buffer.from(FAKE.kubeconfig).toString("base64") }] };
    default:
      throw new Error(`unexpected invoke ${token} (add it to tests/harness.ts if the program should call it)`);
  }
}

async function settle(resources: readonly RecordedResource[]): Promise<void> {
  // Registrations resolve through chains of promises; wait until no new one has appeared for
  // five checks in a row (a fixed wait lost late registrations on a loaded machine).
  let seen = -1;
  for (let quiet = 0, i = 0; quiet < 5 && i < 400; i++) {
    await new Promise((r) => setTimeout(r, 5));
    quiet = resources.length === seen ? quiet + 1 : 0;
    seen = resources.length;
  }
}

/** Resolves an Output (or plain value) and reports whether it was secret. */
export async function unwrap<T>(value: pulumi.Input<T>): Promise<{ value: T; secret: boolean }> {
  const out = pulumi.output(value) as any;
  const [v, secret] = await Promise.all([new Promise<T>((resolve) => out.apply((x: T) => resolve(x))), out.isSecret as Promise<boolean>]);
  return { value: v, secret };
}

/** Resources registered by the latest run, also when it failed. */
export let lastRunResources: RecordedResource[] = [];

interface ProgramRun {
  /** Module whose export is the program function (`export =`). */
  readonly module: string;
  readonly project: string;
  readonly stack: string;
  /** Full config map (`ns:key` → value). */
  readonly config: Record<string, unknown>;
  /** Outputs of stacks the program references, by fully qualified name. */
  readonly stackOutputs?: Record<string, Record<string, unknown>>;
  readonly env?: Record<string, string | undefined>;
}

/** Runs a Pulumi program module under mocks and records what it registers. */
export async function runProgram(p: ProgramRun): Promise<StackRun> {
  const secretKeys = Object.keys(p.config).filter((k) => SECRET_CONFIG.includes(k));
  pulumi.runtime.setAllConfig(engineConfig(p.config), secretKeys);
  const resources: RecordedResource[] = [];
  lastRunResources = resources;
  const invokes: string[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs) {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs, provider: args.provider });
        if (args.type === "pulumi:pulumi:StackReference") {
          const outputs = p.stackOutputs?.[args.inputs.name];
          if (!outputs) throw new Error(`no outputs mocked for stack ${args.inputs.name}`);
          return { id: args.inputs.name, state: { name: args.inputs.name, outputs } };
        }
        return { id: `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) };
      },
      call(args: pulumi.runtime.MockCallArgs) {
        invokes.push(args.token);
        return mockCall(args.token, args.inputs);
      },
    },
    p.project,
    p.stack,
    false,
  );

  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(p.env ?? {})) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    type Main = () => Promise<Record<string, unknown>> | Record<string, unknown>;
    // `export =` of a function: CommonJS gives the function, ESM interop wraps it in `default`.
    const program = (await import(p.module)) as unknown as Main | { default: Main };
    const main: Main = typeof program === "function" ? program : program.default;
    const result = await main();
    const outputs: Record<string, unknown> = {};
    const secretOutputs: string[] = [];
    for (const [k, v] of Object.entries(result)) {
      const u = await unwrap(v as pulumi.Input<unknown>);
      outputs[k] = u.value;
      if (u.secret) secretOutputs.push(k);
    }
    await settle(resources);
    return { resources, outputs, secretOutputs, invokes };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Secret config keys, as a stack would hold them encrypted. */
const SECRET_CONFIG = ["mlplatform:githubOAuthClientSecret", "mlplatform:objectStoreAccessKeyId", "mlplatform:objectStoreSecretAccessKey"];

/** What a stack's operator would have set with `pulumi config set --secret` (test values). */
export const TEST_SECRETS: Record<string, string> = { "mlplatform:githubOAuthClientSecret": "test-github-oauth-client-secret-0123456789" };

/**
 * Runs index.ts for `stack`, with `overrides` replacing or adding config keys
 * (`mlplatform:cluster` etc.; `undefined` removes a key) and `env` set during the run.
 */
export async function runStack(stack: string, overrides: Record<string, unknown> = {}, env: Record<string, string | undefined> = {}): Promise<StackRun> {
  const config = { ...TEST_SECRETS, ...stackConfig(stack), ...overrides };
  for (const [k, v] of Object.entries(overrides)) if (v === undefined) delete config[k];
  return runProgram({ module: path.join(ROOT, "index.ts"), project: "mlplatform", stack, config, env });
}

/** Resources of one type. */
export function ofType(run: StackRun, type: string): RecordedResource[] {
  return run.resources.filter((r) => r.type === type);
}

/** The single resource of a type (fails if there is not exactly one). */
export function one(run: StackRun, type: string): RecordedResource {
  const found = ofType(run, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}: ${found.map((r) => r.name).join(", ")}`);
  return found[0]!;
}

/** Type → count, for the inventory printed in notes and checked in tests. */
export function inventory(run: StackRun): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of run.resources) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

/** The fixture kubeconfig the dev stack is pointed at in tests. */
export const FIXTURE_KUBECONFIG = path.join(ROOT, "tests", "fixtures", "kubeconfig.yaml");
