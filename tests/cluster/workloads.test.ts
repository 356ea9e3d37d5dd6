/**
 * Workloads ready: the dev stack deployed by the real Pulumi engine onto the real local node
 * (tests/cluster/devStack.ts), `kubernetes.skipAwait` off, under the product's Pod Security
 * levels. Every Deployment and StatefulSet must be Available and every Job Complete; the time
 * each took is recorded. Then destroy leaves nothing of ours.
 *
 * The model server counts too: with nothing published yet it is Ready (a model with no version
 * does not hold it back; components/modelServing.ts), though the stack never awaits it.
 *
 * Under CI=true a missing tool, image or chart fails; otherwise the test is skipped and says so.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEV_NAMESPACES, destroy, diagnose, pendingChanges, installPrerequisites, missingForDevStack, prepareDevStack, removePrerequisites, up, workloads, type DevStack } from "./devStack";
import { ROOT, missingForNode, readEnvFile, stopNode, until } from "./support";

const missing = [...missingForNode(), ...missingForDevStack()];
const CI = process.env.CI === "true";
if (missing.length > 0 && !CI) console.log(`SKIPPED workloads ready: missing ${missing.join(", ")}`);

// Runs whenever it can say something: outside CI a missing tool only skips the suite below.
describe("dev stack prerequisites", () => {
  it.skipIf(missing.length > 0 && !CI)("has every tool, image and chart the dev stack needs", () => {
    expect(missing, "missing under CI=true (a build or install step failed)").toEqual([]);
  });
});

describe.skipIf(missing.length > 0)("the dev stack on the real node", () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-dev-"));
  const stateDir = path.join(work, "cluster");
  let s: DevStack | undefined;

  afterAll(() => {
    stopNode(stateDir);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it("workloads ready", { timeout: 40 * 60_000 }, async () => {
    const t0 = Date.now();
    const out = execFileSync(path.join(ROOT, "scripts", "localcluster", "up.sh"), ["--node", "real", "--only", "apiserver"], {
      encoding: "utf8",
      env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
      stdio: ["ignore", "pipe", "inherit"],
      timeout: 15 * 60_000,
    });
    console.log(`real node up (images imported) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    s = prepareDevStack(readEnvFile(out.trim().split("\n").pop()!), work);
    await installPrerequisites(s);
    let upError: unknown;
    try {
      console.log(`pulumi up (skipAwait off) took ${up(s).toFixed(0)} s`);
    } catch (e) {
      upError = e;
    }
    const ws = await workloads(s.kube, DEV_NAMESPACES);
    console.table(ws.map((w) => ({ workload: `${w.kind} ${w.namespace}/${w.name}`, ready: w.ready, secondsToReady: w.secondsToReady, image: w.images.join(" ") })));
    const notReady = ws.filter((w) => !w.ready);
    if (upError || notReady.length > 0) {
      for (const ns of new Set(notReady.map((w) => w.namespace))) console.log(await diagnose(s.kube, ns));
    }
    expect(upError, String(upError)).toBeUndefined();
    expect(notReady.map((w) => `${w.kind} ${w.namespace}/${w.name}`)).toEqual([]);
    // Every part of the dev stack is there: object store, buckets Job, TensorBoard, hub, Argo, Training Operator, model server.
    for (const ns of DEV_NAMESPACES) expect(ws.some((w) => w.namespace === ns), `a workload in ${ns}`).toBe(ns === "ml-pipelines" ? false : true);
    for (const kind of ["Deployment", "StatefulSet", "Job"]) expect(ws.some((w) => w.kind === kind), kind).toBe(true);

    // Converged: another `pulumi up` changes nothing. (The Training Operator rewrites its
    // webhook Secret; replacing it on every up broke TFJob admission for a minute.)
    expect(pendingChanges(s)).toEqual([]);

    destroy(s);
    await removePrerequisites(s);
    for (const ns of DEV_NAMESPACES.concat(["mlplatform-storage"])) {
      const left = await s.kube.get(`/api/v1/namespaces/${ns}`);
      expect(left === undefined || left.status?.phase === "Terminating", `namespace ${ns} left`).toBe(true);
    }
    const pvs = await s.kube.names("/api/v1/persistentvolumes");
    expect(pvs).toEqual([]);
    // CRDs go once their custom resources are cleaned up (seconds).
    await until("CRDs of ours gone", 120_000, async () => {
      const crds = await s!.kube.names("/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
      const left = crds.filter((c) => c.endsWith(".argoproj.io") || c.endsWith(".kubeflow.org"));
      if (left.length > 0) throw new Error(`left: ${left.join(", ")}`);
      return true;
    });
  });
});
