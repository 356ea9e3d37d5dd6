/**
 * A cluster someone else runs (kind, minikube, k3d on a laptop; any conformant cluster):
 * no cloud resource at all, only a Kubernetes provider pointed at it.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import type { ExistingClusterConfig } from "../config";
import { GPU_TOLERATION, type Placement, type PlatformCluster } from "./cluster";

/** Label the NVIDIA GPU feature discovery (and the GPU operator) put on GPU nodes. */
export const DEFAULT_GPU_NODE_SELECTOR = { "nvidia.com/gpu.present": "true" } as const;

/** Where the kubeconfig is: the configured path, else `$KUBECONFIG` (first entry), else `~/.kube/config`. */
export function resolveKubeconfigPath(configured: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = configured ?? env.KUBECONFIG?.split(path.delimiter).find((p) => p !== "") ?? "~/.kube/config";
  return chosen.startsWith("~/") ? path.join(os.homedir(), chosen.slice(2)) : path.resolve(chosen);
}

/** What the program needs from a kubeconfig: the context it will use and that context's cluster. */
export interface KubeconfigSelection {
  readonly context: string;
  readonly cluster: string;
}

/**
 * Checks that the kubeconfig text holds the wanted context (default its current context).
 * `where` names the file in errors.
 */
export function selectContext(where: string, text: string, context?: string): KubeconfigSelection {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new Error(`${where} is not valid YAML: ${(e as Error).message}`, { cause: e });
  }
  const kc = (doc ?? {}) as { contexts?: { name?: string; context?: { cluster?: string } }[]; "current-context"?: string };
  const names = (kc.contexts ?? []).map((c) => c.name).filter((n): n is string => typeof n === "string");
  const wanted = context ?? kc["current-context"];
  if (!wanted) {
    throw new Error(`${where} has no current-context; set mlplatform:cluster.context to one of: ${names.join(", ") || "(none)"}`);
  }
  const found = (kc.contexts ?? []).find((c) => c.name === wanted);
  if (!found) {
    throw new Error(`mlplatform:cluster.context "${wanted}" is not in ${where}; its contexts are: ${names.join(", ") || "(none)"}`);
  }
  return { context: wanted, cluster: found.context?.cluster ?? wanted };
}

export interface ExistingClusterArgs {
  /** Validated `mlplatform:cluster` settings for an existing cluster. */
  readonly cluster: ExistingClusterConfig;
}

export class ExistingCluster extends pulumi.ComponentResource implements PlatformCluster {
  readonly clusterName: pulumi.Output<string>;
  readonly provider: k8s.Provider;
  readonly kubeconfig: pulumi.Output<string>;
  readonly gpu: Placement | undefined;
  readonly burst = undefined;
  readonly registryServer: pulumi.Output<string | undefined>;
  readonly cloudManagesDevicePlugin = false;

  constructor(name: string, args: ExistingClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:cluster:ExistingCluster", name, {}, opts);
    const c = args.cluster;

    let kubeconfigText = "";
    let clusterName = c.name ?? "in-cluster";
    if (!c.inCluster) {
      const file = resolveKubeconfigPath(c.kubeconfig);
      try {
        kubeconfigText = fs.readFileSync(file, "utf8");
      } catch (e) {
        throw new pulumi.ResourceError(
          `cannot read the kubeconfig ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
            "set mlplatform:cluster.kubeconfig or KUBECONFIG to your cluster's kubeconfig, or use inCluster: true",
          this,
        );
      }
      let selection: KubeconfigSelection;
      try {
        selection = selectContext(file, kubeconfigText, c.context);
      } catch (e) {
        throw new pulumi.ResourceError((e as Error).message, this);
      }
      clusterName = c.name ?? selection.context;
      this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: pulumi.secret(kubeconfigText), context: selection.context, enableServerSideApply: true }, { parent: this });
    } else {
      // No kubeconfig: the provider uses the pod's service account.
      this.provider = new k8s.Provider(`${name}-k8s`, { enableServerSideApply: true }, { parent: this });
    }

    this.kubeconfig = pulumi.secret(kubeconfigText);
    this.clusterName = pulumi.output(clusterName);
    this.registryServer = pulumi.output(c.registry);
    this.gpu =
      c.gpu === "nvidia"
        ? {
            nodeSelector: { ...(c.gpuNodeSelector ?? DEFAULT_GPU_NODE_SELECTOR) },
            tolerations: c.gpuTolerations ? [...c.gpuTolerations] : [GPU_TOLERATION],
          }
        : undefined;

    this.registerOutputs({ clusterName: this.clusterName, kubeconfig: this.kubeconfig, registryServer: this.registryServer });
  }
}
