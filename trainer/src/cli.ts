#!/usr/bin/env node
/**
 * `mlp`: the trainer's command line. `mlp <command> [flags]`; `mlp --help` lists commands,
 * `mlp <command> --help` (or `mlp help <command>`) describes one, `mlp --version` prints the
 * version. Commands are registered in ./commands/index.ts.
 *
 * Every message about a command is prefixed `mlp <command>:` here, and only here.
 *
 * Exit codes: 0 success, 1 failure (message on stderr), 2 bad usage; commands may define
 * more (evaluate: 3 below the gate).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { COMMANDS } from "./commands";
import type { CommandEntry, CommandIo } from "./commands/command";
import { MlpError, UsageError } from "./errors";
import { didYouMean } from "./util/suggest";

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "Usage: mlp <command> [flags]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run 'mlp help <command>' (or 'mlp <command> --help') for a command's flags,",
    "'mlp --version' for the version.",
  ].join("\n");
}

/**
 * The trainer package's version: the nearest package.json named `@mlplatform/trainer` above
 * this file (trainer/ from src/ under tsx and from dist/src/ when built, in the image too).
 */
export function trainerVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "@mlplatform/trainer" && pkg.version) return pkg.version;
    } catch {
      // No (readable) package.json here: keep looking upwards.
    }
    if (path.dirname(dir) === dir) throw new MlpError(`cannot find the @mlplatform/trainer package.json above ${__dirname}`);
  }
}

/** The entry of `name`, or a usage error naming it with the closest command names. */
function find(name: string): CommandEntry {
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry) return entry;
  const hint = didYouMean(
    name,
    COMMANDS.map((c) => c.name),
  );
  throw new UsageError(`unknown command ${JSON.stringify(name)}${hint}\nRun 'mlp --help' for the list of commands.`);
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(`${overview()}\n`);
    return 2;
  }
  if (name === "--help" || name === "-h" || (name === "help" && rest.length === 0)) {
    io.stdout.write(`${overview()}\n`);
    return 0;
  }
  if (name === "--version" || name === "version") {
    io.stdout.write(`mlp ${trainerVersion()}\n`);
    return 0;
  }
  // `mlp help <command>` is `mlp <command> --help`.
  const helpOnly = name === "help";
  const commandName = helpOnly ? rest[0]! : name;
  let entry: CommandEntry;
  try {
    if (helpOnly && rest.length > 1) throw new UsageError(`help takes one command name; got ${rest.length}: ${rest.join(" ")}`);
    if (commandName.startsWith("-")) {
      const hint = didYouMean(commandName.replace(/^-+/, ""), ["help", "version"], (c) => `--${c}`);
      throw new UsageError(`unknown flag ${commandName}${hint || ": give a command first"}\nRun 'mlp --help' for the list of commands.`);
    }
    entry = find(commandName);
  } catch (e) {
    io.stderr.write(`mlp: ${(e as Error).message}\n`);
    return 2;
  }
  try {
    const command = await entry.load();
    if (helpOnly || rest.includes("--help") || rest.includes("-h")) {
      io.stdout.write(`${command.usage}\n`);
      return 0;
    }
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mlp ${entry.name}: ${e.message}\nRun 'mlp ${entry.name} --help' for its flags.\n`);
      return e.exitCode;
    }
    if (e instanceof MlpError) {
      io.stderr.write(`mlp ${entry.name}: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr.write(`mlp ${entry.name}: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
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
