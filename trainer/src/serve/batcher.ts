/**
 * Server-side batching: requests for the same version and signature that arrive within
 * `batchTimeoutMicros` of each other are concatenated along dimension 0, run once, and
 * the outputs split back. Like TF Serving's batching session, a request larger than
 * `maxBatchSize` is refused (INVALID_ARGUMENT) and a full queue answers RESOURCE_EXHAUSTED.
 */
import { deadlineExceeded, cancelled, invalidArgument, resourceExhausted, ServingError, GrpcStatus } from "./errors";
import type { Servable } from "./servable";
import type { HostTensor, HostValues } from "./tensor";

export interface BatchingOptions {
  /** Most examples (sum of the requests' dimension 0) in one run. Default 32. */
  readonly maxBatchSize: number;
  /** How long the first request of a batch waits for others, in µs. Default 2000. */
  readonly batchTimeoutMicros: number;
  /** Most requests waiting across all queues before RESOURCE_EXHAUSTED. Default 1024. */
  readonly maxQueuedRequests: number;
}

export const DEFAULT_BATCHING: BatchingOptions = { maxBatchSize: 32, batchTimeoutMicros: 2000, maxQueuedRequests: 1024 };

/** Per-request context shared by the protocols. */
export interface CallContext {
  /** Epoch ms after which the client has given up. */
  readonly deadline?: number;
  /** `aborted` turns true when the client cancels or disconnects (an AbortSignal will do). */
  readonly signal?: { readonly aborted: boolean };
}

interface Entry {
  readonly inputs: Readonly<Record<string, HostTensor>>;
  readonly size: number;
  readonly ctx: CallContext;
  resolve(out: Record<string, HostTensor>): void;
  reject(err: unknown): void;
}

interface Queue {
  readonly servable: Servable;
  readonly signature: string;
  readonly key: string;
  entries: Entry[];
  size: number;
  timer?: NodeJS.Timeout;
}

function concat(parts: readonly HostTensor[], total: number): HostTensor {
  const first = parts[0]!;
  const shape = [total, ...first.shape.slice(1)];
  if (first.dtype === "string") {
    return { dtype: "string", shape, values: parts.flatMap((p) => p.values as Uint8Array[]) };
  }
  const n = parts.reduce((s, p) => s + p.values.length, 0);
  const Ctor = (first.values as Float32Array | Int32Array | Uint8Array).constructor as new (n: number) => Float32Array | Int32Array | Uint8Array;
  const out = new Ctor(n);
  let off = 0;
  for (const p of parts) {
    out.set(p.values as Float32Array & Int32Array & Uint8Array, off);
    off += p.values.length;
  }
  return { dtype: first.dtype, shape, values: out } as HostTensor;
}

function slice(t: HostTensor, start: number, count: number): HostTensor {
  let stride = 1;
  for (const d of t.shape.slice(1)) stride *= d;
  const values: HostValues = Array.isArray(t.values)
    ? (t.values as Uint8Array[]).slice(start * stride, (start + count) * stride)
    : (t.values as Float32Array).slice(start * stride, (start + count) * stride);
  return { dtype: t.dtype, shape: [count, ...t.shape.slice(1)], values } as HostTensor;
}

export class Batcher {
  private readonly queues = new Map<string, Queue>();
  private queued = 0;
  private readonly ids = new WeakMap<Servable, number>();
  private nextId = 1;

  constructor(
    readonly options: BatchingOptions,
    /** Called with the size of every batch run (metrics). */
    private readonly onBatch: (servable: Servable, size: number) => void = () => {},
    /** Called with the duration of every batch run, seconds (metrics). */
    private readonly onRun: (servable: Servable, seconds: number) => void = () => {},
  ) {}

  /** Requests waiting now. */
  get depth(): number {
    return this.queued;
  }

  /** Runs `inputs` (already checked, dimension 0 = `size`) as part of a batch. */
  run(servable: Servable, signature: string, inputs: Readonly<Record<string, HostTensor>>, size: number, ctx: CallContext): Promise<Record<string, HostTensor>> {
    if (size > this.options.maxBatchSize) {
      return Promise.reject(invalidArgument(`Task size ${size} is larger than maximum batch size ${this.options.maxBatchSize}`));
    }
    if (this.queued >= this.options.maxQueuedRequests) {
      return Promise.reject(resourceExhausted("The batch scheduling queue to which this task was submitted is full"));
    }
    let id = this.ids.get(servable);
    if (id === undefined) this.ids.set(servable, (id = this.nextId++));
    // Requests can share a run only when their non-batch dimensions agree.
    const dims = Object.keys(inputs)
      .sort()
      .map((n) => `${n}:${inputs[n]!.shape.slice(1).join("x")}`)
      .join(";");
    const key = `${id}\u0000${signature}\u0000${dims}`;
    let q = this.queues.get(key);
    if (!q) this.queues.set(key, (q = { servable, signature, key, entries: [], size: 0 }));
    return new Promise((resolve, reject) => {
      q.entries.push({ inputs, size, ctx, resolve, reject });
      q.size += size;
      this.queued++;
      if (q.size >= this.options.maxBatchSize) this.flush(q);
      else if (!q.timer) q.timer = setTimeout(() => this.flush(q), Math.max(0, this.options.batchTimeoutMicros / 1000));
    });
  }

  private flush(q: Queue): void {
    if (q.timer) clearTimeout(q.timer);
    q.timer = undefined;
    const batch: Entry[] = [];
    let total = 0;
    while (q.entries.length > 0 && total + q.entries[0]!.size <= this.options.maxBatchSize) {
      const e = q.entries.shift()!;
      q.size -= e.size;
      this.queued--;
      if (e.ctx.signal?.aborted) {
        e.reject(cancelled("The client cancelled the request"));
        continue;
      }
      if (e.ctx.deadline !== undefined && Date.now() >= e.ctx.deadline) {
        e.reject(deadlineExceeded("Deadline exceeded while waiting in the batch queue"));
        continue;
      }
      batch.push(e);
      total += e.size;
    }
    if (q.entries.length > 0) setImmediate(() => this.flush(q));
    else this.queues.delete(q.key);
    if (batch.length > 0) void this.execute(q, batch, total);
  }

  private async execute(q: Queue, batch: Entry[], total: number): Promise<void> {
    try {
      const inputs: Record<string, HostTensor> = {};
      for (const name of Object.keys(batch[0]!.inputs))
        inputs[name] = concat(
          batch.map((e) => e.inputs[name]!),
          total,
        );
      this.onBatch(q.servable, total);
      const t0 = process.hrtime.bigint();
      const out = await q.servable.run(q.signature, inputs);
      this.onRun(q.servable, Number(process.hrtime.bigint() - t0) / 1e9);
      for (const [name, t] of Object.entries(out)) {
        if (t.shape[0] !== total) {
          throw new ServingError(GrpcStatus.INTERNAL, `batched output "${name}" has dimension 0 = ${t.shape[0]}; expected ${total}`);
        }
      }
      let start = 0;
      for (const e of batch) {
        const mine: Record<string, HostTensor> = {};
        for (const [name, t] of Object.entries(out)) mine[name] = slice(t, start, e.size);
        start += e.size;
        e.resolve(mine);
      }
    } catch (err) {
      for (const e of batch) e.reject(err);
    }
  }
}
