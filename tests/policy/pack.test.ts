import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { PACK_NAME, mlplatformPolicies, packArgs } from "../../policy/policies";
import { ROOT } from "../harness";

const POLICY_DIR = path.join(ROOT, "policy");

describe("the policy pack", () => {
  const policies = mlplatformPolicies();

  it("has the ten policies, kebab-case and unique, mandatory by default", () => {
    expect(policies.map((p) => p.name)).toEqual([
      "gpu-pools-tainted",
      "no-unapproved-load-balancer",
      "containers-have-requests-and-limits",
      "no-latest-or-untagged-images",
      "no-privileged-outside-system-namespaces",
      "jupyterhub-not-dummy-outside-dev",
      "argo-server-auth-not-server-when-exposed",
      "credentials-only-as-secrets",
      "team-namespaces-have-quota",
      "gpu-workloads-queued",
    ]);
    for (const p of policies) {
      expect(p.name).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(p.enforcementLevel, p.name).toBe("mandatory");
      expect(("validateResource" in p && p.validateResource) || ("validateStack" in p && p.validateStack), p.name).toBeTruthy();
    }
    expect(packArgs().enforcementLevel).toBe("mandatory");
    expect(packArgs().policies.map((p) => p.name)).toEqual(policies.map((p) => p.name));
  });

  it("every policy has a description long enough to say why, not only what", () => {
    for (const p of policies) expect(p.description.length, p.name).toBeGreaterThan(150);
  });

  it("factories take another enforcement level; config schemas leave enforcementLevel to the engine", () => {
    for (const p of mlplatformPolicies({ enforcementLevel: "advisory" })) expect(p.enforcementLevel, p.name).toBe("advisory");
    for (const p of policies) {
      expect(Object.keys(p.configSchema?.properties ?? {}), p.name).not.toContain("enforcementLevel");
      expect(p.configSchema?.required ?? [], p.name).not.toContain("enforcementLevel");
    }
  });

  it("is a Node.js policy pack the CLI can load: PulumiPolicy.yaml, a versioned package.json, a valid pack name", () => {
    const project = YAML.parse(fs.readFileSync(path.join(POLICY_DIR, "PulumiPolicy.yaml"), "utf8"));
    expect(project.runtime).toBe("nodejs");
    const pkg = JSON.parse(fs.readFileSync(path.join(POLICY_DIR, "package.json"), "utf8"));
    // new PolicyPack() reads the version from package.json in the pack's directory.
    expect(pkg.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(fs.existsSync(path.join(POLICY_DIR, pkg.main))).toBe(true);
    expect(PACK_NAME).toMatch(/^[a-zA-Z0-9-_.]{1,100}$/);
    expect(fs.readFileSync(path.join(POLICY_DIR, "index.ts"), "utf8")).toMatch(/new PolicyPack\(PACK_NAME, packArgs\(\)\)/);
  });
});
