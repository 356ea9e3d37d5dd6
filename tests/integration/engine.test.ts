/**
 * The real engine: the Pulumi CLI, the Node.js language host and the Kubernetes provider
 * (built from Go modules by scripts/tools/build.sh) deploy the dev stack onto a real
 * kube-apiserver on 127.0.0.1 (scripts/localcluster/up.sh), with a file backend and a
 * passphrase secrets provider.
 *
 * kube-controller-manager runs beside it (and kwok's fake nodes when built), but no image can
 * be pulled here, so `mlplatform:kubernetes.skipAwait` is on: objects are stored and validated
 * by the API server, and nothing waits for containers that can never start. Nothing in the dev
 * stack needs the internet otherwise (no Helm chart: gpu is `none`).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kube, PulumiCli, copyProject, missingTools, previewSteps, startLocal, stopLocal, useOfflineDevStack, TFJOB_CRD_TOOL } from "./support";

// kube-controller-manager finalizes deleted namespaces and binds volumes; without it a
// destroyed namespace would stay Terminating forever.
const REQUIRED = ["pulumi", "pulumi-language-nodejs", "pulumi-resource-kubernetes", "etcd", "kube-apiserver", "kube-controller-manager", TFJOB_CRD_TOOL];
const missing = missingTools(REQUIRED);
if (missing.length > 0) {
  console.log(`SKIPPED real-engine tests: missing ${missing.join(", ")} (build them with scripts/tools/build.sh)`);
}

const OUR_NAMESPACES = ["ml-notebooks", "ml-pipelines", "ml-serving", "mlplatform", "mlplatform-storage"];
const PART_OF = "app.kubernetes.io/part-of=mlplatform";

describe.skipIf(missing.length > 0)("real engine against a local kube-apiserver", () => {
  let work: string;
  let platformDir: string;
  let consumerDir: string;
  let cli: PulumiCli;
  let kube: Kube;
  let kubeconfigPath: string;
  let kubeToken: string;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-engine-"));
    const local = startLocal(path.join(work, "cluster"));
    kubeconfigPath = local.KUBECONFIG!;
    kube = new Kube(kubeconfigPath);
    kubeToken = YAML.parse(fs.readFileSync(kubeconfigPath, "utf8")).users[0].user.token;
    platformDir = copyProject(path.join(work, "platform"));
    consumerDir = path.join(platformDir, "stacks", "consumer");
    cli = new PulumiCli(work);

    useOfflineDevStack(platformDir, kubeconfigPath);
    cli.run(["stack", "init", "dev", "--secrets-provider", "passphrase"], { cwd: platformDir });
    console.log(
      "Not exercised offline: container images are never pulled (kubernetes.skipAwait is on, so objects " +
        "are validated and stored but no container starts); Helm charts (Argo Workflows, JupyterHub, the " +
        "NVIDIA device plugin) and with Argo the pipeline templates (applied in crds.test.ts) are switched off; the Training Operator's upstream manifests are replaced by " +
        "its release's TFJob CRD alone (scripts/tools/fetch-manifests.sh); cloud resources (aks/gke run under mocks only).",
    );
  });

  afterAll(() => {
    // Best effort: never leave our objects behind, even when a step failed.
    if (cli) {
      cli.run(["destroy", "--yes", "--skip-preview", "-s", "dev"], { cwd: consumerDir, allowFailure: true });
      cli.run(["destroy", "--yes", "--skip-preview", "-s", "dev"], { cwd: platformDir, allowFailure: true });
    }
    if (work) {
      stopLocal(path.join(work, "cluster"));
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it("1. a new stack's first preview succeeds; pulumi up deploys it: namespaces with Pod Security labels exist", async () => {
    // The first preview, before anything exists (what a pull request of a new environment gets):
    // the API server's dry run must accept every object, including the NFS volumes whose server
    // IP is not known until the Service exists.
    const first = previewSteps(cli.run(["preview", "--json", "-s", "dev"], { cwd: platformDir }).stdout);
    expect(first.filter((s) => s.op === "create" && s.urn.endsWith("PersistentVolume::shared-serving"))).toHaveLength(1);
    cli.run(["up", "--yes", "--skip-preview", "-s", "dev"], { cwd: platformDir });
    // The update itself names the Service's cluster IP (nodes mount NFS outside cluster DNS).
    const svc = (await kube.get("/api/v1/namespaces/mlplatform-storage/services")).items.find((x: any) => x.metadata.name.startsWith("shared-nfs"));
    const pvs = (await kube.get("/api/v1/persistentvolumes")).items as any[];
    const servers = new Set(pvs.filter((p) => p.spec.nfs).map((p) => p.spec.nfs.server as string));
    expect([...servers]).toEqual([svc.spec.clusterIP]);
    expect(svc.spec.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(await kube.names("/api/v1/namespaces", PART_OF)).toEqual(OUR_NAMESPACES);
    const crd = await kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tfjobs.kubeflow.org");
    expect(crd?.spec.group).toBe("kubeflow.org"); // applied through the kustomize Directory
    const ns = await kube.get("/api/v1/namespaces/ml-serving");
    expect(ns.metadata.labels["pod-security.kubernetes.io/enforce"]).toBe("restricted");
    const outputs = JSON.parse(cli.run(["stack", "output", "--json", "-s", "dev"], { cwd: platformDir }).stdout);
    expect(outputs.clusterName).toBe("mlplatform-local");
    expect(outputs.pipelinesNamespace).toBe("ml-pipelines");
    expect(outputs.kubeconfig).toBe("[secret]");
  });

  it("2. a second preview shows no changes; a config change shows exactly the expected diff", () => {
    cli.run(["preview", "--expect-no-changes", "-s", "dev"], { cwd: platformDir });

    cli.run(["config", "set", "--path", "mlplatform:namespaces.serving", "ml-serving-v2", "-s", "dev"], { cwd: platformDir });
    const steps = previewSteps(cli.run(["preview", "--json", "-s", "dev"], { cwd: platformDir }).stdout);
    const changed = steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`);
    console.log("diff after renaming the serving namespace:", changed);
    // The namespace is replaced (its name is immutable), and with it what lives in it: the
    // object-store credentials, its network policies, the shared-volume claim and the model
    // server with its model-config ConfigMap; the claim's volume is re-pointed, and the policies elsewhere that name the serving
    // namespace are updated. Nothing else moves.
    expect(changed.filter((c) => !c.endsWith(" mlplatform-dev")).sort()).toEqual([
      "replace network-serving-allow-dns",
      "replace network-serving-default-deny",
      "replace network-serving-egress-to-object-store",
      "replace network-serving-serving-from-clients",
      "replace objects-credentials-serving",
      "replace platform-serving",
      "replace serving-hpa",
      "replace serving-models", // the ConfigMap of served models
      "replace serving-pdb",
      "replace serving-server",
      "replace serving-service",
      "replace shared-serving", // the PersistentVolumeClaim
      "update network-notebooks-egress-to-serving",
      "update network-pipelines-egress-to-api-and-serving",
      "update network-platform-minio-from-platform",
      "update shared-serving", // the PersistentVolume's claimRef
    ]);

    cli.run(["config", "rm", "--path", "mlplatform:namespaces.serving", "-s", "dev"], { cwd: platformDir });
    cli.run(["preview", "--expect-no-changes", "-s", "dev"], { cwd: platformDir });
  });

  it("3. a consumer stack reads the outputs through StackReference and deploys onto the same API server", async () => {
    cli.run(["stack", "init", "dev", "--secrets-provider", "passphrase"], { cwd: consumerDir });
    cli.run(["config", "set", "platformStack", "organization/mlplatform/dev", "-s", "dev"], { cwd: consumerDir });
    cli.run(["config", "set", "skipAwait", "true", "-s", "dev"], { cwd: consumerDir });
    cli.run(["up", "--yes", "--skip-preview", "-s", "dev"], { cwd: consumerDir });
    const out = JSON.parse(cli.run(["stack", "output", "--json", "-s", "dev"], { cwd: consumerDir }).stdout);
    expect(out.smokeJobNamespace).toBe("ml-pipelines");
    const job = await kube.get(`/apis/batch/v1/namespaces/ml-pipelines/jobs/${out.smokeJobName}`);
    expect(job.spec.template.spec.containers[0].image).toBe("busybox:1.37.0");
  });

  it("4. pulumi stack export holds no secret in plaintext", () => {
    expect(kubeToken.length).toBeGreaterThan(10);
    for (const dir of [platformDir, consumerDir]) {
      const state = cli.run(["stack", "export", "-s", "dev"], { cwd: dir }).stdout;
      expect(state.length).toBeGreaterThan(1000);
      expect(state.includes(kubeToken), `${dir}: the API token appears in plaintext`).toBe(false);
      expect(state).toContain("4dabf18193072939515e22adb298388d"); // the secrets are there, encrypted
    }
  });

  it("5. pulumi destroy leaves no object of ours in the API server", async () => {
    cli.run(["destroy", "--yes", "--skip-preview", "-s", "dev"], { cwd: consumerDir });
    cli.run(["destroy", "--yes", "--skip-preview", "-s", "dev"], { cwd: platformDir });
    // Namespaces are deleted asynchronously: the namespace controller empties them first.
    let left = await kube.names("/api/v1/namespaces", PART_OF);
    for (let i = 0; i < 60 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      left = await kube.names("/api/v1/namespaces", PART_OF);
    }
    expect(await kube.names("/api/v1/persistentvolumes", PART_OF)).toEqual([]);
    const details = await Promise.all(left.map(async (n) => `${n}: ${(await kube.get(`/api/v1/namespaces/${n}`))?.status?.phase}`));
    expect(details).toEqual([]);
  });
});
