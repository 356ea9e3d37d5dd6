/**
 * What every policy of the pack shares: options, safe reads of resource properties (which the
 * engine hands over behind a proxy that throws on values not known during preview), and the
 * stack name of a resource.
 */
import { UnknownValueError, type EnforcementLevel } from "@pulumi/policy";

/** Options every policy factory takes. */
export interface PolicyOptions {
  /** Default `mandatory`: a violation stops `pulumi preview`/`up`. */
  readonly enforcementLevel?: EnforcementLevel;
}

/** The enforcement level a factory gives its policy. */
export function levelOf(opts: PolicyOptions | undefined): EnforcementLevel {
  return opts?.enforcementLevel ?? "mandatory";
}

/**
 * A value that is not known yet (during preview it depends on another resource's output).
 * Policies skip what they cannot decide; the engine runs them again on `pulumi up`, when the
 * value is known.
 */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");
export type Unknown = typeof UNKNOWN;

// The engine's wire sentinels for unknown values (@pulumi/policy proxy.ts). Behind the SDK's
// proxy they throw UnknownValueError; on a plain object they are these strings.
const UNKNOWN_SENTINELS: ReadonlySet<string> = new Set([
  "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
  "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
  "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
  "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
  "030794c1-ac77-496b-92df-f27374a8bd58",
  "e48ece36-62e2-4504-bad9-02848725956a",
  "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
]);

function isUnknownError(e: unknown): boolean {
  return e instanceof UnknownValueError || (e instanceof Error && e.constructor.name === "UnknownValueError");
}

/** A plain object (not an array, not null). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `o[key]`, or {@link UNKNOWN} when the value is not known yet, or `undefined` when `o` is not an object. */
export function read(o: unknown, key: string | number): unknown {
  if (typeof o !== "object" || o === null) return undefined;
  let v: unknown;
  try {
    v = (o as Record<string | number, unknown>)[key];
  } catch (e) {
    if (isUnknownError(e)) return UNKNOWN;
    throw e;
  }
  return typeof v === "string" && UNKNOWN_SENTINELS.has(v) ? UNKNOWN : v;
}

/** `o.a.b.c` for `at(o, "a", "b", "c")`; stops at the first missing or unknown step. */
export function at(o: unknown, ...path: (string | number)[]): unknown {
  let v: unknown = o;
  for (const key of path) {
    if (v === UNKNOWN || v === undefined || v === null) return v;
    v = read(v, key);
  }
  return v;
}

/** The elements of an array property (each read safely), or `undefined` when it is not an array. */
export function elements(v: unknown): unknown[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return Array.from({ length: v.length }, (_, i) => read(v, i));
}

/** The own keys of an object property (keys are always known, only values may not be). */
export function keysOf(v: unknown): string[] {
  return isRecord(v) ? Object.keys(v) : [];
}

/** A string property, or `undefined` when it is absent, unknown or not a string. */
export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The stack a resource belongs to: its URN is `urn:pulumi:<stack>::<project>::<type>::<name>`. */
export function stackOf(urn: string): string {
  const m = /^urn:pulumi:([^:]+)::/.exec(urn);
  if (!m) throw new Error(`not a Pulumi URN: ${urn}`);
  return m[1]!;
}

/** A JSON-ish rendering of a value for violation messages, cut to a readable length. */
export function show(v: unknown): string {
  const s = v === UNKNOWN ? "(unknown)" : (JSON.stringify(v) ?? String(v));
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
