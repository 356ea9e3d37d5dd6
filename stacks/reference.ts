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
