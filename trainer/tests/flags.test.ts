/**
 * The flag tables (src/util/flags.ts): parsed values, defaults, bounds and usage text all
 * come from one declaration; and the "did you mean" suggestions (src/util/suggest.ts).
 */
import { describe, expect, it } from "vitest";
import { UsageError } from "../src/errors";
import { commandUsage, defineFlags, flagsUsage, givenFlags, parseFlags } from "../src/util/flags";
import { closest, editDistance } from "../src/util/suggest";

const TABLE = defineFlags({
  data: { kind: "string", arg: "<dir>", help: "the dataset", required: true, section: "Data" },
  name: { kind: "string", help: "model name", default: "mnist" },
  "batch-size": { kind: "int", min: 1, max: 65536, default: 64, help: "examples per step" },
  dropout: { kind: "float", min: 0, max: 0.95, help: "dropout rate" },
  progress: { kind: "choice", choices: ["auto", "bar", "lines", "none"], default: "auto", help: "progress display", section: "Output" },
  range: {
    kind: "parsed",
    arg: "<lo,hi>",
    help: "input range",
    parse: (raw: string, flag: string): [number, number] => {
      const [lo, hi] = raw.split(",").map(Number);
      if (!(lo! < hi!)) throw new UsageError(`${flag} must be lo,hi with lo < hi; got ${JSON.stringify(raw)}`);
      return [lo!, hi!];
    },
  },
  json: { kind: "boolean", help: "print JSON" },
});

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("no usage error");
}

describe("parseFlags", () => {
  it("applies defaults and converts values by kind", () => {
    const f = parseFlags(TABLE, ["--data", "d"]);
    expect(f).toEqual({ data: "d", name: "mnist", "batch-size": 64, dropout: undefined, progress: "auto", range: undefined, json: false });
    const g = parseFlags(TABLE, ["--data=d", "--batch-size", "8", "--dropout", "0.5", "--progress", "none", "--range", "-1,1", "--json", "--name", "x", "--name", "y"]);
    expect(g).toEqual({ data: "d", name: "y", "batch-size": 8, dropout: 0.5, progress: "none", range: [-1, 1], json: true });
    expect([...givenFlags(f)]).toEqual(["data"]);
    expect([...givenFlags(g)].sort()).toEqual(["batch-size", "data", "dropout", "json", "name", "progress", "range"]);
  });

  it("refuses bad input with a message naming the flag, the value and what is allowed", () => {
    expect(usageError(() => parseFlags(TABLE, []))).toBe("--data is required: the dataset");
    expect(usageError(() => parseFlags(TABLE, ["--data", ""]))).toBe("--data must not be empty");
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--batch-size", "0"]))).toBe('--batch-size must be an integer in [1, 65536]; got "0"');
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--batch-size", "1.5"]))).toBe('--batch-size must be an integer in [1, 65536]; got "1.5"');
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--dropout", "x"]))).toBe('--dropout must be a number in [0, 0.95]; got "x"');
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--progress", "line"]))).toBe('--progress must be one of auto, bar, lines, none; got "line"; did you mean lines?');
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--range", "1,0"]))).toBe('--range must be lo,hi with lo < hi; got "1,0"');
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--batchsize", "8"]))).toBe("unknown flag --batchsize; did you mean --batch-size?");
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--zzz"]))).toBe("unknown flag --zzz");
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "-n", "x"]))).toBe("unknown flag -n; did you mean --name?");
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "stray"]))).toBe('unexpected argument "stray": every value follows its --flag');
    expect(usageError(() => parseFlags(TABLE, ["--data"]))).toBe("--data needs a value: <dir>");
    expect(usageError(() => parseFlags(TABLE, ["--data", "--json"]))).toBe(
      "--data needs a value, but the next argument is the flag --json (write --data=--json if that is the value)",
    );
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--json=yes"]))).toBe('--json takes no value; got "--json=yes"');
    // Only own properties are flags.
    expect(usageError(() => parseFlags(TABLE, ["--data", "d", "--constructor", "x"]))).toBe("unknown flag --constructor");
  });

  it("a table whose default breaks its own bounds fails when declared", () => {
    expect(() => defineFlags({ n: { kind: "int", min: 1, default: 0, help: "" } })).toThrow(/--n must be an integer ≥ 1; got "0"/);
    expect(() => defineFlags({ c: { kind: "choice", choices: ["a"], default: "b" as "a", help: "" } })).toThrow(/--c default b is not a choice/);
    expect(() => defineFlags({ r: { kind: "string", required: true, default: "x", help: "" } })).toThrow(/--r is required and has a default/);
  });
});

describe("usage text", () => {
  it("shows each flag once, with its default from the table, under its section", () => {
    expect(flagsUsage(TABLE).split("\n")).toEqual([
      "Data",
      "  --data <dir>               the dataset (required)",
      "  --name <value>             model name (default mnist)",
      "  --batch-size <n>           examples per step (default 64)",
      "  --dropout <x>              dropout rate",
      "",
      "Output",
      "  --progress auto|bar|lines|none",
      "                             progress display (default auto)",
      "  --range <lo,hi>            input range",
      "  --json                     print JSON",
    ]);
  });

  it("derives the synopsis from the required flags and wraps long help", () => {
    const table = defineFlags({
      model: { kind: "string", arg: "<dir>", help: "a version directory", required: true },
      verbose: { kind: "boolean", help: "a long explanation ".repeat(6).trim() },
    });
    const text = commandUsage("x", table, { about: "Does x.", notes: "stdout: JSON." });
    expect(text).toBe(
      [
        "Usage: mlp x --model <dir> [flags]",
        "",
        "Does x.",
        "",
        "  --model <dir>              a version directory (required)",
        "  --verbose                  a long explanation a long explanation a long explanation a long",
        "                             explanation a long explanation a long explanation",
        "",
        "stdout: JSON.",
      ].join("\n"),
    );
    for (const line of text.split("\n")) expect(line.length).toBeLessThanOrEqual(92);
  });
});

describe("did you mean", () => {
  it("counts a swap of neighbours as one edit", () => {
    expect(editDistance("trian", "train")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });

  it("finds close names and prefixes, and nothing for unrelated input", () => {
    const commands = ["train-mnist", "retrain", "verify-data", "evaluate", "publish", "serve", "predict"];
    expect(closest("trian", commands)).toEqual(["train-mnist"]);
    expect(closest("serv", commands)).toEqual(["serve"]);
    expect(closest("predcit", commands)).toEqual(["predict"]);
    expect(closest("Retrain", commands)).toEqual(["retrain"]);
    expect(closest("deploy", commands)).toEqual([]);
    expect(closest("x", commands)).toEqual([]);
  });
});
