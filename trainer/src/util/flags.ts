/**
 * `mlp` flags, each declared once. A command's flag table gives every flag its kind,
 * bounds, default and help; from that table come the `node:util` `parseArgs` options, the
 * typed values (defaults applied, bounds and required flags checked) and the flag part of
 * the usage text, so a default or a bound cannot say one thing in `--help` and do another.
 *
 * ```ts
 * const FLAGS = defineFlags({
 *   data: { kind: "string", arg: "<dir|s3://…>", help: "the dataset", required: true },
 *   "batch-size": { kind: "int", min: 1, max: 65536, default: 64, help: "examples per step" },
 * });
 * const f = parseFlags(FLAGS, args); // f.data: string, f["batch-size"]: number
 * ```
 *
 * Tables compose by spreading (`{ ...S3_FLAGS, ... }`); a flag with a `section` starts a
 * new heading in the usage text. Errors are {@link UsageError}s that name the flag and the
 * value; the CLI prefixes them with `mlp <command>:`.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors";
import { didYouMean } from "./suggest";

interface FlagBase {
  /** What the flag does, for the usage text (wrapped there; no default, that is added). */
  readonly help: string;
  /** The value's placeholder in the usage text, e.g. `<dir|s3://…>`. Default by kind. */
  readonly arg?: string;
  /** Starts a new heading in the usage text; flags without one continue the current one. */
  readonly section?: string;
}

interface HasDefault<T> {
  /** The value when the flag is absent, shown as `(default …)`. */
  readonly default?: T;
  /**
   * The default in words when it is no constant (it comes from the environment or from
   * other flags); shown instead of `default`. The command applies it.
   */
  readonly defaultHelp?: string;
  /** Absent is a usage error. */
  readonly required?: boolean;
}

export interface StringFlag extends FlagBase, HasDefault<string> {
  readonly kind: "string";
}

export interface NumberFlag extends FlagBase, HasDefault<number> {
  /** `int`: a safe integer; `float`: any finite number. */
  readonly kind: "int" | "float";
  readonly min: number;
  /** Default: no upper bound. */
  readonly max?: number;
}

export interface ChoiceFlag<C extends string = string> extends FlagBase, HasDefault<C> {
  readonly kind: "choice";
  readonly choices: readonly C[];
}

/** A bare switch: present is true, absent false. */
export interface BooleanFlag extends FlagBase {
  readonly kind: "boolean";
}

/** A value with its own syntax (`lo,hi`, `HxW`, a port or `auto`); `parse` throws a UsageError. */
export interface ParsedFlag<T = unknown> extends FlagBase, HasDefault<T> {
  readonly kind: "parsed";
  /** `flag` is `--name`, for the error message. */
  readonly parse: (raw: string, flag: string) => T;
  /** Required for parsed flags: the usage text cannot guess their syntax. */
  readonly arg: string;
}

export type FlagSpec = StringFlag | NumberFlag | ChoiceFlag | BooleanFlag | ParsedFlag;
export type FlagTable = { readonly [name: string]: FlagSpec };

type Always<F> = F extends { readonly required: true } ? true : F extends { readonly default: unknown } ? true : false;
type Raw<F> = F extends { readonly kind: "int" | "float" }
  ? number
  : F extends { readonly kind: "choice"; readonly choices: readonly (infer C)[] }
    ? C
    : F extends { readonly kind: "parsed"; readonly parse: (...a: never[]) => infer T }
      ? T
      : string;

/** The parsed value of one flag: booleans are booleans; a flag with a default or `required` is always there. */
export type FlagValue<F> = F extends { readonly kind: "boolean" } ? boolean : Always<F> extends true ? Raw<F> : Raw<F> | undefined;

/** The parsed values of a table, by flag name. */
export type FlagValues<T extends FlagTable> = { -readonly [K in keyof T]: FlagValue<T[K]> };

/**
 * Declares a table (checking that its defaults satisfy its own bounds, so a mistake shows
 * up when the module loads, in every test); `const` keeps choices and `required` literal
 * for {@link FlagValues}.
 */
export function defineFlags<const T extends FlagTable>(table: T): T {
  for (const [name, spec] of Object.entries(table)) {
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(name)) throw new Error(`flag table: bad flag name ${JSON.stringify(name)}`);
    if (spec.kind === "boolean" || !("default" in spec) || spec.default === undefined) continue;
    if (spec.required) throw new Error(`flag table: --${name} is required and has a default`);
    if (spec.kind === "int" || spec.kind === "float") checkNumber(name, spec, String(spec.default));
    if (spec.kind === "choice" && !spec.choices.includes(spec.default as string)) throw new Error(`flag table: --${name} default ${spec.default} is not a choice`);
  }
  return table;
}

/** The `parseArgs` options of a table (every value is read as a string and converted here). */
export function parseArgsOptions(table: FlagTable): NonNullable<ParseArgsConfig["options"]> {
  return Object.fromEntries(Object.entries(table).map(([name, spec]) => [name, { type: spec.kind === "boolean" ? "boolean" : "string" }]));
}

/**
 * Parses `args` against `table`: unknown flags (with a suggestion), stray arguments, missing
 * values, values out of bounds and absent required flags are {@link UsageError}s. Returns
 * the typed values with defaults applied; the last of a repeated flag wins.
 */
export function parseFlags<const T extends FlagTable>(table: T, args: readonly string[]): FlagValues<T> {
  const options = parseArgsOptions(table);
  // Non-strict with tokens, so every mistake gets our message (and unknown flags a suggestion).
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  const raw = new Map<string, string | true>();
  for (const t of tokens) {
    if (t.kind === "option-terminator") continue;
    if (t.kind === "positional") throw new UsageError(`unexpected argument ${JSON.stringify(t.value)}: every value follows its --flag`);
    const spec = table[t.name];
    if (!spec || !Object.prototype.hasOwnProperty.call(table, t.name)) {
      throw new UsageError(`unknown flag ${t.rawName}${didYouMean(t.name, Object.keys(table), (c) => `--${c}`)}`);
    }
    if (spec.kind === "boolean") {
      if (t.value !== undefined) throw new UsageError(`--${t.name} takes no value; got ${JSON.stringify(`${t.rawName}=${t.value}`)}`);
      raw.set(t.name, true);
      continue;
    }
    if (t.value === undefined) throw new UsageError(`--${t.name} needs a value: ${placeholder(spec)}`);
    if (!t.inlineValue && t.value.startsWith("-") && !/^-\d/.test(t.value)) {
      throw new UsageError(`--${t.name} needs a value, but the next argument is the flag ${t.value} (write --${t.name}=${t.value} if that is the value)`);
    }
    raw.set(t.name, t.value);
  }
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    const given = raw.get(name);
    if (spec.kind === "boolean") {
      values[name] = given === true;
      continue;
    }
    if (given === undefined) {
      if (spec.required) throw new UsageError(`--${name} is required: ${spec.help}`);
      values[name] = spec.default;
      continue;
    }
    values[name] = convert(name, spec, given as string);
  }
  Object.defineProperty(values, GIVEN, { value: new Set(raw.keys()), enumerable: false });
  return values as FlagValues<T>;
}

const GIVEN = Symbol("flags given on the command line");

/** The flags that were on the command line (not defaulted), of values from {@link parseFlags}. */
export function givenFlags(values: object): ReadonlySet<string> {
  const given = (values as { [GIVEN]?: ReadonlySet<string> })[GIVEN];
  if (!given) throw new Error("givenFlags: not a result of parseFlags");
  return given;
}

function convert(name: string, spec: Exclude<FlagSpec, BooleanFlag>, value: string): unknown {
  switch (spec.kind) {
    case "string":
      if (value === "" && spec.required) throw new UsageError(`--${name} must not be empty`);
      return value;
    case "int":
    case "float":
      return checkNumber(name, spec, value);
    case "choice":
      if (!spec.choices.includes(value)) {
        throw new UsageError(`--${name} must be one of ${spec.choices.join(", ")}; got ${JSON.stringify(value)}${didYouMean(value, spec.choices)}`);
      }
      return value;
    case "parsed":
      return spec.parse(value, `--${name}`);
  }
}

function checkNumber(name: string, spec: NumberFlag, raw: string): number {
  const v = Number(raw);
  const max = spec.max ?? Infinity;
  const integer = spec.kind === "int";
  if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v)) || v < spec.min || v > max) {
    const kind = integer ? "an integer" : "a number";
    const range = max === Infinity ? `≥ ${spec.min}` : `in [${spec.min}, ${max}]`;
    throw new UsageError(`--${name} must be ${kind} ${range}; got ${JSON.stringify(raw)}`);
  }
  return v;
}

function placeholder(spec: Exclude<FlagSpec, BooleanFlag>): string {
  if (spec.arg) return spec.arg;
  switch (spec.kind) {
    case "int":
      return "<n>";
    case "float":
      return "<x>";
    case "choice":
      return spec.choices.join("|");
    default:
      return "<value>";
  }
}

/** Total width of the usage text. */
const WIDTH = 92;
/** Column where a flag's help starts. */
const HELP_COLUMN = 29;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** `(default 64)`, `(required)`, the `defaultHelp` words, or "" for a flag without a default. */
function defaultNote(spec: FlagSpec): string {
  if (spec.kind === "boolean") return "";
  if (spec.required) return "(required)";
  if (spec.defaultHelp !== undefined) return `(default ${spec.defaultHelp})`;
  if (spec.default === undefined) return "";
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a parsed flag whose value is an object states its default in defaultHelp (see `range`)
  return `(default ${Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default)})`;
}

/** One flag's lines: `  --name <arg>` then its help and default, wrapped at the help column. */
export function flagLines(name: string, spec: FlagSpec): string[] {
  const head = `  --${name}${spec.kind === "boolean" ? "" : ` ${placeholder(spec)}`}`;
  const body = wrap([spec.help, defaultNote(spec)].filter((s) => s !== "").join(" "), WIDTH - HELP_COLUMN);
  const indent = " ".repeat(HELP_COLUMN);
  if (head.length < HELP_COLUMN - 1) return [head.padEnd(HELP_COLUMN) + (body[0] ?? ""), ...body.slice(1).map((l) => indent + l)];
  return [head, ...body.map((l) => indent + l)];
}

/** The flag part of a usage text: every flag in table order, under its section headings. */
export function flagsUsage(table: FlagTable): string {
  const out: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    if (spec.section !== undefined) {
      if (out.length > 0) out.push("");
      out.push(spec.section);
    }
    out.push(...flagLines(name, spec));
  }
  return out.join("\n");
}

/** Text of a command's help. */
export interface CommandHelp {
  /**
   * What follows `Usage: mlp <name>`; default: the required flags with their
   * placeholders, then `[flags]`.
   */
  readonly synopsis?: string;
  /** Paragraphs between the synopsis and the flags. */
  readonly about: string;
  /** Paragraphs after the flags (environment, output). */
  readonly notes?: string;
}

/** `mlp <name> --help`: the synopsis, `about`, the flags from the table, `notes`. */
export function commandUsage(name: string, table: FlagTable, help: CommandHelp): string {
  const required = Object.entries(table)
    .filter(([, s]) => s.kind !== "boolean" && s.required)
    .map(([n, s]) => `--${n} ${placeholder(s as Exclude<FlagSpec, BooleanFlag>)}`);
  const synopsis = help.synopsis ?? [...required, "[flags]"].join(" ");
  return [`Usage: mlp ${name} ${synopsis}`, help.about.trim(), flagsUsage(table), help.notes?.trim()].filter((s) => s !== undefined && s !== "").join("\n\n");
}
