/**
 * Checkpoints: everything needed to continue a run after the process is killed, losing at
 * most the steps since the last one.
 *
 *   <dir>/checkpoint.json            {"latest": "step-00000200", "step": 200}  (atomic pointer)
 *   <dir>/step-00000200/model.json   tfjs Layers model + weights.bin
 *   <dir>/step-00000200/optimizer.json, optimizer.bin   optimizer slots (incl. its step count)
 *   <dir>/step-00000200/state.json   step, data position (epoch, cursor, RNG state), run config
 *
 * A checkpoint directory is written under a temporary name and renamed; the pointer is
 * replaced atomically afterwards, so a kill at any moment leaves the previous checkpoint usable.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { CheckpointError, describeError } from "../errors";
import type { BatchPosition } from "../data/batches";
import { tf, type LayersModel, type Tensor } from "../tf";
import { siblingTempName, writeFileAtomic } from "../util/fs";

/** What the training loop stores beside the weights. */
export interface TrainState {
  /** Optimizer steps completed. */
  readonly step: number;
  readonly position: BatchPosition;
  /**
   * Settings that must not change across a resume (model shape, batch size, seed, data):
   * a resume with different values is refused.
   */
  readonly config: Readonly<Record<string, string | number | boolean>>;
}

interface TensorRecord {
  name: string;
  dtype: "float32" | "int32";
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

interface OptimizerLike {
  getWeights(): Promise<{ name: string; tensor: Tensor }[]>;
  setWeights(w: { name: string; tensor: Tensor }[]): Promise<void>;
}

const POINTER = "checkpoint.json";
const stepDirName = (step: number) => `step-${String(step).padStart(8, "0")}`;

/**
 * Writes a checkpoint for `state.step` and keeps the newest `keep` ones.
 * Throws {@link CheckpointError} naming the directory if anything fails.
 */
export async function saveCheckpoint(dir: string, model: LayersModel, optimizer: OptimizerLike, state: TrainState, keep = 2): Promise<string> {
  const final = path.join(dir, stepDirName(state.step));
  const tmp = siblingTempName(final, stepDirName(state.step));
  try {
    await fs.mkdir(dir, { recursive: true });
    await model.save(`file://${tmp}`);
    const named = await optimizer.getWeights();
    const records: TensorRecord[] = [];
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const { name, tensor } of named) {
      const data = await tensor.data();
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      if (tensor.dtype !== "float32" && tensor.dtype !== "int32") {
        throw new Error(`optimizer weight ${name} has unsupported dtype ${tensor.dtype}`);
      }
      records.push({ name, dtype: tensor.dtype, shape: tensor.shape, byteOffset: offset, byteLength: buf.length });
      chunks.push(buf);
      offset += buf.length;
    }
    await fs.writeFile(path.join(tmp, "optimizer.bin"), Buffer.concat(chunks));
    await fs.writeFile(path.join(tmp, "optimizer.json"), JSON.stringify({ weights: records }, null, 2));
    await fs.writeFile(path.join(tmp, "state.json"), JSON.stringify(state, null, 2));
    await fs.rm(final, { recursive: true, force: true });
    await fs.rename(tmp, final);
    await writeFileAtomic(path.join(dir, POINTER), JSON.stringify({ latest: path.basename(final), step: state.step }) + "\n");
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw new CheckpointError(`${dir}: cannot write the checkpoint for step ${state.step}: ${describeError(e)}`, { cause: e });
  }
  await pruneCheckpoints(dir, keep);
  return final;
}

async function pruneCheckpoints(dir: string, keep: number): Promise<void> {
  const entries = await fs.readdir(dir);
  const steps = entries.filter((e) => /^step-\d{8}$/.test(e)).sort();
  for (const old of steps.slice(0, Math.max(0, steps.length - keep))) {
    await fs.rm(path.join(dir, old), { recursive: true, force: true });
  }
  // Leftovers of checkpoints interrupted by a kill.
  for (const e of entries.filter((e) => e.startsWith(".tmp-step-"))) {
    const pid = Number(e.split("-")[3]);
    if (pid !== process.pid) await fs.rm(path.join(dir, e), { recursive: true, force: true });
  }
}

/** The newest checkpoint's step, or undefined if `dir` has none. */
export async function latestCheckpointStep(dir: string): Promise<number | undefined> {
  const ptr = await readPointer(dir);
  return ptr?.step;
}

async function readPointer(dir: string): Promise<{ latest: string; step: number } | undefined> {
  let raw: string;
  try {
    raw = await fs.readFile(path.join(dir, POINTER), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CheckpointError(`${path.join(dir, POINTER)}: cannot read: ${describeError(e)}`, { cause: e });
  }
  try {
    const doc = JSON.parse(raw) as { latest?: unknown; step?: unknown };
    if (typeof doc.latest !== "string" || !/^step-\d{8}$/.test(doc.latest) || !Number.isInteger(doc.step)) throw new Error("bad fields");
    return { latest: doc.latest, step: doc.step as number };
  } catch (e) {
    throw new CheckpointError(`${path.join(dir, POINTER)}: not a valid checkpoint pointer (${describeError(e)}); delete the directory to start over`);
  }
}

/**
 * Restores the newest checkpoint in `dir` into `model` and `optimizer` (both already built
 * with the run's settings) and returns its state; returns undefined if there is none.
 * Throws {@link CheckpointError} if the checkpoint is unreadable or was made with a different
 * `config` (a different model or data), naming the setting that differs.
 */
export async function restoreCheckpoint(dir: string, model: LayersModel, optimizer: OptimizerLike, config: TrainState["config"]): Promise<TrainState | undefined> {
  const ptr = await readPointer(dir);
  if (!ptr) return undefined;
  const ckpt = path.join(dir, ptr.latest);
  let state: TrainState;
  try {
    state = JSON.parse(await fs.readFile(path.join(ckpt, "state.json"), "utf8")) as TrainState;
  } catch (e) {
    throw new CheckpointError(`${ckpt}: cannot read state.json: ${describeError(e)}`, { cause: e });
  }
  for (const key of new Set([...Object.keys(config), ...Object.keys(state.config)])) {
    if (config[key] !== state.config[key]) {
      throw new CheckpointError(
        `${ckpt} was written with ${key}=${JSON.stringify(state.config[key])} but this run has ${key}=${JSON.stringify(config[key])}; ` +
          "use the same settings to resume, or another --checkpoint-dir to start over",
      );
    }
  }
  try {
    const saved = await tf.loadLayersModel(`file://${path.join(ckpt, "model.json")}`);
    const weights = saved.getWeights();
    model.setWeights(weights);
    saved.dispose();

    const { weights: records } = JSON.parse(await fs.readFile(path.join(ckpt, "optimizer.json"), "utf8")) as { weights: TensorRecord[] };
    const bin = await fs.readFile(path.join(ckpt, "optimizer.bin"));
    const named = records.map((r) => {
      const bytes = bin.buffer.slice(bin.byteOffset + r.byteOffset, bin.byteOffset + r.byteOffset + r.byteLength);
      const values = r.dtype === "int32" ? new Int32Array(bytes) : new Float32Array(bytes);
      return { name: r.name, tensor: tf.tensor(values, r.shape, r.dtype) };
    });
    await optimizer.setWeights(named);
    tf.dispose(named.map((n) => n.tensor));
  } catch (e) {
    throw new CheckpointError(`${ckpt}: cannot restore: ${describeError(e)}`, { cause: e });
  }
  return state;
}
