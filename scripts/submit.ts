/**
 * Submits a pipeline run to the platform's Argo Workflows and follows it, using only the
 * platform stack's outputs and the Kubernetes API (no argo CLI, no kubectl).
 *
 * Usage: npm run submit -- <pipeline|retrain|sweep> [flags]   (tsx scripts/submit.ts …)
 *
 *   pipeline | retrain | sweep   the WorkflowTemplate to run (its name is listed below)
 *   --stack NAME                 platform stack whose outputs are read (default dev), with
 *                                `pulumi stack output --json --show-secrets -s NAME`
 *   --outputs-file FILE          read those outputs from a JSON file instead of pulumi
 *   --set KEY=VALUE              a workflow parameter (repeatable); keys are checked against
 *                                the template's parameters
 *   --watch | --no-watch         follow the run until it ends (default --watch)
 *   --attach NAME                follow the existing workflow NAME instead of submitting one
 *   --timeout SECONDS            stop following after this long (exit 1; the run goes on)
 *   --poll-interval SECONDS      status polling interval (default 2)
 *   --context NAME               kubeconfig context (default: the kubeconfig's current one)
 *
 * Reads the outputs kubeconfig, pipelinesNamespace, pipelineServiceAccount, tensorboardUrl,
 * and servingGrpcEndpoint / servingRestUrl when the stack has them. An empty kubeconfig
 * output means "use $KUBECONFIG (or ~/.kube/config), else the in-cluster service account".
 *
 * Exit codes: 0 the run Succeeded (or was submitted, with --no-watch); 1 it Failed or Errored,
 * following timed out, or the platform could not be reached; 2 bad usage (an unknown --set
 * key lists the allowed ones).
 */
import { execFile, spawnSync } from "node:child_process";
import { promises as fs, readFileSync, existsSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as YAML from "yaml";
import { PIPELINE_OUTPUTS, PIPELINE_TEMPLATES, type EvaluationOutput, type PublishedOutput, type SweepTrialOutput } from "../trainer/src/pipeline/steps";

const ROOT = path.resolve(__dirname, "..");

/** Subcommand → WorkflowTemplate name (the names the templates are deployed under). */
export const TEMPLATES = {
  pipeline: PIPELINE_TEMPLATES.mnist,
  retrain: PIPELINE_TEMPLATES.retrain,
  sweep: PIPELINE_TEMPLATES.sweep,
} as const;
export type Kind = keyof typeof TEMPLATES;

const ARGO = "/apis/argoproj.io/v1alpha1";
const TERMINAL = new Set(["Succeeded", "Failed", "Error"]);

/** Bad command line. Exit code 2. */
export class UsageError extends Error {}
/** The platform could not be read or reached, or the run failed. Exit code 1. */
export class SubmitError extends Error {}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

export interface Options {
  readonly kind: Kind;
  readonly stack: string;
  readonly outputsFile?: string;
  readonly set: ReadonlyArray<readonly [string, string]>;
  readonly watch: boolean;
  readonly attach?: string;
  readonly timeoutMs?: number;
  readonly pollMs: number;
  readonly context?: string;
}

export function parseOptions(argv: string[]): Options | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        stack: { type: "string" },
        "outputs-file": { type: "string" },
        set: { type: "string", multiple: true },
        watch: { type: "boolean" },
        "no-watch": { type: "boolean" },
        attach: { type: "string" },
        timeout: { type: "string" },
        "poll-interval": { type: "string" },
        context: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const [kind, ...extra] = parsed.positionals;
  if (!kind) throw new UsageError(`say what to run: ${Object.keys(TEMPLATES).join(", ")} (see --help)`);
  if (!(kind in TEMPLATES)) throw new UsageError(`unknown run kind ${JSON.stringify(kind)}; one of ${Object.keys(TEMPLATES).join(", ")}`);
  if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])} (parameters go in --set KEY=VALUE)`);
  if (v.watch && v["no-watch"]) throw new UsageError("give --watch or --no-watch, not both");
  if (v.attach && v.set?.length) throw new UsageError("--attach follows an existing run; --set only applies when submitting one");
  if (v.attach && v["no-watch"]) throw new UsageError("--attach is for following a run; it makes no sense with --no-watch");
  const seconds = (flag: string, raw: string | undefined, min: number) => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || n < min) throw new UsageError(`--${flag} must be a number of seconds ≥ ${min}; got ${JSON.stringify(raw)}`);
    return n * 1000;
  };
  const set: [string, string][] = [];
  for (const kv of v.set ?? []) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new UsageError(`--set takes KEY=VALUE; got ${JSON.stringify(kv)}`);
    const key = kv.slice(0, i);
    if (set.some(([k]) => k === key)) throw new UsageError(`--set ${key} given twice`);
    set.push([key, kv.slice(i + 1)]);
  }
  return {
    kind: kind as Kind,
    stack: v.stack ?? "dev",
    outputsFile: v["outputs-file"],
    set,
    watch: !v["no-watch"],
    attach: v.attach,
    timeoutMs: seconds("timeout", v.timeout, 0.001),
    pollMs: seconds("poll-interval", v["poll-interval"], 0.05) ?? 2000,
    context: v.context,
  };
}

// ---------------------------------------------------------------------------------------
// Stack outputs
// ---------------------------------------------------------------------------------------

/** The stack outputs this script uses. */
export interface PlatformOutputs {
  readonly kubeconfig: string;
  readonly pipelinesNamespace: string;
  readonly pipelineServiceAccount: string;
  readonly tensorboardUrl?: string;
  readonly servingGrpcEndpoint?: string;
  readonly servingRestUrl?: string;
}

/** Checks the outputs document (from pulumi or a file); `where` names it in errors. */
export function checkOutputs(doc: unknown, where: string): PlatformOutputs {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new SubmitError(`${where}: expected a JSON object of stack outputs`);
  const o = doc as Record<string, unknown>;
  const str = (k: string, required: boolean): string | undefined => {
    const val = o[k];
    if (val === undefined || val === null) {
      if (required) throw new SubmitError(`${where}: output ${k} is missing (is this the platform stack, deployed with a current version?)`);
      return undefined;
    }
    if (typeof val !== "string") {
      // `pulumi stack output --json` without --show-secrets prints "[secret]".
      throw new SubmitError(`${where}: output ${k} must be a string; got ${JSON.stringify(val).slice(0, 60)}`);
    }
    return val;
  };
  const kubeconfig = str("kubeconfig", true)!;
  if (kubeconfig === "[secret]") throw new SubmitError(`${where}: kubeconfig is "[secret]": the outputs were read without --show-secrets`);
  const pipelinesNamespace = str("pipelinesNamespace", true)!;
  if (!pipelinesNamespace) throw new SubmitError(`${where}: pipelinesNamespace is empty`);
  const pipelineServiceAccount = str("pipelineServiceAccount", true)!;
  if (!pipelineServiceAccount) {
    throw new SubmitError(`${where}: pipelineServiceAccount is empty: Argo Workflows is disabled on this stack (enable it in the stack's config and pulumi up)`);
  }
  return {
    kubeconfig,
    pipelinesNamespace,
    pipelineServiceAccount,
    tensorboardUrl: str("tensorboardUrl", false) || undefined,
    servingGrpcEndpoint: str("servingGrpcEndpoint", false) || undefined,
    servingRestUrl: str("servingRestUrl", false) || undefined,
  };
}

/**
 * The stack outputs as parsed JSON, from `file` or from
 * `pulumi stack output --json --show-secrets -s <stack>`; `where` names the source in errors.
 */
export async function readOutputsDocument(opts: { stack: string; outputsFile?: string }): Promise<{ doc: unknown; where: string }> {
  if (opts.outputsFile) {
    const where = `--outputs-file ${opts.outputsFile}`;
    let text: string;
    try {
      text = await fs.readFile(opts.outputsFile, "utf8");
    } catch (e) {
      throw new SubmitError(`${where}: ${(e as Error).message}`);
    }
    try {
      return { doc: JSON.parse(text), where };
    } catch (e) {
      throw new SubmitError(`${where}: not JSON: ${(e as Error).message}`);
    }
  }
  const args = ["stack", "output", "--json", "--show-secrets", "-s", opts.stack];
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("pulumi", args, { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "1" } }, (err, out, errOut) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        return reject(new SubmitError("the pulumi CLI is not on PATH: install it, or pass the stack outputs with --outputs-file FILE"));
      }
      const why = String(errOut).trim().split("\n").filter(Boolean).slice(-2).join(" / ") || err.message;
      reject(new SubmitError(`pulumi ${args.join(" ")} failed: ${why}`));
    });
  });
  try {
    return { doc: JSON.parse(stdout), where: `stack ${opts.stack}` };
  } catch {
    throw new SubmitError(`pulumi ${args.join(" ")} printed something that is not JSON: ${stdout.slice(0, 200)}`);
  }
}

/** Reads and checks the outputs from `file`, or from `pulumi stack output --json --show-secrets -s <stack>`. */
export async function readOutputs(opts: { stack: string; outputsFile?: string }): Promise<PlatformOutputs> {
  const { doc, where } = await readOutputsDocument(opts);
  return checkOutputs(doc, where);
}

// ---------------------------------------------------------------------------------------
// Kubernetes API client
// ---------------------------------------------------------------------------------------

/** Connection details for one API server. */
export interface KubeTarget {
  readonly server: URL;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly token?: string;
  readonly insecure?: boolean;
  /** Where the settings came from, for messages. */
  readonly source: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Runs a kubeconfig `exec` credential plugin (GKE's gke-gcloud-auth-plugin, kubelogin, …). */
function execCredential(
  exec: { command: string; args?: string[]; env?: { name: string; value: string }[] | null },
  where: string,
): { token?: string; cert?: Buffer; key?: Buffer } {
  const env = { ...process.env };
  for (const e of exec.env ?? []) env[e.name] = e.value;
  const r = spawnSync(exec.command, exec.args ?? [], { env, encoding: "utf8", timeout: 60_000 });
  if (r.error || r.status !== 0) {
    const why =
      (r.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT" ? "not found on PATH" : (r.stderr || String(r.error ?? `exit ${r.status}`)).trim().split("\n").pop();
    throw new SubmitError(`${where}: the credential plugin ${exec.command} failed: ${why}`);
  }
  let status: { token?: string; clientCertificateData?: string; clientKeyData?: string } | undefined;
  try {
    status = (JSON.parse(r.stdout) as { status?: typeof status }).status;
  } catch {
    throw new SubmitError(`${where}: the credential plugin ${exec.command} did not print an ExecCredential`);
  }
  return {
    token: status?.token,
    cert: status?.clientCertificateData ? Buffer.from(status.clientCertificateData) : undefined,
    key: status?.clientKeyData ? Buffer.from(status.clientKeyData) : undefined,
  };
}

/**
 * API server, CA and credentials from a kubeconfig (YAML or JSON text): token, token file,
 * client certificate (data or files) or exec plugin. `baseDir` resolves relative file paths.
 */
export function kubeTargetFromConfig(text: string, where: string, context?: string, baseDir = process.cwd()): KubeTarget {
  let kc: any;
  try {
    kc = YAML.parse(text);
  } catch (e) {
    throw new SubmitError(`${where}: the kubeconfig is not YAML: ${(e as Error).message}`);
  }
  const ctxName = context ?? kc?.["current-context"];
  const ctx = (kc?.contexts ?? []).find((c: any) => c.name === ctxName)?.context;
  if (!ctx) {
    const names = (kc?.contexts ?? []).map((c: any) => c.name).join(", ") || "none";
    throw new SubmitError(`${where}: kubeconfig has no context ${JSON.stringify(ctxName ?? "")} (contexts: ${names})`);
  }
  const cluster = (kc.clusters ?? []).find((c: any) => c.name === ctx.cluster)?.cluster;
  if (!cluster?.server) throw new SubmitError(`${where}: kubeconfig context ${ctxName} names cluster ${ctx.cluster}, which has no server`);
  const user = (kc.users ?? []).find((u: any) => u.name === ctx.user)?.user ?? {};
  const file = (p?: string) => (p ? readFileSync(path.resolve(baseDir, p)) : undefined);
  const b64 = (s?: string) => (s ? Buffer.from(s, "base64") : undefined);
  let token: string | undefined = user.token ?? (user.tokenFile ? file(user.tokenFile)!.toString("utf8").trim() : undefined);
  let cert: Buffer | undefined = b64(user["client-certificate-data"]) ?? file(user["client-certificate"]);
  let key: Buffer | undefined = b64(user["client-key-data"]) ?? file(user["client-key"]);
  if (!token && !cert && user.exec) {
    const got = execCredential(user.exec, where);
    ({ token, cert, key } = { token: got.token, cert: got.cert ?? cert, key: got.key ?? key });
  }
  return {
    server: new URL(cluster.server),
    ca: b64(cluster["certificate-authority-data"]) ?? file(cluster["certificate-authority"]),
    cert,
    key,
    token,
    insecure: cluster["insecure-skip-tls-verify"] === true,
    source: `${where} (context ${ctxName})`,
  };
}

/** The target for an output kubeconfig; empty means $KUBECONFIG / ~/.kube/config / in-cluster. */
export function resolveKubeTarget(kubeconfig: string, context?: string): KubeTarget {
  if (kubeconfig.trim()) return kubeTargetFromConfig(kubeconfig, "the stack's kubeconfig output", context);
  const file = (process.env.KUBECONFIG ?? "").split(path.delimiter).find(Boolean) ?? path.join(os.homedir(), ".kube", "config");
  if (existsSync(file)) return kubeTargetFromConfig(readFileSync(file, "utf8"), file, context, path.dirname(file));
  const host = process.env.KUBERNETES_SERVICE_HOST;
  if (host && existsSync(path.join(SA_DIR, "token"))) {
    return {
      server: new URL(`https://${host.includes(":") ? `[${host}]` : host}:${process.env.KUBERNETES_SERVICE_PORT ?? "443"}`),
      ca: readFileSync(path.join(SA_DIR, "ca.crt")),
      token: readFileSync(path.join(SA_DIR, "token"), "utf8").trim(),
      source: "the in-cluster service account",
    };
  }
  throw new SubmitError(`the stack's kubeconfig output is empty and there is no ${file} and no in-cluster service account`);
}

export interface KubeResponse {
  readonly status: number;
  readonly body: any;
}

/** A small Kubernetes API client: JSON over HTTPS with the target's CA and credentials. */
export class KubeClient {
  private readonly agent: http.Agent;

  constructor(readonly target: KubeTarget) {
    this.agent =
      target.server.protocol === "https:"
        ? new https.Agent({ ca: target.ca, cert: target.cert, key: target.key, rejectUnauthorized: !target.insecure, keepAlive: true })
        : new http.Agent({ keepAlive: true });
  }

  /** Sends a request; resolves to the status and parsed body. Network errors name the server. */
  request(method: string, apiPath: string, body?: unknown, contentType = "application/json"): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const url = new URL(apiPath, this.target.server);
    const lib = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method,
          agent: this.agent,
          timeout: 15_000,
          headers: {
            Accept: "application/json",
            ...(this.target.token ? { Authorization: `Bearer ${this.target.token}` } : {}),
            ...(payload ? { "Content-Type": contentType, "Content-Length": payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
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
      req.on("timeout", () => req.destroy(new Error("no answer within 15 s")));
      req.on("error", (e) =>
        reject(
          new SubmitError(
            `cannot reach the Kubernetes API at ${this.target.server.origin} (from ${this.target.source}): ${(e as NodeJS.ErrnoException).code ?? ""} ${e.message}`.replace(
              / {2,}/g,
              " ",
            ),
          ),
        ),
      );
      req.end(payload);
    });
  }

  /** GET; undefined on 404; other statuses are errors saying what was asked. */
  async get(apiPath: string): Promise<any> {
    const r = await this.request("GET", apiPath);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new SubmitError(`GET ${apiPath}: ${describeStatus(r)}`);
    return r.body;
  }

  close(): void {
    this.agent.destroy();
  }
}

function describeStatus(r: KubeResponse): string {
  const msg = typeof r.body === "object" && r.body?.message ? r.body.message : String(r.body).slice(0, 200);
  if (r.status === 401) return `401 Unauthorized: the credentials were refused (${msg})`;
  if (r.status === 403) return `403 Forbidden: ${msg}`;
  return `${r.status}: ${msg}`;
}

// ---------------------------------------------------------------------------------------
// Templates and workflows
// ---------------------------------------------------------------------------------------

export interface TemplateParameter {
  readonly name: string;
  readonly value?: string;
  readonly enum?: string[];
  readonly description?: string;
}

/** The parameters a WorkflowTemplate declares (`spec.arguments.parameters`). */
export function templateParameters(template: any): TemplateParameter[] {
  return ((template?.spec?.arguments?.parameters ?? []) as any[]).map((p) => ({
    name: String(p.name),
    value: p.value === undefined || p.value === null ? undefined : String(p.value),
    enum: Array.isArray(p.enum) ? p.enum.map(String) : undefined,
    description: p.description,
  }));
}

/**
 * Checks `set` against the template's parameters: unknown keys (listing the allowed ones),
 * values outside an `enum`, parameters without a default that were not given.
 */
export function checkParameters(templateName: string, params: readonly TemplateParameter[], set: ReadonlyArray<readonly [string, string]>): { name: string; value: string }[] {
  const byName = new Map(params.map((p) => [p.name, p]));
  const allowed = params.map((p) => (p.value === undefined ? p.name : `${p.name} (default ${JSON.stringify(p.value)})`)).join(", ") || "none";
  for (const [k, v] of set) {
    const p = byName.get(k);
    if (!p) throw new UsageError(`unknown parameter ${JSON.stringify(k)} for WorkflowTemplate ${templateName}; allowed: ${allowed}`);
    if (p.enum && !p.enum.includes(v)) throw new UsageError(`--set ${k} must be one of ${p.enum.join(", ")}; got ${JSON.stringify(v)}`);
  }
  const missing = params.filter((p) => p.value === undefined && !set.some(([k]) => k === p.name)).map((p) => p.name);
  if (missing.length) throw new UsageError(`WorkflowTemplate ${templateName} needs ${missing.map((m) => `--set ${m}=…`).join(" ")} (no default)`);
  return set.map(([name, value]) => ({ name, value }));
}

/** The Workflow that runs `templateName` with `parameters` as the pipeline service account. */
export function workflowManifest(o: { templateName: string; namespace: string; serviceAccountName: string; parameters: { name: string; value: string }[] }): Record<string, any> {
  let user = "unknown";
  try {
    user = os.userInfo().username;
  } catch {
    /* no passwd entry */
  }
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: {
      generateName: `${o.templateName}-`,
      namespace: o.namespace,
      labels: { "workflows.argoproj.io/workflow-template": o.templateName, "app.kubernetes.io/managed-by": "mlplatform-submit" },
      annotations: { "mlplatform.dev/submitted-by": `${user}@${os.hostname()}` },
    },
    spec: {
      workflowTemplateRef: { name: o.templateName },
      serviceAccountName: o.serviceAccountName,
      ...(o.parameters.length ? { arguments: { parameters: o.parameters } } : {}),
    },
  };
}

/** Argo node types that are structure, not work. */
const STRUCTURAL = new Set(["DAG", "Steps", "StepGroup", "TaskGroup", "Retry"]);

interface NodeView {
  readonly id: string;
  readonly name: string;
  readonly type: string;
  readonly phase: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly message?: string;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A node's name as shown: its display name, under its fan-out item when it has one, so the
 * sweep's trials read `trial(0)/train(0)` and `trial(1)/train(0)` rather than twice `train(0)`.
 */
function nodeName(nodes: Record<string, any>, id: string): string {
  const n = nodes[id];
  const own = String(n?.displayName ?? n?.name ?? id);
  const item = /^([\w-]+)\((\d+):/.exec(String(nodes[n?.boundaryID]?.displayName ?? ""));
  return item ? `${item[1]}(${item[2]})/${own}` : own;
}

function nodesOf(wf: any): NodeView[] {
  const all = (wf?.status?.nodes ?? {}) as Record<string, any>;
  return (
    Object.entries(all)
      .map(([id, n]) => ({
        id,
        name: nodeName(all, id),
        type: String(n.type ?? ""),
        phase: String(n.phase ?? "Pending"),
        startedAt: n.startedAt ?? undefined,
        finishedAt: n.finishedAt ?? undefined,
        message: n.message ?? undefined,
      }))
      .filter((n) => !STRUCTURAL.has(n.type) && n.id !== wf?.metadata?.name)
      // By start time (nodes that never started last), then name; plain code-unit order, not locale.
      .sort((a, b) => cmp(a.startedAt ?? "~", b.startedAt ?? "~") || cmp(a.name, b.name))
  );
}

function duration(from?: string, to?: string): string {
  if (!from) return "";
  const ms = (to ? Date.parse(to) : Date.now()) - Date.parse(from);
  if (!Number.isFinite(ms) || ms < 0) return "";
  const s = Math.round(ms / 1000);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
      : `${s}s`;
}

/**
 * Output parameters of the run: every node's (later nodes win), then the workflow's. A name
 * that fanned-out nodes gave different values (each sweep trial's `result`) is left out: no
 * one of them is the run's.
 */
export function outputParameters(wf: any): Map<string, string> {
  const out = new Map<string, string>();
  const seen = new Map<string, Set<string>>();
  const nodes = Object.values((wf?.status?.nodes ?? {}) as Record<string, any>).sort((a, b) => cmp(String(a.finishedAt ?? ""), String(b.finishedAt ?? "")));
  for (const n of nodes) {
    for (const p of n?.outputs?.parameters ?? []) {
      if (p?.value === undefined) continue;
      out.set(String(p.name), String(p.value));
      seen.set(String(p.name), (seen.get(String(p.name)) ?? new Set()).add(String(p.value)));
    }
  }
  for (const [name, values] of seen) if (values.size > 1) out.delete(name);
  for (const p of wf?.status?.outputs?.parameters ?? []) if (p?.value !== undefined) out.set(String(p.name), String(p.value));
  return out;
}

/**
 * What the summary says, from the outputs the templates declare (PIPELINE_OUTPUTS): the
 * evaluation (accuracy against the gate), the published version, and a sweep's best trial.
 * Any other output parameter is listed as it is.
 */
export function interpretOutputs(params: Map<string, string>): {
  accuracy?: number;
  gate?: number;
  passed?: boolean;
  version?: number;
  uri?: string;
  best?: SweepTrialOutput;
  other: [string, string][];
} {
  const json = <T>(k: string): Partial<T> | undefined => {
    const v = params.get(k);
    if (v === undefined) return undefined;
    try {
      const d = JSON.parse(v);
      return typeof d === "object" && d !== null && !Array.isArray(d) ? d : undefined;
    } catch {
      return undefined;
    }
  };
  const n = (v: unknown) => (v === undefined || v === null || v === "" || !Number.isFinite(Number(v)) ? undefined : Number(v));
  const evaluation = json<EvaluationOutput>(PIPELINE_OUTPUTS.evaluation);
  const published = json<PublishedOutput>(PIPELINE_OUTPUTS.published);
  const best = json<SweepTrialOutput>(PIPELINE_OUTPUTS.best);
  const used = new Set<string>();
  if (evaluation) used.add(PIPELINE_OUTPUTS.evaluation);
  if (published) used.add(PIPELINE_OUTPUTS.published);
  if (best) used.add(PIPELINE_OUTPUTS.best);
  return {
    accuracy: n(evaluation?.accuracy),
    gate: n(evaluation?.gate),
    passed: typeof evaluation?.passed === "boolean" ? evaluation.passed : undefined,
    version: n(published?.version),
    uri: typeof published?.uri === "string" ? published.uri : undefined,
    best: best && best.trial !== undefined ? (best as SweepTrialOutput) : undefined,
    other: [...params].filter(([k]) => !used.has(k)),
  };
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

const stamp = () => new Date().toISOString().slice(11, 19);

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** Follows a workflow until it ends (or the timeout); prints phase changes; resolves to the final object. */
export async function follow(kube: KubeClient, namespace: string, name: string, opts: { pollMs: number; timeoutMs?: number; io: Io }): Promise<{ wf: any; timedOut: boolean }> {
  const { io } = opts;
  const wfPath = `${ARGO}/namespaces/${namespace}/workflows/${name}`;
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  const seen = new Map<string, string>();
  let phase: string | undefined;
  let failures = 0;
  let wf: any;
  for (;;) {
    try {
      wf = await kube.get(wfPath);
      failures = 0;
    } catch (e) {
      // The API server may blip (upgrades, a proxy): a few misses in a row are tolerated.
      if (++failures >= 5) throw e;
      io.err(`${stamp()}  ${(e as Error).message}; retrying`);
      wf = undefined;
    }
    if (wf === undefined && failures === 0) throw new SubmitError(`workflow ${name} no longer exists in namespace ${namespace} (deleted?)`);
    if (wf) {
      const now = wf.status?.phase ?? "Pending";
      if (now !== phase) {
        io.out(`${stamp()}  workflow ${name}: ${now}${wf.status?.progress ? ` (${wf.status.progress})` : ""}`);
        phase = now;
      }
      for (const n of nodesOf(wf)) {
        if (seen.get(n.id) === n.phase) continue;
        seen.set(n.id, n.phase);
        const took = TERMINAL.has(n.phase) || n.phase === "Skipped" || n.phase === "Omitted" ? duration(n.startedAt, n.finishedAt) : "";
        io.out(`${stamp()}  ${n.name.padEnd(24)} ${n.phase}${took ? ` (${took})` : ""}${n.message && n.phase !== "Succeeded" ? `: ${n.message}` : ""}`);
      }
      if (TERMINAL.has(now)) return { wf, timedOut: false };
    }
    if (Date.now() >= deadline) return { wf, timedOut: true };
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs, Math.max(0, deadline - Date.now()))));
  }
}

/** The closing lines: phase, outputs, where to look. */
export function summary(wf: any, outputs: PlatformOutputs): string[] {
  const phase = wf?.status?.phase ?? "Pending";
  const name = wf?.metadata?.name;
  const lines = [
    `phase:       ${phase}${wf?.status?.startedAt ? ` after ${duration(wf.status.startedAt, wf.status.finishedAt)}` : ""}${wf?.status?.message && phase !== "Succeeded" ? `: ${wf.status.message}` : ""}`,
  ];
  if (phase === "Failed" || phase === "Error") {
    for (const n of nodesOf(wf).filter((n) => n.phase === "Failed" || n.phase === "Error")) lines.push(`  failed:    ${n.name}${n.message ? `: ${n.message}` : ""}`);
  }
  const o = interpretOutputs(outputParameters(wf));
  if (o.accuracy !== undefined) {
    const gate = o.gate === undefined ? "" : ` (gate ${o.gate}${o.passed === undefined ? "" : o.passed ? ", passed" : ", NOT passed"})`;
    lines.push(`accuracy:    ${o.accuracy}${gate}`);
    if (o.passed === false) lines.push(`             accuracy ${o.accuracy} is below the gate ${o.gate}: nothing was published`);
  }
  if (o.best) {
    const acc = o.best.metrics?.validationAccuracy;
    lines.push(
      `best trial:  ${o.best.trial} (learning rate ${o.best.lr}, hidden units ${o.best.hu}, batch size ${o.best.bs})` +
        `${typeof acc === "number" ? `, validation accuracy ${acc.toFixed(4)}` : ""}${o.best.run ? `; TensorBoard run ${o.best.run}` : ""}`,
    );
  }
  if (o.version !== undefined) lines.push(`published:   version ${o.version}${o.uri ? ` (${o.uri})` : ""}`);
  for (const [k, v] of o.other) lines.push(`output:      ${k} = ${v.length > 200 ? `${v.slice(0, 200)}…` : v}`);
  lines.push(`TensorBoard: ${outputs.tensorboardUrl ?? "(not enabled on this stack)"}${outputs.tensorboardUrl && name ? ` (this run's logs: logs/${name})` : ""}`);
  if (outputs.servingGrpcEndpoint || outputs.servingRestUrl) {
    lines.push(
      `serving:     ${[outputs.servingGrpcEndpoint && `gRPC ${outputs.servingGrpcEndpoint}`, outputs.servingRestUrl && `REST ${outputs.servingRestUrl}`].filter(Boolean).join(", ")}`,
    );
  } else {
    lines.push("serving:     (no serving endpoint output on this stack)");
  }
  return lines;
}

/** Runs the command; resolves to the exit code. */
export async function run(argv: string[], io: Io = consoleIo): Promise<number> {
  let opts: Options | "help";
  try {
    opts = parseOptions(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`submit: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (opts === "help") {
    const text = await fs.readFile(__filename, "utf8");
    io.out(
      (/\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? "")
        .split("\n")
        .map((l) => l.replace(/^ \* ?/, ""))
        .join("\n")
        .trim(),
    );
    io.out(
      `\nWorkflowTemplates: ${Object.entries(TEMPLATES)
        .map(([kind, name]) => `${kind} → ${name}`)
        .join(", ")}`,
    );
    return 0;
  }
  let kube: KubeClient | undefined;
  try {
    const outputs = await readOutputs(opts);
    kube = new KubeClient(resolveKubeTarget(outputs.kubeconfig, opts.context));
    const ns = outputs.pipelinesNamespace;
    const templateName = TEMPLATES[opts.kind];
    let name = opts.attach;
    if (!name) {
      const template = await kube.get(`${ARGO}/namespaces/${ns}/workflowtemplates/${templateName}`);
      if (!template) {
        throw new SubmitError(
          `WorkflowTemplate ${templateName} not found in namespace ${ns} (at ${kube.target.server.origin}); is the training pipeline deployed on stack ${opts.stack}?`,
        );
      }
      const parameters = checkParameters(templateName, templateParameters(template), opts.set);
      const manifest = workflowManifest({ templateName, namespace: ns, serviceAccountName: outputs.pipelineServiceAccount, parameters });
      const r = await kube.request("POST", `${ARGO}/namespaces/${ns}/workflows`, manifest);
      if (r.status !== 201) throw new SubmitError(`creating a Workflow in ${ns}: ${describeStatus(r)}`);
      name = String(r.body.metadata.name);
      const shown = parameters.map((p) => `${p.name}=${p.value}`).join(", ");
      io.out(`submitted workflow ${name} (template ${templateName}) in namespace ${ns}${shown ? ` with ${shown}` : ""}`);
      if (outputs.tensorboardUrl) io.out(`TensorBoard: ${outputs.tensorboardUrl} (this run's logs: logs/${name})`);
      if (!opts.watch) {
        io.out(`follow it with: npm run submit -- ${opts.kind} --stack ${opts.stack} --attach ${name}`);
        return 0;
      }
    } else {
      io.out(`following workflow ${name} in namespace ${ns}`);
    }
    const { wf, timedOut } = await follow(kube, ns, name, { pollMs: opts.pollMs, timeoutMs: opts.timeoutMs, io });
    if (timedOut) {
      io.out(`gave up after ${opts.timeoutMs! / 1000} s: workflow ${name} is still ${wf?.status?.phase ?? "Pending"} (it goes on in the cluster; follow it with --attach ${name})`);
      return 1;
    }
    io.out("");
    for (const l of summary(wf, outputs)) io.out(l);
    return wf.status.phase === "Succeeded" ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`submit: ${e.message}`);
      return 2;
    }
    if (e instanceof SubmitError) {
      io.err(`submit: ${e.message}`);
      return 1;
    }
    io.err(`submit: unexpected error: ${(e as Error)?.stack ?? String(e)}`);
    return 1;
  } finally {
    kube?.close();
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`submit: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
