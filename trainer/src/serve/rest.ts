/**
 * The REST front end, TF Serving's HTTP/JSON API on node's `http`:
 *
 *   GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
 *   GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures (add
 *        `?include=mlplatform` for our metadata.json: labels, preprocessing)
 *   POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar JSON
 *   POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   tf.Example-style JSON
 *   GET  /monitoring/prometheus/metrics                          Prometheus text
 *
 * Errors are `{"error": "..."}` with the HTTP status TF Serving uses for the code.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { GrpcStatus, httpStatusFor, invalidArgument, ServingError } from "./errors";
import { encodedImageSignature } from "./images";
import { formatClassifyResponse, formatPredictResponse, parseClassifyBody, parsePredictBody, readSignatureName } from "./json";
import { MLPLATFORM_METADATA_FIELD, signatureDefMap, versionStatusObject } from "./messages";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics";
import { servingRoot } from "./protos";
import { compose, InFlight, requestLayers, type RequestCall } from "./requests";
import type { InferenceService, ModelRef } from "./service";

/** Largest REST request body by default: 64 MiB. */
export const DEFAULT_REST_MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Time a REST request may take by default, ms. */
export const DEFAULT_REST_TIMEOUT_MS = 30_000;

export interface RestOptions {
  /** Largest request body, bytes. Default {@link DEFAULT_REST_MAX_BODY_BYTES}. */
  readonly maxBodyBytes?: number;
  /** Time a request may take before DEADLINE_EXCEEDED (504), ms. Default {@link DEFAULT_REST_TIMEOUT_MS}. */
  readonly requestTimeoutMs?: number;
  readonly log: (line: string) => void;
  /** Sampled gauges (tensors, RSS, queue depth) refreshed before each scrape. */
  readonly refreshMetrics?: () => void;
  /** In-flight requests and the drain, shared with the other front end. Default: its own. */
  readonly requests?: InFlight;
}

/** A REST answer: status and body (JSON unless `contentType` says otherwise). */
interface Reply {
  readonly status: number;
  readonly body: string;
  readonly contentType?: string;
}

const MODEL_PATH = /^\/v1\/models\/([^/:]+)(?:\/versions\/([0-9]+)|\/labels\/([^/:]+))?(?:(\/metadata)|:([a-z]+))?$/;

interface Route {
  readonly ref: ModelRef;
  readonly metadata: boolean;
  readonly verb?: string;
}

function parsePath(pathname: string): Route | undefined {
  const m = MODEL_PATH.exec(pathname);
  if (!m) return undefined;
  const dec = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw invalidArgument(`Malformed request: bad percent-encoding in ${JSON.stringify(s)}`);
    }
  };
  const version = m[2] === undefined ? undefined : Number(m[2]);
  if (version !== undefined && !Number.isSafeInteger(version)) throw invalidArgument(`Malformed request: version ${m[2]} is too large`);
  return {
    ref: { name: dec(m[1]!), version, label: m[3] === undefined ? undefined : dec(m[3]) },
    metadata: m[4] !== undefined,
    verb: m[5],
  };
}

/** Proto3 JSON of a SignatureDefMap, as TF Serving's REST metadata prints it. */
function signatureDefJson(metadata: Parameters<typeof signatureDefMap>[0]): unknown {
  const type = servingRoot().lookupType("tensorflow.serving.SignatureDefMap");
  return type.toObject(type.fromObject(signatureDefMap(metadata)), { longs: String, enums: String, defaults: true });
}

export class RestFrontEnd {
  readonly server: http.Server;
  private readonly requests: InFlight;
  private readonly maxBody: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly service: InferenceService,
    private readonly options: RestOptions,
  ) {
    this.maxBody = options.maxBodyBytes ?? DEFAULT_REST_MAX_BODY_BYTES;
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REST_TIMEOUT_MS;
    this.requests = options.requests ?? new InFlight(service.metrics.inflight);
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":"Malformed HTTP request"}');
      else socket.destroy();
    });
  }

  /** Listens on `host:port` (0 picks a port); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  get active(): number {
    return this.requests.active;
  }

  /** Graceful stop: 503 for new requests, wait for in-flight ones up to `graceMs`, close. */
  async shutdown(graceMs: number): Promise<void> {
    await this.requests.drain(graceMs);
    // Idle keep-alive connections close now; any still flushing a response get a second.
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 1000).unref();
    });
  }

  private send(res: http.ServerResponse, reply: Reply): void {
    if (res.headersSent || res.destroyed) return;
    const headers: http.OutgoingHttpHeaders = { "Content-Type": reply.contentType ?? "application/json", "Content-Length": Buffer.byteLength(reply.body) };
    if (this.requests.isDraining) headers.Connection = "close";
    res.writeHead(reply.status, headers);
    res.end(reply.body);
  }

  /** Every request: through the shared layers (requests.ts) to {@link route}. */
  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const controller = new AbortController();
    res.on("close", () => {
      // Closed before the answer was written: the client went away.
      if (!res.writableFinished) controller.abort();
    });
    const call: RequestCall = {
      protocol: "rest",
      api: undefined,
      model: "",
      version: undefined,
      deadline: undefined,
      signal: controller.signal,
      abort: controller.signal,
      describe: `REST ${req.method} ${req.url}`,
    };
    const handle = compose(
      requestLayers<Reply>({
        service: this.service,
        requests: this.requests,
        log: this.options.log,
        timeoutMs: this.timeoutMs,
        send: (_c, outcome) => {
          // A request refused or failed before its body was read: drain the body so the
          // connection stays usable.
          if (!outcome.ok && !req.complete) req.resume();
          if (outcome.ok) this.send(res, outcome.value);
          else this.send(res, { status: outcome.error.httpStatus ?? httpStatusFor(outcome.error.code), body: JSON.stringify({ error: outcome.error.message }) });
        },
      }),
      (c) => this.route(req, c),
    );
    // The outcome has been sent (and observed) by the layers.
    handle(call).catch(() => undefined);
  }

  /** The API: what the path and method ask for, answered. */
  private async route(req: http.IncomingMessage, call: RequestCall): Promise<Reply> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const method = req.method ?? "GET";
    if (url.pathname === "/monitoring/prometheus/metrics" && method === "GET") {
      req.resume();
      return { status: 200, body: await this.service.metrics.render(this.options.refreshMetrics), contentType: PROMETHEUS_CONTENT_TYPE };
    }
    const malformed = (): never => {
      throw invalidArgument(`Malformed request: ${method} ${url.pathname}`);
    };
    const r = parsePath(url.pathname) ?? malformed();
    call.model = r.ref.name;
    if (method === "GET" && r.verb === undefined) {
      req.resume();
      if (r.metadata) {
        call.api = "metadata";
        const a = this.service.metadata(r.ref);
        call.version = a.version;
        const metadata: Record<string, unknown> = { signature_def: signatureDefJson(a.value) };
        if (url.searchParams.get("include") === MLPLATFORM_METADATA_FIELD) metadata[MLPLATFORM_METADATA_FIELD] = a.value;
        return { status: 200, body: JSON.stringify({ model_spec: { name: a.name, signature_name: "", version: String(a.version) }, metadata }) };
      }
      call.api = "status";
      return { status: 200, body: JSON.stringify({ model_version_status: this.service.status(r.ref).map(versionStatusObject) }) };
    }
    if (method !== "POST" || r.metadata || (r.verb !== "predict" && r.verb !== "classify" && r.verb !== "regress")) malformed();
    call.api = r.verb === "classify" ? "classify" : "predict";
    if (r.verb === "regress") throw new ServingError(GrpcStatus.UNIMPLEMENTED, "Regress is not supported by this server");
    // Fail fast for unknown models before reading a large body.
    this.service.manager(r.ref);
    const body = await this.readBody(req);
    return { status: 200, body: await this.run(r.ref, call, body) };
  }

  /** Predict or classify on a JSON body; resolves to the response JSON. */
  private async run(ref: ModelRef, call: RequestCall, body: Buffer): Promise<string> {
    let parsed: unknown;
    const text = body.toString("utf8");
    const hasB64 = text.includes('"b64"');
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw invalidArgument(`JSON Parse error: ${(e as Error).message}`);
    }
    const signatureName = readSignatureName(parsed);
    const signed = { ...ref, signatureName };
    if (call.api === "classify") {
      const { examples } = parseClassifyBody(parsed);
      const a = await this.service.classify(signed, examples, call);
      call.version = a.version;
      return formatClassifyResponse(a.value);
    }
    let format: "row" | "columnar" = "row";
    const a = await this.service.predict(
      signed,
      (sigName, sig, images) => {
        // `{"b64": ...}` for an image input: one encoded JPEG/PNG per example.
        const wire = images.size > 0 && hasB64 ? encodedImageSignature(sig, images) : sig;
        const p = parsePredictBody(parsed, sigName, wire, this.service.options.tensorLimits);
        format = p.format;
        return p.inputs;
      },
      [],
      call,
    );
    call.version = a.version;
    return formatPredictResponse(a.value, format);
  }

  /** The whole body; RESOURCE_EXHAUSTED (HTTP 413) past the limit. */
  private readBody(req: http.IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers["content-length"] ?? NaN);
      if (declared > this.maxBody) {
        req.resume();
        return reject(tooLarge(this.maxBody));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on("data", (c: Buffer) => {
        if (over) return;
        size += c.length;
        if (size > this.maxBody) {
          over = true;
          chunks.length = 0;
          return;
        }
        chunks.push(c);
      });
      req.on("end", () => (over ? reject(tooLarge(this.maxBody)) : resolve(Buffer.concat(chunks))));
      req.on("error", reject);
      req.on("aborted", () => reject(new ServingError(GrpcStatus.CANCELLED, "The client closed the connection")));
    });
  }
}

function tooLarge(max: number): ServingError {
  return new ServingError(GrpcStatus.RESOURCE_EXHAUSTED, `Request body is larger than the limit of ${max} bytes`, 413);
}
