/**
 * Synchronous data parallelism: every step, each training replica's gradients go to the
 * chief (training rank 0), which answers every replica with their example-weighted mean
 * once all have contributed; each replica then applies the same mean with its own Adam, so
 * the weights stay identical (same start state, same updates, same kernels).
 *
 * Why a coordinator and not a ring: at the sizes the TFJobs here run (2–8 replicas, models
 * of 0.1–25 M parameters) on one network, a ring's 2(N−1) dependent transfers per step cost
 * more in latency than the chief's N× bandwidth costs in transfer time; a coordinator is also
 * one place that sees every replica, which is what bounded failure detection needs (see
 * trainer/README.md for the numbers).
 *
 * Liveness: each worker holds a `Watch` stream to the chief. A worker that dies closes it
 * (the chief learns at once); a worker that hangs fails to contribute within `timeoutMs` of
 * the step's first contribution. Either way the chief ends every stream with ABORTED and a
 * message naming the lost replica, and stops. A chief that dies ends the workers' streams;
 * one that hangs leaves their `AllReduce` calls without an answer past the deadline.
 */
import * as grpc from "@grpc/grpc-js";
import { describeError } from "../errors";
import type { LayersModel } from "../tf";
import type { Combined, Reducer, ReducerStats, StartState } from "../train/reducer";
import { weightedMean } from "../train/reducer";
import type { LocalGradients, OptimizerState, TrainStep } from "../train/step";
import { replicaName, type Replica } from "../train/tfconfig";
import { ReplicaLostError, ReplicaMismatchError } from "./errors";
import { FailureLatch, sleep } from "./latch";
import {
  bindServer,
  coordinatorClient,
  coordinatorService,
  packFloats,
  serverOptions,
  unary,
  unpackFloats,
  type GradientsMsg,
  type JoinRequest,
  type TrainingStateMsg,
  type WatchRequest,
} from "./protocol";
import { captureState, configDifferences, setModelWeights, setOptimizerArrays, sizesOf } from "./state";

export interface ClusterTiming {
  /** How long a step may wait for the slowest replica before it is declared lost (ms). */
  readonly timeoutMs: number;
  /** How long replicas wait for each other to come up (ms). */
  readonly startupTimeoutMs: number;
}

interface Part {
  count: number;
  loss: number;
  accuracy: number;
  grads: Float32Array[];
}

interface PendingStep {
  readonly parts: Map<number, Part>;
  readonly answers: Map<number, (r: Combined | Error) => void>;
  timer?: NodeJS.Timeout;
}

export class Stats {
  bytesSent = 0;
  bytesReceived = 0;
  snapshot(): ReducerStats {
    return { bytesSent: this.bytesSent, bytesReceived: this.bytesReceived };
  }
}

/** The chief's side: serves `Coordinator` and takes part in the reduction itself. */
export class AllReduceChief implements Reducer {
  readonly rank = 0;
  readonly isChief = true;
  readonly description: string;
  private readonly latch = new FailureLatch();
  private readonly server = new grpc.Server(serverOptions());
  private startState: { msg: TrainingStateMsg; config: Readonly<Record<string, unknown>> } | undefined;
  private readonly startWaiters: (() => void)[] = [];
  private readonly joined = new Set<number>();
  private readonly left = new Set<number>();
  private readonly watches = new Map<number, grpc.ServerWritableStream<WatchRequest, unknown>>();
  private readonly pending = new Map<number, PendingStep>();
  private sizes: number[] = [];
  private readonly stats_ = new Stats();
  private closed = false;
  private dropConnections: (() => void) | undefined;

  private constructor(
    private readonly trainers: readonly Replica[],
    private readonly timing: ClusterTiming,
    private readonly log: (m: string) => void,
  ) {
    this.description = `all-reduce over ${trainers.length} replicas (coordinated by ${replicaName(trainers[0]!)})`;
    this.server.addService(coordinatorService(), {
      Join: (call: grpc.ServerUnaryCall<JoinRequest, TrainingStateMsg>, cb: grpc.sendUnaryData<TrainingStateMsg>) => void this.onJoin(call.request, cb),
      Watch: (call: grpc.ServerWritableStream<WatchRequest, unknown>) => this.onWatch(call),
      AllReduce: (call: grpc.ServerUnaryCall<GradientsMsg, GradientsMsg>, cb: grpc.sendUnaryData<GradientsMsg>) => this.onAllReduce(call.request, cb),
      Leave: (call: grpc.ServerUnaryCall<WatchRequest, object>, cb: grpc.sendUnaryData<object>) => {
        this.left.add(call.request.rank);
        cb(null, {});
      },
    });
    this.latch.fail = ((orig) => (e: Error) => {
      const stopping = !this.latch.error;
      const first = orig(e);
      if (stopping) this.stopEverything(first);
      return first;
    })(this.latch.fail.bind(this.latch));
  }

  /** Starts serving on the chief's TF_CONFIG address. */
  static async listen(trainers: readonly Replica[], timing: ClusterTiming, log: (m: string) => void): Promise<AllReduceChief> {
    const chief = new AllReduceChief(trainers, timing, log);
    try {
      chief.dropConnections = (await bindServer(chief.server, trainers[0]!.address)).dropConnections;
    } catch (e) {
      chief.server.forceShutdown();
      throw new ReplicaLostError(`${replicaName(trainers[0]!)}: cannot listen on ${trainers[0]!.address}: ${describeError(e)}; is another process using the port?`);
    }
    return chief;
  }

  get replicas(): number {
    return this.trainers.length;
  }

  private name(rank: number): string {
    return replicaName(this.trainers[rank]!);
  }

  private status(e: Error): Partial<grpc.StatusObject> {
    return { code: grpc.status.ABORTED, details: e.message };
  }

  private stopEverything(e: Error): void {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      for (const answer of p.answers.values()) answer(e);
    }
    this.pending.clear();
    for (const w of this.startWaiters.splice(0)) w();
    for (const call of this.watches.values()) call.emit("error", this.status(e));
    this.watches.clear();
    // Give the ABORTED statuses a moment to leave, then close (a hung peer's connection
    // would otherwise keep this process alive).
    setTimeout(() => {
      this.server.forceShutdown();
      this.dropConnections?.();
    }, 200);
  }

  private async onJoin(req: JoinRequest, cb: grpc.sendUnaryData<TrainingStateMsg>): Promise<void> {
    const rank = req.rank;
    if (!(rank > 0 && rank < this.trainers.length)) {
      cb({
        code: grpc.status.INVALID_ARGUMENT,
        details: `rank ${rank} is not a worker of this cluster (${this.trainers.length} training replicas); the replicas' TF_CONFIG differ`,
      });
      return;
    }
    while (!this.startState && !this.latch.error) await new Promise<void>((r) => this.startWaiters.push(r));
    if (this.latch.error) return cb(this.status(this.latch.error));
    const theirs = JSON.parse(req.config) as Record<string, unknown>;
    const diff = configDifferences(theirs, this.startState!.config);
    if (diff.length) {
      const e = new ReplicaMismatchError(`${this.name(rank)} runs with ${diff.join(", ")}: every replica of a TFJob must get the same arguments`);
      cb({ code: grpc.status.FAILED_PRECONDITION, details: e.message });
      this.latch.fail(e);
      return;
    }
    this.joined.add(rank);
    for (const w of this.startWaiters.splice(0)) w();
    cb(null, this.startState!.msg);
  }

  private onWatch(call: grpc.ServerWritableStream<WatchRequest, unknown>): void {
    const rank = call.request.rank;
    if (this.latch.error) {
      call.emit("error", this.status(this.latch.error));
      return;
    }
    this.watches.set(rank, call);
    call.on("cancelled", () => {
      this.watches.delete(rank);
      if (!this.left.has(rank) && !this.closed) {
        this.latch.fail(
          new ReplicaLostError(
            `lost ${this.name(rank)}: its connection to the chief closed mid-run (the process exited or was killed); stopping so the TFJob restarts and resumes from the last checkpoint`,
          ),
        );
      }
    });
  }

  private onAllReduce(req: GradientsMsg, cb: grpc.sendUnaryData<GradientsMsg>): void {
    if (this.latch.error) return cb(this.status(this.latch.error));
    const step = Number(req.step);
    let grads: Float32Array[];
    try {
      grads = req.count > 0 ? unpackFloats(req.values, this.sizes, `gradients of ${this.name(req.rank)}`) : [];
    } catch (e) {
      return cb({ code: grpc.status.INVALID_ARGUMENT, details: describeError(e) });
    }
    this.stats_.bytesReceived += req.values.length;
    this.contribute(req.rank, step, { count: req.count, loss: req.loss, accuracy: req.accuracy, grads }, (r) => {
      if (r instanceof Error) return cb(this.status(r));
      const values = packFloats(r.grads!);
      this.stats_.bytesSent += values.length;
      cb(null, { rank: 0, step, count: r.count, loss: r.loss, accuracy: r.accuracy, values });
    });
  }

  private contribute(rank: number, step: number, part: Part, answer: (r: Combined | Error) => void): void {
    let p = this.pending.get(step);
    if (!p) {
      p = { parts: new Map(), answers: new Map() };
      this.pending.set(step, p);
      const pending = p;
      p.timer = setTimeout(() => {
        const missing = this.trainers.map((_, r) => r).filter((r) => !pending.parts.has(r));
        this.latch.fail(
          new ReplicaLostError(
            `lost ${missing.map((r) => this.name(r)).join(", ")}: no gradients for step ${step} within ${this.timing.timeoutMs / 1000} s of the first replica's ` +
              "(hung, or far slower than the others; raise --replica-timeout if steps are that slow)",
          ),
        );
      }, this.timing.timeoutMs);
    }
    if (p.parts.has(rank)) {
      answer(this.latch.fail(new ReplicaMismatchError(`${this.name(rank)} sent step ${step} twice: the replicas are out of step`)));
      return;
    }
    p.parts.set(rank, part);
    p.answers.set(rank, answer);
    if (p.parts.size < this.trainers.length) return;
    clearTimeout(p.timer);
    this.pending.delete(step);
    const parts = [...p.parts.values()];
    const count = parts.reduce((s, q) => s + q.count, 0);
    const mean = (f: (q: Part) => number) => (count ? parts.reduce((s, q) => s + q.count * f(q), 0) / count : NaN);
    const combined: Combined = { loss: mean((q) => q.loss), accuracy: mean((q) => q.accuracy), count, grads: weightedMean(parts, this.sizes) };
    for (const a of p.answers.values()) a(combined);
  }

  async start(ctx: { model: LayersModel; trainStep: TrainStep; state: StartState; config: Readonly<Record<string, unknown>> }): Promise<StartState> {
    this.sizes = sizesOf(ctx.trainStep.variables);
    const s = await captureState(ctx.model, ctx.trainStep.optimizer);
    this.startState = {
      config: ctx.config,
      msg: {
        step: ctx.state.step,
        position: ctx.state.position ? JSON.stringify(ctx.state.position) : "",
        weights: packFloats(s.weights),
        optimizer: packFloats([...s.m, ...s.v]),
        iterations: s.iterations,
      },
    };
    for (const w of this.startWaiters.splice(0)) w();
    // Wait for every worker, so that step 1's timeout does not count their start-up.
    const deadline = Date.now() + this.timing.startupTimeoutMs;
    while (this.joined.size < this.trainers.length - 1) {
      this.latch.throwIfFailed();
      if (Date.now() > deadline) {
        const missing = this.trainers.map((_, r) => r).filter((r) => r > 0 && !this.joined.has(r));
        throw this.latch.fail(
          new ReplicaLostError(
            `${missing.map((r) => this.name(r)).join(", ")} did not join within ${this.timing.startupTimeoutMs / 1000} s (--startup-timeout): is the replica running and its address reachable?`,
          ),
        );
      }
      await sleep(50);
    }
    this.log(`all-reduce: ${this.trainers.length} replicas joined at step ${ctx.state.step}`);
    return ctx.state;
  }

  async beforeStep(): Promise<void> {
    this.latch.throwIfFailed();
  }

  reduce(step: number, local: LocalGradients): Promise<Combined> {
    return new Promise((resolve, reject) => {
      if (this.latch.error) return reject(this.latch.error);
      this.contribute(0, step, local, (r) => (r instanceof Error ? reject(r) : resolve(r)));
    });
  }

  optimizerState(local: OptimizerState): OptimizerState {
    return local;
  }

  async finish(): Promise<void> {
    // Keep serving until every worker has its last answer and has left.
    const deadline = Date.now() + this.timing.timeoutMs;
    while (this.left.size < this.trainers.length - 1 && Date.now() < deadline && !this.latch.error) await sleep(20);
    this.closed = true;
    await new Promise<void>((r) => this.server.tryShutdown(() => r()));
  }

  abort(error: unknown): void {
    if (this.closed) return;
    this.latch.fail(
      error instanceof ReplicaLostError || error instanceof ReplicaMismatchError ? error : new ReplicaLostError(`the chief ${this.name(0)} failed: ${describeError(error)}`),
    );
    this.closed = true;
  }

  stats(): ReducerStats {
    return this.stats_.snapshot();
  }
}

/** A worker's side: a client of the chief's `Coordinator`. */
export class AllReduceWorker implements Reducer {
  readonly isChief = false;
  readonly description: string;
  private readonly latch = new FailureLatch();
  private readonly client: grpc.Client;
  private watch: grpc.ClientReadableStream<unknown> | undefined;
  private sizes: number[] = [];
  private readonly stats_ = new Stats();
  private done = false;
  private readonly inFlight = new Set<grpc.ClientUnaryCall>();

  constructor(
    private readonly trainers: readonly Replica[],
    readonly rank: number,
    private readonly timing: ClusterTiming,
    private readonly log: (m: string) => void,
  ) {
    this.description = `all-reduce over ${trainers.length} replicas (this is ${replicaName(trainers[rank]!)}, rank ${rank})`;
    this.client = coordinatorClient(trainers[0]!.address);
  }

  get replicas(): number {
    return this.trainers.length;
  }

  private get chief(): string {
    return replicaName(this.trainers[0]!);
  }

  /** The error for a failed call: the chief's ABORTED message (naming the lost replica) if it has one. */
  private async failed(e: unknown, what: string): Promise<Error> {
    const err = e as grpc.ServiceError;
    if (err.code === grpc.status.ABORTED || err.code === grpc.status.FAILED_PRECONDITION) {
      return this.latch.fail(err.code === grpc.status.FAILED_PRECONDITION ? new ReplicaMismatchError(err.details) : new ReplicaLostError(err.details));
    }
    // The watch stream may be about to deliver the chief's reason.
    await sleep(300);
    if (this.latch.error) return this.latch.error;
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      return this.latch.fail(
        new ReplicaLostError(`lost the chief ${this.chief}: no answer to ${what} within ${this.timing.timeoutMs / 1000} s (hung?); stopping so the TFJob restarts`),
      );
    }
    return this.latch.fail(new ReplicaLostError(`lost the chief ${this.chief}: ${what} failed: ${err.details ?? describeError(e)}`));
  }

  async start(ctx: { model: LayersModel; trainStep: TrainStep; state: StartState; config: Readonly<Record<string, unknown>> }): Promise<StartState> {
    this.sizes = sizesOf(ctx.trainStep.variables);
    const me = replicaName(this.trainers[this.rank]!);
    let st: TrainingStateMsg;
    try {
      st = await unary<JoinRequest, TrainingStateMsg>(
        this.client,
        "Join",
        { rank: this.rank, replica: me, config: JSON.stringify(ctx.config) },
        this.timing.startupTimeoutMs,
        true,
      );
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (err.code === grpc.status.DEADLINE_EXCEEDED)
        throw this.latch.fail(
          new ReplicaLostError(
            `the chief ${this.chief} did not answer within ${this.timing.startupTimeoutMs / 1000} s (--startup-timeout): is it running and its address reachable?`,
          ),
        );
      throw await this.failed(e, "joining");
    }
    const weights = unpackFloats(st.weights, sizesOf(ctx.model.getWeights()), "weights from the chief");
    const moments = unpackFloats(st.optimizer, [...this.sizes, ...this.sizes], "optimizer state from the chief");
    setModelWeights(ctx.model, weights);
    await setOptimizerArrays(ctx.trainStep, ctx.trainStep.optimizer, moments.slice(0, this.sizes.length), moments.slice(this.sizes.length), Number(st.iterations));
    this.watch = (this.client as unknown as { Watch(r: WatchRequest): grpc.ClientReadableStream<unknown> }).Watch({ rank: this.rank, replica: me });
    this.watch.on("data", () => undefined);
    this.watch.on("error", (e: grpc.ServiceError) => {
      if (this.done) return;
      this.latch.fail(e.code === grpc.status.ABORTED ? new ReplicaLostError(e.details) : new ReplicaLostError(`lost the chief ${this.chief}: ${e.details || e.message}`));
    });
    this.watch.on("end", () => {
      if (!this.done) this.latch.fail(new ReplicaLostError(`lost the chief ${this.chief}: it closed the connection mid-run`));
    });
    const step = Number(st.step);
    this.log(`all-reduce: joined ${this.chief} as rank ${this.rank}, starting at step ${step}`);
    return { step, position: st.position ? (JSON.parse(st.position) as StartState["position"]) : undefined };
  }

  async beforeStep(): Promise<void> {
    this.latch.throwIfFailed();
  }

  async reduce(step: number, local: LocalGradients): Promise<Combined> {
    const values = local.count > 0 ? packFloats(local.grads) : Buffer.alloc(0);
    this.stats_.bytesSent += values.length;
    let r: GradientsMsg;
    try {
      r = await this.latch.race(
        unary<GradientsMsg, GradientsMsg>(
          this.client,
          "AllReduce",
          { rank: this.rank, step, count: local.count, loss: local.loss, accuracy: local.accuracy, values },
          this.timing.timeoutMs + 2000,
          false,
          this.inFlight,
        ),
      );
    } catch (e) {
      if (e === this.latch.error) throw e;
      throw await this.failed(e, `step ${step}'s all-reduce`);
    }
    this.stats_.bytesReceived += r.values.length;
    return { loss: r.loss, accuracy: r.accuracy, count: r.count, grads: unpackFloats(r.values, this.sizes, `step ${step}'s gradients from the chief`) };
  }

  optimizerState(local: OptimizerState): OptimizerState {
    return local;
  }

  async finish(): Promise<void> {
    this.done = true;
    await unary(this.client, "Leave", { rank: this.rank, replica: "" }, 5000).catch(() => undefined);
    this.watch?.cancel();
    this.client.close();
  }

  abort(): void {
    this.done = true;
    for (const c of this.inFlight) c.cancel();
    this.watch?.cancel();
    this.client.close();
  }

  stats(): ReducerStats {
    return this.stats_.snapshot();
  }
}
