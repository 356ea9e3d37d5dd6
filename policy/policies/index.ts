/**
 * The mlplatform policy pack's policies ("secure by default"), each from a factory so tests
 * and other packs can build them with their own enforcement level.
 */
import type { PolicyPackArgs, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { argoServerAuthNotServerWhenExposed } from "./argoServerAuthNotServerWhenExposed";
import type { PolicyOptions } from "./common";
import { containersHaveRequestsAndLimits } from "./containersHaveRequestsAndLimits";
import { credentialsOnlyAsSecrets } from "./credentialsOnlyAsSecrets";
import { gpuPoolsTainted } from "./gpuPoolsTainted";
import { jupyterhubNotDummyOutsideDev } from "./jupyterhubNotDummyOutsideDev";
import { noLatestOrUntaggedImages } from "./noLatestOrUntaggedImages";
import { noPrivilegedOutsideSystemNamespaces } from "./noPrivilegedOutsideSystemNamespaces";
import { noUnapprovedLoadBalancer } from "./noUnapprovedLoadBalancer";
import { gpuWorkloadsQueued, teamNamespacesHaveQuota } from "./teams";

export { argoServerAuthNotServerWhenExposed } from "./argoServerAuthNotServerWhenExposed";
export { containersHaveRequestsAndLimits } from "./containersHaveRequestsAndLimits";
export { credentialsOnlyAsSecrets } from "./credentialsOnlyAsSecrets";
export { gpuPoolsTainted } from "./gpuPoolsTainted";
export { jupyterhubNotDummyOutsideDev } from "./jupyterhubNotDummyOutsideDev";
export { noLatestOrUntaggedImages } from "./noLatestOrUntaggedImages";
export { noPrivilegedOutsideSystemNamespaces } from "./noPrivilegedOutsideSystemNamespaces";
export { noUnapprovedLoadBalancer } from "./noUnapprovedLoadBalancer";
export { gpuWorkloadsQueued, teamNamespacesHaveQuota } from "./teams";
export type { PolicyOptions } from "./common";

/** Name of the pack as the engine reports it (`<name>@v<version from package.json>`). */
export const PACK_NAME = "mlplatform-security";

/** Every policy of the pack, mandatory unless `opts` says otherwise. */
export function mlplatformPolicies(opts?: PolicyOptions): (ResourceValidationPolicy | StackValidationPolicy)[] {
  return [
    gpuPoolsTainted(opts),
    noUnapprovedLoadBalancer(opts),
    containersHaveRequestsAndLimits(opts),
    noLatestOrUntaggedImages(opts),
    noPrivilegedOutsideSystemNamespaces(opts),
    jupyterhubNotDummyOutsideDev(opts),
    argoServerAuthNotServerWhenExposed(opts),
    credentialsOnlyAsSecrets(opts),
    teamNamespacesHaveQuota(opts),
    gpuWorkloadsQueued(opts),
  ];
}

/** What policy/index.ts hands to `new PolicyPack(PACK_NAME, …)`. */
export function packArgs(): PolicyPackArgs {
  return {
    description:
      "mlplatform: secure by default. GPU pools tainted, nothing exposed or privileged without approval, pinned images, bounded containers, real authentication, credentials only in Secrets.",
    enforcementLevel: "mandatory",
    policies: mlplatformPolicies(),
  };
}
