/**
 * Loading our TF Serving proto files (`trainer/proto/`) and the TypeScript shapes of the
 * messages as @grpc/proto-loader hands them over with {@link PROTO_LOADER_OPTIONS}.
 * Server and client both load through here, so they decode identically.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";
import type { TensorProtoObject } from "./tensor";

/**
 * The one set of proto-loader options: field names as in the .proto (snake_case, as TF
 * Serving's JSON and Python use them), int64 as decimal strings (versions and dimension
 * sizes can exceed 2^53 on the wire), enums by name, defaults filled in, and the name of
 * the set member of each oneof in a virtual field (`version_choice`).
 */
export const PROTO_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

/**
 * HTTP/2 receive window per connection and per stream, for server and client: 1 MiB, as
 * grpc-java and grpc-go use (Node's default is 64 KiB; see `grpc.ts`).
 */
export const DEFAULT_FLOW_CONTROL_WINDOW_BYTES = 1024 * 1024;

/** `trainer/proto`, found from the source tree or a compiled `dist/` tree. */
export function protoDir(): string {
  for (const rel of ["../../proto", "../../../proto"]) {
    const dir = path.resolve(__dirname, rel);
    if (fs.existsSync(path.join(dir, "tensorflow_serving"))) return dir;
  }
  throw new Error(`cannot find the proto directory (trainer/proto) from ${__dirname}`);
}

export const SERVICE_FILES = ["tensorflow_serving/apis/prediction_service.proto", "tensorflow_serving/apis/model_service.proto", "grpc/health/v1/health.proto"] as const;

let packageDefinition: protoLoader.PackageDefinition | undefined;

/** The package definition of all our services (loaded once). */
export function servingPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync([...SERVICE_FILES], { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] });
  return packageDefinition;
}

let root: protobuf.Root | undefined;

/**
 * A protobufjs Root of the same files, for what proto-loader does not expose: encoding the
 * messages packed in `google.protobuf.Any` (GetModelMetadata) and raw encoding in tests.
 */
export function servingRoot(): protobuf.Root {
  if (!root) {
    const dir = protoDir();
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => {
      const local = path.join(dir, target);
      return fs.existsSync(local) ? local : target;
    };
    r.loadSync([...SERVICE_FILES], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

/** Type URL of a message packed in Any, as TF Serving writes it. */
export const typeUrl = (fullName: string): string => `type.googleapis.com/${fullName}`;

/** Encodes a plain object as `fullName` and wraps it in an Any. */
export function packAny(fullName: string, value: object): AnyObject {
  const type = servingRoot().lookupType(fullName);
  const msg = type.fromObject(value);
  return { type_url: typeUrl(fullName), value: Buffer.from(type.encode(msg).finish()) };
}

/** Decodes an Any whose type is in our files (or a well-known type) to a plain object. */
export function unpackAny(any: AnyObject): Record<string, unknown> {
  const fullName = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
  const type = servingRoot().lookupType(fullName);
  return type.toObject(type.decode(any.value), { longs: String, enums: String, defaults: true }) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------
// Message shapes (proto-loader objects with PROTO_LOADER_OPTIONS)
// ---------------------------------------------------------------------------------------

export interface AnyObject {
  type_url: string;
  value: Buffer;
}

export interface ModelSpecObject {
  name?: string;
  version?: { value?: string | number } | null;
  version_label?: string;
  signature_name?: string;
  version_choice?: "version" | "version_label";
}

export interface PredictRequest {
  model_spec?: ModelSpecObject | null;
  inputs?: Record<string, TensorProtoObject>;
  output_filter?: string[];
}

export interface PredictResponse {
  model_spec?: ModelSpecObject;
  outputs?: Record<string, TensorProtoObject>;
}

export interface FeatureObject {
  bytes_list?: { value?: Buffer[] } | null;
  float_list?: { value?: number[] } | null;
  int64_list?: { value?: (string | number)[] } | null;
  kind?: "bytes_list" | "float_list" | "int64_list";
}

export interface ExampleObject {
  features?: { feature?: Record<string, FeatureObject> } | null;
}

export interface ClassificationRequest {
  model_spec?: ModelSpecObject | null;
  input?: {
    example_list?: { examples?: ExampleObject[] } | null;
    example_list_with_context?: { examples?: ExampleObject[]; context?: ExampleObject | null } | null;
    kind?: "example_list" | "example_list_with_context";
  } | null;
}

export interface ClassificationResponse {
  model_spec?: ModelSpecObject;
  result?: { classifications: { classes: { label: string; score: number }[] }[] };
}

export interface GetModelMetadataRequest {
  model_spec?: ModelSpecObject | null;
  metadata_field?: string[];
}

export interface GetModelMetadataResponse {
  model_spec?: ModelSpecObject;
  metadata?: Record<string, AnyObject>;
}

export interface GetModelStatusRequest {
  model_spec?: ModelSpecObject | null;
}

export interface ModelVersionStatusObject {
  version: string;
  state: string;
  status: { error_code: string; error_message: string };
}

export interface GetModelStatusResponse {
  model_version_status: ModelVersionStatusObject[];
}

export interface HealthCheckRequest {
  service?: string;
}

export interface HealthCheckResponse {
  status: "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
}

/** Fully-qualified service names. */
export const PREDICTION_SERVICE = "tensorflow.serving.PredictionService";
export const MODEL_SERVICE = "tensorflow.serving.ModelService";
export const HEALTH_SERVICE = "grpc.health.v1.Health";

/** The generic client constructors of our services (for `predict` and tests). */
export function clientConstructors(): {
  PredictionService: grpc.ServiceClientConstructor;
  ModelService: grpc.ServiceClientConstructor;
  Health: grpc.ServiceClientConstructor;
} {
  const loaded = grpc.loadPackageDefinition(servingPackageDefinition()) as unknown as {
    tensorflow: { serving: { PredictionService: grpc.ServiceClientConstructor; ModelService: grpc.ServiceClientConstructor } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return {
    PredictionService: loaded.tensorflow.serving.PredictionService,
    ModelService: loaded.tensorflow.serving.ModelService,
    Health: loaded.grpc.health.v1.Health,
  };
}
