/**
 * The mlplatform policy pack. Run it with any preview or update:
 *
 *   pulumi preview --policy-pack policy [--policy-pack-config policy-config.json]
 *
 * Importing this file starts the analyzer's gRPC server (that is what `new PolicyPack` does),
 * so tests import the policies from ./policies instead.
 */
import { PolicyPack } from "@pulumi/policy";
import { PACK_NAME, packArgs } from "./policies";

new PolicyPack(PACK_NAME, packArgs());
