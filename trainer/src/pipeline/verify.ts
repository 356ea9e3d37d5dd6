/**
 * The pipeline's first step: is the dataset there, complete and readable, before a training
 * job is scheduled (perhaps on a GPU node scaled up from zero) only to fail on it.
 *
 * IDX: the training and test image/label pairs exist, have valid headers, matching counts
 * and equal image sizes, and the training labels name at least two classes.
 * Images: at least two label folders, each with at least one image, and every image
 * decodes (retrain would stop on the first one that does not).
 */
import { promises as fs } from "node:fs";
import { DataError } from "../errors";
import { loadIdxPair, type ImageDataset } from "../data/images";
import { decodeImage } from "../retrain/decode";
import type { SetName } from "../retrain/folder";
import { detectKind, displayPath, localImageFolder, requireDataLocation, type DataKind } from "./dataset";
import type { Location } from "./location";

export interface IdxPartSummary {
  readonly prefix: string;
  readonly images: string;
  readonly labels: string;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  /** Examples per class id, for the classes present. */
  readonly perClass: Record<string, number>;
}

export interface IdxSummary {
  readonly kind: "idx";
  readonly data: string;
  readonly train: IdxPartSummary;
  readonly test: IdxPartSummary;
  /** Class ids present in the training labels, ascending. */
  readonly classes: number[];
  readonly warnings: string[];
}

export interface ImagesSummary {
  readonly kind: "images";
  readonly data: string;
  /** Label names (sorted; index = class id, as retrain assigns them). */
  readonly classes: string[];
  readonly images: number;
  readonly perClass: Record<string, number>;
  /** Images per set under the given split percentages (retrain's hash assignment). */
  readonly sets: Record<SetName, number>;
  readonly warnings: string[];
}

export type DatasetSummary = IdxSummary | ImagesSummary;

export interface VerifyOptions {
  /** `idx`, `images`, or undefined to detect. */
  readonly kind?: DataKind;
  readonly trainPrefix: string;
  readonly testPrefix: string;
  readonly validationPercent: number;
  readonly testPercent: number;
  /** Messages (progress, warnings). */
  readonly log: (line: string) => void;
}

function partSummary(prefix: string, ds: ImageDataset): IdxPartSummary {
  const perClass: Record<string, number> = {};
  for (const l of ds.labels) perClass[l] = (perClass[l] ?? 0) + 1;
  return { prefix, images: ds.from.images, labels: ds.from.labels, count: ds.count, height: ds.height, width: ds.width, perClass };
}

async function verifyIdx(loc: Location, opts: VerifyOptions): Promise<IdxSummary> {
  // Labels are bytes: accept any class id here, and report which ones occur.
  const train = await loadIdxPair(loc, opts.trainPrefix, 256);
  const test = await loadIdxPair(loc, opts.testPrefix, 256);
  if (test.height !== train.height || test.width !== train.width) {
    throw new DataError(`${test.from.images}: images are ${test.height}×${test.width} but ${train.from.images} has ${train.height}×${train.width}`);
  }
  const t = partSummary(opts.trainPrefix, train);
  const s = partSummary(opts.testPrefix, test);
  const classes = Object.keys(t.perClass)
    .map(Number)
    .sort((a, b) => a - b);
  if (classes.length < 2) throw new DataError(`${train.from.labels}: all ${train.count} labels are ${classes[0]}; a classifier needs at least two classes`);
  const warnings: string[] = [];
  const unseen = Object.keys(s.perClass)
    .map(Number)
    .filter((c) => !(c in t.perClass));
  if (unseen.length) warnings.push(`${test.from.labels}: classes ${unseen.join(", ")} never occur in the training labels`);
  return { kind: "idx", data: loc.uri, train: t, test: s, classes, warnings };
}

async function verifyImages(loc: Location, opts: VerifyOptions): Promise<ImagesSummary> {
  const { folder, source, dispose } = await localImageFolder(loc, opts.validationPercent, opts.testPercent, { log: opts.log });
  try {
    const failures: string[] = [];
    let done = 0;
    let lastLine = performance.now();
    let next = 0;
    // Decoding is what retrain does first; a small size keeps it cheap (the whole file is still decoded).
    const spec = { height: 8, width: 8, channels: 3, range: [0, 1] } as const;
    const worker = async () => {
      while (next < folder.images.length) {
        const img = folder.images[next++]!;
        const shown = displayPath(folder, source, img.file);
        try {
          await decodeImage(await fs.readFile(img.file), shown, spec);
        } catch (e) {
          failures.push(e instanceof DataError ? e.message : `${shown}: ${(e as Error).message}`);
        }
        done++;
        if (performance.now() - lastLine > 5000) {
          lastLine = performance.now();
          opts.log(`decoded ${done}/${folder.images.length} images`);
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    if (failures.length) {
      failures.sort();
      throw new DataError(
        `${failures.length} of ${folder.images.length} images in ${source} cannot be decoded: ${failures.slice(0, 5).join("; ")}` +
          (failures.length > 5 ? `; … (${failures.length - 5} more)` : ""),
      );
    }
    const perClass: Record<string, number> = {};
    const sets: Record<SetName, number> = { train: 0, validation: 0, test: 0 };
    for (const img of folder.images) {
      perClass[img.label] = (perClass[img.label] ?? 0) + 1;
      sets[img.set]++;
    }
    const warnings: string[] = [];
    if (sets.test === 0) warnings.push(`no image falls in the test split (${opts.testPercent}%): evaluate will have nothing to measure`);
    if (sets.train === 0) warnings.push(`no image falls in the training split: retrain will refuse this folder`);
    return { kind: "images", data: source, classes: [...folder.labels], images: folder.images.length, perClass, sets, warnings };
  } finally {
    await dispose();
  }
}

/** Checks the dataset at `loc`; resolves to its summary, or throws a DataError/SourceError naming the file or URL. */
export async function verifyDataset(loc: Location, opts: VerifyOptions): Promise<DatasetSummary> {
  await requireDataLocation(loc);
  const kind = opts.kind ?? (await detectKind(loc, opts.trainPrefix));
  const summary = kind === "idx" ? await verifyIdx(loc, opts) : await verifyImages(loc, opts);
  for (const w of summary.warnings) opts.log(`warning: ${w}`);
  return summary;
}

/** Human-readable lines of a summary. */
export function describeSummary(s: DatasetSummary): string[] {
  const classList = (perClass: Record<string, number>) =>
    Object.entries(perClass)
      .sort(([a], [b]) => (s.kind === "idx" ? Number(a) - Number(b) : a.localeCompare(b)))
      .map(([c, n]) => `${c}: ${n}`)
      .join(", ");
  if (s.kind === "idx") {
    return [
      `data ${s.data}: IDX, ${s.classes.length} classes (${s.classes.join(", ")})`,
      ...[s.train, s.test].map((p) => `  ${p.prefix}: ${p.count} images of ${p.height}×${p.width}, ${Object.keys(p.perClass).length} classes (${classList(p.perClass)})`),
    ];
  }
  return [
    `data ${s.data}: image folders, ${s.classes.length} classes, ${s.images} images (all decodable)`,
    `  per class: ${classList(s.perClass)}`,
    `  split: ${s.sets.train} training, ${s.sets.validation} validation, ${s.sets.test} test`,
  ];
}
