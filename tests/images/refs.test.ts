/**
 * The local images (scripts/images/build.sh) are tagged with exactly the references the dev
 * stack runs, so the stack needs no image overrides on the local node. These tests keep the
 * pins in scripts/images/versions.env equal to their sources: components/versions.ts, the
 * vendored Argo and JupyterHub charts (../shared/charts) and the Training Operator release's
 * kustomize overlay (fetched by scripts/tools/fetch-manifests.sh). A source that is not on this
 * machine is reported and its comparison skipped.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { images, manifests } from "../../components/versions";

const ROOT = path.resolve(__dirname, "..", "..");
const CHARTS = path.resolve(ROOT, "..", "shared", "charts");

function envFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

const pins = envFile(path.join(ROOT, "scripts", "images", "versions.env"));
const toolPins = envFile(path.join(ROOT, "scripts", "tools", "versions.env"));

function chartFile(archive: string, file: string): string | undefined {
  const tgz = path.join(CHARTS, archive);
  if (!fs.existsSync(tgz)) {
    console.log(`SKIPPED: ${tgz} is not on this machine`);
    return undefined;
  }
  return execFileSync("tar", ["-xzOf", tgz, file], { encoding: "utf8", maxBuffer: 64 << 20 });
}

describe("local image references", () => {
  it("match the images components/versions.ts pins", () => {
    expect(pins.REF_MINIO).toBe(images.minio);
    expect(pins.REF_MC).toBe(images.minioClient);
    expect(pins.REF_TENSORBOARD).toBe(images.tensorboard);
    expect(pins.REF_NOTEBOOK).toBe(images.notebookCpu);
  });

  it("match the Argo chart's controller, executor and server images", () => {
    const chart = chartFile("argo-workflows-1.0.14.tgz", "argo-workflows/Chart.yaml");
    const values = chartFile("argo-workflows-1.0.14.tgz", "argo-workflows/values.yaml");
    if (!chart || !values) return;
    const tag = YAML.parse(chart).appVersion as string;
    expect(tag).toBe(pins.ARGO_VERSION);
    const v = YAML.parse(values);
    const ref = (i: { registry: string; repository: string; tag: string }) => `${i.registry}/${i.repository}:${i.tag || tag}`;
    expect(ref(v.controller.image)).toBe(pins.REF_ARGO_CONTROLLER);
    expect(ref(v.executor.image)).toBe(pins.REF_ARGOEXEC);
    expect(ref(v.server.image)).toBe(pins.REF_ARGOCLI);
  });

  it("match the JupyterHub chart's hub and proxy images", () => {
    const values = chartFile("jupyterhub-4.3.3.tgz", "jupyterhub/values.yaml");
    if (!values) return;
    const v = YAML.parse(values);
    expect(`${v.hub.image.name}:${v.hub.image.tag}`).toBe(pins.REF_HUB);
    expect(`${v.proxy.chp.image.name}:${v.proxy.chp.image.tag}`).toBe(pins.REF_CHP);
    expect(pins.REF_CHP.endsWith(`:${pins.CHP_VERSION}`)).toBe(true);
  });

  it("match the Training Operator release the platform installs", () => {
    expect(pins.TRAINING_OPERATOR_VERSION).toBe(manifests.trainingOperator.version);
    expect(pins.TRAINING_OPERATOR_VERSION).toBe(toolPins.TRAINING_OPERATOR_VERSION);
    const tools = process.env.MLPLATFORM_TOOLS_DIR ?? path.join(os.homedir(), ".cache", "mlplatform", "tools");
    const overlay = path.join(tools, "manifests", `training-operator-${pins.TRAINING_OPERATOR_VERSION}`, "overlays", "standalone", "kustomization.yaml");
    if (!fs.existsSync(overlay)) {
      console.log(`SKIPPED: ${overlay} is not fetched (scripts/tools/fetch-manifests.sh)`);
      return;
    }
    const k = YAML.parse(fs.readFileSync(overlay, "utf8"));
    const img = (k.images as { name: string; newName?: string; newTag: string }[])[0];
    expect(`${img.newName ?? img.name}:${img.newTag}`).toBe(pins.REF_TRAINING_OPERATOR);
  });

  it("are what build.sh --list builds, one archive per image", () => {
    const out = execFileSync("bash", [path.join(ROOT, "scripts", "images", "build.sh"), "--list"], { encoding: "utf8" });
    const rows = out
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/));
    const refs = Object.entries(pins)
      .filter(([k]) => k.startsWith("REF_"))
      .map(([, v]) => v);
    expect(rows.map((r) => r[1]).sort()).toEqual([...refs].sort());
    for (const r of rows) expect(r[2]).toMatch(new RegExp(`/${r[0]}\\.tar$`));
  });

  it("pin every Python package and name no package index", () => {
    const dir = path.join(ROOT, "scripts", "images", "requirements");
    for (const f of fs.readdirSync(dir)) {
      const lines = fs
        .readFileSync(path.join(dir, f), "utf8")
        .split("\n")
        .filter((l) => l.trim() && !l.startsWith("#"));
      expect(lines.length, f).toBeGreaterThan(0);
      for (const l of lines) expect(l, f).toMatch(/^[a-z0-9][a-z0-9.-]*==[^\s=<>~]+$/);
    }
    const lock = fs.readFileSync(path.join(ROOT, "scripts", "images", "chp", "package-lock.json"), "utf8");
    expect(lock).not.toMatch(/"resolved"/); // no registry address: npm ci uses the configured one
  });
});
