/**
 * The wire of distributed training (`proto/mlplatform/distributed/v1/distributed.proto`):
 * loading the services, the channel options, and packing float32 arrays into `bytes`.
 */
import type * as http2 from "node:http2";
import type * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES, PROTO_LOADER_OPTIONS, protoDir } from "../serve/protos";

export const PROTO_FILE = "mlplatform/distributed/v1/distributed.proto";

/** Gradients of big models are tens of MB: no message-size limit between our own replicas. */
const MAX_MESSAGE = 1024 * 1024 * 1024;

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE,
  "grpc.max_send_message_length": MAX_MESSAGE,
  // A gradient is ~1 MB for the MNIST CNN: with Node's 64 KiB HTTP/2 windows every message
  // waits for ~15 WINDOW_UPDATE round trips. 1 MiB as the model server uses; 8 MiB windows
  // crashed Node 20's HTTP/2 client (SIGSEGV) within ~100 steps here.
  "grpc-node.flow_control_window": DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};

let pkg: grpc.GrpcObject | undefined;

function services(): grpc.GrpcObject {
  pkg ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] }));
  return ((pkg.mlplatform as grpc.GrpcObject).distributed as grpc.GrpcObject).v1 as grpc.GrpcObject;
}

export function coordinatorService(): grpc.ServiceDefinition {
  return (services().Coordinator as grpc.ServiceClientConstructor).service;
}
export function parameterServerService(): grpc.ServiceDefinition {
  return (services().ParameterServer as grpc.ServiceClientConstructor).service;
}
export function coordinatorClient(address: string): grpc.Client {
  return new (services().Coordinator as grpc.ServiceClientConstructor)(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}
export function parameterServerClient(address: string): grpc.Client {
  return new (services().ParameterServer as grpc.ServiceClientConstructor)(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

/** Messages as proto-loader hands them over (uint64 as decimal strings). */
export interface JoinRequest {
  rank: number;
  replica: string;
  config: string;
}
export interface WatchRequest {
  rank: number;
  replica: string;
}
export interface TrainingStateMsg {
  step: string | number;
  position: string;
  weights: Buffer;
  optimizer: Buffer;
  iterations: string | number;
}
export interface GradientsMsg {
  rank: number;
  step: string | number;
  count: number;
  loss: number;
  accuracy: number;
  values: Buffer;
}
export interface ShardStateMsg {
  training: TrainingStateMsg | null;
  config: string;
  values: Buffer;
  m: Buffer;
  v: Buffer;
  iterations: string | number;
}

/** Concatenates float32 arrays into one buffer (no copy of the arrays themselves until Buffer.concat). */
export function packFloats(arrays: readonly Float32Array[]): Buffer {
  return Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
}

/** Splits a buffer from {@link packFloats} into arrays of `sizes` elements (fresh, aligned copies). */
export function unpackFloats(buf: Buffer, sizes: readonly number[], what: string): Float32Array[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (buf.length !== total * 4) throw new Error(`${what}: got ${buf.length} bytes, expected ${total * 4} (${sizes.length} arrays, ${total} floats)`);
  const all = new Float32Array(total);
  new Uint8Array(all.buffer).set(buf);
  const out: Float32Array[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(all.subarray(at, at + n));
    at += n;
  }
  return out;
}

/**
 * Binds `server` on the port of `address` (`host:port` from TF_CONFIG). A loopback IP
 * literal (local runs, tests) is bound as given; any other host is a name the cluster
 * resolves to this pod, so all interfaces are bound. `dropConnections` destroys every
 * client connection: grpc-js's `forceShutdown` leaves the socket of a peer that stopped
 * reading (a hung replica) open, which keeps the process from exiting.
 */
export function bindServer(server: grpc.Server, address: string): Promise<{ port: number; dropConnections: () => void }> {
  const port = address.slice(address.lastIndexOf(":") + 1);
  const host = address.slice(0, address.lastIndexOf(":"));
  const bindHost = host === "127.0.0.1" || host === "[::1]" || host === "localhost" ? host : "0.0.0.0";
  return new Promise((resolve, reject) => {
    server.bindAsync(`${bindHost}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) return reject(err);
      const sockets = new Set<net.Socket>();
      for (const h2 of http2Servers(server)) {
        h2.on("connection", (socket: net.Socket) => {
          sockets.add(socket);
          socket.on("close", () => sockets.delete(socket));
        });
        h2.on("session", widenWindows);
      }
      resolve({ port: p, dropConnections: () => sockets.forEach((s) => s.destroy()) });
    });
  });
}

/** The http2 servers grpc-js created (a private field; empty if it is gone, and then the defaults stay). */
function http2Servers(server: grpc.Server): http2.Http2Server[] {
  const servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  return servers instanceof Map ? [...servers.keys()] : [];
}

/** Opens wide HTTP/2 receive windows on a server connection: grpc-js servers keep Node's 64 KiB (as `serve/grpc.ts` explains). */
function widenWindows(session: http2.ServerHttp2Session): void {
  try {
    session.setLocalWindowSize(DEFAULT_FLOW_CONTROL_WINDOW_BYTES);
    session.settings({ initialWindowSize: DEFAULT_FLOW_CONTROL_WINDOW_BYTES });
  } catch {
    // A session already closing.
  }
}

export function serverOptions(): grpc.ServerOptions {
  return {
    "grpc.max_receive_message_length": MAX_MESSAGE,
    "grpc.max_send_message_length": MAX_MESSAGE,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  } as grpc.ServerOptions;
}

/** A unary call as a promise, with a deadline in ms (undefined: none) and waiting for the server to be up if asked. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: string,
  req: Req,
  deadlineMs: number | undefined,
  waitForReady = false,
  inFlight?: Set<grpc.ClientUnaryCall>,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: Req, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void) => grpc.ClientUnaryCall>)[
      method
    ]!;
    const opts: grpc.CallOptions = {};
    if (deadlineMs !== undefined) opts.deadline = Date.now() + deadlineMs;
    const call = fn.call(client, req, new grpc.Metadata({ waitForReady }), opts, (e, r) => {
      inFlight?.delete(call);
      if (e) reject(e);
      else resolve(r!);
    });
    inFlight?.add(call);
  });
}
