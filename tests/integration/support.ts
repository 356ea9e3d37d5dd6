/**
 * Support for the integration tests: the Go-built tools (scripts/tools/build.sh), the local
 * control plane and Minio on 127.0.0.1 (scripts/localcluster/up.sh), the real Pulumi CLI with
 * a file backend and a passphrase secrets provider, and a small Kubernetes API client.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { chartArgoCrdTexts } from "../fixtures/crds/argo";

export const ROOT = path.resolve(__dirname, "..", "..");
export const CACHE = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
export const TOOLS_BIN = path.join(process.env.MLPLATFORM_TOOLS_DIR ?? path.join(CACHE, "tools"), "bin");

/** The tools that are missing from the tools cache (and PATH). */
export function missingTools(names: readonly string[]): string[] {
  const missing = names.filter((n) => {
    if (n === TFJOB_CRD_TOOL) return !fs.existsSync(upstreamTfJobCrd());
    if (fs.existsSync(path.join(TOOLS_BIN, n))) return false;
    return spawnSync("sh", ["-c", `command -v ${n}`]).status !== 0;
  });
  return missing;
}

/** Name for {@link missingTools}: the Training Operator release's TFJob CRD (scripts/tools/fetch-manifests.sh). */
export const TFJOB_CRD_TOOL = "training-operator manifests";

/** The TFJob CRD of the Training Operator release we install, as fetched by scripts/tools/fetch-manifests.sh. */
export function upstreamTfJobCrd(): string {
  const pins = fs.readFileSync(path.join(ROOT, "scripts", "tools", "versions.env"), "utf8");
  const version = /^TRAINING_OPERATOR_VERSION=(\S+)$/m.exec(pins)?.[1];
  if (!version) throw new Error("scripts/tools/versions.env has no TRAINING_OPERATOR_VERSION");
  return path.join(path.dirname(TOOLS_BIN), "manifests", `training-operator-${version}`, "base", "crds", "kubeflow.org_tfjobs.yaml");
}

/**
 * A kustomize directory (in `work`) with the CRDs the offline tests install, all of them the
 * real ones: the Training Operator release's TFJob CRD and Argo Workflows' full CRDs from the
 * vendored chart (tests/fixtures/crds/argo.ts).
 */
export function offlineCrdDir(work: string): string {
  const dir = path.join(work, "crds");
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(upstreamTfJobCrd(), path.join(dir, "kubeflow.org_tfjobs.yaml"));
  const argo = chartArgoCrdTexts();
  for (const [file, text] of Object.entries(argo)) fs.writeFileSync(path.join(dir, file), text);
  fs.writeFileSync(
    path.join(dir, "kustomization.yaml"),
    YAML.stringify({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources: ["kubeflow.org_tfjobs.yaml", ...Object.keys(argo)] }),
  );
  return dir;
}

/**
 * Starts a local control plane (and MinIO) whose state lives in `stateDir`, so that a test
 * run never meets objects another run left behind; returns the variables of its env file.
 */
export function startLocal(stateDir: string, only?: "apiserver" | "minio"): Record<string, string> {
  const args = only ? ["--only", only] : [];
  const envFile = execFileSync(path.join(ROOT, "scripts", "localcluster", "up.sh"), args, {
    encoding: "utf8",
    env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
    stdio: ["ignore", "pipe", "inherit"],
  })
    .trim()
    .split("\n")
    .pop()!;
  const vars: Record<string, string> = {};
  for (const line of fs.readFileSync(envFile, "utf8").split("\n")) {
    const m = /^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!.replace(/^['"]|['"]$/g, "");
  }
  return vars;
}

/** Stops what {@link startLocal} started in `stateDir` and removes its state. */
export function stopLocal(stateDir: string): void {
  spawnSync(path.join(ROOT, "scripts", "localcluster", "down.sh"), ["--purge"], {
    env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
    stdio: "inherit",
  });
}

/** A minimal Kubernetes API client from a kubeconfig with token (or client-cert) auth. */
export class Kube {
  private readonly server: URL;
  private readonly agent: https.Agent;
  private readonly token?: string;

  constructor(kubeconfigPath: string) {
    const kc = YAML.parse(fs.readFileSync(kubeconfigPath, "utf8"));
    const ctx = kc.contexts.find((c: any) => c.name === kc["current-context"]).context;
    const cluster = kc.clusters.find((c: any) => c.name === ctx.cluster).cluster;
    const user = kc.users.find((u: any) => u.name === ctx.user).user;
    this.server = new URL(cluster.server);
    const b64 = (s?: string) => (s ? Buffer.from(s, "base64") : undefined);
    this.agent = new https.Agent({
      ca: b64(cluster["certificate-authority-data"]) ?? (cluster["certificate-authority"] ? fs.readFileSync(cluster["certificate-authority"]) : undefined),
      cert: b64(user["client-certificate-data"]),
      key: b64(user["client-key-data"]),
    });
    this.token = user.token;
  }

  /** Sends a request; resolves to the status code and parsed body. */
  request(method: string, apiPath: string, body?: unknown): Promise<{ status: number; body: any }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(apiPath, this.server),
        {
          method,
          agent: this.agent,
          timeout: 10_000,
          headers: {
            ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}),
            ...(payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** GET an API path; resolves to the parsed body, or `undefined` on 404. */
  async get(apiPath: string): Promise<any> {
    const r = await this.request("GET", apiPath);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET ${apiPath}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Names of the items of a list path, e.g. `/api/v1/namespaces`. */
  async names(listPath: string, labelSelector?: string): Promise<string[]> {
    const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : "";
    const list = await this.get(`${listPath}${q}`);
    return (list?.items ?? []).map((i: any) => i.metadata.name as string).sort();
  }
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The real Pulumi CLI with its own PULUMI_HOME, a file backend and a passphrase secrets
 * provider; plugins come only from the tools cache (no download is ever attempted).
 */
export class PulumiCli {
  readonly home: string;
  readonly backend: string;
  readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly workDir: string,
    extraEnv: Record<string, string> = {},
  ) {
    this.home = path.join(workDir, ".pulumi-home");
    this.backend = path.join(workDir, ".pulumi-state");
    fs.mkdirSync(this.home, { recursive: true });
    fs.mkdirSync(this.backend, { recursive: true });
    this.env = {
      ...process.env,
      ...extraEnv,
      PATH: `${TOOLS_BIN}${path.delimiter}${process.env.PATH}`,
      PULUMI_HOME: this.home,
      PULUMI_BACKEND_URL: `file://${this.backend}`,
      PULUMI_CONFIG_PASSPHRASE: "integration-tests-only",
      PULUMI_SKIP_UPDATE_CHECK: "1",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      PULUMI_SKIP_CONFIRMATIONS: "true",
      NO_COLOR: "1",
    };
  }

  /** Runs `pulumi …` in `cwd` (default the work dir); logs the command, its time and, on failure, its output. */
  run(args: string[], opts: { cwd?: string; allowFailure?: boolean } = {}): CliResult {
    const started = Date.now();
    const r = spawnSync("pulumi", [...args, "--non-interactive"], {
      cwd: opts.cwd ?? this.workDir,
      env: this.env,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      timeout: 15 * 60_000,
    });
    const result = { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
    console.log(`pulumi ${args.join(" ")} → exit ${result.code} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (result.code !== 0 && !opts.allowFailure) {
      throw new Error(`pulumi ${args.join(" ")} failed (${result.code}):\n${result.stdout.slice(-6000)}\n${result.stderr.slice(-6000)}`);
    }
    return result;
  }
}

/**
 * Copies the Pulumi project (not node_modules, which is linked) into a fresh directory, so
 * that stack files written by `pulumi stack init`/`config set` never touch the checkout.
 */
export function copyProject(dest: string): string {
  const skip = new Set(["node_modules", ".git", "trainer", "bench", ".pulumi-home", ".pulumi-state"]);
  fs.mkdirSync(dest, { recursive: true });
  for (const entry of fs.readdirSync(ROOT)) {
    if (skip.has(entry)) continue;
    fs.cpSync(path.join(ROOT, entry), path.join(dest, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dest, "node_modules"));
  return dest;
}

/** Parses `pulumi preview --json` output into its steps (op and URN). */
export function previewSteps(json: string): { op: string; urn: string; diffs?: string[] }[] {
  const doc = JSON.parse(json) as { steps?: { op: string; urn: string; diffs?: string[] }[] };
  return doc.steps ?? [];
}

/**
 * Points a copied project's dev stack at the local API server, with what needs the internet
 * switched off: no Helm charts (Argo, JupyterHub; so no Argo pipelines either), the Training
 * Operator's release manifests replaced by just its CRDs (its real TFJob CRD, see
 * {@link offlineCrdDir}: the operator's Deployment and webhook cannot run without images),
 * and no waiting for containers that can never start (images are not pulled here).
 */
export function useOfflineDevStack(platformDir: string, kubeconfigPath: string): void {
  const devFile = path.join(platformDir, "Pulumi.dev.yaml");
  const dev = YAML.parse(fs.readFileSync(devFile, "utf8"));
  dev.config["mlplatform:cluster"] = { provider: "existing", kubeconfig: kubeconfigPath, context: "mlplatform-local", gpu: "none" };
  dev.config["mlplatform:kubernetes"] = { skipAwait: true };
  dev.config["mlplatform:kubeflow"] = {
    trainingOperator: { source: offlineCrdDir(path.dirname(platformDir)) },
    argo: { enabled: false },
    jupyterhub: { enabled: false },
  };
  // The pipelines need Argo; their templates meet the API server in crds.test.ts instead.
  dev.config["mlplatform:pipeline"] = { enabled: false };
  // kube-prometheus-stack is a Helm chart too (its objects are checked under mocks and by schema).
  dev.config["mlplatform:observability"] = { enabled: false };
  fs.writeFileSync(devFile, YAML.stringify(dev));
}
