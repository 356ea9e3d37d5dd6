/**
 * One measurement: construct the program for a stack under mocks in this fresh process and
 * print {ms, maxRssMiB, resources} as JSON. Time counts from process start, so module
 * loading (the cloud SDKs) is included.
 */
import { performance } from "node:perf_hooks";
import { FIXTURE_KUBECONFIG, runStack } from "../tests/harness";

async function main(): Promise<void> {
  const stack = process.argv[2] ?? "aks";
  const env = stack === "dev" ? { KUBECONFIG: FIXTURE_KUBECONFIG } : {};
  const run = await runStack(stack, {}, env);
  const ms = performance.now(); // since process start
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify({ stack, ms, maxRssMiB, resources: run.resources.length })}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
