/**
 * The middle of a training step: a step kind produces one replica's gradients
 * (`./step.ts`, `TrainStep.gradients`), a reducer combines them, the optimizer applies them.
 *
 *   local             one replica: the gradients as they are (`LocalReducer`); the training
 *                     loop runs the fused step instead unless asked to split it
 *   all-reduce        the example-weighted mean over all training replicas, the same on every
 *                     replica, applied by each replica's own Adam (`../distributed/allreduce.ts`)
 *   parameter servers pushed to the parameter servers holding the weights, whose Adam applies
 *                     them; the reducer brings back the new weights (`../distributed/ps.ts`)
 *
 * Transport lives in the reducers only: the step kinds never see a socket.
 */
import type { BatchPosition } from "../data/batches";
import type { LayersModel } from "../tf";
import type { LocalGradients, OptimizerState, TrainStep } from "./step";

/** Where a run stands: what the chief hands every replica at the start. */
export interface StartState {
  readonly step: number;
  readonly position?: BatchPosition;
}

/** What a reducer returns for a step. */
export interface Combined {
  /** Example-weighted mean loss and accuracy over the replicas that contributed. */
  readonly loss: number;
  readonly accuracy: number;
  /** Examples of the global batch. */
  readonly count: number;
  /** Gradients for the local optimizer to apply; absent when the update was applied elsewhere (parameter servers) and the model already holds the new weights. */
  readonly grads?: Float32Array[];
}

/** Time spent and bytes moved by a reducer so far. */
export interface ReducerStats {
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

export interface Reducer {
  /** "all-reduce over 2 replicas", for logs. */
  readonly description: string;
  readonly rank: number;
  readonly replicas: number;
  /** Rank 0: writes checkpoints, summaries, the export. */
  readonly isChief: boolean;
  /**
   * Agrees on the starting point before the first step: rank 0 offers its state (restored from
   * its checkpoint, or fresh), every other replica adopts it (weights, optimizer state, step,
   * data position), so all continue identically. `config` holds the settings that must agree.
   */
  start(ctx: { model: LayersModel; trainStep: TrainStep; state: StartState; config: Readonly<Record<string, unknown>> }): Promise<StartState>;
  /** Before step `step`'s gradients are computed (parameter servers: nothing; the weights came with the last update). */
  beforeStep(step: number): Promise<void>;
  /** Combines this replica's gradients of step `step` (1-based) with the others'. */
  reduce(step: number, local: LocalGradients): Promise<Combined>;
  /** The optimizer state checkpoints save: the local one, or the parameter servers'. */
  optimizerState(local: OptimizerState): OptimizerState;
  /** All steps done: tells the others, waits for the final weights where they live elsewhere. */
  finish(): Promise<void>;
  /** A local failure: tells the others (they stop with an error naming this replica) and releases everything. */
  abort(error: unknown): void;
  stats(): ReducerStats;
}

/** One replica: the gradients unchanged, applied by the local optimizer (the split step, for tests and the benchmark). */
export class LocalReducer implements Reducer {
  readonly description = "local (split step)";
  readonly rank = 0;
  readonly replicas = 1;
  readonly isChief = true;
  async start(ctx: { state: StartState }): Promise<StartState> {
    return ctx.state;
  }
  async beforeStep(): Promise<void> {}
  async reduce(_step: number, local: LocalGradients): Promise<Combined> {
    return { loss: local.loss, accuracy: local.accuracy, count: local.count, grads: local.grads };
  }
  optimizerState(local: OptimizerState): OptimizerState {
    return local;
  }
  async finish(): Promise<void> {}
  abort(): void {}
  stats(): ReducerStats {
    return { bytesSent: 0, bytesReceived: 0 };
  }
}

/** The part of a global batch of `n` examples that replica `rank` of `replicas` trains on: rows [lo, hi). */
export function shardOf(n: number, rank: number, replicas: number): { lo: number; hi: number } {
  return { lo: Math.floor((rank * n) / replicas), hi: Math.floor(((rank + 1) * n) / replicas) };
}

/** Example-weighted mean of gradient lists (accumulates in float64 for order-independence to float precision). */
export function weightedMean(parts: readonly { count: number; grads: readonly Float32Array[] }[], sizes: readonly number[]): Float32Array[] {
  const total = parts.reduce((s, p) => s + p.count, 0);
  return sizes.map((n, i) => {
    const acc = new Float64Array(n);
    for (const p of parts) {
      if (p.count === 0) continue;
      const g = p.grads[i]!;
      for (let k = 0; k < n; k++) acc[k]! += p.count * g[k]!;
    }
    const out = new Float32Array(n);
    if (total > 0) for (let k = 0; k < n; k++) out[k] = acc[k]! / total;
    return out;
  });
}
