/**
 * Image classification data held in memory as raw bytes: MNIST-style IDX pairs
 * (`<prefix>-images-idx3-ubyte`, `<prefix>-labels-idx1-ubyte`, optionally `.gz`).
 */
import { DataError } from "../errors";
import { parseIdx } from "./idx";
import { DataSource, readWithGzFallback } from "./source";

export interface ImageDataset {
  /** `count·height·width` greyscale pixels, 0–255, row-major. */
  readonly images: Uint8Array;
  /** `count` class ids, each < `numClasses`. */
  readonly labels: Uint8Array;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly numClasses: number;
  /** Where the images and labels were read from (path or URL). */
  readonly from: { readonly images: string; readonly labels: string };
}

/** File names of an MNIST-style pair, e.g. prefix `train` or `t10k`. */
export function idxPairNames(prefix: string): { images: string; labels: string } {
  return { images: `${prefix}-images-idx3-ubyte`, labels: `${prefix}-labels-idx1-ubyte` };
}

/**
 * Reads and checks an images/labels IDX pair. Throws {@link DataError} naming the file when
 * either is missing, malformed, of the wrong type or shape, or when counts disagree.
 */
export async function loadIdxPair(source: DataSource, prefix: string, numClasses = 10): Promise<ImageDataset> {
  const names = idxPairNames(prefix);
  // Both reads run at once; when both fail, report the images file, so the error is the same every run.
  const [imgResult, labResult] = await Promise.allSettled([readWithGzFallback(source, names.images), readWithGzFallback(source, names.labels)]);
  if (imgResult.status === "rejected") throw imgResult.reason;
  if (labResult.status === "rejected") throw labResult.reason;
  const [img, lab] = [imgResult.value, labResult.value];
  const images = parseIdx(img.data, img.location);
  const labels = parseIdx(lab.data, lab.location);
  if (images.type !== "uint8" || images.dims.length !== 3) {
    throw new DataError(`${img.location}: expected uint8 images of shape [count, height, width]; got ${images.type} [${images.dims.join(", ")}]`);
  }
  if (labels.type !== "uint8" || labels.dims.length !== 1) {
    throw new DataError(`${lab.location}: expected uint8 labels of shape [count]; got ${labels.type} [${labels.dims.join(", ")}]`);
  }
  const [count, height, width] = images.dims as [number, number, number];
  if (labels.dims[0] !== count) {
    throw new DataError(`${lab.location}: has ${labels.dims[0]} labels but ${img.location} has ${count} images`);
  }
  if (count === 0) throw new DataError(`${img.location}: holds no images`);
  const labelData = labels.data as Uint8Array;
  for (let i = 0; i < labelData.length; i++) {
    if (labelData[i]! >= numClasses) {
      throw new DataError(`${lab.location}: label ${labelData[i]} at index ${i} is not below the number of classes (${numClasses})`);
    }
  }
  return {
    images: images.data as Uint8Array,
    labels: labelData,
    count,
    height,
    width,
    numClasses,
    from: { images: img.location, labels: lab.location },
  };
}

/** The first `n` examples of `ds` (for quick runs); `ds` itself if it has no more. */
export function takeFirst(ds: ImageDataset, n: number): ImageDataset {
  if (n >= ds.count) return ds;
  const px = ds.height * ds.width;
  return { ...ds, count: n, images: ds.images.subarray(0, n * px), labels: ds.labels.subarray(0, n) };
}
