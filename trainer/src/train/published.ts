/**
 * `<checkpoint-dir>/published.json`: the version a run published when it finished. Resuming a
 * finished run (its newest checkpoint is at the last step) finds it and publishes nothing new,
 * instead of a second, identical version.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { CheckpointError, describeError } from "../errors";
import { writeFileAtomic } from "../util/fs";

export interface PublishedRecord {
  readonly version: number;
  readonly dir: string;
  /** The run's last step. */
  readonly step: number;
  readonly metrics: Record<string, number>;
}

const FILE = "published.json";

export async function readPublishedRecord(checkpointDir: string): Promise<PublishedRecord | undefined> {
  const file = path.join(checkpointDir, FILE);
  let raw: string;
  try {
    raw = await fs.readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CheckpointError(`${file}: cannot read: ${describeError(e)}`, { cause: e });
  }
  try {
    const doc = JSON.parse(raw) as PublishedRecord;
    if (!Number.isInteger(doc.version) || typeof doc.dir !== "string") throw new Error("needs an integer version and a dir");
    return doc;
  } catch (e) {
    throw new CheckpointError(`${file}: not a valid record of a published version (${describeError(e)}); delete it to publish again`);
  }
}

export async function writePublishedRecord(checkpointDir: string, record: PublishedRecord): Promise<void> {
  await fs.mkdir(checkpointDir, { recursive: true });
  await writeFileAtomic(path.join(checkpointDir, FILE), JSON.stringify(record, null, 2) + "\n");
}
