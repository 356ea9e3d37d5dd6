// Prints vitest's JSON report as one closing line: "N passed, N failed, N skipped".
//
// Under CI=true a skipped test is a failure: every suite skips only when a tool it needs
// is missing, and CI must build every tool. The skipped tests are listed by name, so the
// missing tool is easy to find, and counted in both "failed" and "skipped".
import { readFileSync } from "node:fs";

const file = process.argv[2];
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (e) {
  console.log(`0 passed, 1 failed (no test report at ${file}: ${e.message})`);
  process.exit(1);
}

const skippedNames = [];
for (const suite of report.testResults ?? []) {
  for (const t of suite.assertionResults ?? []) {
    if (t.status === "skipped" || t.status === "pending" || t.status === "todo") {
      skippedNames.push(`${suite.name.replace(process.cwd() + "/", "")} › ${t.fullName ?? t.title}`);
    }
  }
}

const ci = process.env.CI === "true";
const passed = report.numPassedTests ?? 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
let failed = (report.numFailedTests ?? 0) + (report.numFailedTestSuites ?? 0);
if (ci && skipped > 0) {
  console.log(`CI=true: ${skipped} skipped test(s) count as failed (a tool they need was not built):`);
  for (const n of skippedNames.slice(0, 50)) console.log(`  skipped: ${n}`);
  if (skippedNames.length > 50) console.log(`  … and ${skippedNames.length - 50} more`);
  failed += skipped;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
