/**
 * The dev stack on the real local node (scripts/localcluster/up.sh --node real), deployed by
 * the real Pulumi engine with `kubernetes.skipAwait` off. Used by the `workloads ready` test
 * and by scripts/localcluster/deploy-dev.sh.
 *
 * What differs from a user's dev stack, and why:
 *  - the cluster is the local node's kubeconfig (context mlplatform-local);
 *  - Argo and JupyterHub come from the vendored charts in ../shared/charts (config `chart`);
 *    Argo's full CRDs are applied from that chart's files/crds/full before `pulumi up`
 *    (`installCrds: false`: the chart's CRD hook Job downloads them from the internet);
 *  - the Training Operator comes from its release manifests fetched by scripts/tools;
 *  - every image is a local build (scripts/images/build.sh), named by the config image keys;
 *  - shared storage is the `hostPath` backend (no kernel NFS server can run here), and MinIO's
 *    claim binds a hostPath PersistentVolume this module creates (the node has no provisioner).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as YAML from "yaml";
import { CACHE, Kube, PulumiCli, ROOT, TOOLS_BIN, copyProject, previewSteps } from "../integration/support";

export const CHARTS_DIR = process.env.MLPLATFORM_CHARTS_DIR ?? path.resolve(ROOT, "..", "shared", "charts");
export const IMAGES_DIR = path.join(CACHE, "images");
export const ARGO_CHART = path.join(CHARTS_DIR, "argo-workflows-1.0.14.tgz");
export const JUPYTERHUB_CHART = path.join(CHARTS_DIR, "jupyterhub-4.3.3.tgz");
/** The PersistentVolumes MinIO's claim and the JupyterHub chart's hub-db-dir bind (cluster-scoped, made here, not by the stack). */
export const MINIO_PV = "mlplatform-local-minio";
export const HUB_DB_PV = "mlplatform-local-hub-db";

/** Image name → reference, from scripts/images/build.sh's images.tsv. */
export function localImages(): Record<string, string> {
  const file = path.join(IMAGES_DIR, "images.tsv");
  const refs: Record<string, string> = {};
  if (fs.existsSync(file))
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      const [name, ref] = line.split("\t");
      if (name && ref) refs[name] = ref;
    }
  // An archive built but not yet listed (build.sh writes the list at its end): its own name.
  for (const name of DEV_IMAGES) {
    const tar = path.join(IMAGES_DIR, `${name}.tar`);
    if (refs[name] || !fs.existsSync(tar)) continue;
    try {
      const index = JSON.parse(execFileSync("tar", ["-xOf", tar, "index.json"], { encoding: "utf8" }));
      const ref = index.manifests?.[0]?.annotations?.["io.containerd.image.name"];
      if (ref) refs[name] = ref;
    } catch {
      /* not an OCI archive */
    }
  }
  return refs;
}

/** Images the dev stack runs (names in images.tsv). */
export const DEV_IMAGES = [
  "minio",
  "mc",
  "training-operator",
  "argo-workflow-controller",
  "argoexec",
  "argocli",
  "tensorboard",
  "jupyterhub-hub",
  "configurable-http-proxy",
  "notebook",
  "trainer-cpu",
] as const;

/** What the dev stack on the real node still lacks here (images, charts, manifests), or []. */
export function missingForDevStack(): string[] {
  const refs = localImages();
  const missing = DEV_IMAGES.filter((n) => !refs[n]).map((n) => `image ${n} (scripts/images/build.sh)`);
  for (const f of [ARGO_CHART, JUPYTERHUB_CHART]) if (!fs.existsSync(f)) missing.push(`chart ${f}`);
  if (!fs.existsSync(trainingOperatorSource())) missing.push(`${trainingOperatorSource()} (scripts/tools/fetch-manifests.sh)`);
  if (!fs.existsSync(path.join(TOOLS_BIN, "pulumi"))) missing.push("pulumi (scripts/tools)");
  return missing;
}

/** The Training Operator's standalone overlay, as fetched by scripts/tools/fetch-manifests.sh. */
export function trainingOperatorSource(): string {
  const pins = fs.readFileSync(path.join(ROOT, "scripts", "tools", "versions.env"), "utf8");
  const version = /^TRAINING_OPERATOR_VERSION=(\S+)$/m.exec(pins)?.[1] ?? "unknown";
  return path.join(path.dirname(TOOLS_BIN), "manifests", `training-operator-${version}`, "overlays", "standalone");
}

export interface DevStack {
  readonly work: string;
  readonly platformDir: string;
  readonly cli: PulumiCli;
  readonly kube: Kube;
  readonly kubeconfig: string;
  /** Node directory behind the hostPath volumes. */
  readonly volumes: string;
}

/**
 * Prepares a copy of the project whose dev stack targets the local node (`local` is
 * local.env's variables), with the Pulumi CLI on a file backend under `work`.
 */
export function prepareDevStack(local: Record<string, string>, work: string): DevStack {
  const kubeconfig = local.KUBECONFIG ?? local.MLPLATFORM_KUBECONFIG;
  if (!kubeconfig) throw new Error(`local.env has no KUBECONFIG: ${JSON.stringify(Object.keys(local))}`);
  const volumes = path.join(work, "volumes");
  for (const d of ["shared", "minio", "hub-db"]) {
    fs.mkdirSync(path.join(volumes, d), { recursive: true });
    // Our workloads run as uid 1000; a hostPath volume gets no fsGroup ownership change.
    fs.chownSync(path.join(volumes, d), 1000, 1000);
    fs.chmodSync(path.join(volumes, d), 0o775);
  }
  fs.chmodSync(work, 0o755);
  fs.chmodSync(volumes, 0o755);
  // A fresh copy each time, so a redeploy runs the code as it is now (state lives beside it).
  fs.rmSync(path.join(work, "platform"), { recursive: true, force: true });
  const platformDir = copyProject(path.join(work, "platform"));
  // The pipeline templates import the trainer's step definitions (components/trainingPipeline.ts).
  if (!fs.existsSync(path.join(platformDir, "trainer"))) fs.symlinkSync(path.join(ROOT, "trainer"), path.join(platformDir, "trainer"));
  const img = localImages();
  const devFile = path.join(platformDir, "Pulumi.dev.yaml");
  const dev = YAML.parse(fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8"));
  dev.config["mlplatform:cluster"] = { provider: "existing", kubeconfig, context: "mlplatform-local", gpu: "none" };
  dev.config["mlplatform:kubernetes"] = { skipAwait: false };
  dev.config["mlplatform:kubeflow"] = {
    trainingOperator: { source: trainingOperatorSource() },
    argo: { chart: ARGO_CHART, installCrds: false },
    // No dynamic volume provisioner on the local node: homes are ephemeral, /mnt/shared is not.
    jupyterhub: { authenticator: "dummy", chart: JUPYTERHUB_CHART, cpuImage: img.notebook, homeStorage: "none" },
    tensorboard: { image: img.tensorboard },
  };
  dev.config["mlplatform:objectStore"] = { image: img.minio, clientImage: img.mc, storageSize: "1Gi" };
  dev.config["mlplatform:sharedStorage"] = { backend: "hostPath", hostPath: path.join(volumes, "shared"), size: "10Gi" };
  dev.config["mlplatform:trainerImage"] = { image: img["trainer-cpu"] };
  // One 2-CPU node holds the whole platform: requests sized so a pipeline run (a step, the
  // training replica and the sweep's trials) fits beside the platform's own pods.
  dev.config["mlplatform:serving"] = { ...dev.config["mlplatform:serving"], requests: { cpu: "100m", memory: "256Mi" } };
  dev.config["mlplatform:pipeline"] = {
    ...dev.config["mlplatform:pipeline"],
    sweepParallelism: 2,
    stepRequests: { cpu: "100m", memory: "256Mi" },
    trainingRequests: { cpu: "500m", memory: "1Gi" },
  };
  // The metrics stack (on by default) needs Prometheus, Grafana and exporter images this node
  // does not have yet; running it here is the open part of issue 17.
  dev.config["mlplatform:observability"] = { enabled: false };
  fs.writeFileSync(devFile, YAML.stringify(dev));
  const cli = new PulumiCli(work);
  return { work, platformDir, cli, kube: new Kube(kubeconfig), kubeconfig, volumes };
}

/** Creates `body` unless it exists (POST; 409 is fine). */
async function ensure(kube: Kube, listPath: string, body: any): Promise<void> {
  const r = await kube.request("POST", listPath, body);
  if (r.status !== 201 && r.status !== 409) throw new Error(`POST ${listPath} ${body?.metadata?.name}: ${r.status} ${JSON.stringify(r.body).slice(0, 2000)}`);
}

/** What the stack expects to find on the cluster: Argo's full CRDs (from the vendored chart) and MinIO's volume. */
export async function installPrerequisites(s: DevStack): Promise<void> {
  const crdDir = path.join(s.work, "argo-chart");
  fs.mkdirSync(crdDir, { recursive: true });
  execFileSync("tar", ["xzf", ARGO_CHART, "-C", crdDir, "argo-workflows/files/crds/full"]);
  const full = path.join(crdDir, "argo-workflows", "files", "crds", "full");
  for (const f of fs
    .readdirSync(full)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(full, f), "utf8"))) {
      const crd = doc.toJS();
      if (crd?.kind === "CustomResourceDefinition") await ensure(s.kube, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
    }
  }
  // The hub's claim has a fixed name: its volume is pre-bound to it, so MinIO's (whose
  // StatefulSet name is generated) cannot take it, and the other way round.
  for (const [name, dir, claimRef] of [
    [HUB_DB_PV, "hub-db", { namespace: "ml-notebooks", name: "hub-db-dir" }],
    [MINIO_PV, "minio", undefined],
  ] as const) {
    await ensure(s.kube, "/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name, labels: { "mlplatform.io/local-node": "true" } },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Retain",
        storageClassName: "",
        ...(claimRef ? { claimRef } : {}),
        hostPath: { path: path.join(s.volumes, dir), type: "Directory" },
      },
    });
  }
}

/** Removes what {@link installPrerequisites} made. */
export async function removePrerequisites(s: DevStack): Promise<void> {
  for (const pv of [MINIO_PV, HUB_DB_PV]) await s.kube.request("DELETE", `/api/v1/persistentvolumes/${pv}`);
  const crds = await s.kube.names("/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
  for (const c of crds.filter((n) => n.endsWith(".argoproj.io"))) await s.kube.request("DELETE", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${c}`);
}

/** `pulumi stack select --create dev` and `pulumi up`; returns the seconds it took. */
export function up(s: DevStack): number {
  s.cli.run(["stack", "select", "--create", "dev"], { cwd: s.platformDir });
  const t = Date.now();
  s.cli.run(["up", "--yes", "--skip-preview", "--stack", "dev"], { cwd: s.platformDir });
  return (Date.now() - t) / 1000;
}

/**
 * What another `pulumi up` would change (`op urn` of each step that is not "same"): empty
 * when nothing fights a controller over the objects the stack made.
 */
export function pendingChanges(s: DevStack): string[] {
  const r = s.cli.run(["preview", "--json", "--stack", "dev"], { cwd: s.platformDir });
  return previewSteps(r.stdout)
    .filter((x) => x.op !== "same")
    .map((x) => `${x.op} ${x.urn.split("::").pop()}${x.diffs?.length ? ` (${x.diffs.join(", ")})` : ""}`);
}

/** The stack's outputs (`pulumi stack output --json --show-secrets`), also written to `<work>/outputs.json` for `npm run submit --outputs-file`. */
export function stackOutputs(s: DevStack): { file: string; outputs: Record<string, any> } {
  const r = s.cli.run(["stack", "output", "--json", "--show-secrets", "--stack", "dev"], { cwd: s.platformDir });
  const file = path.join(s.work, "outputs.json");
  fs.writeFileSync(file, r.stdout, { mode: 0o600 });
  return { file, outputs: JSON.parse(r.stdout) };
}

/** The cluster IP of the first Service in `ns` whose name starts with `prefix` (Pulumi suffixes some names). */
export async function serviceIp(kube: Kube, ns: string, prefix: string): Promise<string> {
  const list = await kube.get(`/api/v1/namespaces/${ns}/services`);
  const svc = (list?.items ?? []).find((x: any) => x.metadata.name === prefix || x.metadata.name.startsWith(prefix));
  if (!svc?.spec?.clusterIP) throw new Error(`no Service ${ns}/${prefix}*`);
  return svc.spec.clusterIP;
}

/** Forwards 127.0.0.1:<port> to `ip:port` inside the node's network namespace (up.sh --forward); returns the local port. */
export function forward(stateDir: string, name: string, ip: string, port: number): number {
  execFileSync(path.join(ROOT, "scripts", "localcluster", "up.sh"), ["--node", "real", "--only", "apiserver", "--forward", `${name}=${ip}:${port}`], {
    env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
    stdio: ["ignore", "ignore", "inherit"],
    timeout: 120_000,
  });
  return Number(fs.readFileSync(path.join(stateDir, `fwd-${name}.port`), "utf8").trim());
}

export function destroy(s: DevStack): void {
  s.cli.run(["destroy", "--yes", "--skip-preview", "--stack", "dev"], { cwd: s.platformDir });
}

export interface WorkloadStatus {
  readonly kind: "Deployment" | "StatefulSet" | "Job" | "DaemonSet";
  readonly namespace: string;
  readonly name: string;
  readonly ready: boolean;
  /** Seconds from the object's creation to Available/Complete (from its conditions or its pods' Ready times). */
  readonly secondsToReady?: number;
  readonly images: string[];
  readonly detail: string;
}

const secs = (from: string, to?: string) => (to ? (Date.parse(to) - Date.parse(from)) / 1000 : undefined);

/** Every Deployment, StatefulSet, DaemonSet and Job in the platform's namespaces, with readiness and time to Ready. */
export async function workloads(kube: Kube, namespaces: string[]): Promise<WorkloadStatus[]> {
  const out: WorkloadStatus[] = [];
  for (const ns of namespaces) {
    for (const [kind, api] of [
      ["Deployment", "/apis/apps/v1"],
      ["StatefulSet", "/apis/apps/v1"],
      ["DaemonSet", "/apis/apps/v1"],
      ["Job", "/apis/batch/v1"],
    ] as const) {
      const list = await kube.get(`${api}/namespaces/${ns}/${kind.toLowerCase()}s`);
      for (const o of list?.items ?? []) {
        const created = o.metadata.creationTimestamp as string;
        const images = (o.spec.template.spec.containers as any[]).map((c) => c.image as string);
        const cond = (t: string) => (o.status?.conditions ?? []).find((c: any) => c.type === t && c.status === "True");
        let ready: boolean;
        let at: string | undefined;
        if (kind === "Deployment") {
          const c = cond("Available");
          ready = !!c && (o.status?.availableReplicas ?? 0) >= (o.spec.replicas ?? 1);
          at = c?.lastTransitionTime;
        } else if (kind === "Job") {
          const c = cond("Complete");
          ready = !!c;
          at = o.status?.completionTime ?? c?.lastTransitionTime;
        } else {
          const want = kind === "StatefulSet" ? (o.spec.replicas ?? 1) : (o.status?.desiredNumberScheduled ?? 0);
          ready = (o.status?.readyReplicas ?? o.status?.numberReady ?? 0) >= want && (o.status?.observedGeneration ?? 0) >= o.metadata.generation;
          // StatefulSets carry no Available condition: the latest Ready time of their pods.
          if (ready) {
            const sel = Object.entries(o.spec.selector.matchLabels ?? {})
              .map(([k, v]) => `${k}=${String(v)}`)
              .join(",");
            const pods = await kube.get(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(sel)}`);
            at = (pods?.items ?? [])
              .map((p: any) => (p.status?.conditions ?? []).find((c: any) => c.type === "Ready")?.lastTransitionTime as string)
              .sort()
              .pop();
          }
        }
        out.push({
          kind,
          namespace: ns,
          name: o.metadata.name,
          ready,
          secondsToReady: ready ? secs(created, at) : undefined,
          images,
          detail: JSON.stringify(o.status?.conditions ?? o.status ?? {}),
        });
      }
    }
  }
  return out;
}

/** Why a workload's pods are not Ready: phase, container states, events and the last log lines. */
export async function diagnose(kube: Kube, ns: string): Promise<string> {
  const lines: string[] = [];
  const pods = await kube.get(`/api/v1/namespaces/${ns}/pods`);
  for (const p of pods?.items ?? []) {
    const states = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].map(
      (c: any) => `${c.name}: ready=${c.ready} restarts=${c.restartCount} ${JSON.stringify(c.state)} last=${JSON.stringify(c.lastState ?? {})}`,
    );
    lines.push(`pod ${ns}/${p.metadata.name} ${p.status?.phase}\n  ${states.join("\n  ")}`);
    if (!(p.status?.containerStatuses ?? []).every((c: any) => c.ready)) {
      for (const c of p.spec.containers) {
        const log = await kube.request("GET", `/api/v1/namespaces/${ns}/pods/${p.metadata.name}/log?container=${c.name}&tailLines=15`);
        lines.push(
          `  log ${c.name}: ${String(typeof log.body === "string" ? log.body : JSON.stringify(log.body))
            .trim()
            .split("\n")
            .join("\n    ")}`,
        );
      }
    }
  }
  const events = await kube.get(`/api/v1/namespaces/${ns}/events`);
  for (const e of (events?.items ?? []).filter((e: any) => e.type === "Warning").slice(-15)) {
    lines.push(`event ${e.involvedObject.kind}/${e.involvedObject.name}: ${e.reason}: ${e.message}`);
  }
  return lines.join("\n");
}

/** The namespaces the dev stack creates (defaults) and Argo's. */
export const DEV_NAMESPACES = ["mlplatform", "ml-pipelines", "ml-serving", "ml-notebooks", "argo", "kubeflow"];

/** A work dir for a script run: under the cache, kept between runs so `pulumi destroy` finds the state. */
export function defaultWork(): string {
  return process.env.MLPLATFORM_DEV_WORK ?? path.join(CACHE, "dev-local");
}
