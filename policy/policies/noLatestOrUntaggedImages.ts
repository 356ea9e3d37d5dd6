/**
 * Image references name a version: a tag other than `latest`, or a digest.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { UNKNOWN, levelOf, read, type PolicyOptions } from "./common";
import { findContainers, isKubernetesObject } from "./workloads";

// algorithm:hex, e.g. sha256:<64 hex> (OCI image spec digest grammar, hex of at least 32).
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;

/**
 * What is wrong with an image reference, or `undefined` when it is pinned: a digest
 * (`repo@sha256:…`, with or without a tag) or a tag other than `latest`.
 */
export function imageProblem(ref: string): string | undefined {
  const trimmed = ref.trim();
  if (trimmed === "") return "is empty";
  const atSign = trimmed.indexOf("@");
  if (atSign >= 0) return DIGEST.test(trimmed.slice(atSign + 1)) ? undefined : "has a malformed digest";
  // A colon before the last slash belongs to a registry port (localhost:5001/app), not a tag.
  const colon = trimmed.lastIndexOf(":");
  if (colon <= trimmed.lastIndexOf("/")) return "has no tag, which means latest";
  const tag = trimmed.slice(colon + 1);
  if (tag === "") return "has an empty tag";
  if (tag.toLowerCase() === "latest") return "uses the latest tag";
  return undefined;
}

export function noLatestOrUntaggedImages(opts?: PolicyOptions): ResourceValidationPolicy {
  return {
    name: "no-latest-or-untagged-images",
    description:
      "Container images must be pinned to a version tag or a digest, never latest or no tag (which means latest): " +
      "a moving tag makes a preview say nothing about what will run, lets nodes run different code after a " +
      "restart, and makes a rollback impossible.",
    enforcementLevel: levelOf(opts),
    severity: "medium",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
      if (!isKubernetesObject(args.type)) return args.notApplicable("not a Kubernetes object");
      const containers = findContainers(args.props);
      if (containers.length === 0) return args.notApplicable("no containers");
      for (const c of containers) {
        const image = read(c.container, "image");
        if (image === UNKNOWN || typeof image !== "string") continue;
        const problem = imageProblem(image);
        if (problem) reportViolation(`${c.label} image "${image}" ${problem}; pin a version tag (repo:1.2.3) or a digest (repo@sha256:…).`);
      }
    },
  };
}
