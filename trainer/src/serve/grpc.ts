/**
 * The gRPC front end: `tensorflow.serving.PredictionService` (Predict, Classify,
 * GetModelMetadata), `tensorflow.serving.ModelService` (GetModelStatus) and
 * `grpc.health.v1.Health`, translating messages to {@link InferenceService} calls.
 *
 * Every error path answers `callback({ code, details })`; unexpected errors become INTERNAL
 * with a generic message and the stack in the server log. Requests that do not parse as
 * protobuf get INVALID_ARGUMENT (grpc-js alone would say INTERNAL).
 */
import type * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { GrpcStatus, invalidArgument } from "./errors";
import type { HealthState } from "./health";
import type { ExampleFeatures } from "./json";
import { MLPLATFORM_METADATA_FIELD, signatureDefMap, versionStatusObject } from "./messages";
import {
  DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
  HEALTH_SERVICE,
  MODEL_SERVICE,
  packAny,
  PREDICTION_SERVICE,
  servingPackageDefinition,
  type ClassificationRequest,
  type ClassificationResponse,
  type FeatureObject,
  type GetModelMetadataRequest,
  type GetModelMetadataResponse,
  type GetModelStatusRequest,
  type GetModelStatusResponse,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type ModelSpecObject,
  type PredictRequest,
} from "./protos";
import { compose, InFlight, requestLayers, type RequestCall } from "./requests";
import type { Api, CallContext, InferenceService, ModelRef } from "./service";
import { fromTensorProto, type HostTensor } from "./tensor";
import { decodePredictRequest, encodePredictResponse, type PredictAnswer } from "./wire";

/** Marks a request whose bytes did not decode; the handler answers INVALID_ARGUMENT. */
const MALFORMED = Symbol("malformed request");
type Maybe<T> = T & { [MALFORMED]?: string };

/** 32 MiB: a 1 MB float32 Inception input (299×299×3) many times over, and batches of them. */
export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

export { DEFAULT_FLOW_CONTROL_WINDOW_BYTES };

export interface GrpcOptions {
  /** Largest request and response message, bytes. Default {@link DEFAULT_MAX_MESSAGE_BYTES}. */
  readonly maxMessageBytes?: number;
  /** HTTP/2 receive window of each connection and stream, bytes. Default {@link DEFAULT_FLOW_CONTROL_WINDOW_BYTES}. */
  readonly flowControlWindowBytes?: number;
  readonly log: (line: string) => void;
  /** In-flight requests and the drain, shared with the other front end. Default: its own. */
  readonly requests?: InFlight;
}

/** Reads a ModelSpec into a ModelRef; INVALID_ARGUMENT when missing or malformed. */
export function modelRef(spec: ModelSpecObject | null | undefined): ModelRef {
  if (!spec) throw invalidArgument("Missing ModelSpec");
  const name = spec.name ?? "";
  if (name === "") throw invalidArgument("Missing ModelSpec name");
  let version: number | undefined;
  let label: string | undefined;
  if (spec.version_choice === "version" && spec.version) {
    const v = Number(spec.version.value ?? 0);
    if (!Number.isSafeInteger(v) || v < 0) throw invalidArgument(`ModelSpec version ${String(spec.version.value)} is not a valid version`);
    version = v;
  } else if (spec.version_choice === "version_label") {
    label = spec.version_label ?? "";
    if (label === "") throw invalidArgument("ModelSpec version_label is empty");
  }
  return { name, version, label, signatureName: spec.signature_name ?? "" };
}

function specOut(name: string, version: number, signatureName: string): ModelSpecObject {
  return { name, version: { value: String(version) }, signature_name: signatureName };
}

function featureValues(where: string, f: Record<string, FeatureObject> | undefined): ExampleFeatures {
  const m: ExampleFeatures = new Map();
  for (const [k, v] of Object.entries(f ?? {})) {
    if (v.kind === "float_list") m.set(k, v.float_list?.value ?? []);
    else if (v.kind === "int64_list") {
      const vals = (v.int64_list?.value ?? []).map(Number);
      if (!vals.every(Number.isSafeInteger)) throw invalidArgument(`${where}.${k}: int64 value out of range`);
      m.set(k, vals);
    } else if (v.kind === "bytes_list")
      m.set(
        k,
        (v.bytes_list?.value ?? []).map((b) => new Uint8Array(b)),
      );
    else m.set(k, []);
  }
  return m;
}

/** Examples of a ClassificationRequest as plain features (context merged into each). */
export function classifyExamples(req: ClassificationRequest): ExampleFeatures[] {
  const input = req.input;
  if (!input || !input.kind) throw invalidArgument("Invalid argument: Input is empty");
  const list = input.kind === "example_list" ? input.example_list : input.example_list_with_context;
  const examples = list?.examples ?? [];
  if (examples.length === 0) throw invalidArgument("Invalid argument: Input is empty");
  const context =
    input.kind === "example_list_with_context" ? featureValues("context", input.example_list_with_context?.context?.features?.feature) : (new Map() as ExampleFeatures);
  return examples.map((e, i) => {
    const m = featureValues(`examples[${i}]`, e.features?.feature);
    for (const [k, v] of context) if (!m.has(k)) m.set(k, v);
    return m;
  });
}

/**
 * The service definition with deserializers that never throw (a request that does not
 * decode becomes a MALFORMED marker the handler answers), and Predict on the direct
 * codec of `wire.ts` instead of proto-loader's generic one.
 */
function withTolerantDeserializers(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def)) {
    const predict = m.path === `/${PREDICTION_SERVICE}/Predict`;
    const orig: (buf: Buffer) => unknown = predict ? decodePredictRequest : m.requestDeserialize;
    out[name] = {
      ...m,
      ...(predict ? { responseSerialize: (a: unknown) => encodePredictResponse(a as PredictAnswer) } : {}),
      requestDeserialize: (buf: Buffer) => {
        try {
          return orig(buf);
        } catch (err) {
          return { [MALFORMED]: (err as Error).message };
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

export class GrpcFrontEnd {
  readonly server: grpc.Server;
  private readonly requests: InFlight;
  private readonly watches = new Set<grpc.ServerWritableStream<unknown, HealthCheckResponse>>();
  /** http2 servers whose sessions get our flow-control windows. */
  private readonly widened = new WeakSet<object>();

  constructor(
    private readonly service: InferenceService,
    private readonly health: HealthState,
    private readonly options: GrpcOptions,
  ) {
    this.requests = options.requests ?? new InFlight(service.metrics.inflight);
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": max,
      "grpc.max_send_message_length": max,
    });
    const pkg = servingPackageDefinition();
    const def = (n: string): grpc.ServiceDefinition => withTolerantDeserializers(pkg[n] as grpc.ServiceDefinition);
    this.server.addService(def(PREDICTION_SERVICE), {
      Predict: this.unary<PredictRequest, PredictAnswer>("predict", (req, ctx) => this.predict(req, ctx)),
      Classify: this.unary<ClassificationRequest, ClassificationResponse>("classify", (req, ctx) => this.classify(req, ctx)),
      GetModelMetadata: this.unary<GetModelMetadataRequest, GetModelMetadataResponse>("metadata", async (req) => this.metadata(req)),
    });
    this.server.addService(def(MODEL_SERVICE), {
      GetModelStatus: this.unary<GetModelStatusRequest, GetModelStatusResponse>("status", async (req) => this.status(req)),
    });
    this.server.addService(def(HEALTH_SERVICE), {
      Check: (call: grpc.ServerUnaryCall<Maybe<HealthCheckRequest>, HealthCheckResponse>, cb: grpc.sendUnaryData<HealthCheckResponse>) => {
        if (call.request[MALFORMED] !== undefined) return cb({ code: GrpcStatus.INVALID_ARGUMENT, details: "Could not parse the request" });
        const s = this.health.get(call.request.service ?? "");
        if (!s) return cb({ code: GrpcStatus.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
        return cb(null, { status: s });
      },
      Watch: (call: grpc.ServerWritableStream<Maybe<HealthCheckRequest>, HealthCheckResponse>) => {
        const name = call.request[MALFORMED] !== undefined ? "\u0000" : (call.request.service ?? "");
        call.write({ status: this.health.get(name) ?? "SERVICE_UNKNOWN" });
        const unwatch = this.health.watch((svc, status) => {
          if (svc === name) call.write({ status });
        });
        this.watches.add(call);
        const stop = (): void => {
          unwatch();
          this.watches.delete(call);
        };
        call.on("cancelled", stop);
        call.on("close", stop);
        if (this.requests.isDraining) call.end();
      },
    });
  }

  /** Binds `host:port` (port 0 picks one); resolves to the bound port. */
  bind(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
        if (err) return reject(err);
        this.widenFlowControlWindows(this.options.flowControlWindowBytes ?? DEFAULT_FLOW_CONTROL_WINDOW_BYTES);
        resolve(p);
      });
    });
  }

  /**
   * Opens `bytes`-sized HTTP/2 receive windows on every connection, present and future.
   *
   * grpc-js servers keep Node's 64 KiB windows and have no option for them (clients have
   * `grpc-node.flow_control_window`; grpc/grpc-node#3058 proposes it for servers). With 64
   * KiB per connection, 32 concurrent 3 KB requests already do not fit: the rest wait for
   * WINDOW_UPDATEs, and which stream gets the freed window is luck, so some wait over and
   * over (bench/serve-bench.ts at concurrency 32 over one connection: p99 320 ms at p50
   * 21 ms, while the server's own p99 was under 5 ms; with 1 MiB windows, p99 50 ms).
   * Until grpc-js has the option, we do what that
   * change does, on the http2 servers grpc-js created (a private field, checked: if it is
   * gone, we log and keep the defaults; a test fails so the upgrade is noticed).
   */
  private widenFlowControlWindows(bytes: number): void {
    const servers = (this.server as unknown as { http2Servers?: Map<http2.Http2Server, { sessions?: Set<http2.ServerHttp2Session> }> }).http2Servers;
    if (!(servers instanceof Map)) {
      this.options.log("gRPC: cannot set HTTP/2 flow-control windows (grpc-js internals changed); keeping the 64 KiB defaults");
      return;
    }
    const widen = (session: http2.ServerHttp2Session): void => {
      try {
        session.setLocalWindowSize(bytes);
        session.settings({ initialWindowSize: bytes });
      } catch (e) {
        // A session already closing: nothing to tune.
        if (!session.destroyed && !session.closed) this.options.log(`gRPC: setting HTTP/2 windows failed: ${(e as Error).message}`);
      }
    };
    for (const [h2, entry] of servers) {
      if (this.widened.has(h2)) continue;
      this.widened.add(h2);
      h2.on("session", widen);
      for (const session of entry.sessions ?? []) widen(session);
    }
  }

  /** Requests being handled now. */
  get active(): number {
    return this.requests.active;
  }

  /**
   * Graceful stop: refuse new calls (UNAVAILABLE), wait for in-flight ones up to `graceMs`,
   * then `tryShutdown`, and `forceShutdown` if that has not finished when the grace ends.
   */
  async shutdown(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    const drained = this.requests.drain(graceMs);
    // Watchers have been sent NOT_SERVING; end their streams so they do not hold the drain.
    for (const w of this.watches) w.end();
    this.watches.clear();
    await drained;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          this.server.forceShutdown();
          resolve();
        },
        Math.max(0, deadline - Date.now()),
      );
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * A unary method: the request goes through the shared layers (requests.ts) to `fn`;
   * the answer layer calls back with the response or `{ code, details }`.
   */
  private unary<Req extends object, Res>(
    api: Api,
    fn: (req: Req, ctx: CallContext) => Promise<{ res: Res; model: string; version?: number }>,
  ): grpc.handleUnaryCall<Maybe<Req>, Res> {
    return (call, callback) => {
      const d = call.getDeadline();
      // grpc-js sets `cancelled` when the client goes away, and also (harmlessly, then) on
      // every stream close after the answer: read it when needed rather than reacting to
      // the event with an AbortController per call.
      const ctx: RequestCall = {
        protocol: "grpc",
        api,
        model: (call.request as { model_spec?: ModelSpecObject | null }).model_spec?.name ?? "",
        version: undefined,
        deadline: d instanceof Date ? d.getTime() : Number.isFinite(d) ? Number(d) : undefined,
        signal: {
          get aborted() {
            return call.cancelled;
          },
        },
        describe: `gRPC ${api}`,
      };
      const handle = compose(
        requestLayers<Res>({
          service: this.service,
          requests: this.requests,
          log: this.options.log,
          send: (c, outcome) => {
            try {
              if (outcome.ok) callback(null, outcome.value);
              else callback({ code: outcome.error.code, details: outcome.error.message });
            } catch (e) {
              this.options.log(`${c.describe}: sending the answer failed: ${(e as Error)?.stack ?? String(e)}`);
            }
          },
        }),
        async (c) => {
          const req = call.request;
          if (req[MALFORMED] !== undefined) throw invalidArgument(`Could not parse the request as protobuf: ${req[MALFORMED]}`);
          const r = await fn(req, c);
          c.version = r.version;
          return r.res;
        },
      );
      // The outcome has been sent (and observed) by the layers.
      handle(ctx).catch(() => undefined);
    };
  }

  private async predict(req: PredictRequest, ctx: CallContext): Promise<{ res: PredictAnswer; model: string; version: number }> {
    const ref = modelRef(req.model_spec);
    const limits = this.service.options.tensorLimits;
    const a = await this.service.predict(
      ref,
      () => {
        const inputs: Record<string, HostTensor> = {};
        for (const [name, proto] of Object.entries(req.inputs ?? {})) inputs[name] = fromTensorProto(`input "${name}"`, proto, limits);
        return inputs;
      },
      req.output_filter ?? [],
      ctx,
    );
    // Encoded by `encodePredictResponse` (wire.ts), straight from the host tensors.
    return { res: { modelName: a.name, version: a.version, signatureName: a.signatureName, outputs: a.value }, model: a.name, version: a.version };
  }

  private async classify(req: ClassificationRequest, ctx: CallContext): Promise<{ res: ClassificationResponse; model: string; version: number }> {
    const ref = modelRef(req.model_spec);
    const a = await this.service.classify(ref, classifyExamples(req), ctx);
    return {
      res: {
        model_spec: specOut(a.name, a.version, a.signatureName),
        result: { classifications: a.value.map((classes) => ({ classes: classes.map((c) => ({ label: c.label, score: c.score })) })) },
      },
      model: a.name,
      version: a.version,
    };
  }

  private metadata(req: GetModelMetadataRequest): { res: GetModelMetadataResponse; model: string; version: number } {
    const ref = modelRef(req.model_spec);
    const fields = req.metadata_field ?? [];
    if (fields.length === 0) throw invalidArgument("GetModelMetadataRequest must specify at least one metadata_field");
    for (const f of fields) {
      if (f !== "signature_def" && f !== MLPLATFORM_METADATA_FIELD) throw invalidArgument(`Metadata field ${f} is not supported`);
    }
    const a = this.service.metadata(ref);
    const metadata: Record<string, { type_url: string; value: Buffer }> = {};
    if (fields.includes("signature_def")) metadata.signature_def = packAny("tensorflow.serving.SignatureDefMap", signatureDefMap(a.value));
    if (fields.includes(MLPLATFORM_METADATA_FIELD)) {
      metadata[MLPLATFORM_METADATA_FIELD] = packAny("google.protobuf.StringValue", { value: JSON.stringify(a.value) });
    }
    return { res: { model_spec: specOut(a.name, a.version, ""), metadata }, model: a.name, version: a.version };
  }

  private status(req: GetModelStatusRequest): { res: GetModelStatusResponse; model: string } {
    const ref = modelRef(req.model_spec);
    return { res: { model_version_status: this.service.status(ref).map(versionStatusObject) }, model: ref.name };
  }
}
