import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";

/**
 * A unique temporary name beside `file` (same directory, so renaming it onto `file` is
 * atomic): `.<name>.<pid>.<8 hex>.tmp`, hidden and with no data file's extension, so
 * directory scans that pick files by extension never take it for the real thing.
 */
export function tempFileBeside(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/** True for a name {@link tempFileBeside} makes. */
export function isTempFileName(name: string): boolean {
  return /^\..+\.\d+\.[0-9a-f]{8}\.tmp$/.test(name);
}

/** Writes `data` to `file` via a temporary file in the same directory and a rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempFileBeside(file);
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

/** A unique temporary name beside `dir` (same file system, so a rename is atomic). */
export function siblingTempName(dir: string, tag: string): string {
  return path.join(path.dirname(dir), `.tmp-${tag}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** True if `p` exists. */
export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}
