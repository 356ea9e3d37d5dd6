/**
 * What every request goes through, whichever front end (REST or gRPC) it came in on,
 * written once as layers composed around the front end's handler (the way nice-grpc
 * composes server middleware):
 *
 *   metrics → in flight → answer → drain → error mapping → cancellation → deadline → handler
 *
 * - {@link observed}: one metrics observation per request (api, protocol, model, version,
 *   code, latency), whatever the outcome.
 * - {@link counted}: counts the requests in flight, until their answer is written, so
 *   {@link InFlight.drain} can wait for them.
 * - {@link answered}: the front end writes the result or the error on its wire.
 * - {@link refusedWhileDraining}: UNAVAILABLE for new requests once the server drains.
 * - {@link mappedErrors}: anything that is not a ServingError is a bug on our side: its
 *   stack goes to the server log, the client gets INTERNAL with a generic message.
 * - {@link cancellable}: a request whose client has gone is answered CANCELLED at once.
 * - {@link withDeadline}: sets the request's deadline (REST's time limit) and refuses a
 *   request whose deadline has passed before it starts.
 */
import type { CallContext } from "./batcher";
import { cancelled, deadlineExceeded, GENERIC_INTERNAL_MESSAGE, GrpcStatus, ServingError, unavailable, type Code } from "./errors";
import type { Api, InferenceService, Protocol } from "./service";

/**
 * One request on its way through the layers. The handler fills in `api`, `model` and
 * `version` as it learns them (a REST request's API is known only once its path is
 * parsed), for the metrics layer to read at the end. It is also the request's
 * {@link CallContext}: pass it on to the service.
 */
export interface RequestCall extends CallContext {
  readonly protocol: Protocol;
  /** What the request asks; undefined until known (and for requests outside the API, e.g. a metrics scrape). */
  api: Api | undefined;
  /** Model name as the client gave it ("" unknown). */
  model: string;
  version: number | undefined;
  /** Epoch ms after which the client has given up. */
  deadline: number | undefined;
  /**
   * Fires when the client goes away (REST: the connection closed before the answer).
   * gRPC calls have none: grpc-js reports cancellation through `signal.aborted` only.
   */
  readonly abort?: AbortSignal;
  /** For log lines: `REST POST /v1/models/m:predict`, `gRPC predict`. */
  readonly describe: string;
}

export type Handler<T> = (call: RequestCall) => Promise<T>;
export type Layer<T> = (next: Handler<T>) => Handler<T>;

/** The layers around `handler`, the first outermost. */
export function compose<T>(layers: readonly Layer<T>[], handler: Handler<T>): Handler<T> {
  return layers.reduceRight<Handler<T>>((next, layer) => layer(next), handler);
}

/** The code a request ended with: OK, or the code of the ServingError it failed with. */
export function outcomeCode(err: unknown): Code {
  return err instanceof ServingError ? err.code : GrpcStatus.INTERNAL;
}

/** Records every request that got as far as knowing its API (see InferenceService.observe). */
export function observed<T>(service: InferenceService): Layer<T> {
  return (next) => async (call) => {
    const t0 = process.hrtime.bigint();
    const record = (code: Code): void => {
      if (call.api) service.observe(call.api, call.protocol, call.model, call.version, code, Number(process.hrtime.bigint() - t0) / 1e9);
    };
    try {
      const result = await next(call);
      record(GrpcStatus.OK);
      return result;
    } catch (err) {
      record(outcomeCode(err));
      throw err;
    }
  };
}

/**
 * The requests in flight (across front ends when they share one), and the drain on
 * shutdown: once {@link drain} is called, {@link counted} refuses new requests and the
 * drain resolves when the last one in flight ends, or when the grace period is over.
 */
export class InFlight {
  private count = 0;
  private draining: Promise<boolean> | undefined;
  private idle: (() => void)[] = [];

  /** `gauge`: the in-flight metric, moved with the count. */
  constructor(private readonly gauge?: { inc(): void; dec(): void }) {}

  /** Requests being handled now. */
  get active(): number {
    return this.count;
  }

  /** Whether new requests are refused. */
  get isDraining(): boolean {
    return this.draining !== undefined;
  }

  /** Counts one request; the returned release (idempotent) ends it. */
  enter(): () => void {
    this.count++;
    this.gauge?.inc();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
      this.gauge?.dec();
      if (this.count === 0) for (const w of this.idle.splice(0)) w();
    };
  }

  /**
   * Refuses new requests from now on and waits up to `graceMs` for those in flight;
   * resolves to whether they all finished. Later calls share the first one's wait.
   */
  drain(graceMs: number): Promise<boolean> {
    this.draining ??= new Promise<boolean>((resolve) => {
      if (this.count === 0) return resolve(true);
      const timer = setTimeout(() => resolve(false), graceMs);
      timer.unref();
      this.idle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    return this.draining;
  }
}

/** Counts each request in `requests` while it runs (and while its answer is written). */
export function counted<T>(requests: InFlight): Layer<T> {
  return (next) => async (call) => {
    const release = requests.enter();
    try {
      return await next(call);
    } finally {
      release();
    }
  };
}

/** UNAVAILABLE for requests that arrive once `requests` drains. */
export function refusedWhileDraining<T>(requests: InFlight): Layer<T> {
  return (next) => (call) => (requests.isDraining ? Promise.reject(unavailable("The server is shutting down")) : next(call));
}

/**
 * Lets ServingErrors through (their messages are meant for clients) and turns anything
 * else into INTERNAL with a generic message, logging the stack.
 */
export function mappedErrors<T>(log: (line: string) => void): Layer<T> {
  return (next) => async (call) => {
    try {
      return await next(call);
    } catch (err) {
      if (err instanceof ServingError) throw err;
      log(`${call.describe} failed unexpectedly: ${(err as Error)?.stack ?? String(err)}`);
      throw new ServingError(GrpcStatus.INTERNAL, GENERIC_INTERNAL_MESSAGE);
    }
  };
}

/**
 * CANCELLED for a request whose client is gone: before it starts, and (where the front end
 * has an abort event) the moment it goes, without waiting for the handler, whose work the
 * service stops at its next check of `signal.aborted`.
 */
export function cancellable<T>(): Layer<T> {
  const gone = (): ServingError => cancelled("The client cancelled the request");
  return (next) => (call) => {
    if (call.signal?.aborted) return Promise.reject(gone());
    const running = next(call);
    const abort = call.abort;
    if (!abort) return running;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(gone());
      abort.addEventListener("abort", onAbort, { once: true });
      running.then(resolve, reject).finally(() => abort.removeEventListener("abort", onAbort));
    });
  };
}

/**
 * Sets the deadline of a request that has none to `timeoutMs` from now (REST's time limit;
 * gRPC clients send their own), and refuses a request whose deadline has already passed.
 */
export function withDeadline<T>(timeoutMs?: number): Layer<T> {
  return (next) => (call) => {
    if (call.deadline === undefined && timeoutMs !== undefined) call.deadline = Date.now() + timeoutMs;
    if (call.deadline !== undefined && Date.now() >= call.deadline) return Promise.reject(deadlineExceeded("Deadline exceeded before the request was handled"));
    return next(call);
  };
}

/**
 * The answer layer: hands the front end the outcome, a result or a ServingError, to write
 * on its wire (inside the in-flight count, so a drain waits for the answer to be written).
 */
export function answered<T>(send: (call: RequestCall, outcome: { ok: true; value: T } | { ok: false; error: ServingError }) => void): Layer<T> {
  return (next) => async (call) => {
    try {
      const value = await next(call);
      send(call, { ok: true, value });
      return value;
    } catch (err) {
      send(call, { ok: false, error: err instanceof ServingError ? err : new ServingError(GrpcStatus.INTERNAL, GENERIC_INTERNAL_MESSAGE) });
      throw err;
    }
  };
}

/** The standard stack for a front end (see the module comment for the order). */
export function requestLayers<T>(o: {
  readonly service: InferenceService;
  readonly requests: InFlight;
  readonly log: (line: string) => void;
  readonly send: (call: RequestCall, outcome: { ok: true; value: T } | { ok: false; error: ServingError }) => void;
  /** REST's time limit; gRPC clients send deadlines. */
  readonly timeoutMs?: number;
}): Layer<T>[] {
  return [observed(o.service), counted(o.requests), answered(o.send), refusedWhileDraining(o.requests), mappedErrors(o.log), cancellable(), withDeadline(o.timeoutMs)];
}
