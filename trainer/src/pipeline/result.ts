/**
 * What pipeline steps share: the `--result-file` JSON (Argo reads it as a step's output
 * parameter, so it is written atomically and also on a gate failure) and the gate error.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { MlpError, describeError } from "../errors";
import { writeFileAtomic } from "../util/fs";

/** Exit code of `mlp evaluate` when the accuracy is below the gate (distinct from 1 = failure, 2 = usage). */
export const GATE_EXIT_CODE = 3;

/** The model is worse than the gate: the pipeline must not publish it. Exit code 3. */
export class GateError extends MlpError {
  override readonly exitCode = GATE_EXIT_CODE;
}

/** `0.9100000001` → `0.91`: four decimals at most, no trailing zeros. */
export function formatAccuracy(x: number): string {
  return String(Number(x.toFixed(4)));
}

/** Writes `value` as pretty JSON to `file` (parent directories created), atomically. */
export async function writeResultFile(file: string, value: unknown): Promise<void> {
  try {
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n");
  } catch (e) {
    throw new MlpError(`--result-file ${file}: cannot write: ${describeError(e)}`, { cause: e });
  }
}
