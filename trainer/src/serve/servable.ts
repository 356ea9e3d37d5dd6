/**
 * One loaded model version: the tfjs model, its metadata, and `run`, which maps a
 * signature's named host tensors onto the model and back.
 *
 * Layers models: a signature's inputs, in the order `metadata.json` lists them, are the
 * model's inputs in order; its outputs are the model's outputs in order. Graph models:
 * the signature's names are passed to `executeAsync`, which resolves them through the
 * model's own signature (or as node names).
 */
import { DEFAULT_SIGNATURE, METADATA_FORMAT, parseMetadata, type ImagePreprocessing, type ModelMetadata, type SignatureSpec } from "../metadata";
import { failedPrecondition } from "./errors";
import { imageInputs } from "./images";
import { openSavedModelSession, readSavedModelInfo, SavedModelRefused, type SavedModelInfo } from "./savedmodel";
import { SAVED_MODEL_MARKER, type ModelStorage } from "./storage";
import { DT_NAME, shapeString, sizeOf, type HostTensor } from "./tensor";
import type { Tf } from "./tf";
import type * as TF from "@tensorflow/tfjs";

/**
 * What the server knows about a version: `metadata.json` for tfjs models; for SavedModels
 * the same document built from the SignatureDefs (plus labels and preprocessing from an
 * optional `metadata.json`), with `modelType: "savedmodel"` and where it came from.
 */
export type ServableMetadata = Omit<ModelMetadata, "modelType"> & {
  readonly modelType: ModelMetadata["modelType"] | "savedmodel";
  readonly savedModel?: {
    /** The TensorFlow release that wrote it. */
    readonly tensorflowVersion: string;
    /** The TensorFlow release running it. */
    readonly runtime: string;
    readonly tags: readonly string[];
  };
};

export interface Servable {
  readonly name: string;
  readonly version: number;
  readonly metadata: ServableMetadata;
  /** Class names, index = class id: `metadata.labels`, else `labels.txt`, else none. */
  readonly labels: readonly string[] | undefined;
  /**
   * The signature a request names ("" means `serving_default`). Throws FAILED_PRECONDITION
   * for an unknown one, as TF Serving does.
   */
  signature(name: string): { readonly name: string; readonly spec: SignatureSpec };
  /** Inputs of a signature that take decoded images, with their preprocessing (see `images.ts`). */
  imageInputs(signatureName: string): ReadonlyMap<string, ImagePreprocessing>;
  /**
   * Runs a signature on inputs already checked against it (see `checkInputs`). Returns
   * every output of the signature, in its order. Creates no tensor that outlives the call.
   */
  run(signatureName: string, inputs: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>>;
  /** Frees the model's weights. The servable must not be used afterwards. */
  dispose(): void;
}

/** A version that could not be loaded, naming the file and the problem. */
export class LoadError extends Error {
  constructor(location: string, version: number, problem: string) {
    super(`cannot load version ${version} from ${location}: ${problem}`);
    this.name = "LoadError";
  }
}

function toTf(tf: Tf, t: HostTensor): TF.Tensor {
  if (t.dtype === "string") return tf.tensor(t.values as Uint8Array[], t.shape as number[], "string");
  return tf.tensor(t.values as Float32Array | Int32Array | Uint8Array, t.shape as number[], t.dtype);
}

/**
 * Host copy of an output. `dataSync`, not `await data()`: on the CPU backends (tfjs-node,
 * tfjs) reading is synchronous anyway and `data()` only adds a promise round trip (about
 * 0.1 ms per request measured); on tfjs-node-gpu the model run has already synchronised.
 */
function fromTf(t: TF.Tensor): HostTensor {
  const shape = t.shape.slice();
  switch (t.dtype) {
    case "float32":
      return { dtype: "float32", shape, values: t.dataSync() as Float32Array };
    case "int32":
      return { dtype: "int32", shape, values: t.dataSync() as Int32Array };
    case "bool":
      return { dtype: "bool", shape, values: Uint8Array.from(t.dataSync() as Uint8Array) };
    case "string":
      return { dtype: "string", shape, values: t.dataSync() as unknown as Uint8Array[] };
    default:
      throw new Error(`the model produced a ${t.dtype} tensor, which the server cannot return`);
  }
}

/** Zeros of a spec's shape with unknown sizes set to 1, for the warm-up run. */
function zeros(dtype: HostTensor["dtype"], shape: readonly number[]): HostTensor {
  const s = shape.map((d) => (d < 0 ? 1 : d));
  const n = sizeOf(s);
  if (dtype === "string") return { dtype, shape: s, values: Array.from({ length: n }, () => new Uint8Array(0)) };
  if (dtype === "float32") return { dtype, shape: s, values: new Float32Array(n) };
  if (dtype === "int32") return { dtype, shape: s, values: new Int32Array(n) };
  return { dtype, shape: s, values: new Uint8Array(n) };
}

async function readJson(storage: ModelStorage, version: number, file: string): Promise<unknown> {
  const bytes = await storage.readFile(version, file);
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new LoadError(storage.location, version, `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Loads `<version>/` from storage: validates `metadata.json` against the contract, reads
 * `model.json` and its weight shards, checks the model against the signatures, and runs
 * each signature once on zeros so the first request does not pay for kernel set-up.
 */
export async function loadServable(tf: Tf, storage: ModelStorage, name: string, version: number): Promise<Servable> {
  const servable = (await storage.hasFile(version, SAVED_MODEL_MARKER))
    ? await loadSavedModelServable(tf, storage, name, version)
    : await loadTfjsServable(tf, storage, name, version);
  try {
    for (const [sigName, sig] of Object.entries(servable.metadata.signatures)) {
      // Empty strings are no valid input for a graph that parses or decodes them (a
      // SavedModel taking encoded images): such signatures warm up on their first request.
      if (Object.values(sig.inputs).some((t) => t.dtype === "string")) continue;
      const inputs: Record<string, HostTensor> = {};
      for (const [n, spec] of Object.entries(sig.inputs)) inputs[n] = zeros(spec.dtype, spec.shape);
      await servable.run(sigName, inputs);
    }
  } catch (err) {
    servable.dispose();
    throw new LoadError(storage.location, version, `warm-up run failed: ${(err as Error).message}`);
  }
  return servable;
}

/** Memoised {@link imageInputs} per signature. */
function imageInputsOf(metadata: ServableMetadata): (signatureName: string) => ReadonlyMap<string, ImagePreprocessing> {
  const cache = new Map<string, ReadonlyMap<string, ImagePreprocessing>>();
  return (s) => {
    const { name, spec } = signatureOf(metadata, s);
    let m = cache.get(name);
    if (!m) cache.set(name, (m = imageInputs(spec, metadata.preprocessing)));
    return m;
  };
}

/** Labels and preprocessing from an optional `metadata.json` beside a SavedModel. */
function readExtras(location: string, version: number, doc: unknown): { labels?: string[]; preprocessing?: ImagePreprocessing; createdAt?: string } {
  const fail = (p: string): never => {
    throw new LoadError(location, version, `metadata.json beside the SavedModel: ${p}`);
  };
  if (typeof doc !== "object" || doc === null) return fail("not a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.labels !== undefined && (!Array.isArray(o.labels) || !o.labels.every((l) => typeof l === "string"))) fail("labels must be an array of strings");
  const p = o.preprocessing as Record<string, unknown> | undefined;
  if (p !== undefined) {
    const okInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0;
    const range = p?.range as unknown[] | undefined;
    if (
      typeof p !== "object" ||
      p === null ||
      p.kind !== "image" ||
      !okInt(p.height) ||
      !okInt(p.width) ||
      (p.channels !== 1 && p.channels !== 3) ||
      !Array.isArray(range) ||
      range.length !== 2 ||
      !range.every((r) => typeof r === "number" && Number.isFinite(r))
    ) {
      fail('preprocessing must be {"kind": "image", "height", "width", "channels": 1|3, "range": [lo, hi]}');
    }
  }
  return {
    labels: o.labels as string[] | undefined,
    preprocessing: p as unknown as ImagePreprocessing | undefined,
    createdAt: typeof o.createdAt === "string" ? o.createdAt : undefined,
  };
}

async function loadSavedModelServable(tf: Tf, storage: ModelStorage, name: string, version: number): Promise<Servable> {
  let info: SavedModelInfo;
  try {
    info = readSavedModelInfo(`${storage.location}/${version}/saved_model.pb`, await storage.readFile(version, SAVED_MODEL_MARKER));
  } catch (e) {
    throw new LoadError(storage.location, version, (e as Error).message);
  }
  const extras = (await storage.hasFile(version, "metadata.json")) ? readExtras(storage.location, version, await readJson(storage, version, "metadata.json")) : {};
  let labels = extras.labels;
  if (!labels && (await storage.hasFile(version, "labels.txt"))) {
    labels = (await storage.readFile(version, "labels.txt"))
      .toString("utf8")
      .split(/\r?\n/)
      .filter((l) => l !== "");
  }
  const copy = await storage.localCopy(version);
  let session;
  try {
    session = openSavedModelSession(tf, copy.dir, info);
  } catch (e) {
    if (e instanceof SavedModelRefused) throw new LoadError(storage.location, version, e.message);
    throw e;
  } finally {
    await copy.release();
  }
  const metadata: ServableMetadata = {
    format: METADATA_FORMAT,
    name,
    version,
    createdAt: extras.createdAt ?? "",
    modelType: "savedmodel",
    signatures: info.signatures,
    preprocessing: extras.preprocessing,
    labels,
    savedModel: { tensorflowVersion: info.tensorflowVersion, runtime: session.runtime, tags: info.tags },
  };
  const s = session;
  return {
    name,
    version,
    metadata,
    labels,
    signature: (n) => signatureOf(metadata, n),
    imageInputs: imageInputsOf(metadata),
    async run(signatureName, inputs) {
      const { name: sigName, spec } = signatureOf(metadata, signatureName);
      const outs = s.run(sigName, inputs);
      return collect(spec, outs, (_n, i) => outs[i]);
    },
    dispose: () => s.dispose(),
  };
}

async function loadTfjsServable(tf: Tf, storage: ModelStorage, name: string, version: number): Promise<Servable> {
  const where = `${storage.location}/${version}/metadata.json`;
  const metadata = parseMetadata(where, await readJson(storage, version, "metadata.json"));
  const modelJson = (await readJson(storage, version, "model.json")) as TF.io.ModelJSON;
  if (typeof modelJson !== "object" || modelJson === null || !("modelTopology" in modelJson)) {
    throw new LoadError(storage.location, version, "model.json has no modelTopology");
  }
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
    const specs: TF.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of manifest) {
      for (const p of group.paths) {
        const b = await storage.readFile(version, p);
        buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
      }
      specs.push(...group.weights);
    }
    return [specs, tf.io.concatenateArrayBuffers(buffers)];
  });
  const handler: TF.io.IOHandler = { load: async () => artifacts };
  let labels = metadata.labels;
  if (!labels) {
    try {
      labels = (await storage.readFile(version, "labels.txt"))
        .toString("utf8")
        .split(/\r?\n/)
        .filter((l) => l !== "");
    } catch {
      labels = undefined;
    }
  }

  let servable: Servable;
  if (metadata.modelType === "layers") {
    const model = await tf.loadLayersModel(handler);
    servable = layersServable(tf, model, name, version, metadata, labels, storage.location);
  } else {
    const model = await tf.loadGraphModel(handler);
    servable = graphServable(tf, model, name, version, metadata, labels);
  }
  return servable;
}

function signatureOf(metadata: Pick<ModelMetadata, "signatures">, requested: string): { name: string; spec: SignatureSpec } {
  const name = requested === "" ? DEFAULT_SIGNATURE : requested;
  const spec = Object.prototype.hasOwnProperty.call(metadata.signatures, name) ? metadata.signatures[name] : undefined;
  if (!spec) throw failedPrecondition(`Serving signature key "${name}" not found.`);
  return { name, spec };
}

function collect(sig: SignatureSpec, outputs: TF.Tensor[], pick: (outputName: string, index: number) => TF.Tensor | undefined): Record<string, HostTensor> {
  try {
    const result: Record<string, HostTensor> = {};
    let i = 0;
    for (const name of Object.keys(sig.outputs)) {
      const t = pick(name, i++);
      if (!t) throw new Error(`the model returned no tensor for output "${name}"`);
      result[name] = fromTf(t);
    }
    return result;
  } finally {
    for (const t of outputs) t.dispose();
  }
}

function layersServable(tf: Tf, model: TF.LayersModel, name: string, version: number, metadata: ModelMetadata, labels: readonly string[] | undefined, location: string): Servable {
  for (const [sigName, sig] of Object.entries(metadata.signatures)) {
    const inNames = Object.keys(sig.inputs);
    const outNames = Object.keys(sig.outputs);
    const fail = (p: string): never => {
      model.dispose();
      throw new LoadError(location, version, `signature "${sigName}": ${p}`);
    };
    if (inNames.length !== model.inputs.length) fail(`has ${inNames.length} inputs; the model has ${model.inputs.length}`);
    if (outNames.length > model.outputs.length) fail(`has ${outNames.length} outputs; the model has ${model.outputs.length}`);
    inNames.forEach((n, i) => {
      const want = sig.inputs[n]!;
      const have = model.inputs[i]!.shape.map((d) => (d === null ? -1 : d));
      const compatible = have.length === want.shape.length && have.every((d, k) => d < 0 || want.shape[k]! < 0 || d === want.shape[k]);
      if (!compatible) fail(`input "${n}" is ${shapeString(want.shape)} but the model's input ${i} is ${shapeString(have)}`);
      if (model.inputs[i]!.dtype !== want.dtype) fail(`input "${n}" is ${DT_NAME[want.dtype]} but the model's input ${i} is ${model.inputs[i]!.dtype}`);
    });
  }
  // `execute` runs the graph on the inputs as given. `predict` would also re-check them
  // (done already, against the signature), slice them into chunks of 32 and concatenate
  // the results: two extra TensorFlow ops and copies per request, and a batch larger than
  // 32 run as several.
  const outputNames = model.outputs.map((o) => o.name);
  return {
    name,
    version,
    metadata,
    labels,
    signature: (s) => signatureOf(metadata, s),
    imageInputs: imageInputsOf(metadata),
    async run(signatureName, inputs) {
      const { spec } = signatureOf(metadata, signatureName);
      const outs = tf.tidy(() => {
        const xs = Object.keys(spec.inputs).map((n) => toTf(tf, inputs[n]!));
        const y = model.execute(xs.length === 1 ? xs[0]! : xs, outputNames);
        return Array.isArray(y) ? y : [y];
      });
      return collect(spec, outs, (_n, i) => outs[i]);
    },
    dispose: () => model.dispose(),
  };
}

function graphServable(tf: Tf, model: TF.GraphModel, name: string, version: number, metadata: ModelMetadata, labels: readonly string[] | undefined): Servable {
  return {
    name,
    version,
    metadata,
    labels,
    signature: (s) => signatureOf(metadata, s),
    imageInputs: imageInputsOf(metadata),
    async run(signatureName, inputs) {
      const { spec } = signatureOf(metadata, signatureName);
      const feeds: Record<string, TF.Tensor> = {};
      for (const n of Object.keys(spec.inputs)) feeds[n] = toTf(tf, inputs[n]!);
      const outNames = Object.keys(spec.outputs);
      let outs: TF.Tensor[];
      try {
        const y = await model.executeAsync(feeds, outNames);
        outs = Array.isArray(y) ? y : [y];
      } finally {
        for (const t of Object.values(feeds)) t.dispose();
      }
      return collect(spec, outs, (_n, i) => outs[i]);
    },
    dispose: () => model.dispose(),
  };
}
