import { describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { argoServerAuthNotServerWhenExposed, jupyterhubNotDummyOutsideDev } from "../../policy/policies";
import { isChart } from "../../policy/policies/helmCharts";
import { effectiveAuthenticator } from "../../policy/policies/jupyterhubNotDummyOutsideDev";
import { UNKNOWN_STRING, check, checkStack, schemaDefaults, secret, type Target } from "./support";

const chartV4 = (chart: string, values: Record<string, unknown>, stack = "prod"): Target => ({
  type: "kubernetes:helm.sh/v4:Chart",
  props: { chart, version: "4.2.0", namespace: "ml-notebooks", values },
  stack,
});
const releaseV3 = (chart: string, values: Record<string, unknown>, stack = "prod"): Target => ({
  type: "kubernetes:helm.sh/v3:Release",
  props: { chart, version: "4.2.0", values },
  stack,
});

describe("chart names", () => {
  it("recognises a chart by name, repo/name, OCI URL, local path or archive", () => {
    for (const c of ["jupyterhub", "jupyterhub/jupyterhub", "oci://ghcr.io/org/charts/jupyterhub", "./charts/jupyterhub/", "https://x/jupyterhub-4.2.0.tgz"]) {
      expect(isChart(c, "jupyterhub"), c).toBe(true);
    }
    for (const c of ["jupyterhub-extras", "binderhub", "https://x/jupyterhub-extras-1.0.0.tgz"]) expect(isChart(c, "jupyterhub"), c).toBe(false);
  });
});

describe("jupyterhub-not-dummy-outside-dev", () => {
  const policy = jupyterhubNotDummyOutsideDev();
  const defaults = schemaDefaults(policy);
  const dummy = { hub: { config: { JupyterHub: { authenticator_class: "dummy" } } } };
  const github = {
    hub: { config: { JupyterHub: { authenticator_class: "github" }, GitHubOAuthenticator: { client_id: "abc", client_secret: secret("s3cr3t") } } },
  };

  it("works out the authenticator the chart ends up with", () => {
    expect(effectiveAuthenticator({})).toEqual({ authenticator: "dummy", from: expect.stringMatching(/chart's default/) });
    expect(effectiveAuthenticator({ auth: { type: "github" } }).authenticator).toBe("github");
    expect(effectiveAuthenticator(dummy).authenticator).toBe("dummy");
    const extra = { hub: { config: { JupyterHub: { authenticator_class: "github" } }, extraConfig: { "10-auth": "c.JupyterHub.authenticator_class = 'dummy'\n" } } };
    expect(effectiveAuthenticator(extra)).toEqual({ authenticator: "dummy", from: "hub.extraConfig.10-auth" });
  });

  it("allows the dummy authenticator in the dev stack (config default devStacks: [dev])", async () => {
    expect(defaults).toEqual({ devStacks: ["dev"] });
    expect((await check(policy, chartV4("jupyterhub", dummy, "dev"), defaults)).violations).toEqual([]);
    expect((await check(policy, chartV4("jupyterhub", dummy, "dev"))).violations).toEqual([]);
  });

  it("fails the dummy authenticator in any other stack, as a v4 Chart or a v3 Release, naming the stack and the value", async () => {
    for (const make of [chartV4, releaseV3]) {
      expect((await check(policy, make("jupyterhub", dummy, "aks"), defaults)).violations).toEqual([
        expect.stringMatching(
          /^stack "aks" \(development stacks: dev\) installs JupyterHub with the dummy authenticator \("dummy" from hub.config.JupyterHub.authenticator_class\)/,
        ),
      ]);
    }
    const byClass = { hub: { config: { JupyterHub: { authenticator_class: "dummyauthenticator.DummyAuthenticator" } } } };
    expect((await check(policy, chartV4("jupyterhub/jupyterhub", byClass, "gke"))).violations).toHaveLength(1);
    // Not setting it at all leaves the chart's default, which is dummy.
    expect((await check(policy, chartV4("jupyterhub", { proxy: { service: { type: "ClusterIP" } } }, "gke"))).violations).toEqual([
      expect.stringMatching(/from the chart's default/),
    ]);
  });

  it("passes a real authenticator anywhere, and honours a configured list of development stacks", async () => {
    expect((await check(policy, chartV4("jupyterhub", github, "prod"), defaults)).violations).toEqual([]);
    expect((await check(policy, releaseV3("jupyterhub", github, "prod"), defaults)).violations).toEqual([]);
    expect((await check(policy, chartV4("jupyterhub", dummy, "sandbox"), { devStacks: ["dev", "sandbox"] })).violations).toEqual([]);
    expect((await check(policy, chartV4("jupyterhub", dummy, "dev"), { devStacks: [] })).violations).toHaveLength(1);
  });

  it("reads the authenticator from the hub Secret the chart renders (values.yaml), as the real engine shows a v4 Chart", async () => {
    const hubSecret = (values: Record<string, unknown>, stack: string): Target => ({
      type: "kubernetes:core/v1:Secret",
      name: "notebooks-chart:ml-notebooks/hub",
      stack,
      props: { metadata: { name: "hub", namespace: "ml-notebooks" }, type: "Opaque", data: secret({ "values.yaml": Buffer.from(YAML.stringify(values)).toString("base64") }) },
    });
    const chart = { Chart: { Name: "jupyterhub", Version: "4.2.0" } };
    expect((await check(policy, hubSecret({ ...chart, ...dummy }, "aks"), defaults)).violations).toEqual([
      expect.stringMatching(/\("dummy" from hub.config.JupyterHub.authenticator_class in the hub Secret's values.yaml\)/),
    ]);
    expect((await check(policy, hubSecret({ ...chart, ...dummy }, "dev"), defaults)).violations).toEqual([]);
    const githubAuth = { hub: { config: { JupyterHub: { authenticator_class: "github" } } } };
    expect((await check(policy, hubSecret({ ...chart, ...githubAuth }, "aks"), defaults)).violations).toEqual([]);
    expect((await check(policy, hubSecret({ Chart: { Name: "other" }, ...dummy }, "aks"), defaults)).notApplicable).toBeDefined();
  });

  it("ignores other charts, skips values not known during preview, and is not applicable to other resources", async () => {
    expect((await check(policy, chartV4("nvidia-device-plugin", {}, "prod"))).notApplicable).toBe("not the jupyterhub chart");
    const unknown = { hub: { config: { JupyterHub: { authenticator_class: UNKNOWN_STRING } } } };
    expect((await check(policy, chartV4("jupyterhub", unknown, "prod"))).violations).toEqual([]);
    expect((await check(policy, { type: "kubernetes:apps/v1:Deployment", props: {} })).notApplicable).toMatch(/neither a jupyterhub Helm install nor its hub Secret/);
  });
});

describe("argo-server-auth-not-server-when-exposed (a stack policy)", () => {
  const policy = argoServerAuthNotServerWhenExposed();
  const argo = (server: Record<string, unknown>, make = chartV4) => {
    const t = make("argo-workflows", { crds: { install: true }, server });
    return { ...t, name: "argo-chart", props: { ...t.props, name: "argo-workflows", namespace: "argo" } };
  };
  const messages = async (targets: Target[]) => (await checkStack(policy, targets)).violations.map((v) => v.message);

  it("values: passes client/sso auth however exposed, and server auth when not exposed", async () => {
    for (const server of [
      { authModes: ["client"], ingress: { enabled: true } },
      { authModes: ["sso"], serviceType: "LoadBalancer" },
      { authModes: ["server"], serviceType: "ClusterIP" },
      { extraArgs: ["--auth-mode=server"], ingress: { enabled: false } },
      { enabled: false, authModes: ["server"], serviceType: "LoadBalancer" },
    ]) {
      expect(await messages([argo(server)]), JSON.stringify(server)).toEqual([]);
    }
  });

  it("values: fails server auth (authModes, authMode or --auth-mode in extraArgs) exposed by the chart's ingress, LoadBalancer or NodePort", async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ authModes: ["client", "server"], ingress: { enabled: true } }, /server.authModes contains server, and the server is exposed \(server.ingress.enabled is true\)/],
      [{ authMode: "server", serviceType: "LoadBalancer" }, /server.authMode is server, and the server is exposed \(server.serviceType is LoadBalancer\)/],
      [{ extraArgs: ["--secure=false", "--auth-mode=server"], serviceType: "NodePort" }, /server.extraArgs\[1\] sets --auth-mode server/],
      [{ extraArgs: ["--auth-mode", "server"], ingress: { enabled: true } }, /server.extraArgs\[0\] sets --auth-mode server/],
    ];
    for (const [server, message] of cases) {
      for (const make of [chartV4, releaseV3]) {
        const { violations } = await checkStack(policy, [argo(server, make)]);
        expect(violations, JSON.stringify(server)).toEqual([
          {
            message: expect.stringMatching(message),
            urn: "urn:pulumi:prod::mlplatform::" + (make === chartV4 ? "kubernetes:helm.sh/v4:Chart" : "kubernetes:helm.sh/v3:Release") + "::argo-chart",
          },
        ]);
      }
    }
  });

  it("values: a separately written Ingress to the chart's server Service exposes it too", async () => {
    const ingress = (namespace: string, service: string): Target => ({
      type: "kubernetes:networking.k8s.io/v1:Ingress",
      name: "argo-ui",
      stack: "prod",
      props: {
        metadata: { name: "argo-ui", namespace },
        spec: { rules: [{ host: "argo.example.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: service, port: { number: 2746 } } } }] } }] },
      },
    });
    expect(await messages([argo({ authModes: ["server"] }), ingress("argo", "argo-workflows-server")])).toEqual([
      expect.stringMatching(/the server is exposed \(Ingress argo-ui routes to Service argo-workflows-server\)/),
    ]);
    expect(await messages([argo({ authModes: ["client"] }), ingress("argo", "argo-workflows-server")])).toEqual([]);
    expect(await messages([argo({ authModes: ["server"] }), ingress("other", "argo-workflows-server")])).toEqual([]);
  });

  describe("rendered objects (what the real engine shows for a v4 Chart)", () => {
    const labels = { "app.kubernetes.io/name": "argo-workflows-server", "app.kubernetes.io/instance": "argo-workflows" };
    const deployment = (args: string[]): Target => ({
      type: "kubernetes:apps/v1:Deployment",
      name: "argo-chart:argo/argo-workflows-server",
      stack: "prod",
      props: {
        metadata: { name: "argo-workflows-server", namespace: "argo" },
        spec: {
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: { containers: [{ name: "argo-server", image: "quay.io/argoproj/argocli:v3.7.1", args }] } },
        },
      },
    });
    const service = (type: string, selector: Record<string, string> = labels): Target => ({
      type: "kubernetes:core/v1:Service",
      name: "argo-chart:argo/argo-workflows-server",
      stack: "prod",
      props: { metadata: { name: "argo-workflows-server", namespace: "argo" }, spec: { type, selector, ports: [{ port: 2746 }] } },
    });
    const route: Target = {
      type: "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
      name: "argo-route",
      stack: "prod",
      props: { metadata: { name: "argo", namespace: "argo" }, spec: { rules: [{ backendRefs: [{ name: "argo-workflows-server", port: 2746 }] }] } },
    };
    const serverMode = ["server", "--configmap=argo-workflows-workflow-controller-configmap", "--auth-mode=server"];

    it("passes a server-mode server behind a ClusterIP Service only, and a client-mode server however exposed", async () => {
      expect(await messages([deployment(serverMode), service("ClusterIP")])).toEqual([]);
      expect(await messages([deployment(["server", "--auth-mode=client"]), service("LoadBalancer"), route])).toEqual([]);
      expect(await messages([deployment(serverMode), service("LoadBalancer", { app: "something-else" })])).toEqual([]);
    });

    it("fails a server-mode server whose Service is a LoadBalancer/NodePort or has a route, naming the workload", async () => {
      for (const type of ["LoadBalancer", "NodePort"]) {
        const { violations } = await checkStack(policy, [deployment(serverMode), service(type)]);
        expect(violations).toEqual([
          {
            message: expect.stringMatching(
              new RegExp(
                `^spec.template.spec.containers\\[0\\] \\("argo-server"\\) runs with --auth-mode server, and the server is exposed \\(Service argo-workflows-server is ${type}\\)`,
              ),
            ),
            urn: "urn:pulumi:prod::mlplatform::kubernetes:apps/v1:Deployment::argo-chart:argo/argo-workflows-server",
          },
        ]);
      }
      expect(await messages([deployment(serverMode), service("ClusterIP"), route])).toEqual([
        expect.stringMatching(/exposed \(HTTPRoute argo routes to Service argo-workflows-server\)/),
      ]);
    });
  });

  it("ignores other charts", async () => {
    const hub = chartV4("jupyterhub", { server: { authModes: ["server"], serviceType: "LoadBalancer" } });
    expect(await messages([hub])).toEqual([]);
  });
});
