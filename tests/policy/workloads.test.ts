import { describe, expect, it } from "vitest";
import { containersHaveRequestsAndLimits, credentialsOnlyAsSecrets, noLatestOrUntaggedImages, noPrivilegedOutsideSystemNamespaces } from "../../policy/policies";
import { isCredentialName } from "../../policy/policies/credentialsOnlyAsSecrets";
import { imageProblem } from "../../policy/policies/noLatestOrUntaggedImages";
import { findContainers } from "../../policy/policies/workloads";
import { UNKNOWN_STRING, check, policyProps, schemaDefaults, secret, type Target } from "./support";

/** A container that satisfies every policy. */
const good = {
  name: "app",
  image: "registry.example.com/app:1.4.2",
  resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
  env: [{ name: "LOG_LEVEL", value: "info" }],
};

function podSpec(containers: object[], extra: object = {}): Record<string, unknown> {
  return { containers, ...extra };
}

/** Each workload kind with `spec` as its pod spec, where that kind keeps it. */
const kinds: Record<string, (spec: object, namespace?: string) => Target> = {
  Deployment: (spec, namespace = "ml-serving") => ({
    type: "kubernetes:apps/v1:Deployment",
    props: { metadata: { namespace }, spec: { selector: { matchLabels: { a: "b" } }, template: { metadata: { labels: { a: "b" } }, spec } } },
  }),
  StatefulSet: (spec, namespace = "ml-serving") => ({ type: "kubernetes:apps/v1:StatefulSet", props: { metadata: { namespace }, spec: { template: { spec } } } }),
  DaemonSet: (spec, namespace = "ml-serving") => ({ type: "kubernetes:apps/v1:DaemonSet", props: { metadata: { namespace }, spec: { template: { spec } } } }),
  ReplicaSet: (spec, namespace = "ml-serving") => ({ type: "kubernetes:apps/v1:ReplicaSet", props: { metadata: { namespace }, spec: { template: { spec } } } }),
  Job: (spec, namespace = "ml-serving") => ({ type: "kubernetes:batch/v1:Job", props: { metadata: { namespace }, spec: { template: { spec } } } }),
  CronJob: (spec, namespace = "ml-serving") => ({
    type: "kubernetes:batch/v1:CronJob",
    props: { metadata: { namespace }, spec: { schedule: "@daily", jobTemplate: { spec: { template: { spec } } } } },
  }),
  Pod: (spec, namespace = "ml-serving") => ({ type: "kubernetes:core/v1:Pod", props: { metadata: { namespace }, spec } }),
};

describe("finding containers", () => {
  it("finds containers, init containers and ephemeral containers of every workload kind, with their paths", () => {
    for (const [kind, make] of Object.entries(kinds)) {
      const t = make(podSpec([good], { initContainers: [{ ...good, name: "init" }], ephemeralContainers: [{ name: "debug", image: "busybox:1.37.0" }] }));
      const found = findContainers(policyProps(t.props));
      expect(
        found.map((c) => `${c.kind} ${c.label}`),
        kind,
      ).toHaveLength(3);
      expect(found.map((c) => c.kind).sort(), kind).toEqual(["container", "ephemeralContainer", "initContainer"]);
    }
    const cron = findContainers(policyProps(kinds.CronJob!(podSpec([good])).props));
    expect(cron[0]!.label).toBe('spec.jobTemplate.spec.template.spec.containers[0] ("app")');
  });

  it("finds pod templates inside custom resources (TFJob replicas, Argo templates)", () => {
    const tfjob = {
      spec: { tfReplicaSpecs: { Worker: { replicas: 2, template: { spec: { containers: [{ name: "tensorflow", image: "trainer:latest" }] } } } } },
    };
    expect(findContainers(policyProps(tfjob)).map((c) => c.path)).toEqual(["spec.tfReplicaSpecs.Worker.template.spec.containers[0]"]);
    const workflowTemplate = {
      spec: {
        templates: [
          { name: "train", container: { image: "trainer:1.0.0", args: ["train"] } },
          { name: "eval", script: { image: "python:3.12", source: "print(1)" } },
          { name: "pipeline", dag: { tasks: [{ name: "t", template: "train" }] } },
        ],
      },
    };
    expect(findContainers(policyProps(workflowTemplate)).map((c) => c.path)).toEqual(["spec.templates[0].container", "spec.templates[1].script"]);
  });
});

describe("containers-have-requests-and-limits", () => {
  const policy = containersHaveRequestsAndLimits();

  it("passes containers (and init containers) with cpu+memory requests and a memory limit, in every kind", async () => {
    for (const make of Object.values(kinds)) {
      expect((await check(policy, make(podSpec([good], { initContainers: [{ ...good, name: "init" }] })))).violations).toEqual([]);
    }
  });

  it("fails a container without requests, naming the container and what is missing", async () => {
    for (const [kind, make] of Object.entries(kinds)) {
      const { violations } = await check(policy, make(podSpec([{ name: "web", image: "nginx:1.27.0" }])));
      expect(violations, kind).toHaveLength(1);
      expect(violations[0]).toMatch(/containers\[0\] \("web"\) has no a cpu request, a memory request, a memory limit/);
    }
  });

  it("checks init containers too, and a memory limit is required even with requests", async () => {
    const init = { name: "migrate", image: "app:1.0.0", resources: { requests: { cpu: "50m", memory: "64Mi" } } };
    const { violations } = await check(policy, kinds.Job!(podSpec([good], { initContainers: [init] })));
    expect(violations).toEqual([expect.stringMatching(/initContainers\[0\] \("migrate"\) has no a memory limit;/)]);
  });

  it("counts limits as requests (Kubernetes copies them) and accepts pod-level resources", async () => {
    const limitsOnly = { name: "a", image: "a:1", resources: { limits: { cpu: "1", memory: "1Gi" } } };
    expect((await check(policy, kinds.Pod!(podSpec([limitsOnly])))).violations).toEqual([]);
    const podLevel = podSpec([{ name: "a", image: "a:1" }], { resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { memory: "2Gi" } } });
    expect((await check(policy, kinds.Pod!(podLevel))).violations).toEqual([]);
  });

  it("ignores ephemeral debug containers (they cannot have resources) and is not applicable without containers", async () => {
    const t = kinds.Pod!(podSpec([good], { ephemeralContainers: [{ name: "debug", image: "busybox:1.37.0" }] }));
    expect((await check(policy, t)).violations).toEqual([]);
    expect((await check(policy, { type: "kubernetes:core/v1:Service", props: { spec: { type: "ClusterIP" } } })).notApplicable).toBe("no containers");
    expect((await check(policy, { type: "gcp:container/nodePool:NodePool", props: {} })).notApplicable).toBe("not a Kubernetes object");
  });

  it("skips (does not fail) a container whose resources are unknown during preview", async () => {
    const t = kinds.Deployment!(podSpec([{ name: "a", image: "a:1", resources: UNKNOWN_STRING }]));
    expect((await check(policy, t)).violations).toEqual([]);
  });
});

describe("no-latest-or-untagged-images", () => {
  const policy = noLatestOrUntaggedImages();

  it("parses image references: tag, digest, registry port, latest, none", () => {
    const pinned = [
      "nginx:1.27.0",
      "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
      "localhost:5001/trainer:0.1.0",
      `registry.example.com/team/app@sha256:${"a".repeat(64)}`,
      `app:latest@sha256:${"b".repeat(64)}`,
    ];
    for (const ref of pinned) expect(imageProblem(ref), ref).toBeUndefined();
    expect(imageProblem("nginx")).toBe("has no tag, which means latest");
    expect(imageProblem("localhost:5001/trainer")).toBe("has no tag, which means latest");
    expect(imageProblem("nginx:latest")).toBe("uses the latest tag");
    expect(imageProblem("nginx:LATEST")).toBe("uses the latest tag");
    expect(imageProblem("nginx:")).toBe("has an empty tag");
    expect(imageProblem("nginx@sha256:abc")).toBe("has a malformed digest");
  });

  it("passes pinned images and fails latest or untagged ones, in containers and init containers of every kind", async () => {
    for (const [kind, make] of Object.entries(kinds)) {
      expect((await check(policy, make(podSpec([good])))).violations, kind).toEqual([]);
      const bad = make(podSpec([{ ...good, image: "nginx:latest" }], { initContainers: [{ ...good, name: "init", image: "busybox" }] }));
      expect((await check(policy, bad)).violations, kind).toEqual([
        expect.stringMatching(/containers\[0\] \("app"\) image "nginx:latest" uses the latest tag/),
        expect.stringMatching(/initContainers\[0\] \("init"\) image "busybox" has no tag/),
      ]);
    }
  });

  it("skips an image that is not known during preview (e.g. a digest from an image build)", async () => {
    expect((await check(policy, kinds.Deployment!(podSpec([{ ...good, image: UNKNOWN_STRING }])))).violations).toEqual([]);
  });
});

describe("no-privileged-outside-system-namespaces", () => {
  const policy = noPrivilegedOutsideSystemNamespaces();
  const defaults = schemaDefaults(policy);
  const privileged = { ...good, securityContext: { privileged: true } };

  it("the allow-list is configurable and defaults to the device plugin, NFS server, metrics stack and kube-system namespaces", () => {
    expect(defaults).toEqual({ allowedNamespaces: ["nvidia-device-plugin", "mlplatform-storage", "monitoring", "kube-system"] });
  });

  it("allows privileged containers in the allowed namespaces (with or without the engine's defaults applied)", async () => {
    for (const ns of ["nvidia-device-plugin", "mlplatform-storage", "monitoring", "kube-system"]) {
      expect((await check(policy, kinds.DaemonSet!(podSpec([privileged]), ns), defaults)).violations).toEqual([]);
      expect((await check(policy, kinds.DaemonSet!(podSpec([privileged]), ns))).violations).toEqual([]);
    }
  });

  it("fails privileged containers (and init containers) anywhere else, naming the namespace", async () => {
    for (const [kind, make] of Object.entries(kinds)) {
      const { violations } = await check(policy, make(podSpec([privileged], { initContainers: [{ ...privileged, name: "init" }] }), "ml-pipelines"), defaults);
      expect(violations, kind).toEqual([
        expect.stringMatching(/containers\[0\] \("app"\) is privileged in namespace "ml-pipelines"/),
        expect.stringMatching(/initContainers\[0\] \("init"\) is privileged in namespace "ml-pipelines"/),
      ]);
    }
  });

  it("uses the configured allow-list, and the provider's default namespace when metadata has none", async () => {
    const inStorage = kinds.Deployment!(podSpec([privileged]), "mlplatform-storage");
    expect((await check(policy, inStorage, { allowedNamespaces: ["kube-system"] })).violations).toHaveLength(1);
    const noNamespace: Target = { type: "kubernetes:core/v1:Pod", props: { metadata: {}, spec: podSpec([privileged]) } };
    expect((await check(policy, noNamespace)).violations).toEqual([expect.stringMatching(/namespace "default"/)]);
    const provider = { type: "pulumi:providers:kubernetes", name: "k8s", urn: "urn:pulumi:dev::p::pulumi:providers:kubernetes::k8s", props: { namespace: "kube-system" } };
    expect((await check(policy, { ...noNamespace, provider })).violations).toEqual([]);
  });

  it("passes unprivileged containers everywhere, and skips a namespace not known during preview", async () => {
    expect((await check(policy, kinds.Deployment!(podSpec([{ ...good, securityContext: { privileged: false } }]), "default"))).violations).toEqual([]);
    expect((await check(policy, kinds.Deployment!(podSpec([privileged]), UNKNOWN_STRING))).violations).toEqual([]);
  });

  it("only allow-listed namespaces may carry the privileged Pod Security level", async () => {
    const ns = (name: string, level: string): Target => ({
      type: "kubernetes:core/v1:Namespace",
      props: { metadata: { name, labels: { "pod-security.kubernetes.io/enforce": level } } },
    });
    expect((await check(policy, ns("mlplatform-storage", "privileged"), defaults)).violations).toEqual([]);
    expect((await check(policy, ns("ml-notebooks", "restricted"), defaults)).violations).toEqual([]);
    expect((await check(policy, ns("ml-notebooks", "privileged"), defaults)).violations).toEqual([
      expect.stringMatching(/namespace "ml-notebooks" is labelled pod-security.kubernetes.io\/enforce: privileged/),
    ]);
  });
});

describe("credentials-only-as-secrets", () => {
  const policy = credentialsOnlyAsSecrets();

  it("recognises credential names without matching words that merely contain them", () => {
    for (const n of [
      "PASSWORD",
      "MINIO_ROOT_PASSWORD",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_ACCESS_KEY_ID",
      "GITHUB_TOKEN",
      "HF_TOKEN",
      "clientSecret",
      "client_secret",
      "tls.private_key",
      "OPENAI_API_KEY",
    ]) {
      expect(isCredentialName(n), n).toBe(true);
    }
    for (const n of ["TOKENIZERS_PARALLELISM", "LOG_LEVEL", "OBJECT_STORE_SECRET_NAME", "PASSWORD_FILE", "OAUTH_TOKEN_URL", "SECRETARY", "MC_CONFIG_DIR"]) {
      expect(isCredentialName(n), n).toBe(false);
    }
  });

  it("fails literal credential values in container env, in every kind; passes secretKeyRef and $(VAR) references", async () => {
    for (const [kind, make] of Object.entries(kinds)) {
      const env = [
        { name: "DB_PASSWORD", value: "hunter2" },
        { name: "AWS_SECRET_ACCESS_KEY", valueFrom: { secretKeyRef: { name: "s3", key: "AWS_SECRET_ACCESS_KEY" } } },
        { name: "API_TOKEN", value: "$(TOKEN_FROM_SECRET)" },
        { name: "TOKENIZERS_PARALLELISM", value: "false" },
        { name: "HF_TOKEN", value: "" },
      ];
      const { violations } = await check(
        policy,
        make(podSpec([{ ...good, env }], { initContainers: [{ ...good, name: "init", env: [{ name: "GITHUB_TOKEN", value: "ghp_x" }] }] })),
      );
      expect(violations, kind).toEqual([
        expect.stringMatching(/containers\[0\] \("app"\) env\[0\] DB_PASSWORD has a literal value; use valueFrom.secretKeyRef/),
        expect.stringMatching(/initContainers\[0\] \("init"\) env\[0\] GITHUB_TOKEN has a literal value/),
      ]);
    }
  });

  it("fails credential-looking keys and PEM private keys in ConfigMaps; passes ordinary configuration", async () => {
    const cm = (data: Record<string, string>, binaryData: Record<string, string> = {}): Target => ({
      type: "kubernetes:core/v1:ConfigMap",
      props: { metadata: { namespace: "mlplatform" }, data, binaryData },
    });
    expect((await check(policy, cm({ "config.yaml": "logLevel: info\n", SECRET_NAME: "mlplatform-object-store" }))).violations).toEqual([]);
    const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----\n";
    const { violations } = await check(policy, cm({ clientSecret: "abc", "tls.key.txt": pem }, { "key.bin": Buffer.from("-----BEGIN PRIVATE KEY-----\n").toString("base64") }));
    expect(violations).toEqual([
      expect.stringMatching(/^data.clientSecret looks like a credential in a ConfigMap/),
      expect.stringMatching(/^data.tls.key.txt contains a PEM private key/),
      expect.stringMatching(/^binaryData.key.bin contains a PEM private key/),
    ]);
  });

  it("fails Secrets holding well-known default credentials (stringData or base64 data, secret-wrapped or not)", async () => {
    const s = (props: Record<string, unknown>): Target => ({ type: "kubernetes:core/v1:Secret", props: { metadata: { namespace: "mlplatform" }, ...props } });
    expect((await check(policy, s({ stringData: secret({ AWS_ACCESS_KEY_ID: "mlpx8k2", AWS_SECRET_ACCESS_KEY: "Zq81hdk2NB" }) }))).violations).toEqual([]);
    expect((await check(policy, s({ stringData: secret({ AWS_ACCESS_KEY_ID: "minioadmin", AWS_SECRET_ACCESS_KEY: "minioadmin" }) }))).violations).toEqual([
      expect.stringMatching(/^stringData.AWS_ACCESS_KEY_ID: "minioadmin" is a well-known default credential/),
      expect.stringMatching(/^stringData.AWS_SECRET_ACCESS_KEY: "minioadmin" is a well-known default credential/),
    ]);
    const b64 = (v: string) => Buffer.from(v).toString("base64");
    expect((await check(policy, s({ data: { username: b64("admin"), password: b64("admin") } }))).violations).toEqual([
      expect.stringMatching(/^data.password: "admin" is a well-known default password/),
    ]);
  });

  it("is not applicable to objects without data or containers, nor to non-Kubernetes resources", async () => {
    expect((await check(policy, { type: "kubernetes:core/v1:Namespace", props: { metadata: { name: "x" } } })).notApplicable).toBeDefined();
    expect((await check(policy, { type: "azure-native:resources:ResourceGroup", props: {} })).notApplicable).toBe("not a Kubernetes object");
  });
});
