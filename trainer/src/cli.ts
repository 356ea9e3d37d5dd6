#!/usr/bin/env node
/**
 * `mlp`: the trainer's command line. `mlp <command> [flags]`; `mlp --help` lists commands,
 * `mlp <command> --help` describes one. Commands are registered in ./commands/index.ts.
 *
 * Exit codes: 0 success, 1 failure (message on stderr), 2 bad usage.
 */
import { COMMANDS } from "./commands";
import type { CommandIo } from "./commands/command";
import { MlpError } from "./errors";

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "Usage: mlp <command> [flags]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run 'mlp <command> --help' for a command's flags.",
  ].join("\n");
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? io.stderr : io.stdout).write(`${overview()}\n`);
    return name === undefined ? 2 : 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    io.stderr.write(`mlp: unknown command ${JSON.stringify(name)}\n\n${overview()}\n`);
    return 2;
  }
  try {
    const command = await entry.load();
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout.write(`${command.usage}\n`);
      return 0;
    }
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof MlpError) {
      io.stderr.write(`mlp ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr.write(`mlp ${name}: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`mlp: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
