/**
 * Runs policies the way the engine's analyzer does, without the engine: properties go through
 * @pulumi/policy's own deserializer (secrets unwrapped, as validations see them) and its
 * unknown-checking proxy, reportViolation calls are collected, and `notApplicable` is recorded.
 */
import * as policyDeserialize from "@pulumi/policy/deserialize";
import {
  unknownCheckingProxy,
  type PolicyProviderResource,
  type PolicyResource,
  type ResourceValidationArgs,
  type ResourceValidationPolicy,
  type StackValidationArgs,
  type StackValidationPolicy,
} from "@pulumi/policy";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";

type AnyPolicy = ResourceValidationPolicy | StackValidationPolicy;

// Internal to @pulumi/policy (its .d.ts is empty), but it is exactly what the analyzer runs.
const { deserializeProperties } = policyDeserialize as unknown as {
  deserializeProperties: (struct: Struct, proxySecrets: boolean) => Record<string, unknown>;
};

/** The engine's sentinel for a string that is not known during preview. */
export const UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Pulumi's wire marker for a secret, as mock-recorded inputs carry it. */
export const SECRET_SIG = "4dabf18193072939515e22adb298388d";
export const SECRET_VALUE_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** A value wrapped as a Pulumi secret on the wire. */
export function secret<T>(value: T): Record<string, unknown> {
  return { [SECRET_SIG]: SECRET_VALUE_SIG, value };
}

/** A resource as the analyzer receives it. */
export interface Target {
  readonly type: string;
  /** Inputs in wire form (as `pulumi.runtime.setMocks` records them). */
  readonly props: Record<string, unknown>;
  readonly name?: string;
  /** Stack in the URN. Default `dev`. */
  readonly stack?: string;
  /** The provider resource, e.g. to give a default namespace. */
  readonly provider?: PolicyProviderResource;
}

/** Wire-form properties → what a validation sees (`props` of ResourceValidationArgs). */
export function policyProps(wire: Record<string, unknown>): Record<string, any> {
  // JSON first: the wire form has no `undefined`; mock-recorded inputs sometimes do.
  const struct = Struct.fromJavaScript(JSON.parse(JSON.stringify(wire)) as Record<string, never>);
  return unknownCheckingProxy(deserializeProperties(struct, false));
}

class NotApplicable extends Error {
  constructor(readonly reason: string | undefined) {
    super(`not applicable: ${reason ?? ""}`);
  }
}

export function urnOf(t: Target): string {
  return `urn:pulumi:${t.stack ?? "dev"}::mlplatform::${t.type}::${t.name ?? "test"}`;
}

export function resourceArgs(t: Target, config: Record<string, unknown> = {}): ResourceValidationArgs {
  const props = policyProps(t.props);
  return {
    type: t.type,
    props,
    urn: urnOf(t),
    name: t.name ?? "test",
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
      additionalSecretOutputs: [],
    },
    provider: t.provider,
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
}

export interface Outcome {
  /** Messages passed to reportViolation. */
  readonly violations: string[];
  /** Set when the policy called `notApplicable`. */
  readonly notApplicable?: string;
}

/** Runs one resource policy on one resource. `config` is the policy's config (none: the schema defaults are not applied). */
export async function check(policy: AnyPolicy, t: Target, config: Record<string, unknown> = {}): Promise<Outcome> {
  if (!("validateResource" in policy) || !policy.validateResource) throw new Error(`${policy.name} is not a resource policy`);
  const validations = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
  const violations: string[] = [];
  for (const validate of validations) {
    try {
      await validate(resourceArgs(t, config), (message: string) => violations.push(message));
    } catch (e) {
      if (e instanceof NotApplicable) return { violations, notApplicable: e.reason ?? "" };
      throw e;
    }
  }
  return { violations };
}

/** A stack policy's violation: the message and the URN it names (if any). */
export interface StackViolation {
  readonly message: string;
  readonly urn?: string;
}

/** Runs one stack policy on a stack made of `targets` (their props as the resources' state). */
export async function checkStack(
  policy: AnyPolicy,
  targets: readonly Target[],
  config: Record<string, unknown> = {},
): Promise<{ violations: StackViolation[]; notApplicable?: string }> {
  if (!("validateStack" in policy)) throw new Error(`${policy.name} is not a stack policy`);
  const resources: PolicyResource[] = targets.map((t) => {
    const a = resourceArgs(t);
    return {
      type: a.type,
      props: a.props,
      urn: a.urn,
      name: a.name,
      opts: a.opts,
      provider: a.provider,
      dependencies: [],
      propertyDependencies: {},
      isType: () => false,
      asType: () => undefined,
    };
  });
  const args: StackValidationArgs = {
    resources,
    stackTags: new Map(),
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
  const violations: StackViolation[] = [];
  try {
    await policy.validateStack(args, (message: string, urn?: string) => violations.push({ message, urn }));
  } catch (e) {
    if (e instanceof NotApplicable) return { violations, notApplicable: e.reason ?? "" };
    throw e;
  }
  return { violations };
}

/** The policy's config as the engine would hand it over: its schema's defaults. */
export function schemaDefaults(policy: AnyPolicy): Record<string, unknown> {
  const props = policy.configSchema?.properties ?? {};
  return Object.fromEntries(
    Object.entries(props)
      .filter(([, s]) => (s as { default?: unknown }).default !== undefined)
      .map(([k, s]) => [k, (s as { default?: unknown }).default]),
  );
}
