/**
 * Reads the platform's outputs from another stack, typed by the contract.
 *
 *   const platform = new PlatformReference("organization/mlplatform/dev");
 *   new k8s.apps.v1.Deployment("x", { metadata: { namespace: platform.outputs.servingNamespace } },
 *     { provider: platform.provider("platform") });
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PLATFORM_OUTPUT_NAMES, SECRET_OUTPUT_NAMES, type PlatformOutputs } from "./contract";

/**
 * One team's entry of a team map output (`teamNamespaces`, `teamQueues`).
 * @throws Error naming the team, the output and the teams there are, when the platform has no such team.
 */
export function teamEntry(map: Readonly<Record<string, string>>, team: string, output: "teamNamespaces" | "teamQueues"): string {
  const v = map[team];
  if (v === undefined) {
    throw new Error(`the platform stack has no team "${team}" (${output}; its teams: ${Object.keys(map).join(", ") || "none"}); add it to mlplatform:teams or name one of those`);
  }
  return v;
}

export type PlatformOutputValues = { readonly [K in keyof PlatformOutputs]: pulumi.Output<PlatformOutputs[K]> };

export class PlatformReference {
  /** The underlying StackReference. */
  readonly stack: pulumi.StackReference;
  /** Every contract output; a missing one fails the consumer's deployment with its name. */
  readonly outputs: PlatformOutputValues;

  /** @param stackName fully qualified platform stack, e.g. `organization/mlplatform/dev` or `acme/mlplatform/aks`. */
  constructor(stackName: string, opts?: pulumi.CustomResourceOptions) {
    this.stack = new pulumi.StackReference(stackName, { name: stackName }, opts);
    const outputs: Record<string, pulumi.Output<unknown>> = {};
    for (const key of PLATFORM_OUTPUT_NAMES) {
      const value = this.stack.requireOutput(key);
      outputs[key] = SECRET_OUTPUT_NAMES.includes(key) ? pulumi.secret(value) : value;
    }
    this.outputs = outputs as unknown as PlatformOutputValues;
  }

  /** A Kubernetes provider for the platform's cluster (from its kubeconfig output). */
  provider(name: string, opts?: pulumi.CustomResourceOptions): k8s.Provider {
    return new k8s.Provider(
      name,
      {
        // An empty kubeconfig means in-cluster credentials; the provider then uses its pod's.
        kubeconfig: this.outputs.kubeconfig.apply((k) => (k === "" ? undefined : k)) as pulumi.Output<string>,
        enableServerSideApply: true,
      },
      opts,
    );
  }
}
