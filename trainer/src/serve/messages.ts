/**
 * Message bodies both front ends answer with, built once as plain objects: gRPC packs
 * them into protobuf, REST prints them as proto3 JSON.
 */
import type { ModelMetadata } from "../metadata";
import { GrpcStatus } from "./errors";
import type { VersionStatus } from "./manager";
import type { GetModelStatusResponse } from "./protos";
import { DT_NAME } from "./tensor";

/** The metadata_field (gRPC) or `?include=` value (REST) that returns our metadata.json (labels, preprocessing). */
export const MLPLATFORM_METADATA_FIELD = "mlplatform";

/** `SignatureDefMap` as a plain object for packing. */
export function signatureDefMap(metadata: Pick<ModelMetadata, "signatures">): object {
  // A SavedModel's specs carry the graph tensor each alias names (`serving_default_x:0`),
  // as TF Serving reports it; tfjs models have no graph names, so the alias stands in.
  const info = (spec: { dtype: keyof typeof DT_NAME; shape: readonly number[]; tensorName?: string }, name: string): object => ({
    name: spec.tensorName ?? name,
    dtype: DT_NAME[spec.dtype],
    tensor_shape: { dim: spec.shape.map((d) => ({ size: d, name: "" })), unknown_rank: false },
  });
  const defs: Record<string, object> = {};
  for (const [sig, s] of Object.entries(metadata.signatures)) {
    const inputs: Record<string, object> = {};
    const outputs: Record<string, object> = {};
    for (const [n, t] of Object.entries(s.inputs)) inputs[n] = info(t, n);
    for (const [n, t] of Object.entries(s.outputs)) outputs[n] = info(t, n);
    defs[sig] = { inputs, outputs, method_name: s.methodName };
  }
  return { signature_def: defs };
}

/** One entry of GetModelStatusResponse.model_version_status (REST prints the same fields). */
export function versionStatusObject(s: VersionStatus): GetModelStatusResponse["model_version_status"][number] {
  return {
    version: String(s.version),
    state: s.state,
    status: { error_code: GrpcStatus[s.errorCode] ?? "UNKNOWN", error_message: s.errorMessage },
  };
}
