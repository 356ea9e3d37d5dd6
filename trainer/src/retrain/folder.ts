/**
 * An image folder with one subdirectory per label:
 *
 *   <root>/<label>/<any name>.{jpg,jpeg,png,webp,gif,tif,tiff}
 *
 * Each image is assigned to the training, validation or test set by a hash of
 * `<label>/<file name>`, so adding images later never moves an existing one between sets
 * (the scheme of TensorFlow's image retraining example).
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DataError, describeError } from "../errors";

export type SetName = "train" | "validation" | "test";

export interface FolderImage {
  readonly file: string;
  readonly label: string;
  readonly labelIndex: number;
  readonly set: SetName;
}

export interface ImageFolder {
  readonly root: string;
  /** Sorted label names; index = class id. */
  readonly labels: readonly string[];
  readonly images: readonly FolderImage[];
}

/** The file extensions read as images (lower case). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff"]);

/** Which set `<label>/<name>` belongs to for the given percentages. */
export function assignSet(label: string, name: string, validationPercent: number, testPercent: number): SetName {
  const h = createHash("sha1").update(`${label}/${name}`).digest().readUInt32BE(0);
  const pct = (h % 10000) / 100;
  if (pct < testPercent) return "test";
  if (pct < testPercent + validationPercent) return "validation";
  return "train";
}

/**
 * Lists the images under `root`. Throws {@link DataError} naming the directory when it is
 * missing, has fewer than two label directories, or a label directory holds no images.
 */
export async function scanImageFolder(root: string, validationPercent = 10, testPercent = 10): Promise<ImageFolder> {
  if (validationPercent < 0 || testPercent < 0 || validationPercent + testPercent >= 100) {
    throw new RangeError(`validation (${validationPercent}%) and test (${testPercent}%) must leave room for training`);
  }
  let entries;
  try {
    entries = await fs.readdir(root, { withFileTypes: true });
  } catch (e) {
    throw new DataError(`${root}: cannot list the image folder: ${describeError(e)}`, { cause: e });
  }
  const labels = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort();
  if (labels.length < 2) {
    throw new DataError(`${root}: needs at least two label directories (<root>/<label>/*.jpg); found ${labels.length}`);
  }
  const images: FolderImage[] = [];
  for (const [labelIndex, label] of labels.entries()) {
    const dir = path.join(root, label);
    const files = (await fs.readdir(dir)).filter((n) => IMAGE_EXTENSIONS.has(path.extname(n).toLowerCase())).sort();
    if (files.length === 0) throw new DataError(`${dir}: no images (${[...IMAGE_EXTENSIONS].join(", ")})`);
    for (const name of files) {
      images.push({ file: path.join(dir, name), label, labelIndex, set: assignSet(label, name, validationPercent, testPercent) });
    }
  }
  return { root, labels, images };
}
