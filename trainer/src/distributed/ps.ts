/**
 * Parameter-server training. The trainable weights are sharded across the PS replicas
 * ({@link assignShards}: largest first onto the least-loaded server, so both sides compute
 * the same layout from the weights' sizes). Each parameter server keeps its shard's values
 * and Adam moments as flat float32 arrays and applies Adam itself; training replicas (chief
 * and workers) compute gradients at the values they hold, push each server its part, and
 * get the updated part back in the answer.
 *
 *   sync (default)  a server waits for every training replica's push of step t, applies the
 *                   example-weighted mean once (the same update as all-reduce), answers all
 *   async           a server applies each push on arrival and answers at once: no replica
 *                   waits for another, and gradients may be computed at stale values
 *
 * The chief initialises the servers (its checkpoint or fresh weights, the step and data
 * position); every replica then joins each server. Liveness as in `./allreduce.ts`: a
 * `Watch` stream per replica and server, a bounded wait for the slowest push, and a server
 * that stops ends every stream with ABORTED and a message naming the lost replica. A server
 * exits (0) once every training replica is done, or (1) when it stopped for a lost replica.
 */
import * as grpc from "@grpc/grpc-js";
import { describeError } from "../errors";
import { tf, type LayersModel, type Tensor } from "../tf";
import type { Combined, Reducer, ReducerStats, StartState } from "../train/reducer";
import type { OptimizerState, TrainStep } from "../train/step";
import { replicaName, type Replica } from "../train/tfconfig";
import { Stats, type ClusterTiming } from "./allreduce";
import { ReplicaLostError, ReplicaMismatchError } from "./errors";
import { FailureLatch, sleep } from "./latch";
import {
  bindServer,
  packFloats,
  parameterServerClient,
  parameterServerService,
  serverOptions,
  unary,
  unpackFloats,
  type GradientsMsg,
  type JoinRequest,
  type ShardStateMsg,
  type TrainingStateMsg,
  type WatchRequest,
} from "./protocol";
import { configDifferences } from "./state";

export type PsMode = "sync" | "async";

/** Which parameter server holds each weight (by size, largest first onto the least-loaded server). */
export function assignShards(sizes: readonly number[], servers: number): number[] {
  const load = new Array<number>(servers).fill(0);
  const out = new Array<number>(sizes.length).fill(0);
  const order = sizes.map((n, i) => [n, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [n, i] of order) {
    let k = 0;
    for (let j = 1; j < servers; j++) if (load[j]! < load[k]!) k = j;
    out[i] = k;
    load[k]! += n;
  }
  return out;
}

/** Adam as tfjs's `AdamOptimizer` computes it, on flat arrays. */
function adam(w: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, t: number, lr: number, b1 = 0.9, b2 = 0.999, eps = 1e-7): void {
  const c1 = 1 - b1 ** t;
  const c2 = 1 - b2 ** t;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i]!;
    const mi = b1 * m[i]! + (1 - b1) * gi;
    const vi = b2 * v[i]! + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i]! - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
  }
}

interface Shard {
  values: Float32Array;
  m: Float32Array;
  v: Float32Array;
  iterations: number;
  training: TrainingStateMsg;
  config: Record<string, unknown>;
  learningRate: number;
}

/** One parameter server: serves its shard until every training replica is done. */
export class ParameterServer {
  private readonly latch = new FailureLatch();
  private readonly server = new grpc.Server(serverOptions());
  private shard: Shard | undefined;
  private readonly initWaiters: (() => void)[] = [];
  private readonly watches = new Map<number, grpc.ServerWritableStream<WatchRequest, unknown>>();
  private readonly done = new Map<number, grpc.sendUnaryData<GradientsMsg>>();
  private readonly finished = new Set<number>();
  private version = 0;
  private sync: { step: number; parts: Map<number, GradientsMsg>; answers: Map<number, grpc.sendUnaryData<GradientsMsg>>; timer: NodeJS.Timeout } | undefined;
  private ended!: (e?: Error) => void;
  private dropConnections: (() => void) | undefined;
  /** Resolves when every training replica is done; rejects with the error naming a lost replica. */
  readonly completion: Promise<void>;

  private constructor(
    private readonly self: Replica,
    private readonly trainers: readonly Replica[],
    private readonly mode: PsMode,
    private readonly timing: ClusterTiming,
    private readonly log: (m: string) => void,
  ) {
    this.completion = new Promise<void>((resolve, reject) => {
      this.ended = (e) => (e ? reject(e) : resolve());
    });
    this.completion.catch(() => undefined);
    this.server.addService(parameterServerService(), {
      Init: (call: grpc.ServerUnaryCall<ShardStateMsg, object>, cb: grpc.sendUnaryData<object>) => this.onInit(call.request, cb),
      Join: (call: grpc.ServerUnaryCall<JoinRequest, TrainingStateMsg>, cb: grpc.sendUnaryData<TrainingStateMsg>) => void this.onJoin(call.request, cb),
      Watch: (call: grpc.ServerWritableStream<WatchRequest, unknown>) => this.onWatch(call),
      Push: (call: grpc.ServerUnaryCall<GradientsMsg, GradientsMsg>, cb: grpc.sendUnaryData<GradientsMsg>) => this.onPush(call.request, cb),
      GetState: (_call: grpc.ServerUnaryCall<WatchRequest, ShardStateMsg>, cb: grpc.sendUnaryData<ShardStateMsg>) => {
        const s = this.shard;
        if (!s) return cb({ code: grpc.status.FAILED_PRECONDITION, details: "not initialised" });
        cb(null, { training: null, config: "", values: packFloats([s.values]), m: packFloats([s.m]), v: packFloats([s.v]), iterations: s.iterations });
      },
      Done: (call: grpc.ServerUnaryCall<WatchRequest, GradientsMsg>, cb: grpc.sendUnaryData<GradientsMsg>) => this.onDone(call.request.rank, cb),
    });
  }

  static async listen(self: Replica, trainers: readonly Replica[], mode: PsMode, timing: ClusterTiming, log: (m: string) => void): Promise<ParameterServer> {
    const ps = new ParameterServer(self, trainers, mode, timing, log);
    try {
      ps.dropConnections = (await bindServer(ps.server, self.address)).dropConnections;
    } catch (e) {
      ps.server.forceShutdown();
      throw new ReplicaLostError(`${replicaName(self)}: cannot listen on ${self.address}: ${describeError(e)}; is another process using the port?`);
    }
    const initTimer = setTimeout(() => {
      if (!ps.shard)
        ps.fail(
          new ReplicaLostError(
            `${replicaName(self)}: the chief ${replicaName(trainers[0]!)} did not initialise this parameter server within ${timing.startupTimeoutMs / 1000} s (--startup-timeout)`,
          ),
        );
    }, timing.startupTimeoutMs);
    initTimer.unref();
    return ps;
  }

  private name(rank: number): string {
    return this.trainers[rank] ? replicaName(this.trainers[rank]) : `rank ${rank}`;
  }

  private aborted(e: Error): Partial<grpc.StatusObject> {
    return { code: e instanceof ReplicaMismatchError ? grpc.status.FAILED_PRECONDITION : grpc.status.ABORTED, details: e.message };
  }

  private fail(e: Error): Error {
    const first = this.latch.fail(e);
    if (first !== e) return first;
    if (this.sync) {
      clearTimeout(this.sync.timer);
      for (const a of this.sync.answers.values()) a(this.aborted(first));
      this.sync = undefined;
    }
    for (const a of this.done.values()) a(this.aborted(first));
    this.done.clear();
    for (const w of this.initWaiters.splice(0)) w();
    for (const call of this.watches.values()) call.emit("error", this.aborted(first));
    this.watches.clear();
    setTimeout(() => {
      this.server.forceShutdown();
      this.dropConnections?.();
      this.ended(first);
    }, 200);
    return first;
  }

  private onInit(req: ShardStateMsg, cb: grpc.sendUnaryData<object>): void {
    if (this.latch.error) return cb(this.aborted(this.latch.error));
    const n = req.values.length / 4;
    if (req.m.length !== req.values.length || req.v.length !== req.values.length) return cb({ code: grpc.status.INVALID_ARGUMENT, details: "values, m and v differ in size" });
    const [values, m, v] = [req.values, req.m, req.v].map((b) => unpackFloats(b, [n], "shard")[0]!);
    const config = JSON.parse(req.config) as Record<string, unknown>;
    this.shard = { values: values!, m: m!, v: v!, iterations: Number(req.iterations), training: req.training!, config, learningRate: Number(config.learningRate) };
    this.version = Number(req.training!.step);
    this.log(`${replicaName(this.self)}: ${n} parameters (${this.mode}), starting at step ${this.version}`);
    for (const w of this.initWaiters.splice(0)) w();
    cb(null, {});
  }

  private async onJoin(req: JoinRequest, cb: grpc.sendUnaryData<TrainingStateMsg>): Promise<void> {
    while (!this.shard && !this.latch.error) await new Promise<void>((r) => this.initWaiters.push(r));
    if (this.latch.error) return cb(this.aborted(this.latch.error));
    const diff = configDifferences(JSON.parse(req.config) as Record<string, unknown>, this.shard!.config);
    if (diff.length) {
      const e = new ReplicaMismatchError(`${this.name(req.rank)} runs with ${diff.join(", ")}: every replica of a TFJob must get the same arguments`);
      cb(this.aborted(e));
      this.fail(e);
      return;
    }
    cb(null, { ...this.shard!.training, step: this.version, weights: packFloats([this.shard!.values]), iterations: this.shard!.iterations });
  }

  private onWatch(call: grpc.ServerWritableStream<WatchRequest, unknown>): void {
    const rank = call.request.rank;
    if (this.latch.error) return void call.emit("error", this.aborted(this.latch.error));
    this.watches.set(rank, call);
    call.on("cancelled", () => {
      this.watches.delete(rank);
      if (!this.finished.has(rank)) {
        this.fail(
          new ReplicaLostError(
            `lost ${this.name(rank)}: its connection to ${replicaName(this.self)} closed mid-run (the process exited or was killed); stopping so the TFJob restarts and resumes from the last checkpoint`,
          ),
        );
      }
    });
  }

  private answer(step: number, loss: number, accuracy: number, count: number): GradientsMsg {
    return { rank: 0, step, count, loss, accuracy, values: packFloats([this.shard!.values]) };
  }

  private onPush(req: GradientsMsg, cb: grpc.sendUnaryData<GradientsMsg>): void {
    if (this.latch.error) return cb(this.aborted(this.latch.error));
    const s = this.shard;
    if (!s) return cb({ code: grpc.status.FAILED_PRECONDITION, details: `${replicaName(this.self)} is not initialised yet` });
    const step = Number(req.step);
    if (req.count > 0 && req.values.length !== s.values.length * 4)
      return cb({ code: grpc.status.INVALID_ARGUMENT, details: `push of ${req.values.length} bytes for a shard of ${s.values.length} floats` });
    if (this.mode === "async") {
      if (req.count > 0) {
        s.iterations++;
        adam(s.values, s.m, s.v, unpackFloats(req.values, [s.values.length], "gradients")[0]!, s.iterations, s.learningRate);
      }
      this.version = Math.max(this.version, step);
      return cb(null, this.answer(step, req.loss, req.accuracy, req.count));
    }
    if (step !== this.version + 1) {
      const e = new ReplicaMismatchError(`${this.name(req.rank)} pushed step ${step} but ${replicaName(this.self)} is at step ${this.version}: the replicas are out of step`);
      cb(this.aborted(e));
      this.fail(e);
      return;
    }
    if (!this.sync) {
      const timer = setTimeout(() => {
        const missing = this.trainers.map((_, r) => r).filter((r) => !this.sync?.parts.has(r));
        this.fail(
          new ReplicaLostError(
            `lost ${missing.map((r) => this.name(r)).join(", ")}: no push for step ${step} at ${replicaName(this.self)} within ${this.timing.timeoutMs / 1000} s of the first replica's ` +
              "(hung, or far slower than the others; raise --replica-timeout if steps are that slow)",
          ),
        );
      }, this.timing.timeoutMs);
      this.sync = { step, parts: new Map(), answers: new Map(), timer };
    }
    this.sync.parts.set(req.rank, req);
    this.sync.answers.set(req.rank, cb);
    if (this.sync.parts.size < this.trainers.length) return;
    const { parts, answers, timer } = this.sync;
    clearTimeout(timer);
    this.sync = undefined;
    const all = [...parts.values()];
    const count = all.reduce((a, p) => a + p.count, 0);
    const n = s.values.length;
    const acc = new Float64Array(n);
    for (const p of all) {
      if (p.count === 0) continue;
      const g = unpackFloats(p.values, [n], "gradients")[0]!;
      for (let i = 0; i < n; i++) acc[i]! += p.count * g[i]!;
    }
    const mean = new Float32Array(n);
    for (let i = 0; i < n; i++) mean[i] = acc[i]! / count;
    s.iterations++;
    adam(s.values, s.m, s.v, mean, s.iterations, s.learningRate);
    this.version = step;
    const avg = (f: (p: GradientsMsg) => number) => all.reduce((a, p) => a + p.count * f(p), 0) / count;
    const reply = this.answer(
      step,
      avg((p) => p.loss),
      avg((p) => p.accuracy),
      count,
    );
    for (const a of answers.values()) a(null, reply);
  }

  private onDone(rank: number, cb: grpc.sendUnaryData<GradientsMsg>): void {
    if (this.latch.error) return cb(this.aborted(this.latch.error));
    this.finished.add(rank);
    this.done.set(rank, cb);
    if (this.finished.size < this.trainers.length) return;
    const reply = this.answer(this.version, NaN, NaN, 0);
    for (const a of this.done.values()) a(null, reply);
    this.done.clear();
    this.log(`${replicaName(this.self)}: all ${this.trainers.length} training replicas are done at step ${this.version}`);
    setTimeout(() => this.server.tryShutdown(() => this.ended()), 100).unref();
  }
}

/** A training replica's side of parameter-server training. */
export class PsTrainer implements Reducer {
  readonly description: string;
  private readonly latch = new FailureLatch();
  private readonly clients: grpc.Client[];
  private readonly watches: grpc.ClientReadableStream<unknown>[] = [];
  private sizes: number[] = [];
  private shardOf: number[] = [];
  private trainStep: TrainStep | undefined;
  private readonly stats_ = new Stats();
  private done = false;
  private lent: Tensor[] = [];
  private readonly inFlight = new Set<grpc.ClientUnaryCall>();

  constructor(
    private readonly trainers: readonly Replica[],
    private readonly servers: readonly Replica[],
    readonly rank: number,
    private readonly mode: PsMode,
    private readonly timing: ClusterTiming,
    private readonly log: (m: string) => void,
  ) {
    this.description = `${mode} parameter-server training: ${servers.length} PS, ${trainers.length} training replicas (this is ${replicaName(trainers[rank]!)}, rank ${rank})`;
    this.clients = servers.map((s) => parameterServerClient(s.address));
  }

  get replicas(): number {
    return this.trainers.length;
  }
  get isChief(): boolean {
    return this.rank === 0;
  }

  private async failed(e: unknown, k: number, what: string): Promise<Error> {
    if (e === this.latch.error) return e as Error;
    const err = e as grpc.ServiceError;
    if (err.code === grpc.status.ABORTED) return this.latch.fail(new ReplicaLostError(err.details));
    if (err.code === grpc.status.FAILED_PRECONDITION) return this.latch.fail(new ReplicaMismatchError(err.details));
    await sleep(300);
    if (this.latch.error) return this.latch.error;
    const ps = replicaName(this.servers[k]!);
    if (err.code === grpc.status.DEADLINE_EXCEEDED)
      return this.latch.fail(new ReplicaLostError(`lost ${ps}: no answer to ${what} within the deadline (hung?); stopping so the TFJob restarts`));
    return this.latch.fail(new ReplicaLostError(`lost ${ps}: ${what} failed: ${err.details ?? describeError(e)}`));
  }

  /** The full trainable values from each server's flat shard. */
  private scatter(shards: readonly Float32Array[]): Float32Array[] {
    const at = new Array<number>(this.servers.length).fill(0);
    return this.sizes.map((n, i) => {
      const k = this.shardOf[i]!;
      const out = shards[k]!.slice(at[k]!, at[k]! + n);
      at[k]! += n;
      return out;
    });
  }

  /** Each server's flat part of per-weight arrays. */
  private gather(arrays: readonly Float32Array[]): Buffer[] {
    return this.servers.map((_, k) => packFloats(arrays.filter((_, i) => this.shardOf[i] === k)));
  }

  private assign(shardBuffers: readonly Buffer[]): void {
    const shards = shardBuffers.map((b, k) => unpackFloats(b, [b.length / 4], `values from ${replicaName(this.servers[k]!)}`)[0]!);
    const values = this.scatter(shards);
    tf.tidy(() => this.trainStep!.variables.forEach((v, i) => v.assign(tf.tensor(values[i]!, v.shape))));
  }

  async start(ctx: { model: LayersModel; trainStep: TrainStep; state: StartState; config: Readonly<Record<string, unknown>> }): Promise<StartState> {
    this.trainStep = ctx.trainStep;
    this.sizes = ctx.trainStep.variables.map((v) => v.size);
    this.shardOf = assignShards(this.sizes, this.servers.length);
    const me = replicaName(this.trainers[this.rank]!);
    const config = JSON.stringify(ctx.config);
    const wait = this.timing.startupTimeoutMs;
    if (this.rank === 0) {
      const values = ctx.trainStep.variables.map((v) => v.dataSync() as Float32Array);
      const named = await ctx.trainStep.optimizer.getWeights();
      const half = (named.length - 1) / 2;
      const m = named.slice(1, 1 + half).map((n) => n.tensor.dataSync() as Float32Array);
      const v = named.slice(1 + half).map((n) => n.tensor.dataSync() as Float32Array);
      const iterations = named[0]!.tensor.dataSync()[0]!;
      const [mv, vv, wv] = [this.gather(m), this.gather(v), this.gather(values)];
      const training = {
        step: ctx.state.step,
        position: ctx.state.position ? JSON.stringify(ctx.state.position) : "",
        weights: Buffer.alloc(0),
        optimizer: Buffer.alloc(0),
        iterations,
      };
      await Promise.all(
        this.clients.map((c, k) =>
          unary(c, "Init", { training, config, values: wv[k]!, m: mv[k]!, v: vv[k]!, iterations }, wait, true).catch(async (e: unknown) => {
            throw await this.failed(e, k, "initialising");
          }),
        ),
      );
    }
    const joined = await Promise.all(
      this.clients.map((c, k) =>
        unary<JoinRequest, TrainingStateMsg>(c, "Join", { rank: this.rank, replica: me, config }, wait, true).catch(async (e: unknown) => {
          if ((e as grpc.ServiceError).code === grpc.status.DEADLINE_EXCEEDED) {
            throw this.latch.fail(
              new ReplicaLostError(`${replicaName(this.servers[k]!)} did not answer (or the chief did not initialise it) within ${wait / 1000} s (--startup-timeout)`),
            );
          }
          throw await this.failed(e, k, "joining");
        }),
      ),
    );
    this.assign(joined.map((j) => j.weights));
    this.clients.forEach((c, k) => {
      const w = (c as unknown as { Watch(r: WatchRequest): grpc.ClientReadableStream<unknown> }).Watch({ rank: this.rank, replica: me });
      w.on("data", () => undefined);
      w.on("error", (e: grpc.ServiceError) => {
        if (this.done) return;
        this.latch.fail(
          e.code === grpc.status.ABORTED ? new ReplicaLostError(e.details) : new ReplicaLostError(`lost ${replicaName(this.servers[k]!)}: ${e.details || e.message}`),
        );
      });
      w.on("end", () => {
        if (!this.done) this.latch.fail(new ReplicaLostError(`lost ${replicaName(this.servers[k]!)}: it closed the connection mid-run`));
      });
      this.watches.push(w);
    });
    const first = joined[0]!;
    const step = Number(first.step);
    this.log(`parameter servers: joined ${this.servers.length} (${this.mode}) as rank ${this.rank}, starting at step ${step}`);
    return { step, position: first.position ? (JSON.parse(first.position) as StartState["position"]) : undefined };
  }

  async beforeStep(): Promise<void> {
    this.latch.throwIfFailed();
  }

  async reduce(step: number, local: { loss: number; accuracy: number; count: number; grads: Float32Array[] }): Promise<Combined> {
    const parts = local.count > 0 ? this.gather(local.grads) : this.servers.map(() => Buffer.alloc(0));
    const replies = await Promise.all(
      this.clients.map((c, k) => {
        this.stats_.bytesSent += parts[k]!.length;
        const msg = { rank: this.rank, step, count: local.count, loss: local.loss, accuracy: local.accuracy, values: parts[k]! };
        return this.latch.race(unary<GradientsMsg, GradientsMsg>(c, "Push", msg, this.timing.timeoutMs + 2000, false, this.inFlight)).catch(async (e: unknown) => {
          throw await this.failed(e, k, `step ${step}'s push`);
        });
      }),
    );
    for (const r of replies) this.stats_.bytesReceived += r.values.length;
    this.assign(replies.map((r) => r.values));
    const r0 = replies[0]!;
    return this.mode === "sync" ? { loss: r0.loss, accuracy: r0.accuracy, count: r0.count } : { loss: local.loss, accuracy: local.accuracy, count: local.count };
  }

  /** Checkpoints save the servers' moments (values are already the model's). */
  optimizerState(local: OptimizerState): OptimizerState {
    return {
      getWeights: async () => {
        tf.dispose(this.lent);
        const states = await Promise.all(
          this.clients.map((c, k) =>
            unary<WatchRequest, ShardStateMsg>(c, "GetState", { rank: this.rank, replica: "" }, this.timing.timeoutMs).catch(async (e: unknown) => {
              throw await this.failed(e, k, "reading the optimizer state");
            }),
          ),
        );
        const flat = (b: Buffer) => unpackFloats(b, [b.length / 4], "state")[0]!;
        const m = this.scatter(states.map((s) => flat(s.m)));
        const v = this.scatter(states.map((s) => flat(s.v)));
        const vars = this.trainStep!.variables;
        const out = [
          { name: "iter", tensor: tf.scalar(Number(states[0]!.iterations), "int32") as Tensor },
          ...vars.map((w, i) => ({ name: `${w.name}/m`, tensor: tf.tensor(m[i]!, w.shape) })),
          ...vars.map((w, i) => ({ name: `${w.name}/v`, tensor: tf.tensor(v[i]!, w.shape) })),
        ];
        this.lent = out.map((o) => o.tensor);
        return out;
      },
      setWeights: (w) => local.setWeights(w),
    };
  }

  async finish(): Promise<void> {
    const replies = await Promise.all(
      this.clients.map((c, k) =>
        this.latch
          .race(unary<WatchRequest, GradientsMsg>(c, "Done", { rank: this.rank, replica: "" }, this.timing.startupTimeoutMs, false, this.inFlight))
          .catch(async (e: unknown) => {
            throw await this.failed(e, k, "finishing");
          }),
      ),
    );
    this.done = true;
    this.assign(replies.map((r) => r.values));
    this.close();
  }

  private close(): void {
    for (const c of this.inFlight) c.cancel();
    for (const w of this.watches) w.cancel();
    for (const c of this.clients) c.close();
    tf.dispose(this.lent);
    this.lent = [];
  }

  abort(): void {
    this.done = true;
    this.close();
  }

  stats(): ReducerStats {
    return this.stats_.snapshot();
  }
}
