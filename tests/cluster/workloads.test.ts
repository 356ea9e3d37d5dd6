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
import {
  DEV_NAMESPACES,
  destroy,
  diagnose,
  forward,
  pendingChanges,
  serviceIp,
  stackOutputs,
  installPrerequisites,
  missingForDevStack,
  prepareDevStack,
  removePrerequisites,
  up,
  workloads,
  type DevStack,
} from "./devStack";
import { ROOT, missingForNode, podLog, readEnvFile, stopNode, until } from "./support";
import { distributedRun, retrainRun, sweepRun } from "./pipelineRuns";
import { uploadMnist } from "../../scripts/dataset";
import { run as submit } from "../../scripts/submit";
import { main as mlp } from "../../trainer/src/cli";
import { writeMnistIdx } from "../../trainer/tests/fixtures/mnist-idx";
import { captureIo } from "../../trainer/tests/fixtures/tmp";

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
  let mnistRun: string | undefined;
  let outputsFile: string | undefined;

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
    // The model server is never awaited by the stack (components/modelServing.ts): give every
    // workload a few minutes after up, then report each one's time to Ready.
    let ws = await workloads(s.kube, DEV_NAMESPACES);
    const deadline = Date.now() + 5 * 60_000;
    while (!upError && ws.some((w) => !w.ready) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5000));
      ws = await workloads(s.kube, DEV_NAMESPACES);
    }
    console.table(ws.map((w) => ({ workload: `${w.kind} ${w.namespace}/${w.name}`, ready: w.ready, secondsToReady: w.secondsToReady, image: w.images.join(" ") })));
    const notReady = ws.filter((w) => !w.ready);
    if (upError || notReady.length > 0) {
      for (const ns of new Set(notReady.map((w) => w.namespace))) console.log(await diagnose(s.kube, ns));
    }
    expect(upError, String(upError)).toBeUndefined();
    expect(notReady.map((w) => `${w.kind} ${w.namespace}/${w.name}`)).toEqual([]);
    // Every part of the dev stack is there: object store, buckets Job, TensorBoard, hub, Argo, Training Operator, model server.
    for (const ns of DEV_NAMESPACES)
      expect(
        ws.some((w) => w.namespace === ns),
        `a workload in ${ns}`,
      ).toBe(ns === "ml-pipelines" ? false : true);
    for (const kind of ["Deployment", "StatefulSet", "Job"])
      expect(
        ws.some((w) => w.kind === kind),
        kind,
      ).toBe(true);

    // Converged: another `pulumi up` changes nothing. (The Training Operator rewrites its
    // webhook Secret; replacing it on every up broke TFJob admission for a minute.)
    expect(pendingChanges(s)).toEqual([]);
  });

  it("MNIST pipeline: dataset uploaded, submitted, trained as a TFJob, gated, published, served; mlp predict from the host ≥ 97%", { timeout: 40 * 60_000 }, async () => {
    if (!s) throw new Error("the dev stack is not up (see workloads ready)");
    ({ file: outputsFile } = stackOutputs(s));
    // The documented command puts the dataset into MinIO (through a forward of its Service).
    const minio = forward(stateDir, "minio", await serviceIp(s.kube, "mlplatform", "minio"), 9000);
    const up = await uploadMnist(
      { bucket: "data", prefix: "mnist", trainExamples: 8000, testExamples: 2000, endpoint: `http://127.0.0.1:${minio}`, stack: "dev", outputsFile: outputsFile! },
      (l) => console.log(l),
    );
    expect(up.files).toHaveLength(4);
    const lines: string[] = [];
    const io = { out: (l: string) => (console.log(l), lines.push(l)), err: (l: string) => (console.log(l), lines.push(l)) };
    const t0 = Date.now();
    const code = await submit(["pipeline", "--outputs-file", outputsFile!, "--timeout", String(30 * 60)], io);
    const seconds = (Date.now() - t0) / 1000;
    console.log(`MNIST: submit → Succeeded (served, smoke-tested) in ${seconds.toFixed(0)} s`);
    expect(code, lines.join("\n")).toBe(0);
    mnistRun = /submitted workflow (\S+)/.exec(lines.join("\n"))?.[1];
    expect(mnistRun).toBeDefined();
    for (const step of ["verify-data", "train", "evaluate", "publish", "smoke-test"]) expect(lines.join("\n")).toMatch(new RegExp(`${step}(\\(\\d+\\))?\\s+Succeeded`));
    // The TFJob had one replica: no Worker or PS pods (the operator starts one even for replicas: 0).
    const pods = await s.kube.names("/api/v1/namespaces/ml-pipelines/pods");
    expect(pods.filter((n) => n.startsWith(`${mnistRun}-train-`) && !n.startsWith(`${mnistRun}-train-chief-`) && /-(worker|ps)-\d+$/.test(n))).toEqual([]);

    // From the host: 1,000 held-out digits (never trained on) through the Service.
    const grpcPort = forward(stateDir, "serving-grpc", await serviceIp(s.kube, "ml-serving", "model-server"), 8500);
    const data = path.join(work, "mnist");
    await writeMnistIdx(data, { train: 8000, test: 2000 });
    const c = captureIo();
    const rc = await mlp(
      [
        "predict",
        "--server",
        `127.0.0.1:${grpcPort}`,
        "--model",
        "mnist",
        "--idx",
        path.join(data, "t10k-images-idx3-ubyte"),
        "--idx-labels",
        path.join(data, "t10k-labels-idx1-ubyte"),
        "--count",
        "1000",
        "--json",
      ],
      c.io,
    );
    expect(rc, c.stderr()).toBe(0);
    const r = JSON.parse(c.stdout());
    console.log(
      `mlp predict from the host: ${r.correct} of ${r.count} correct (${(r.accuracy * 100).toFixed(2)}%), model mnist v${r.version}, ${r.requests} requests in ${r.seconds.toFixed(1)} s`,
    );
    expect(r.count).toBe(1000);
    expect(r.accuracy).toBeGreaterThanOrEqual(0.97);
  });

  it("TensorBoard: /data/runs lists the pipeline's run, with its scalars", { timeout: 5 * 60_000 }, async () => {
    if (!s || !mnistRun) throw new Error("no MNIST run (see the MNIST pipeline test)");
    const port = forward(stateDir, "tensorboard", await serviceIp(s.kube, "mlplatform", "platform-tensorboard"), 80);
    const runs = await until("TensorBoard lists the run", 120_000, async () => {
      const list = (await (await fetch(`http://127.0.0.1:${port}/data/runs`)).json()) as string[];
      return list.includes(`${mnistRun}/train`) ? list : undefined;
    });
    console.log(`TensorBoard /data/runs: ${JSON.stringify(runs)}`);
    expect(runs).toEqual(expect.arrayContaining([`${mnistRun}/train`, `${mnistRun}/validation`]));
    const tags = (await (await fetch(`http://127.0.0.1:${port}/data/plugin/scalars/tags`)).json()) as Record<string, Record<string, unknown>>;
    expect(Object.keys(tags[`${mnistRun}/train`] ?? {})).toEqual(expect.arrayContaining(["loss", "accuracy"]));
    const loss = (await (await fetch(`http://127.0.0.1:${port}/data/plugin/scalars/scalars?run=${encodeURIComponent(`${mnistRun}/train`)}&tag=loss`)).json()) as [
      number,
      number,
      number,
    ][];
    expect(loss.length).toBeGreaterThan(5);
    expect(loss.at(-1)![2]).toBeLessThan(loss[0]![2]);
  });

  it(
    "retrain pipeline: labelled images into the object store (npm run dataset -- images), a base model cached on the shared volume, retrained, published as `images`, served next to mnist; a JPEG from the host is classified",
    { timeout: 30 * 60_000 },
    async () => {
      if (!s || !outputsFile) throw new Error("no deployed stack or outputs (see the tests above)");
      const r = await retrainRun(s, stateDir, outputsFile);
      console.log(`retrain: uploaded ${r.upload?.uploaded} of ${r.upload?.files} images (${r.upload?.labels.join(", ")}) to s3://data/colours`);
      expect(r.upload?.labels.length).toBeGreaterThanOrEqual(2);
      expect(r.upload!.uploaded + r.upload!.skipped).toBe(r.upload!.files);
      console.log(`retrain: submit → Succeeded in ${r.seconds.toFixed(0)} s; mlp predict of a red JPEG from the host: ${JSON.stringify(r.answer?.top.slice(0, 2))}`);
      expect(r.code, r.lines.join("\n")).toBe(0);
      for (const step of ["fetch-base", "verify-data", "train", "evaluate", "publish", "smoke-test"])
        expect(r.lines.join("\n")).toMatch(new RegExp(`${step}(\\(\\d+\\))?\\s+Succeeded`));
      expect(r.answer?.top[0]?.label).toBe("red");
      // Both models are served side by side.
      const rest = forward(stateDir, "serving-rest", await serviceIp(s.kube, "ml-serving", "model-server"), 8501);
      for (const model of ["mnist", "images"]) {
        const status = (await (await fetch(`http://127.0.0.1:${rest}/v1/models/${model}`)).json()) as { model_version_status: { state: string }[] };
        expect(
          status.model_version_status.map((v) => v.state),
          model,
        ).toContain("AVAILABLE");
      }
    },
  );

  it("distributed MNIST: a two-replica TFJob (Chief + Worker) trains with all-reduce, passes the gate, is served", { timeout: 30 * 60_000 }, async () => {
    if (!s || !outputsFile) throw new Error("no deployed stack or outputs (see the tests above)");
    const r = await distributedRun(outputsFile);
    console.log(`distributed MNIST (2 replicas): submit → Succeeded in ${r.seconds.toFixed(0)} s`);
    expect(r.code, r.lines.join("\n")).toBe(0);
    const chief = await podLog(s.kube, "ml-pipelines", `${r.workflow}-train-chief-0`);
    const worker = await podLog(s.kube, "ml-pipelines", `${r.workflow}-train-worker-0`);
    expect(chief).toContain("2 training replica(s), 0 PS: all-reduce");
    expect(chief).toContain("all-reduce: 2 replicas joined at step 0");
    // Identical updates on both replicas: the same loss at every step both logged. A replica
    // logs every 50 steps or every 10 s, whichever comes first, so on a busy machine the two
    // log different steps; the last one (1000) they always both log.
    const losses = (log: string) => new Map([...log.matchAll(/step (\d+)\/1000 \(\d+%\)\s+loss (\S+)/g)].map((m) => [Number(m[1]), m[2]!]));
    const [c, w] = [losses(chief), losses(worker)];
    const common = [...c.keys()].filter((step) => w.has(step));
    console.log(`distributed MNIST: steps logged by both replicas: ${common.join(", ")}`);
    expect(common).toContain(1000);
    for (const step of common) expect(w.get(step), `loss at step ${step}`).toBe(c.get(step));
  });

  it(
    "hyperparameter sweep: two trials (one TFJob each) run two at once, the best is published as mnist and served; TensorBoard lists every trial",
    { timeout: 30 * 60_000 },
    async () => {
      if (!s || !outputsFile) throw new Error("no deployed stack or outputs (see the tests above)");
      const r = await sweepRun(outputsFile);
      console.log(`sweep (2 trials): submit → Succeeded in ${r.seconds.toFixed(0)} s`);
      expect(r.code, r.lines.join("\n")).toBe(0);
      const text = r.lines.join("\n");
      for (const step of ["grid", "promote", "publish-best"]) expect(text).toMatch(new RegExp(`${step}(\\(\\d+\\))?\\s+Succeeded`));
      // Each trial was a TFJob of its own.
      const jobs = await s.kube.names("/apis/kubeflow.org/v1/namespaces/ml-pipelines/tfjobs");
      expect(jobs.filter((n) => n.startsWith(`${r.workflow}-trial-`)).sort()).toEqual([`${r.workflow}-trial-0`, `${r.workflow}-trial-1`]);
      const best = /best trial:\s+(\d+) \(learning rate (\S+),.*validation accuracy (\S+); TensorBoard run (\S+)/.exec(text);
      expect(best, text).not.toBeNull();
      expect(Number(best![3])).toBeGreaterThanOrEqual(0.8);
      const version = Number(/published:\s+version (\d+)/.exec(text)?.[1]);
      expect(version).toBeGreaterThan(0);
      // The published version is the one served.
      const rest = forward(stateDir, "serving-rest", await serviceIp(s.kube, "ml-serving", "model-server"), 8501);
      await until(`mnist v${version} served`, 180_000, async () => {
        const st = (await (await fetch(`http://127.0.0.1:${rest}/v1/models/mnist`)).json()) as { model_version_status?: { version: string; state: string }[] };
        return st.model_version_status?.some((v) => Number(v.version) === version && v.state === "AVAILABLE") || undefined;
      });
      // TensorBoard shows the trials side by side, each under its own run.
      const tb = forward(stateDir, "tensorboard", await serviceIp(s.kube, "mlplatform", "platform-tensorboard"), 80);
      const runs = await until("TensorBoard lists both trials", 120_000, async () => {
        const list = (await (await fetch(`http://127.0.0.1:${tb}/data/runs`)).json()) as string[];
        return [0, 1].every((i) => list.includes(`${r.workflow}/trial-${i}/train`)) ? list : undefined;
      });
      console.log(`sweep: ${best![0]}; published version ${version}; TensorBoard runs ${JSON.stringify(runs.filter((x) => x.startsWith(r.workflow!)))}`);
      expect(best![4]).toBe(`${r.workflow}/trial-${best![1]}`);
    },
  );

  it(
    "notebook spawn: log in to JupyterHub over HTTP, start a server; its pod runs restricted with the shared volume and the object store's credentials",
    { timeout: 10 * 60_000 },
    async () => {
      if (!s) throw new Error("the dev stack is not up (see workloads ready)");
      const hub = `http://127.0.0.1:${forward(stateDir, "jupyterhub", await serviceIp(s.kube, "ml-notebooks", "proxy-public"), 80)}`;
      const jar = new Map<string, string>();
      const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      // A browser's cookie handling, as far as the hub needs it: a cookie cleared by the
      // server (empty, Max-Age=0 or expired) is dropped, not kept with its stale value.
      const remember = (r: Response) => {
        for (const c of r.headers.getSetCookie()) {
          const [kv, ...attrs] = c.split(";").map((x) => x.trim());
          const name = kv!.slice(0, kv!.indexOf("="));
          const value = kv!.slice(kv!.indexOf("=") + 1);
          const expired = attrs.some((a) => /^max-age=0$/i.test(a) || (/^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()));
          if (expired || value === "" || value === '""') jar.delete(name);
          else jar.set(name, value);
        }
      };
      const user = "alice";
      // The login form, then its POST with the form's _xsrf and the cookies it set. Once in
      // three CI runs the hub answered 403 "XSRF cookie does not match POST argument"; a
      // second try with a fresh form is what a person would do, and it is logged.
      let login: Response | undefined;
      for (let attempt = 1; attempt <= 2; attempt++) {
        jar.clear();
        const page = await fetch(`${hub}/hub/login`, { redirect: "manual" });
        remember(page);
        const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await page.text())?.[1];
        expect(xsrf, "the login form's _xsrf").toBeDefined();
        login = await fetch(`${hub}/hub/login`, {
          method: "POST",
          redirect: "manual",
          headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ username: user, password: "any", _xsrf: xsrf! }),
        });
        if (login.status !== 403) break;
        console.log(`hub login attempt ${attempt}: 403 (${/<p>([^<]*)<\/p>/.exec(await login.clone().text())?.[1] ?? "no message"}); cookies sent: ${[...jar.keys()].join(", ")}`);
      }
      remember(login!);
      expect(login!.status, await login!.text()).toBe(302);
      // The browser's way to the REST API: the page's XSRF token with the login cookie buys an
      // API token; the API calls then use that token.
      const home = await fetch(`${hub}/hub/home`, { headers: { cookie: cookie() } });
      remember(home);
      const pageToken = /xsrf_token: "([^"]+)"/.exec(await home.text())?.[1];
      expect(pageToken, "the hub page's xsrf_token").toBeDefined();
      const tokenReply = await fetch(`${hub}/hub/api/users/${user}/tokens`, {
        method: "POST",
        headers: { cookie: cookie(), "X-XSRFToken": pageToken!, "content-type": "application/json" },
        body: JSON.stringify({ note: "cluster test", expires_in: 3600 }),
      });
      expect(tokenReply.status, await tokenReply.clone().text()).toBe(201);
      const apiToken = ((await tokenReply.json()) as { token: string }).token;
      const t0 = Date.now();
      const api = (method: string, p: string) =>
        fetch(`${hub}/hub/api${p}`, { method, headers: { authorization: `token ${apiToken}`, "content-type": "application/json" }, body: method === "POST" ? "{}" : undefined });
      const start = await api("POST", `/users/${user}/server`);
      expect([201, 202], await start.text()).toContain(start.status);
      const ready = await until("the notebook server ready", 8 * 60_000, async () => {
        const u = (await (await api("GET", `/users/${user}`)).json()) as { servers?: Record<string, { ready: boolean; pending: string | null }> };
        return u.servers?.[""]?.ready ? u.servers[""] : undefined;
      });
      console.log(`notebook server of ${user} ready in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(ready).slice(0, 200)}`);
      const pod = await s.kube.get(`/api/v1/namespaces/ml-notebooks/pods/jupyter-${user}`);
      expect(pod?.status?.phase).toBe("Running");
      const ns = await s.kube.get("/api/v1/namespaces/ml-notebooks");
      expect(ns.metadata.labels["pod-security.kubernetes.io/enforce"]).toBe("restricted");
      const c = pod.spec.containers.find((x: any) => x.name === "notebook") ?? pod.spec.containers[0];
      expect(c.volumeMounts.map((m: any) => m.mountPath)).toContain("/mnt/shared");
      const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
      for (const key of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"]) expect(env[key]?.valueFrom?.secretKeyRef?.key, key).toBe(key);
      const stop = await api("DELETE", `/users/${user}/server`);
      expect([202, 204]).toContain(stop.status);
      await until("the notebook pod gone", 3 * 60_000, async () => ((await s!.kube.get(`/api/v1/namespaces/ml-notebooks/pods/jupyter-${user}`)) ? undefined : true));
    },
  );

  it("destroy leaves nothing of ours", { timeout: 20 * 60_000 }, async () => {
    if (!s) throw new Error("the dev stack is not up (see workloads ready)");
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
