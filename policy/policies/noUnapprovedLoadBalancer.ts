/**
 * No Service of type LoadBalancer unless someone approved it explicitly with an annotation.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, at, levelOf, type PolicyOptions } from "./common";

/** The annotation that approves a LoadBalancer Service; its value must be exactly `"true"`. */
export const ALLOW_LOAD_BALANCER_ANNOTATION = "mlplatform.io/allow-load-balancer";

const SERVICE = /^kubernetes:core\/v1:Service$/;

export function noUnapprovedLoadBalancer(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "no-unapproved-load-balancer",
    description:
      "Services of type LoadBalancer get an address reachable from outside the cluster (a public IP by default on " +
      "AKS and GKE), which bypasses the authenticated ingress in front of notebooks, pipelines, TensorBoard and the " +
      `object store. Each one must be approved explicitly with the annotation ${ALLOW_LOAD_BALANCER_ANNOTATION}: "true".`,
    enforcementLevel: levelOf(opts),
    severity: "high",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      if (!SERVICE.test(args.type)) return args.notApplicable("not a Service");
      const type = at(args.props, "spec", "type");
      if (type !== "LoadBalancer") return;
      const approval = at(args.props, "metadata", "annotations", ALLOW_LOAD_BALANCER_ANNOTATION);
      if (approval === UNKNOWN || approval === "true") return;
      reportViolation(
        `spec.type is LoadBalancer without the annotation ${ALLOW_LOAD_BALANCER_ANNOTATION}: "true" ` +
          `(found ${approval === undefined ? "none" : JSON.stringify(approval)}); use ClusterIP behind the ingress, ` +
          "or add the annotation after review.",
      );
    },
  };
}
