/**
 * The policy pack (policy/) in the real engine: `pulumi preview --policy-pack` with the
 * Go-built CLI and Kubernetes provider against a local kube-apiserver. The dev stack passes; a
 * program built to break every policy (tests/policy/fixtures/violating) is refused, each
 * object named with its policy.
 *
 * How the pack runs. CLI 3.248 starts a Node.js policy pack through the nodejs language host's
 * RunPlugin whenever that language plugin exists. The host built here (v3.68, the last one the
 * module proxy serves, scripts/tools/README.md) answers RunPlugin with "not supported", so the
 * committed pack fails to start:
 *   policy pack "<dir>" failed to start: could not read plugin [<dir>]: not supported
 * The CLI's other route is for runtimes without a language plugin: it runs
 * `pulumi-analyzer-policy-<runtime>` from PATH with the engine's address, in the pack's
 * directory. So when the committed pack fails that way, the test runs a copy of it whose
 * PulumiPolicy.yaml names a runtime without a language plugin, and puts a two-line
 * `pulumi-analyzer-policy-<runtime>` on PATH that runs @pulumi/pulumi's run-policy-pack (what
 * the language host would run). The policies, their TypeScript and @pulumi/policy are the
 * same; only the way the CLI starts the pack differs. With a newer language host the committed
 * pack is used as it is.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PulumiCli, ROOT, copyProject, missingTools, startLocal, stopLocal, useOfflineDevStack, type CliResult, TFJOB_CRD_TOOL } from "./support";

const REQUIRED = ["pulumi", "pulumi-language-nodejs", "pulumi-resource-kubernetes", "etcd", "kube-apiserver", TFJOB_CRD_TOOL];
const missing = missingTools(REQUIRED);
if (missing.length > 0) {
  console.log(`SKIPPED policy-pack tests: missing ${missing.join(", ")} (build them with scripts/tools/build.sh)`);
}

const POLICY_DIR = path.join(ROOT, "policy");
const FIXTURE_DIR = path.join(ROOT, "tests", "policy", "fixtures", "violating");
const PACK = "mlplatform-security@v0.1.0";
/** Runtime name for the copy started through `pulumi-analyzer-policy-<runtime>` (no language plugin has it). */
const ANALYZER_RUNTIME = "nodejs-offline";
const START_FAILURE = /policy pack "[^"]*" failed to start: .*/;

/** `[level] policy (type: name)` for every policy violation the CLI printed. */
function violations(out: string): string[] {
  const found: string[] = [];
  for (const m of out.matchAll(/^\s+- \[(mandatory|advisory)\](?: \[severity: \w+\])?\s+(\S+)\s+\((\S+): (.+)\)$/gm)) {
    found.push(`[${m[1]}] ${m[2]} (${m[3]}: ${m[4]})`);
  }
  return found.sort();
}

const output = (r: CliResult) => `${r.stdout}\n${r.stderr}`;

describe.skipIf(missing.length > 0)("the policy pack in the real engine", () => {
  let work: string;
  let cli: PulumiCli;
  let platformDir: string;
  let fixtureDir: string;
  let kubeconfigPath: string;
  /** The pack directory the CLI can start here (the committed one, or its analyzer-route copy). */
  let packDir: string;

  /** A copy of the pack started through `pulumi-analyzer-policy-<runtime>` on PATH. */
  function analyzerRouteCopy(): string {
    const dir = path.join(work, "policy-pack");
    fs.cpSync(POLICY_DIR, dir, { recursive: true, filter: (src) => path.basename(src) !== "node_modules" });
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
    const file = path.join(dir, "PulumiPolicy.yaml");
    const project = YAML.parse(fs.readFileSync(file, "utf8"));
    expect(project.runtime).toBe("nodejs");
    fs.writeFileSync(file, YAML.stringify({ ...project, runtime: ANALYZER_RUNTIME }));
    const bin = path.join(work, "bin");
    fs.mkdirSync(bin, { recursive: true });
    const runPolicyPack = path.join(ROOT, "node_modules", "@pulumi", "pulumi", "cmd", "run-policy-pack");
    fs.writeFileSync(path.join(bin, `pulumi-analyzer-policy-${ANALYZER_RUNTIME}`), `#!/bin/sh\nexec node "${runPolicyPack}" "$@"\n`, { mode: 0o755 });
    cli.env.PATH = `${bin}${path.delimiter}${cli.env.PATH}`;
    return dir;
  }

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-policy-"));
    kubeconfigPath = startLocal(path.join(work, "cluster"), "apiserver").KUBECONFIG!;
    cli = new PulumiCli(work);

    // The dev stack, pointed at the local API server, with what needs the internet switched off
    // as in engine.test.ts: no Helm charts (and so no Argo pipelines); the Training Operator
    // from our stand-in CRDs.
    platformDir = copyProject(path.join(work, "platform"));
    useOfflineDevStack(platformDir, kubeconfigPath);
    cli.run(["stack", "init", "dev", "--secrets-provider", "passphrase"], { cwd: platformDir });

    fixtureDir = path.join(work, "violating");
    fs.cpSync(FIXTURE_DIR, fixtureDir, { recursive: true });
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(fixtureDir, "node_modules"));
    // Not `dev`: the dummy JupyterHub authenticator is refused here.
    cli.run(["stack", "init", "prod", "--secrets-provider", "passphrase"], { cwd: fixtureDir });
    cli.run(["config", "set", "kubeconfig", kubeconfigPath, "-s", "prod"], { cwd: fixtureDir });

    // Which way the CLI can start a Node.js pack here: try the committed pack first.
    const probe = cli.run(["preview", "-s", "prod", "--policy-pack", POLICY_DIR], { cwd: fixtureDir, allowFailure: true });
    const failure = START_FAILURE.exec(output(probe));
    if (failure) {
      console.log(
        `The committed pack cannot start here: "${failure[0]}" (the v3.68 nodejs language host does not ` +
          `implement RunPlugin). Running a copy through pulumi-analyzer-policy-${ANALYZER_RUNTIME} instead.`,
      );
      packDir = analyzerRouteCopy();
    } else {
      console.log("The committed pack starts through the nodejs language host.");
      packDir = POLICY_DIR;
    }
  });

  afterAll(() => {
    // What `up` created lives only in this run's API server, whose state is purged here.
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it("1. the dev stack passes every policy: pulumi up with the pack, then a preview with it", () => {
    // `up`, not a first preview: on a fresh stack the NFS Service's clusterIP is unknown during
    // preview, and the API server's dry run refuses the PersistentVolumes without a server
    // (independent of policies). Policies run on `up` as on preview, and block it when violated.
    // The local cluster's state is purged afterwards, so nothing needs destroying.
    const up = cli.run(["up", "--yes", "--skip-preview", "-s", "dev", "--policy-pack", packDir], { cwd: platformDir, allowFailure: true });
    expect(up.code, output(up).slice(-4000)).toBe(0);
    expect(up.stdout).toMatch(new RegExp(`✅ ${PACK.replace(/[.@]/g, "\\$&")}`));
    expect(violations(up.stdout)).toEqual([]);
    const preview = cli.run(["preview", "--expect-no-changes", "-s", "dev", "--policy-pack", packDir], { cwd: platformDir, allowFailure: true });
    expect(preview.code, output(preview).slice(-4000)).toBe(0);
    expect(violations(preview.stdout)).toEqual([]);
    expect(preview.stdout).not.toMatch(/can't run policy/);
  });

  it("2. the pack's configuration reaches the policies: without mlplatform-storage in the allow-list the NFS server is reported", () => {
    const config = path.join(work, "policy-config.json");
    fs.writeFileSync(
      config,
      JSON.stringify({ "no-privileged-outside-system-namespaces": { enforcementLevel: "advisory", allowedNamespaces: ["nvidia-device-plugin", "kube-system"] } }),
    );
    const r = cli.run(["preview", "-s", "dev", "--policy-pack", packDir, "--policy-pack-config", config], { cwd: platformDir, allowFailure: true });
    // Advisory: reported, and the preview still succeeds.
    expect(r.code, output(r).slice(-4000)).toBe(0);
    expect(violations(r.stdout)).toEqual([
      "[advisory] no-privileged-outside-system-namespaces (kubernetes:apps/v1:Deployment: shared-nfs)",
      "[advisory] no-privileged-outside-system-namespaces (kubernetes:core/v1:Namespace: shared-nfs)",
    ]);
    expect(r.stdout).toMatch(/containers\[0\] \("nfs"\) is privileged in namespace "mlplatform-storage" \(allowed: nvidia-device-plugin, kube-system\)/);
    expect(r.stdout).toMatch(/namespace "mlplatform-storage" is labelled pod-security.kubernetes.io\/enforce: privileged/);
  });

  it("3. a program that breaks every policy is refused, each object named with its policy", () => {
    const r = cli.run(["preview", "-s", "prod", "--policy-pack", packDir], { cwd: fixtureDir, allowFailure: true });
    expect(r.code).not.toBe(0);
    expect(violations(r.stdout)).toEqual(
      [
        "[mandatory] argo-server-auth-not-server-when-exposed (kubernetes:apps/v1:Deployment: argo-server-auth-exposed:default/argo-server-auth-exposed-server)",
        "[mandatory] containers-have-requests-and-limits (kubernetes:apps/v1:Deployment: latest-unbounded-privileged)",
        "[mandatory] credentials-only-as-secrets (kubernetes:apps/v1:Deployment: latest-unbounded-privileged)",
        "[mandatory] jupyterhub-not-dummy-outside-dev (kubernetes:core/v1:Secret: hub-dummy-auth:default/hub)",
        "[mandatory] no-latest-or-untagged-images (kubernetes:apps/v1:Deployment: latest-unbounded-privileged)",
        "[mandatory] no-privileged-outside-system-namespaces (kubernetes:apps/v1:Deployment: latest-unbounded-privileged)",
        "[mandatory] no-unapproved-load-balancer (kubernetes:core/v1:Service: public-lb)",
      ].sort(),
    );
    expect(r.stdout).toMatch(/image "nginx:latest" uses the latest tag/);
    expect(r.stdout).toMatch(/stack "prod" \(development stacks: dev\) installs JupyterHub with the dummy authenticator/);
    expect(r.stdout).toMatch(
      /runs with --auth-mode server, and the server is exposed \(Ingress argo-server-auth-exposed-server routes to Service argo-server-auth-exposed-server\)/,
    );
  });
});
