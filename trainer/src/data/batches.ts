/**
 * Train/validation split and the order in which training examples are visited. Both are
 * pure index arithmetic (no tensors), seeded, and resumable from a saved position.
 */
import { Rng } from "../util/rng";

export interface Split {
  /** Indices used for training; disjoint from `validation`. */
  readonly train: Uint32Array;
  /** Indices held out for validation; never visited by a {@link BatchIterator} over `train`. */
  readonly validation: Uint32Array;
}

/**
 * Splits `0..count-1` at random (seeded) into training and validation indices; the
 * validation part has `round(count·fraction)` examples. Both parts come back sorted.
 */
export function splitTrainValidation(count: number, fraction: number, seed: number): Split {
  if (!(fraction >= 0 && fraction < 1)) throw new RangeError(`validation fraction must be in [0, 1); got ${fraction}`);
  const perm = new Rng(seed).shuffle(Uint32Array.from({ length: count }, (_, i) => i));
  const nVal = Math.round(count * fraction);
  return { validation: perm.slice(0, nVal).sort(), train: perm.slice(nVal).sort() };
}

/** Where a {@link BatchIterator} is: enough to continue the same sequence after a restart. */
export interface BatchPosition {
  /** Epochs started so far minus one (0 during the first epoch). */
  readonly epoch: number;
  /** Position in this epoch's permutation of the training indices. */
  readonly cursor: number;
  /** RNG state the current epoch's permutation was drawn from. */
  readonly epochRngState: number;
}

/**
 * Visits `indices` in a fresh seeded random order each epoch, `batchSize` at a time; the
 * last batch of an epoch may be smaller.
 */
export class BatchIterator {
  private rng: Rng;
  private order: Uint32Array;
  private epoch: number;
  private cursor: number;
  private epochRngState: number;

  constructor(
    private readonly indices: Uint32Array,
    readonly batchSize: number,
    seed: number,
    position?: BatchPosition,
  ) {
    if (indices.length === 0) throw new RangeError("no training examples");
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer; got ${batchSize}`);
    this.epoch = position?.epoch ?? 0;
    this.cursor = position?.cursor ?? 0;
    this.epochRngState = position?.epochRngState ?? new Rng(seed).state;
    this.rng = new Rng(this.epochRngState);
    this.order = this.rng.shuffle(indices.slice());
  }

  /** Batches in one epoch. */
  get stepsPerEpoch(): number {
    return Math.ceil(this.indices.length / this.batchSize);
  }

  get position(): BatchPosition {
    return { epoch: this.epoch, cursor: this.cursor, epochRngState: this.epochRngState };
  }

  /** The next batch of example indices. */
  next(): Uint32Array {
    if (this.cursor >= this.order.length) {
      this.epoch++;
      this.cursor = 0;
      this.epochRngState = this.rng.state;
      this.order = this.rng.shuffle(this.indices.slice());
    }
    const batch = this.order.slice(this.cursor, this.cursor + this.batchSize);
    this.cursor += batch.length;
    return batch;
  }
}
