/**
 * The request layers both front ends share (src/serve/requests.ts), on their own: the
 * in-flight count and drain, refusal while draining, error mapping, cancellation, deadlines
 * and the one metrics observation per request. The front ends over real sockets are
 * tested in serve-rest, serve-grpc and serve-shutdown.
 */
import { describe, expect, it } from "vitest";
import { GENERIC_INTERNAL_MESSAGE, GrpcStatus, invalidArgument, ServingError } from "../src/serve/errors";
import { compose, InFlight, requestLayers, type RequestCall } from "../src/serve/requests";
import type { Api, InferenceService, Protocol } from "../src/serve/service";

type Observation = [Api, Protocol, string, number | undefined, string];

/** A stack with a recording service and answer; `handler` is the innermost layer. */
function stack(handler: (call: RequestCall) => Promise<string>, o: { requests?: InFlight; timeoutMs?: number } = {}) {
  const observations: Observation[] = [];
  const sent: string[] = [];
  const logged: string[] = [];
  const service = {
    observe: (api: Api, protocol: Protocol, model: string, version: number | undefined, code: number) => observations.push([api, protocol, model, version, GrpcStatus[code]!]),
  } as unknown as InferenceService;
  const requests = o.requests ?? new InFlight();
  const handle = compose(
    requestLayers<string>({
      service,
      requests,
      log: (l) => logged.push(l),
      timeoutMs: o.timeoutMs,
      send: (_c, out) => sent.push(out.ok ? `ok ${out.value}` : `${GrpcStatus[out.error.code]} ${out.error.message}`),
    }),
    handler,
  );
  return { handle, observations, sent, logged, requests };
}

function call(extra: Partial<RequestCall> = {}): RequestCall {
  return { protocol: "rest", api: "predict", model: "m", version: undefined, deadline: undefined, describe: "REST POST /v1/models/m:predict", ...extra };
}

describe("request layers", () => {
  it("answer and observe each request once, with the version the handler found", async () => {
    const s = stack(async (c) => {
      c.version = 3;
      return "answer";
    });
    await expect(s.handle(call())).resolves.toBe("answer");
    expect(s.sent).toEqual(["ok answer"]);
    expect(s.observations).toEqual([["predict", "rest", "m", 3, "OK"]]);
    expect(s.requests.active).toBe(0);
  });

  it("pass ServingErrors on; anything else is INTERNAL to the client and a stack in the log", async () => {
    const bad = stack(async () => {
      throw invalidArgument("no such input");
    });
    await expect(bad.handle(call())).rejects.toThrow("no such input");
    expect(bad.sent).toEqual(["INVALID_ARGUMENT no such input"]);
    expect(bad.observations.map((x) => x[4])).toEqual(["INVALID_ARGUMENT"]);
    const bug = stack(async () => {
      throw new TypeError("x is undefined");
    });
    await expect(bug.handle(call())).rejects.toBeInstanceOf(ServingError);
    expect(bug.sent).toEqual([`INTERNAL ${GENERIC_INTERNAL_MESSAGE}`]);
    expect(bug.logged).toHaveLength(1);
    expect(bug.logged[0]).toMatch(/^REST POST \/v1\/models\/m:predict failed unexpectedly: TypeError: x is undefined\n\s+at /);
    expect(bug.observations.map((x) => x[4])).toEqual(["INTERNAL"]);
  });

  it("a request outside the API (no api) is answered but not observed", async () => {
    const s = stack(async () => "metrics text");
    await s.handle(call({ api: undefined }));
    expect(s.sent).toEqual(["ok metrics text"]);
    expect(s.observations).toEqual([]);
  });

  it("drain: waits for requests in flight (their answers written), refuses new ones, shared by two stacks", async () => {
    const requests = new InFlight();
    let finish!: () => void;
    const slow = stack(() => new Promise<string>((r) => (finish = () => r("late"))), { requests });
    const other = stack(async () => "never", { requests });
    const running = slow.handle(call());
    expect(requests.active).toBe(1);
    let drained: boolean | undefined;
    const drain = requests.drain(10_000).then((d) => (drained = d));
    expect(requests.drain(10_000)).toBe(requests.drain(5)); // one drain, shared
    await expect(other.handle(call({ protocol: "grpc", describe: "gRPC predict" }))).rejects.toThrow("The server is shutting down");
    expect(other.sent).toEqual(["UNAVAILABLE The server is shutting down"]);
    expect(other.observations).toEqual([["predict", "grpc", "m", undefined, "UNAVAILABLE"]]);
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBeUndefined();
    finish();
    await running;
    await drain;
    expect(drained).toBe(true);
    expect(slow.sent).toEqual(["ok late"]);
    expect(requests.active).toBe(0);
  });

  it("drain gives up after the grace period", async () => {
    const requests = new InFlight();
    const s = stack(() => new Promise<string>(() => {}), { requests });
    void s.handle(call());
    const t0 = Date.now();
    expect(await requests.drain(100)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(await new InFlight().drain(100)).toBe(true);
  });

  it("a client that goes away gets CANCELLED at once; the in-flight count drops", async () => {
    const controller = new AbortController();
    const s = stack(() => new Promise<string>(() => {}));
    const running = s.handle(call({ signal: controller.signal, abort: controller.signal }));
    expect(s.requests.active).toBe(1);
    controller.abort();
    await expect(running).rejects.toThrow("The client cancelled the request");
    expect(s.observations.map((x) => x[4])).toEqual(["CANCELLED"]);
    expect(s.requests.active).toBe(0);
    // Already gone before it started: the handler does not run.
    let ran = false;
    const t = stack(async () => {
      ran = true;
      return "x";
    });
    await expect(t.handle(call({ signal: { aborted: true } }))).rejects.toThrow("The client cancelled the request");
    expect(ran).toBe(false);
  });

  it("deadline: the REST time limit is set when missing, and a passed deadline fails before the handler", async () => {
    let seen: number | undefined;
    const s = stack(
      async (c) => {
        seen = c.deadline;
        return "x";
      },
      { timeoutMs: 5000 },
    );
    const t0 = Date.now();
    await s.handle(call());
    expect(seen! - t0).toBeGreaterThanOrEqual(4990);
    expect(seen! - t0).toBeLessThanOrEqual(5100);
    await s.handle(call({ deadline: t0 + 60_000 }));
    expect(seen).toBe(t0 + 60_000);
    await expect(s.handle(call({ deadline: Date.now() - 1 }))).rejects.toThrow("Deadline exceeded before the request was handled");
    expect(s.observations.map((x) => x[4])).toEqual(["OK", "OK", "DEADLINE_EXCEEDED"]);
  });
});
