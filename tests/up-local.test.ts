/**
 * The README's first command, scripts/up-local.sh, decides where the platform goes: a
 * kubeconfig context when there is one (as `pulumi up` on the dev stack), else the local node.
 * The script itself runs here: its dry run for every way of choosing, and a real run on a
 * context with `npm` and `pulumi` replaced by recorders on PATH (the cluster behind a context
 * is the one part this machine cannot have).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..");
const SCRIPT = path.join(ROOT, "scripts", "up-local.sh");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-up-local-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function upLocal(args: string[], env: Record<string, string | undefined>): { code: number; out: string; err: string } {
  const base: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: path.join(tmp, "home") };
  const merged = { ...base, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const r = spawnSync("bash", [SCRIPT, ...args], { env: merged as NodeJS.ProcessEnv, encoding: "utf8" });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function kubeconfig(name: string, context: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, `apiVersion: v1\nkind: Config\ncurrent-context: "${context}"\ncontexts: []\nclusters: []\nusers: []\n`);
  return f;
}

describe("scripts/up-local.sh: where the platform goes", () => {
  it("no kubeconfig: the local node", () => {
    const r = upLocal(["--dry-run"], { KUBECONFIG: undefined });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe("up-local.sh: no kubeconfig context; starting a local node (containerd, runc, kubelet) and deploying the dev stack onto it\n");
  });

  it("a current context: the dev stack there, pointed at that context when it is not the stack's own", () => {
    const r = upLocal(["--dry-run"], { KUBECONFIG: `${path.join(tmp, "absent")}:${kubeconfig("kc-minikube", "minikube")}` });
    expect(r.code, r.err).toBe(0);
    expect(r.out.split("\n")).toEqual([
      'up-local.sh: deploying the dev stack to kubeconfig context "minikube" (scripts/up-local.sh --local for a node on this machine instead)',
      "  pulumi stack select --create dev",
      "  pulumi config set --path mlplatform:cluster.context minikube",
      "  pulumi up",
      "",
    ]);
  });

  it("the stack's own context (kind-mlplatform in Pulumi.dev.yaml) changes no config; --yes deploys without asking", () => {
    const r = upLocal(["--dry-run", "--yes"], { KUBECONFIG: kubeconfig("kc-kind", "kind-mlplatform") });
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toContain("config set");
    expect(r.out).toContain("  pulumi up --yes\n");
  });

  it("--local wins over a context; --context picks one; bad arguments are refused with exit 2", () => {
    const kc = kubeconfig("kc-other", "minikube");
    expect(upLocal(["--dry-run", "--local"], { KUBECONFIG: kc }).out).toContain("starting a local node");
    expect(upLocal(["--dry-run", "--context", "gke_p_z_c"], { KUBECONFIG: kc }).out).toContain('context "gke_p_z_c"');
    const missing = upLocal(["--context"], {});
    expect(missing.code).toBe(2);
    expect(missing.err).toBe("up-local.sh: --context needs a context name\n");
    const unknown = upLocal(["--cluster", "x"], {});
    expect(unknown.code).toBe(2);
    expect(unknown.err).toBe("up-local.sh: unknown argument --cluster (see --help)\n");
  });

  it("a real run on a context installs the packages, then selects the stack, sets the context and runs pulumi up, in that order", () => {
    const bin = path.join(tmp, "bin");
    const calls = path.join(tmp, "calls.log");
    fs.mkdirSync(bin, { recursive: true });
    for (const tool of ["npm", "pulumi"]) {
      fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> "${calls}"\n`, { mode: 0o755 });
    }
    const r = upLocal(["--yes"], { KUBECONFIG: kubeconfig("kc-run", "minikube"), PATH: `${bin}:${process.env.PATH}` });
    expect(r.code, r.err).toBe(0);
    expect(fs.readFileSync(calls, "utf8").trim().split("\n")).toEqual([
      "npm ci --no-audit --no-fund",
      "pulumi stack select --create dev",
      "pulumi config set --path mlplatform:cluster.context minikube",
      "pulumi up --yes",
    ]);
    expect(r.out).toContain('The platform runs in context "minikube"');
  });

  it("a failing step stops the run with its exit code", () => {
    const bin = path.join(tmp, "bin-fail");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "npm"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "pulumi"), '#!/bin/sh\n[ "$1" = up ] && exit 7\nexit 0\n', { mode: 0o755 });
    const r = upLocal(["--yes"], { KUBECONFIG: kubeconfig("kc-fail", "minikube"), PATH: `${bin}:${process.env.PATH}` });
    expect(r.code).toBe(7);
    expect(r.out).not.toContain("The platform runs");
  });
});
