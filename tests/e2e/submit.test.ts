/**
 * scripts/submit.ts against a real kube-apiserver on 127.0.0.1 with the real Argo CRDs (the
 * vendored chart's, tests/fixtures/crds/argo.ts): it reads the stack outputs (a file, or a stand-in `pulumi` on PATH),
 * checks --set keys against the WorkflowTemplate, creates a Workflow that references the
 * template, and follows it; the test plays the Argo controller by writing the Workflow's
 * status (Running, node phases, then Succeeded with outputs, or Failed).
 *
 * Skipped, saying why, when etcd or kube-apiserver are missing (scripts/tools/build.sh).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kube, ROOT, missingTools, startLocal, stopLocal } from "../integration/support";
import { PIPELINE_OUTPUTS } from "../../trainer/src/pipeline/steps";
import { chartArgoCrdTexts, parseCrds } from "../fixtures/crds/argo";

const missing = missingTools(["etcd", "kube-apiserver"]);
if (missing.length > 0) console.log(`SKIPPED submit e2e: missing ${missing.join(", ")} (scripts/tools/build.sh)`);

const NS = "ml-pipelines";
const WORKFLOWS = `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows`;

/** A running `submit` process: its output so far and its exit. */
interface Proc {
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exit: Promise<number>;
}

function submit(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), [path.join(ROOT, "scripts", "submit.ts"), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  const exit = new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      console.log(`submit ${args.join(" ")} → exit ${code}\n${stdout}${stderr}`);
      resolve(code ?? -1);
    });
  });
  return { stdout: () => stdout, stderr: () => stderr, exit };
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const iso = (secondsAgo: number) => new Date(Date.now() - secondsAgo * 1000).toISOString().replace(/\.\d+Z$/, "Z");

describe.skipIf(missing.length > 0)("scripts/submit.ts against a real kube-apiserver", () => {
  let work: string;
  let kube: Kube;
  let outputsFile: string;
  let outputs: Record<string, unknown>;

  /** Replaces the status of workflow `name` (Argo's CRD has no status subresource). */
  async function setStatus(name: string, status: Record<string, unknown>): Promise<void> {
    const wf = await kube.get(`${WORKFLOWS}/${name}`);
    // Argo's schema requires each node's name; the controller names a task's node `<workflow>.<task>`.
    const nodes = Object.fromEntries(
      Object.entries((status.nodes ?? {}) as Record<string, Record<string, unknown>>).map(([id, n]) => [
        id,
        { name: n.id === name ? name : `${name}.${String(n.displayName)}`, ...n },
      ]),
    );
    const r = await kube.request("PUT", `${WORKFLOWS}/${name}`, { ...wf, status: { ...status, ...(status.nodes ? { nodes } : {}) } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  }

  async function workflowNames(): Promise<string[]> {
    return kube.names(WORKFLOWS, "app.kubernetes.io/managed-by=mlplatform-submit");
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-e2e-submit-"));
    const local = startLocal(path.join(work, "cluster"), "apiserver");
    kube = new Kube(local.KUBECONFIG!);
    // The real Argo CRDs (the vendored chart's), so the statuses below are checked as Argo's.
    const crds = parseCrds(chartArgoCrdTexts());
    for (const crd of crds) {
      const r = await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    for (const crd of crds) {
      await until(`CRD ${crd.metadata.name} Established`, async () => {
        const got = await kube.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        return got?.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True") || undefined;
      });
    }
    expect((await kube.request("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } })).status).toBe(201);
    // Argo itself does not run here; the template only has to exist and declare its parameters.
    const template = {
      apiVersion: "argoproj.io/v1alpha1",
      kind: "WorkflowTemplate",
      metadata: { name: "mnist-pipeline", namespace: NS },
      spec: {
        serviceAccountName: "pipeline",
        entrypoint: "pipeline",
        arguments: {
          parameters: [
            { name: "dataset", value: "s3://data/mnist" },
            { name: "steps", value: "2000" },
            { name: "accuracy-gate", value: "0.97" },
            { name: "device", value: "gpu", enum: ["gpu", "cpu"] },
          ],
        },
        templates: [{ name: "pipeline", container: { image: "busybox", command: ["true"] } }],
      },
    };
    const t = await kube.request("POST", `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflowtemplates`, template);
    expect(t.status, JSON.stringify(t.body)).toBe(201);
    outputs = {
      kubeconfig: fs.readFileSync(local.KUBECONFIG!, "utf8"),
      pipelinesNamespace: NS,
      pipelineServiceAccount: "pipeline",
      tensorboardUrl: "http://tensorboard.mlplatform.svc.cluster.local",
      servingGrpcEndpoint: "model-server.ml-serving.svc.cluster.local:8500",
      servingRestUrl: "http://model-server.ml-serving.svc.cluster.local:8501",
      clusterName: "mlplatform-local",
    };
    outputsFile = path.join(work, "outputs.json");
    fs.writeFileSync(outputsFile, JSON.stringify(outputs));
  });

  afterAll(() => {
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  let submitted: string;

  it("--no-watch creates a Workflow that references the template, with the --set parameters", async () => {
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--set", "steps=50", "--set", "dataset=s3://data/fashion", "--no-watch"]);
    expect(await p.exit, p.stderr()).toBe(0);
    const m = /^submitted workflow (mnist-pipeline-[a-z0-9]+) \(template mnist-pipeline\) in namespace ml-pipelines with steps=50, dataset=s3:\/\/data\/fashion$/m.exec(p.stdout());
    expect(m, p.stdout()).not.toBeNull();
    submitted = m![1]!;
    expect(p.stdout()).toContain(`follow it with: npm run submit -- pipeline --stack dev --attach ${submitted}`);
    expect(p.stdout()).toContain(`TensorBoard: http://tensorboard.mlplatform.svc.cluster.local (this run's logs: logs/${submitted})`);
    const wf = await kube.get(`${WORKFLOWS}/${submitted}`);
    expect(wf.spec).toEqual({
      workflowTemplateRef: { name: "mnist-pipeline" },
      serviceAccountName: "pipeline",
      arguments: {
        parameters: [
          { name: "steps", value: "50" },
          { name: "dataset", value: "s3://data/fashion" },
        ],
      },
    });
    expect(wf.metadata.labels).toMatchObject({ "workflows.argoproj.io/workflow-template": "mnist-pipeline", "app.kubernetes.io/managed-by": "mlplatform-submit" });
    expect(wf.status).toBeUndefined();
  });

  it("refuses unknown keys (listing the allowed ones) and values outside an enum, creating nothing", async () => {
    const before = await workflowNames();
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--set", "stepz=50", "--no-watch"]);
    expect(await p.exit).toBe(2);
    expect(p.stderr().trim()).toBe(
      'submit: unknown parameter "stepz" for WorkflowTemplate mnist-pipeline; allowed: dataset (default "s3://data/mnist"), steps (default "2000"), accuracy-gate (default "0.97"), device (default "gpu")',
    );
    const e = submit(["pipeline", "--outputs-file", outputsFile, "--set", "device=tpu", "--no-watch"]);
    expect(await e.exit).toBe(2);
    expect(e.stderr()).toContain('submit: --set device must be one of gpu, cpu; got "tpu"');
    const f = submit(["pipeline", "--outputs-file", outputsFile, "--set", "steps"]);
    expect(await f.exit).toBe(2);
    expect(f.stderr()).toContain('submit: --set takes KEY=VALUE; got "steps"');
    expect(await workflowNames()).toEqual(before);
  });

  it("a template that is not deployed, and an API server that cannot be reached", async () => {
    const p = submit(["retrain", "--outputs-file", outputsFile, "--no-watch"]);
    expect(await p.exit).toBe(1);
    expect(p.stderr()).toMatch(
      /submit: WorkflowTemplate retrain-pipeline not found in namespace ml-pipelines \(at https:\/\/127\.0\.0\.1:\d+\); is the training pipeline deployed on stack dev\?/,
    );

    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const kc = YAML.parse(outputs.kubeconfig as string);
    kc.clusters[0].cluster.server = `https://127.0.0.1:${closed}`;
    const unreachable = path.join(work, "unreachable.json");
    fs.writeFileSync(unreachable, JSON.stringify({ ...outputs, kubeconfig: YAML.stringify(kc) }));
    const u = submit(["pipeline", "--outputs-file", unreachable, "--no-watch"]);
    expect(await u.exit).toBe(1);
    expect(u.stderr()).toMatch(
      new RegExp(
        `submit: cannot reach the Kubernetes API at https://127\\.0\\.0\\.1:${closed} \\(from the stack's kubeconfig output \\(context mlplatform-local\\)\\): ECONNREFUSED`,
      ),
    );

    const noArgo = path.join(work, "no-argo.json");
    fs.writeFileSync(noArgo, JSON.stringify({ ...outputs, pipelineServiceAccount: "" }));
    const n = submit(["pipeline", "--outputs-file", noArgo]);
    expect(await n.exit).toBe(1);
    expect(n.stderr()).toContain("pipelineServiceAccount is empty: Argo Workflows is disabled on this stack");
  });

  it("reads the outputs with `pulumi stack output --json --show-secrets -s <stack>`", async () => {
    const bin = path.join(work, "bin");
    fs.mkdirSync(bin, { recursive: true });
    const argsFile = path.join(work, "pulumi-args");
    fs.writeFileSync(path.join(bin, "pulumi"), `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\ncat '${outputsFile}'\n`, { mode: 0o755 });
    const p = submit(["pipeline", "--stack", "acme/aks", "--no-watch"], { PATH: `${bin}${path.delimiter}${process.env.PATH}` });
    expect(await p.exit, p.stderr()).toBe(0);
    expect(fs.readFileSync(argsFile, "utf8").trim().split("\n")).toEqual(["stack", "output", "--json", "--show-secrets", "-s", "acme/aks"]);
    expect(p.stdout()).toMatch(/submitted workflow mnist-pipeline-\w+/);
    expect(p.stdout()).toContain("--stack acme/aks --attach");
  });

  it("--attach follows an existing run to Succeeded: phase, outputs, TensorBoard and serving endpoints, exit 0", async () => {
    await setStatus(submitted, {
      phase: "Succeeded",
      progress: "6/6",
      startedAt: iso(754),
      finishedAt: iso(0),
      nodes: {
        [submitted]: { id: submitted, name: submitted, displayName: submitted, type: "DAG", phase: "Succeeded" },
        [`${submitted}-1`]: { id: `${submitted}-1`, displayName: "verify-data", type: "Pod", phase: "Succeeded", startedAt: iso(754), finishedAt: iso(740) },
        [`${submitted}-2`]: {
          id: `${submitted}-2`,
          displayName: "evaluate",
          type: "Pod",
          phase: "Succeeded",
          startedAt: iso(100),
          finishedAt: iso(80),
          outputs: { parameters: [{ name: "evaluation", value: JSON.stringify({ accuracy: 0.9812, gate: 0.97, passed: true, examples: 10000 }) }] },
        },
        [`${submitted}-3`]: {
          id: `${submitted}-3`,
          displayName: "publish",
          type: "Pod",
          phase: "Succeeded",
          startedAt: iso(80),
          finishedAt: iso(60),
          outputs: { parameters: [{ name: "published", value: JSON.stringify({ version: 4, uri: "s3://models/mnist/4" }) }] },
        },
      },
    });
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--attach", submitted, "--watch", "--timeout", "30"]);
    expect(await p.exit, p.stderr()).toBe(0);
    const out = p.stdout();
    expect(out).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d  workflow ${submitted}: Succeeded \\(6/6\\)$`, "m"));
    expect(out).toMatch(/^\d\d:\d\d:\d\d  verify-data +Succeeded \(14s\)$/m);
    expect(out).toMatch(/^\d\d:\d\d:\d\d  publish +Succeeded \(20s\)$/m);
    expect(out).not.toMatch(/  mnist-pipeline-\w+ +Succeeded/); // the DAG node is structure, not a step
    expect(out).toMatch(/^phase: +Succeeded after 12m34s$/m);
    expect(out).toMatch(/^accuracy: +0\.9812 \(gate 0\.97, passed\)$/m);
    expect(out).toMatch(/^published: +version 4 \(s3:\/\/models\/mnist\/4\)$/m);
    expect(out).toContain(`TensorBoard: http://tensorboard.mlplatform.svc.cluster.local (this run's logs: logs/${submitted})`);
    expect(out).toContain("serving:     gRPC model-server.ml-serving.svc.cluster.local:8500, REST http://model-server.ml-serving.svc.cluster.local:8501");
  });

  it("a live run: node phase changes are printed as they happen, and Succeeded ends it with exit 0", async () => {
    const before = new Set(await workflowNames());
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--set", "steps=10", "--watch", "--timeout", "60", "--poll-interval", "0.2"]);
    const name = await until("the new Workflow", async () => (await workflowNames()).find((n) => !before.has(n)));
    await until("Pending printed", () => p.stdout().includes(`workflow ${name}: Pending`) || undefined);
    const node = (id: string, displayName: string, phase: string, extra: Record<string, unknown> = {}) => ({
      [`${name}-${id}`]: { id: `${name}-${id}`, displayName, type: "Pod", phase, ...extra },
    });
    await setStatus(name, { phase: "Running", startedAt: iso(5), progress: "0/6", nodes: { ...node("1", "verify-data", "Running", { startedAt: iso(4) }) } });
    await until("verify-data Running", () => /verify-data +Running/.test(p.stdout()) || undefined);
    await setStatus(name, {
      phase: "Running",
      startedAt: iso(5),
      progress: "1/6",
      nodes: { ...node("1", "verify-data", "Succeeded", { startedAt: iso(4), finishedAt: iso(1) }), ...node("2", "train", "Running", { startedAt: iso(1) }) },
    });
    await until("train Running", () => /train +Running/.test(p.stdout()) || undefined);
    await setStatus(name, {
      phase: "Succeeded",
      startedAt: iso(5),
      finishedAt: iso(0),
      progress: "2/2",
      nodes: {
        ...node("1", "verify-data", "Succeeded", { startedAt: iso(4), finishedAt: iso(1) }),
        ...node("2", "train", "Succeeded", {
          startedAt: iso(1),
          finishedAt: iso(0),
          // The output contract (PIPELINE_OUTPUTS): a sweep's best trial and the version published from it.
          outputs: {
            parameters: [
              {
                name: PIPELINE_OUTPUTS.best,
                value: JSON.stringify({
                  trial: 2,
                  lr: "0.001",
                  hu: "128",
                  bs: "64",
                  run: `${name}/trial-2`,
                  metrics: { validationAccuracy: 0.955 },
                  model: "s3://models/sweeps/x/trial-2/mnist/1",
                }),
              },
              { name: PIPELINE_OUTPUTS.published, value: JSON.stringify({ version: 5, uri: "/mnt/shared/models/mnist/5" }) },
            ],
          },
        }),
        // Fanned-out trials: each step is named under its item; their per-trial `result` is no run output.
        ...node("t0", 'trial(0:{"index":0})', "Succeeded", { type: "DAG", startedAt: iso(2), finishedAt: iso(1) }),
        ...node("t0-train", "train(0)", "Succeeded", {
          boundaryID: `${name}-t0`,
          startedAt: iso(2),
          finishedAt: iso(1),
          outputs: { parameters: [{ name: "result", value: '{"trial":0}' }] },
        }),
        ...node("t1", 'trial(1:{"index":1})', "Succeeded", { type: "DAG", startedAt: iso(2), finishedAt: iso(1) }),
        ...node("t1-train", "train(0)", "Succeeded", {
          boundaryID: `${name}-t1`,
          startedAt: iso(2),
          finishedAt: iso(1),
          outputs: { parameters: [{ name: "result", value: '{"trial":1}' }] },
        }),
      },
      outputs: { parameters: [{ name: "note", value: "lr=0.001" }] },
    });
    expect(await p.exit, p.stderr()).toBe(0);
    expect(p.stdout()).toMatch(/^\S+ +trial\(0\)\/train\(0\) +Succeeded/m);
    expect(p.stdout()).toMatch(/^\S+ +trial\(1\)\/train\(0\) +Succeeded/m);
    expect(p.stdout()).not.toMatch(/output: +result/);
    const lines = p.stdout().split("\n");
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    // In the order they happened.
    const order = [
      /workflow \S+: Pending/,
      /workflow \S+: Running/,
      /verify-data +Running/,
      /verify-data +Succeeded/,
      /train +Running/,
      /workflow \S+: Succeeded/,
      /train +Succeeded/,
    ];
    const idx = order.map(at);
    expect(
      idx.every((i) => i >= 0),
      p.stdout(),
    ).toBe(true);
    expect([...idx.slice(0, 5)].sort((a, b) => a - b)).toEqual(idx.slice(0, 5));
    expect(Math.min(idx[5]!, idx[6]!)).toBeGreaterThan(idx[4]!);
    expect(p.stdout()).toContain(`best trial:  2 (learning rate 0.001, hidden units 128, batch size 64), validation accuracy 0.9550; TensorBoard run ${name}/trial-2`);
    expect(p.stdout()).toMatch(/^published: +version 5 \(\/mnt\/shared\/models\/mnist\/5\)$/m);
    expect(p.stdout()).toMatch(/^output: +note = lr=0\.001$/m);
  });

  it("a run that Fails: the failed step, the gate message, exit 1", async () => {
    const before = new Set(await workflowNames());
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--watch", "--timeout", "60", "--poll-interval", "0.2"]);
    const name = await until("the new Workflow", async () => (await workflowNames()).find((n) => !before.has(n)));
    await setStatus(name, {
      phase: "Failed",
      message: "child 'evaluate' failed",
      startedAt: iso(65),
      finishedAt: iso(0),
      nodes: {
        [`${name}-1`]: { id: `${name}-1`, displayName: "train", type: "Pod", phase: "Succeeded", startedAt: iso(60), finishedAt: iso(20) },
        [`${name}-2`]: {
          id: `${name}-2`,
          displayName: "evaluate",
          type: "Pod",
          phase: "Failed",
          message: "Error (exit code 3)",
          startedAt: iso(20),
          finishedAt: iso(1),
          outputs: { parameters: [{ name: "evaluation", value: JSON.stringify({ accuracy: 0.91, gate: 0.97, passed: false, examples: 10000 }) }] },
        },
        [`${name}-3`]: { id: `${name}-3`, displayName: "publish", type: "Skipped", phase: "Omitted" },
      },
    });
    expect(await p.exit).toBe(1);
    const out = p.stdout();
    expect(out).toMatch(/^\d\d:\d\d:\d\d  evaluate +Failed \(19s\): Error \(exit code 3\)$/m);
    // Steps in the order they started; the one that never ran last.
    const pos = ["train", "evaluate", "publish"].map((n) => out.search(new RegExp(`  ${n} +(Succeeded|Failed|Omitted)`)));
    expect(pos).toEqual([...pos].sort((a, b) => a - b));
    expect(out).toMatch(/publish +Omitted/);
    expect(out).toMatch(/^phase: +Failed after 1m05s: child 'evaluate' failed$/m);
    expect(out).toMatch(/^ {2}failed: +evaluate: Error \(exit code 3\)$/m);
    expect(out).toMatch(/^accuracy: +0\.91 \(gate 0\.97, NOT passed\)$/m);
    expect(out).toContain("accuracy 0.91 is below the gate 0.97: nothing was published");
    expect(out).not.toMatch(/^published:/m);
  });

  it("--timeout gives up on a run that is still going, exit 1, and says how to follow it", async () => {
    const before = new Set(await workflowNames());
    const p = submit(["pipeline", "--outputs-file", outputsFile, "--no-watch"]);
    expect(await p.exit).toBe(0);
    const name = (await workflowNames()).find((n) => !before.has(n))!;
    await setStatus(name, { phase: "Running", startedAt: iso(3) });
    const t = submit(["pipeline", "--outputs-file", outputsFile, "--attach", name, "--timeout", "1", "--poll-interval", "0.2"]);
    expect(await t.exit).toBe(1);
    expect(t.stdout()).toContain(`gave up after 1 s: workflow ${name} is still Running (it goes on in the cluster; follow it with --attach ${name})`);
  });
});
