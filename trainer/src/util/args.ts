/**
 * The old per-flag helpers over `node:util` `parseArgs`, kept while commands move to the
 * flag tables of ./flags.ts (new code: use those). Errors become {@link UsageError}s that
 * name the flag; the CLI adds the `mlp <command>:` prefix.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses `args` strictly (unknown flags and stray positionals are usage errors). */
export function parseFlags<T extends Options>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (see mlp ${command} --help)`);
  }
}

function num(flag: string, raw: string | undefined, integer: boolean, min: number, max = Infinity): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    const kind = integer ? "an integer" : "a number";
    const range = max === Infinity ? `≥ ${min}` : `in [${min}, ${max}]`;
    throw new UsageError(`--${flag} must be ${kind} ${range}; got ${JSON.stringify(raw)}`);
  }
  return v;
}

/** `--flag` as an integer ≥ `min` (and ≤ `max`), or undefined when absent. */
export const intFlag = (flag: string, raw: string | undefined, min: number, max?: number) => num(flag, raw, true, min, max);
/** `--flag` as a finite number in [`min`, `max`], or undefined when absent. */
export const floatFlag = (flag: string, raw: string | undefined, min: number, max?: number) => num(flag, raw, false, min, max);

/** `--flag` one of `choices`, or `fallback` when absent. */
export function choiceFlag<C extends string>(flag: string, raw: string | undefined, choices: readonly C[], fallback: C): C {
  if (raw === undefined) return fallback;
  if (!choices.includes(raw as C)) throw new UsageError(`--${flag} must be one of ${choices.join(", ")}; got ${JSON.stringify(raw)}`);
  return raw as C;
}
