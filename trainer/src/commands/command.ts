/**
 * The shape of an `mlp` subcommand. Each lives in its own module under `src/commands/` and
 * is listed in `./index.ts`; the CLI loads a command's module only when it runs, so
 * `mlp --help` stays fast and a command's heavy dependencies (TensorFlow, gRPC) load only
 * for the command that needs them.
 */
import type { Writable } from "node:stream";
import { commandUsage, parseFlags, type CommandHelp, type FlagTable, type FlagValues } from "../util/flags";

export interface CommandIo {
  /** Results (machine-readable where it matters). */
  readonly stdout: Writable & { isTTY?: boolean; columns?: number };
  /** Progress and messages. */
  readonly stderr: Writable & { isTTY?: boolean; columns?: number };
  readonly env: NodeJS.ProcessEnv;
}

export interface Command {
  readonly name: string;
  /** Full help text for `mlp <name> --help` (see {@link defineCommand}). */
  readonly usage: string;
  /** The command's flag table, where it has one (the usage text is made from it). */
  readonly flags?: FlagTable;
  /**
   * Runs with the arguments after the command name; resolves to the exit code. Expected
   * failures throw an `MlpError` (the CLI prints its message and exits with its code).
   */
  run(args: string[], io: CommandIo): Promise<number>;
}

/** One entry of the command table: what `mlp --help` shows, and how to load the command. */
export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

/**
 * A command from its flag table: the usage text is made from the table and `help`, and
 * `run` gets the parsed, typed values. Usage errors and expected failures are thrown
 * (`UsageError`, other `MlpError`s); the CLI prefixes them with `mlp <name>:`.
 */
export function defineCommand<const T extends FlagTable>(def: {
  readonly name: string;
  readonly flags: T;
  readonly help: CommandHelp;
  readonly run: (flags: FlagValues<T>, io: CommandIo) => Promise<number>;
}): Command & { readonly flags: T } {
  return {
    name: def.name,
    flags: def.flags,
    usage: commandUsage(def.name, def.flags, def.help),
    run: (args, io) => def.run(parseFlags(def.flags, args), io),
  };
}
