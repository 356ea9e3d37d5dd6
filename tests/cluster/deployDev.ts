/**
 * CLI behind scripts/localcluster/deploy-dev.sh: `up` deploys the dev stack onto the running
 * real node (local.env given as the first argument) and prints each workload's time to Ready;
 * `destroy` removes it again. State: $MLPLATFORM_DEV_WORK (default ~/.cache/mlplatform/dev-local).
 */
import { readEnvFile } from "./support";
import {
  DEV_NAMESPACES,
  defaultWork,
  destroy,
  diagnose,
  installPrerequisites,
  missingForDevStack,
  prepareDevStack,
  removePrerequisites,
  stackOutputs,
  up,
  workloads,
} from "./devStack";

async function main(): Promise<number> {
  const [cmd, envFile] = process.argv.slice(2);
  if ((cmd !== "up" && cmd !== "destroy") || !envFile) {
    console.error("usage: deployDev.ts up|destroy <local.env>");
    return 2;
  }
  const missing = missingForDevStack();
  if (missing.length > 0) {
    console.error(`missing: ${missing.join(", ")}`);
    return 1;
  }
  const s = prepareDevStack(readEnvFile(envFile), defaultWork());
  if (cmd === "destroy") {
    destroy(s);
    await removePrerequisites(s);
    return 0;
  }
  await installPrerequisites(s);
  let failed: unknown;
  try {
    console.log(`pulumi up took ${up(s).toFixed(0)} s`);
  } catch (e) {
    failed = e;
    console.error(String(e));
  }
  const ws = await workloads(s.kube, DEV_NAMESPACES);
  console.log("kind\tnamespace/name\tready\tseconds to Ready\timages");
  for (const w of ws) console.log(`${w.kind}\t${w.namespace}/${w.name}\t${w.ready}\t${w.secondsToReady ?? "-"}\t${w.images.join(",")}`);
  for (const ns of new Set(ws.filter((w) => !w.ready).map((w) => w.namespace))) console.log(await diagnose(s.kube, ns));
  if (!failed) console.log(`stack outputs (for npm run submit / dataset --outputs-file): ${stackOutputs(s).file}`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
