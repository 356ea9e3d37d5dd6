/**
 * The shape of an `mlp` subcommand. Each lives in its own module under `src/commands/` and
 * is listed in `./index.ts`; the CLI loads a command's module only when it runs, so
 * `mlp --help` stays fast and a command's heavy dependencies (TensorFlow, gRPC) load only
 * for the command that needs them.
 */
import type { Writable } from "node:stream";

export interface CommandIo {
  /** Results (machine-readable where it matters). */
  readonly stdout: Writable & { isTTY?: boolean; columns?: number };
  /** Progress and messages. */
  readonly stderr: Writable & { isTTY?: boolean; columns?: number };
  readonly env: NodeJS.ProcessEnv;
}

export interface Command {
  readonly name: string;
  /** One line for `mlp --help`. */
  readonly summary: string;
  /** Full help text for `mlp <name> --help`. */
  readonly usage: string;
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
