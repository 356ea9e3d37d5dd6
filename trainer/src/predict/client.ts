/**
 * Clients of a TF-Serving-compatible model server (ours or TF Serving itself) over gRPC or
 * REST, with one interface: read a model's signatures (and our metadata extension when the
 * server has it), predict, and read version status. Failures become {@link PredictError}s
 * that say what to check: the address, the model name, the deadline.
 */
import * as grpc from "@grpc/grpc-js";
import { MlpError } from "../errors";
import type { ModelMetadata, SignatureSpec, TensorDtype } from "../metadata";
import { parseMetadata } from "../metadata";
import {
  clientConstructors,
  DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
  unpackAny,
  type GetModelMetadataResponse,
  type GetModelStatusResponse,
  type ModelSpecObject,
  type PredictResponse,
} from "../serve/protos";
import { fromTensorProto, toTensorProto, type HostTensor } from "../serve/tensor";
import { tensorToJson } from "../serve/json";

/** A request to the model server failed; the message says what and where. */
export class PredictError extends MlpError {
  constructor(
    message: string,
    /** The gRPC code (or the code a REST status maps to). */
    readonly code: grpc.status,
  ) {
    super(message);
  }
}

export interface ModelChoice {
  readonly name: string;
  readonly version?: number;
  readonly label?: string;
}

export interface RemoteModel {
  readonly name: string;
  readonly version: number;
  readonly signatures: Readonly<Record<string, SignatureSpec>>;
  /** Our `metadata.json` (labels, preprocessing) when the server offers it. */
  readonly metadata?: ModelMetadata;
}

export interface Prediction {
  readonly name: string;
  readonly version: number;
  readonly outputs: Record<string, HostTensor>;
}

export interface VersionState {
  readonly version: number;
  readonly state: string;
  readonly errorCode: string;
  readonly errorMessage: string;
}

export interface ServingClient {
  readonly target: string;
  describe(model: ModelChoice, deadlineMs: number): Promise<RemoteModel>;
  predict(model: ModelChoice, signatureName: string, inputs: Record<string, HostTensor>, deadlineMs: number): Promise<Prediction>;
  status(model: ModelChoice, deadlineMs: number): Promise<VersionState[]>;
  close(): void;
}

const DTYPES: Readonly<Record<string, TensorDtype>> = { DT_FLOAT: "float32", DT_INT32: "int32", DT_BOOL: "bool", DT_STRING: "string" };

interface TensorInfoObject {
  dtype?: string;
  tensor_shape?: { dim?: { size?: string | number }[] };
}

/** SignatureDefMap (plain object) → our signature specs; tensors of other dtypes are skipped. */
export function signaturesFromDefMap(defMap: {
  signature_def?: Record<string, { method_name?: string; inputs?: Record<string, TensorInfoObject>; outputs?: Record<string, TensorInfoObject> }>;
}): Record<string, SignatureSpec> {
  const out: Record<string, SignatureSpec> = {};
  const side = (m: Record<string, TensorInfoObject> | undefined): Record<string, { dtype: TensorDtype; shape: number[] }> => {
    const r: Record<string, { dtype: TensorDtype; shape: number[] }> = {};
    for (const [n, t] of Object.entries(m ?? {})) {
      const dtype = DTYPES[t.dtype ?? ""];
      if (dtype) r[n] = { dtype, shape: (t.tensor_shape?.dim ?? []).map((d) => Number(d.size ?? -1)) };
    }
    return r;
  };
  for (const [name, s] of Object.entries(defMap.signature_def ?? {})) {
    out[name] = { methodName: s.method_name ?? "", inputs: side(s.inputs), outputs: side(s.outputs) };
  }
  return out;
}

function specOf(m: ModelChoice, signatureName = ""): ModelSpecObject {
  const spec: ModelSpecObject = { name: m.name, signature_name: signatureName };
  if (m.version !== undefined) spec.version = { value: String(m.version) };
  else if (m.label !== undefined) spec.version_label = m.label;
  return spec;
}

function describeChoice(m: ModelChoice): string {
  return m.version !== undefined ? `model "${m.name}" version ${m.version}` : m.label !== undefined ? `model "${m.name}" label "${m.label}"` : `model "${m.name}"`;
}

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** gRPC client (`tensorflow.serving.PredictionService` / `ModelService`). */
export class GrpcServingClient implements ServingClient {
  private readonly prediction: grpc.Client;
  private readonly models: grpc.Client;

  constructor(
    readonly target: string,
    maxMessageBytes = 64 * 1024 * 1024,
  ) {
    const { PredictionService, ModelService } = clientConstructors();
    const opts = {
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
      // 1 MiB HTTP/2 receive windows, as the server opens (see serve/grpc.ts): large answers
      // do not stall on WINDOW_UPDATE round trips.
      "grpc-node.flow_control_window": DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
    };
    this.prediction = new PredictionService(target, grpc.credentials.createInsecure(), opts);
    this.models = new ModelService(target, grpc.credentials.createInsecure(), opts);
  }

  private call<Req, Res>(client: grpc.Client, method: string, req: Req, deadlineMs: number, what: string): Promise<Res> {
    const fn = (client as unknown as Record<string, Unary<Req, Res>>)[method]!.bind(client);
    return new Promise((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err) reject(this.explain(err, what, deadlineMs));
        else resolve(res!);
      });
    });
  }

  private explain(err: grpc.ServiceError, what: string, deadlineMs: number): PredictError {
    switch (err.code) {
      case grpc.status.UNAVAILABLE:
        return new PredictError(`cannot reach the model server at ${this.target} over gRPC (${err.details}); is it running, and is that its gRPC port?`, err.code);
      case grpc.status.DEADLINE_EXCEEDED:
        return new PredictError(`${what}: no answer from ${this.target} within ${deadlineMs} ms (raise --deadline-ms)`, err.code);
      case grpc.status.NOT_FOUND:
        return new PredictError(`${what}: not found on ${this.target}: ${err.details}`, err.code);
      default:
        return new PredictError(`${what}: the server at ${this.target} answered ${grpc.status[err.code]}: ${err.details}`, err.code);
    }
  }

  async describe(m: ModelChoice, deadlineMs: number): Promise<RemoteModel> {
    const what = `metadata of ${describeChoice(m)}`;
    let res: GetModelMetadataResponse;
    try {
      res = await this.call(this.prediction, "GetModelMetadata", { model_spec: specOf(m), metadata_field: ["signature_def", "mlplatform"] }, deadlineMs, what);
    } catch (e) {
      // TF Serving itself rejects unknown metadata fields: ask again for the standard one.
      if (!(e instanceof PredictError) || e.code !== grpc.status.INVALID_ARGUMENT) throw e;
      res = await this.call(this.prediction, "GetModelMetadata", { model_spec: specOf(m), metadata_field: ["signature_def"] }, deadlineMs, what);
    }
    const sig = res.metadata?.signature_def;
    if (!sig) throw new PredictError(`${what}: the answer has no signature_def`, grpc.status.INTERNAL);
    const ext = res.metadata?.mlplatform;
    return {
      name: res.model_spec?.name ?? m.name,
      version: Number(res.model_spec?.version?.value ?? 0),
      signatures: signaturesFromDefMap(unpackAny(sig) as Parameters<typeof signaturesFromDefMap>[0]),
      metadata: ext ? parseMetadata(`${this.target} ${what}`, JSON.parse(String(unpackAny(ext).value))) : undefined,
    };
  }

  async predict(m: ModelChoice, signatureName: string, inputs: Record<string, HostTensor>, deadlineMs: number): Promise<Prediction> {
    const protos: Record<string, object> = {};
    for (const [n, t] of Object.entries(inputs)) protos[n] = toTensorProto(t);
    const res = await this.call<object, PredictResponse>(
      this.prediction,
      "Predict",
      { model_spec: specOf(m, signatureName), inputs: protos },
      deadlineMs,
      `predict with ${describeChoice(m)}`,
    );
    const outputs: Record<string, HostTensor> = {};
    const unlimited = { maxElements: Number.MAX_SAFE_INTEGER, maxRank: 32, rejectNonFinite: false };
    for (const [n, p] of Object.entries(res.outputs ?? {})) outputs[n] = fromTensorProto(`output "${n}"`, p, unlimited);
    return { name: res.model_spec?.name ?? m.name, version: Number(res.model_spec?.version?.value ?? 0), outputs };
  }

  async status(m: ModelChoice, deadlineMs: number): Promise<VersionState[]> {
    const res = await this.call<object, GetModelStatusResponse>(this.models, "GetModelStatus", { model_spec: specOf(m) }, deadlineMs, `status of ${describeChoice(m)}`);
    return res.model_version_status.map((s) => ({
      version: Number(s.version),
      state: s.state,
      errorCode: s.status?.error_code ?? "OK",
      errorMessage: s.status?.error_message ?? "",
    }));
  }

  close(): void {
    this.prediction.close();
    this.models.close();
  }
}

const HTTP_TO_GRPC: Readonly<Record<number, grpc.status>> = {
  400: grpc.status.INVALID_ARGUMENT,
  404: grpc.status.NOT_FOUND,
  429: grpc.status.RESOURCE_EXHAUSTED,
  503: grpc.status.UNAVAILABLE,
  504: grpc.status.DEADLINE_EXCEEDED,
};

/** REST client (`/v1/models/...`). */
export class RestServingClient implements ServingClient {
  private readonly base: string;
  constructor(readonly target: string) {
    this.base = /^https?:\/\//.test(target) ? target.replace(/\/$/, "") : `http://${target}`;
  }

  private path(m: ModelChoice): string {
    const name = encodeURIComponent(m.name);
    if (m.version !== undefined) return `/v1/models/${name}/versions/${m.version}`;
    if (m.label !== undefined) return `/v1/models/${name}/labels/${encodeURIComponent(m.label)}`;
    return `/v1/models/${name}`;
  }

  private async request(url: string, init: RequestInit, deadlineMs: number, what: string): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${url}`, { ...init, signal: AbortSignal.timeout(deadlineMs) });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      if (err.name === "TimeoutError")
        throw new PredictError(`${what}: no answer from ${this.target} within ${deadlineMs} ms (raise --deadline-ms)`, grpc.status.DEADLINE_EXCEEDED);
      throw new PredictError(
        `cannot reach the model server at ${this.target} over REST (${err.cause?.code ?? err.cause?.message ?? err.message}); is it running, and is that its REST port?`,
        grpc.status.UNAVAILABLE,
      );
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new PredictError(`${what}: ${this.target} answered HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`, grpc.status.INTERNAL);
    }
    if (!res.ok) {
      const msg = (body as { error?: string }).error ?? text;
      const code = HTTP_TO_GRPC[res.status] ?? grpc.status.UNKNOWN;
      const prefix = res.status === 404 ? "not found on" : `HTTP ${res.status} from`;
      throw new PredictError(`${what}: ${prefix} ${this.target}: ${msg}`, code);
    }
    return body;
  }

  async describe(m: ModelChoice, deadlineMs: number): Promise<RemoteModel> {
    const what = `metadata of ${describeChoice(m)}`;
    const body = (await this.request(`${this.path(m)}/metadata?include=mlplatform`, {}, deadlineMs, what)) as {
      model_spec?: { name?: string; version?: string };
      metadata?: { signature_def?: Parameters<typeof signaturesFromDefMap>[0]; mlplatform?: unknown };
    };
    const defMap = body.metadata?.signature_def;
    if (!defMap) throw new PredictError(`${what}: the answer has no signature_def`, grpc.status.INTERNAL);
    return {
      name: body.model_spec?.name ?? m.name,
      version: Number(body.model_spec?.version ?? 0),
      signatures: signaturesFromDefMap(defMap),
      metadata: body.metadata?.mlplatform ? parseMetadata(`${this.target} ${what}`, body.metadata.mlplatform) : undefined,
    };
  }

  async predict(m: ModelChoice, signatureName: string, inputs: Record<string, HostTensor>, deadlineMs: number): Promise<Prediction> {
    // Columnar form: the tensors travel whole, as nested lists.
    const parts = Object.entries(inputs).map(([n, t]) => `${JSON.stringify(n)}:${tensorToJson(t)}`);
    const body = `{"signature_name":${JSON.stringify(signatureName)},"inputs":{${parts.join(",")}}}`;
    const res = (await this.request(
      `${this.path(m)}:predict`,
      { method: "POST", body, headers: { "Content-Type": "application/json" } },
      deadlineMs,
      `predict with ${describeChoice(m)}`,
    )) as {
      outputs?: unknown;
    };
    const outputs: Record<string, HostTensor> = {};
    const single = Array.isArray(res.outputs) || typeof res.outputs === "number";
    const named = single ? { output: res.outputs } : (res.outputs as Record<string, unknown>);
    for (const [n, v] of Object.entries(named ?? {})) outputs[n] = nestedToHost(v);
    return { name: m.name, version: m.version ?? 0, outputs };
  }

  async status(m: ModelChoice, deadlineMs: number): Promise<VersionState[]> {
    const body = (await this.request(this.path(m), {}, deadlineMs, `status of ${describeChoice(m)}`)) as {
      model_version_status?: { version: string; state: string; status?: { error_code?: string; error_message?: string } }[];
    };
    return (body.model_version_status ?? []).map((s) => ({
      version: Number(s.version),
      state: s.state,
      errorCode: s.status?.error_code ?? "OK",
      errorMessage: s.status?.error_message ?? "",
    }));
  }

  close(): void {}
}

/** Nested JSON numbers → a float32 host tensor (shape from the nesting). */
export function nestedToHost(v: unknown): HostTensor {
  const shape: number[] = [];
  let p = v;
  while (Array.isArray(p)) {
    shape.push(p.length);
    p = p[0];
  }
  const flat = (Array.isArray(v) ? (v as unknown[]).flat(Infinity) : [v]) as number[];
  return { dtype: "float32", shape, values: Float32Array.from(flat, (x) => (x === null ? NaN : x)) };
}

export function openClient(protocol: "grpc" | "rest", target: string): ServingClient {
  return protocol === "grpc" ? new GrpcServingClient(target) : new RestServingClient(target);
}
