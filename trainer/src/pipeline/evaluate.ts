/**
 * Evaluating an exported model version (model.json + metadata.json, see ../metadata.ts) on
 * held-out data: the IDX test pair (`t10k`), or the test split of an image folder exactly as
 * `mlp retrain` assigns it (retrain/folder.ts `assignSet`, same percentages). Inputs are
 * prepared the way the model server's clients do it, from the version's `preprocessing`.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadIdxPair } from "../data/images";
import { DataError, describeError } from "../errors";
import { DEFAULT_SIGNATURE, parseMetadata, type ImagePreprocessing, type ModelMetadata } from "../metadata";
import { confusionMatrix } from "../retrain/confusion";
import { readImage } from "../retrain/decode";
import { tf, type Tensor } from "../tf";
import { detectKind, displayPath, localImageFolder, requireDataLocation, type DataKind } from "./dataset";
import { downloadTo, type Location, LocalLocation } from "./location";

/** A model version loaded for inference. */
export interface LoadedVersion {
  /** Where it was loaded from (directory or S3 URL). */
  readonly source: string;
  readonly metadata: ModelMetadata;
  readonly preprocessing: ImagePreprocessing;
  readonly labels: readonly string[];
  /** `[b, h, w, c]` float32 → `[b, numClasses]` probabilities. */
  predict(x: Tensor): Tensor;
  dispose(): void;
}

/**
 * Loads `<version dir>/model.json` with its metadata. `loc` is the version directory; S3
 * versions are downloaded to a temporary directory first.
 */
export async function loadVersion(loc: Location): Promise<LoadedVersion> {
  let dir = loc.uri;
  let tmp: string | undefined;
  if (!(loc instanceof LocalLocation)) {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-model-"));
    const files = await downloadTo(loc, tmp, (rel) => !rel.includes("/"));
    if (files.length === 0) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw new DataError(`${loc.uri}: no model version there (no objects)`);
    }
    dir = tmp;
  }
  try {
    const where = (f: string) => (tmp ? loc.locate(f) : path.join(dir, f));
    for (const f of ["model.json", "metadata.json"]) {
      if (
        !(await fs.stat(path.join(dir, f)).then(
          (s) => s.isFile(),
          () => false,
        ))
      ) {
        const exists =
          tmp ||
          (await fs.stat(dir).then(
            (s) => s.isDirectory(),
            () => false,
          ));
        throw new DataError(
          exists
            ? `${where(f)}: not found; --model must be a version directory with model.json and metadata.json (e.g. <model-base>/<name>/1)`
            : `${dir}: model version directory does not exist`,
        );
      }
    }
    let metadata: ModelMetadata;
    try {
      metadata = parseMetadata(where("metadata.json"), JSON.parse(await fs.readFile(path.join(dir, "metadata.json"), "utf8")));
    } catch (e) {
      throw new DataError(e instanceof SyntaxError ? `${where("metadata.json")}: not valid JSON: ${e.message}` : describeError(e), { cause: e });
    }
    const sig = metadata.signatures[DEFAULT_SIGNATURE] ?? Object.values(metadata.signatures)[0]!;
    const inputs = Object.values(sig.inputs);
    const outputs = Object.entries(sig.outputs);
    if (inputs.length !== 1 || inputs[0]!.shape.length !== 4) {
      throw new DataError(
        `${where("metadata.json")}: evaluate needs one image input [batch, height, width, channels]; the signature has ${inputs.map((i) => `[${i.shape.join(", ")}]`).join(", ")}`,
      );
    }
    const [, h, w, c] = inputs[0]!.shape as [number, number, number, number];
    const preprocessing: ImagePreprocessing = metadata.preprocessing ?? { kind: "image", height: h, width: w, channels: c === 3 ? 3 : 1, range: [0, 1] };
    const numClasses = outputs[0]![1].shape[outputs[0]![1].shape.length - 1]!;
    const labels = metadata.labels ?? Array.from({ length: numClasses > 0 ? numClasses : 0 }, (_, i) => String(i));
    if (numClasses > 0 && labels.length !== numClasses) {
      throw new DataError(`${where("metadata.json")}: ${labels.length} labels but the output has ${numClasses} classes`);
    }
    const modelUrl = `file://${path.join(dir, "model.json")}`;
    let predict: (x: Tensor) => Tensor;
    let dispose: () => void;
    try {
      if (metadata.modelType === "graph") {
        const g = await tf.loadGraphModel(modelUrl);
        const outName = outputs[0]![0];
        predict = (x) => {
          const out = g.predict(x) as Tensor | Tensor[] | Record<string, Tensor>;
          if (Array.isArray(out)) return out[0]!;
          if (out instanceof tf.Tensor) return out;
          return (out as Record<string, Tensor>)[outName] ?? Object.values(out)[0]!;
        };
        dispose = () => g.dispose();
      } else {
        const m = await tf.loadLayersModel(modelUrl);
        predict = (x) => m.predict(x) as Tensor;
        dispose = () => m.dispose();
      }
    } catch (e) {
      throw new DataError(`${where("model.json")}: cannot load the model: ${describeError(e)}`, { cause: e });
    }
    return { source: loc.uri, metadata, preprocessing, labels, predict, dispose };
  } finally {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }
}

export interface EvaluateOptions {
  /** `idx`, `images`, or undefined to detect. */
  readonly kind?: DataKind;
  /** IDX test pair prefix (`t10k`). */
  readonly testPrefix: string;
  readonly validationPercent: number;
  readonly testPercent: number;
  /** Examples per inference batch. Default 256. */
  readonly batchSize?: number;
  readonly log: (line: string) => void;
}

export interface Evaluation {
  readonly accuracy: number;
  readonly examples: number;
  readonly correct: number;
  readonly kind: DataKind;
  /** What was evaluated on: the IDX test images file or the image folder. */
  readonly data: string;
  readonly labels: readonly string[];
  /** Rows: actual class, columns: predicted class (indices into `labels`). */
  readonly confusionMatrix: number[][];
}

/**
 * Runs the model over `count` examples; `fill(i, out)` writes example `i`'s input
 * (h·w·c floats, already scaled) into `out`. Resolves to the predicted class ids.
 */
async function predictAll(
  model: LoadedVersion,
  count: number,
  batchSize: number,
  fill: (i: number, out: Float32Array) => Promise<void> | void,
  log: (line: string) => void,
): Promise<Int32Array> {
  const { height, width, channels } = model.preprocessing;
  const px = height * width * channels;
  const predicted = new Int32Array(count);
  let lastLine = performance.now();
  for (let start = 0; start < count; start += batchSize) {
    const b = Math.min(batchSize, count - start);
    const x = new Float32Array(b * px);
    for (let i = 0; i < b; i++) await fill(start + i, x.subarray(i * px, (i + 1) * px));
    const ids = tf.tidy(() =>
      model
        .predict(tf.tensor4d(x, [b, height, width, channels]))
        .argMax(-1)
        .dataSync(),
    );
    predicted.set(ids, start);
    if (performance.now() - lastLine > 5000) {
      lastLine = performance.now();
      log(`evaluated ${start + b}/${count} examples`);
    }
  }
  return predicted;
}

function summarize(kind: DataKind, data: string, labels: readonly string[], actual: ArrayLike<number>, predicted: Int32Array): Evaluation {
  let correct = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === actual[i]) correct++;
  return {
    accuracy: correct / predicted.length,
    examples: predicted.length,
    correct,
    kind,
    data,
    labels,
    confusionMatrix: confusionMatrix(actual, predicted, labels.length),
  };
}

async function evaluateIdx(model: LoadedVersion, data: Location, opts: EvaluateOptions): Promise<Evaluation> {
  const { height, width, channels, range } = model.preprocessing;
  const test = await loadIdxPair(data, opts.testPrefix, model.labels.length);
  if (test.height !== height || test.width !== width) {
    throw new DataError(`${test.from.images}: images are ${test.height}×${test.width} but the model ${model.source} takes ${height}×${width}`);
  }
  const [lo, hi] = range;
  const scale = (hi - lo) / 255;
  const n = height * width;
  const predicted = await predictAll(
    model,
    test.count,
    opts.batchSize ?? 256,
    (i, out) => {
      const src = test.images.subarray(i * n, (i + 1) * n);
      for (let j = 0; j < n; j++) for (let c = 0; c < channels; c++) out[j * channels + c] = lo + src[j]! * scale;
    },
    opts.log,
  );
  return summarize("idx", test.from.images, model.labels, test.labels, predicted);
}

async function evaluateImages(model: LoadedVersion, data: Location, opts: EvaluateOptions): Promise<Evaluation> {
  const { folder, source, dispose } = await localImageFolder(data, opts.validationPercent, opts.testPercent, { log: opts.log });
  try {
    const unknown = folder.labels.filter((l) => !model.labels.includes(l));
    if (unknown.length) {
      throw new DataError(`${source}: label folders ${unknown.join(", ")} are not classes of the model ${model.source} (its labels: ${model.labels.join(", ")})`);
    }
    const test = folder.images.filter((i) => i.set === "test");
    if (test.length === 0) {
      throw new DataError(`${source}: no image falls in the test split (--test-percent ${opts.testPercent}); add images or raise --test-percent`);
    }
    const actual = test.map((i) => model.labels.indexOf(i.label));
    const predicted = await predictAll(
      model,
      test.length,
      opts.batchSize ?? 64,
      async (i, out) => {
        const img = test[i]!;
        try {
          out.set((await readImage(img.file, model.preprocessing)).pixels);
        } catch (e) {
          throw new DataError(
            describeError(e)
              .split(img.file)
              .join(displayPath(folder, source, img.file)),
            { cause: e },
          );
        }
      },
      opts.log,
    );
    return summarize("images", source, model.labels, actual, predicted);
  } finally {
    await dispose();
  }
}

/** Evaluates `model` on the held-out part of the dataset at `data`. */
export async function evaluateVersion(model: LoadedVersion, data: Location, opts: EvaluateOptions): Promise<Evaluation> {
  await requireDataLocation(data);
  // Only the test pair is needed here, so that is what detection looks for.
  const kind = opts.kind ?? (await detectKind(data, opts.testPrefix));
  return kind === "idx" ? evaluateIdx(model, data, opts) : evaluateImages(model, data, opts);
}
