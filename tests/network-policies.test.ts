import { describe, expect, it } from "vitest";
import { platformNetworkPolicies } from "../components/networkPolicies";
import { FIXTURE_KUBECONFIG, ofType, runStack } from "./harness";

const ns = { platform: "mlplatform", pipelines: "ml-pipelines", serving: "ml-serving", notebooks: "ml-notebooks" };

/** A policy as one readable line: namespace/name: who → what. */
function describeFlows(): string[] {
  return platformNetworkPolicies(ns, "ingress-nginx").map((p) => {
    const sel = JSON.stringify(p.spec.podSelector);
    const ports = (rules: any[] | undefined) =>
      (rules ?? [])
        .map(
          (r) =>
            `${(r.from ?? r.to ?? []).map((x: any) => x.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] ?? (x.podSelector ? "same-ns" : "opt-in")).join("+") || "any"}:${(r.ports ?? []).map((x: any) => x.port).join(",") || "all"}`,
        )
        .join(" ");
    return `${p.namespace}/${p.name} ${sel} in[${ports(p.spec.ingress as any[])}] out[${ports(p.spec.egress as any[])}] types=${(p.spec.policyTypes as string[]).join(",")}`;
  });
}

describe("NetworkPolicies", () => {
  it("default deny in and out in every platform namespace, DNS allowed", () => {
    const policies = platformNetworkPolicies(ns, "ingress-nginx");
    for (const n of Object.values(ns)) {
      const deny = policies.find((p) => p.namespace === n && p.name === "default-deny")!;
      expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress", "Egress"] });
      expect(policies.some((p) => p.namespace === n && p.name === "allow-dns")).toBe(true);
    }
  });

  it("only these flows are opened (the README's table)", () => {
    expect(describeFlows().filter((l) => !/default-deny|allow-dns/.test(l))).toEqual([
      'mlplatform/minio-from-platform {"matchLabels":{"app.kubernetes.io/name":"minio"}} in[mlplatform+ml-pipelines+ml-serving+ml-notebooks:9000] out[] types=Ingress',
      'mlplatform/tensorboard-from-ingress {"matchLabels":{"app.kubernetes.io/name":"tensorboard"}} in[ingress-nginx:6006] out[] types=Ingress',
      "mlplatform/egress-to-object-store {} in[] out[mlplatform:9000] types=Egress",
      "ml-pipelines/egress-to-object-store {} in[] out[mlplatform:9000] types=Egress",
      "ml-serving/egress-to-object-store {} in[] out[mlplatform:9000] types=Egress",
      "ml-notebooks/egress-to-object-store {} in[] out[mlplatform:9000] types=Egress",
      "ml-pipelines/within-namespace {} in[same-ns:all] out[same-ns:all] types=Ingress,Egress",
      "ml-pipelines/egress-to-api-and-serving {} in[] out[any:443,6443 ml-serving:8500,8501] types=Egress",
      'ml-pipelines/tensorboard-from-ingress {"matchLabels":{"app.kubernetes.io/name":"tensorboard"}} in[ingress-nginx:6006] out[] types=Ingress',
      "ml-serving/serving-from-clients {} in[ml-pipelines+ml-notebooks+opt-in:8500,8501] out[] types=Ingress",
      "ml-notebooks/egress-to-serving {} in[] out[ml-serving:8500,8501] types=Egress",
    ]);
  });

  it("every stack creates them through the cluster's provider", async () => {
    const r = await runStack("dev", {}, { KUBECONFIG: FIXTURE_KUBECONFIG });
    const all = ofType(r, "kubernetes:networking.k8s.io/v1:NetworkPolicy");
    // The metrics stack adds its own (scrapers to the metrics ports; tests/observability-stacks.test.ts).
    const created = all.filter((p) => !p.name.startsWith("metrics-"));
    expect(created).toHaveLength(platformNetworkPolicies(ns, "ingress-nginx").length);
    expect(all.length - created.length).toBe(2);
    for (const p of all) expect(p.provider).toMatch(/pulumi:providers:kubernetes::platform-k8s::/);
  });
});
