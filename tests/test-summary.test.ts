import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const script = join(__dirname, "..", "scripts", "test-summary.mjs");

/** Runs the closing-line script on a vitest-shaped JSON report; returns stdout and exit code. */
function summarise(report: object, ci: boolean): { out: string; code: number } {
  const dir = mkdtempSync(join(tmpdir(), "summary-"));
  const file = join(dir, "report.json");
  writeFileSync(file, JSON.stringify(report));
  const env = { ...process.env, CI: ci ? "true" : "" };
  try {
    return { out: execFileSync(process.execPath, [script, file], { env, encoding: "utf8" }), code: 0 };
  } catch (e) {
    const err = e as { stdout: string; status: number };
    return { out: err.stdout, code: err.status };
  }
}

const withSkip = {
  numPassedTests: 3,
  numFailedTests: 0,
  numFailedTestSuites: 0,
  numPendingTests: 1,
  numTodoTests: 0,
  testResults: [
    {
      name: join(process.cwd(), "tests/integration/engine.test.ts"),
      assertionResults: [
        { status: "passed", fullName: "a" },
        { status: "skipped", fullName: "real engine › up" },
      ],
    },
  ],
};

describe("scripts/test-summary.mjs", () => {
  it("outside CI a skip is reported but does not fail the run", () => {
    const r = summarise(withSkip, false);
    expect(r.out.trim().split("\n").at(-1)).toBe("3 passed, 0 failed, 1 skipped");
    expect(r.code).toBe(0);
  });

  it("under CI=true a skipped test counts as failed and is named", () => {
    const r = summarise(withSkip, true);
    expect(r.out).toContain("skipped: tests/integration/engine.test.ts › real engine › up");
    expect(r.out.trim().split("\n").at(-1)).toBe("3 passed, 1 failed, 1 skipped");
    expect(r.code).toBe(1);
  });

  it("a run with no passed test fails", () => {
    const r = summarise({ numPassedTests: 0, testResults: [] }, false);
    expect(r.out.trim()).toBe("0 passed, 0 failed, 0 skipped");
    expect(r.code).toBe(1);
  });
});
