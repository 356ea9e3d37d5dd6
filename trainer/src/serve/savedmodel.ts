/**
 * TensorFlow SavedModel versions (`<base>/<version>/saved_model.pb` + `variables/`, what
 * Keras's `model.save` and `tf.saved_model.save` write and TF Serving loads), run by the
 * native TensorFlow runtime under tfjs-node as a session.
 *
 * The signatures (input and output aliases, the graph's tensor names, dtypes, shapes) are
 * read from the SavedModel's SignatureDefs in `saved_model.pb` (tag `serve`), so the
 * metadata endpoint, REST and gRPC see what TF Serving would show. An optional
 * `metadata.json` beside it contributes labels and image preprocessing only.
 *
 * A SavedModel the runtime cannot load is refused with an error naming the version, the
 * op or graph version at fault, the TensorFlow release that wrote it and the runtime's.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import * as protobuf from "protobufjs";
import type * as TF from "@tensorflow/tfjs";
import { DEFAULT_SIGNATURE, type ImagePreprocessing, type SignatureSpec, type TensorDtype, type TensorSpec } from "../metadata";
import { protoDir } from "./protos";
import type { ModelStorage } from "./storage";
import type { HostTensor } from "./tensor";
import type { Tf } from "./tf";

/** The MetaGraph a server loads (TF Serving's default `saved_model_tags`). */
export const SERVE_TAG = "serve";
const INIT_OP_SIGNATURE = "__saved_model_init_op";

/** TF dtypes a signature may use here, and how the host holds them. */
const HOST_DTYPE: Readonly<Record<string, TensorDtype>> = {
  DT_FLOAT: "float32",
  DT_INT32: "int32",
  DT_BOOL: "bool",
  DT_STRING: "string",
};

/** A signature tensor with the graph tensor it names (`serving_default_image:0`). */
export interface SavedTensorSpec extends TensorSpec {
  readonly tensorName: string;
}

export interface SavedSignature extends SignatureSpec {
  readonly inputs: Readonly<Record<string, SavedTensorSpec>>;
  readonly outputs: Readonly<Record<string, SavedTensorSpec>>;
}

/** What `saved_model.pb` says about its `serve` MetaGraph. */
export interface SavedModelInfo {
  readonly tags: readonly string[];
  /** The TensorFlow release that wrote it (`meta_info_def.tensorflow_version`), "" if unstated. */
  readonly tensorflowVersion: string;
  /** GraphDef version stamps: producer, and the oldest consumer that may read it. */
  readonly producer: number;
  readonly minConsumer: number;
  /** Every op the graph and its functions use, sorted. */
  readonly ops: readonly string[];
  readonly signatures: Readonly<Record<string, SavedSignature>>;
  /** Signatures left out, with the reason (a dtype the server cannot carry, unknown rank). */
  readonly skipped: readonly string[];
}

let root: protobuf.Root | undefined;

function savedModelType(): protobuf.Type {
  if (!root) {
    const dir = protoDir();
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => path.join(dir, target);
    r.loadSync("tensorflow/core/protobuf/saved_model.proto", { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root.lookupType("tensorflow.SavedModel");
}

interface TensorInfoObject {
  name?: string;
  dtype?: string;
  tensor_shape?: { dim?: { size?: number }[]; unknown_rank?: boolean } | null;
}
interface SignatureDefObject {
  inputs?: Record<string, TensorInfoObject>;
  outputs?: Record<string, TensorInfoObject>;
  method_name?: string;
}
interface NodeObject {
  op?: string;
}
interface MetaGraphObject {
  meta_info_def?: { tags?: string[]; tensorflow_version?: string; stripped_op_list?: { op?: { name?: string }[] } } | null;
  graph_def?: {
    node?: NodeObject[];
    library?: { function?: { node_def?: NodeObject[] }[] } | null;
    versions?: { producer?: number; min_consumer?: number } | null;
  } | null;
  signature_def?: Record<string, SignatureDefObject>;
}

/**
 * Reads `saved_model.pb`. `where` names the file in errors. Throws for bytes that are not
 * a SavedModel, or one without a `serve` MetaGraph or without a usable signature.
 */
export function readSavedModelInfo(where: string, bytes: Uint8Array): SavedModelInfo {
  const type = savedModelType();
  let doc: { meta_graphs?: MetaGraphObject[] };
  try {
    doc = type.toObject(type.decode(bytes), { longs: Number, enums: String, defaults: true }) as typeof doc;
  } catch (e) {
    throw new Error(`${where} is not a SavedModel: ${(e as Error).message}`, { cause: e });
  }
  const graphs = doc.meta_graphs ?? [];
  const mg = graphs.find((g) => (g.meta_info_def?.tags ?? []).includes(SERVE_TAG));
  if (!mg) {
    const have = graphs.map((g) => `[${(g.meta_info_def?.tags ?? []).join(",")}]`).join(" ") || "none";
    throw new Error(`${where} has no MetaGraph tagged "${SERVE_TAG}" (tag sets: ${have})`);
  }
  const ops = new Set<string>();
  for (const n of mg.graph_def?.node ?? []) if (n.op) ops.add(n.op);
  for (const f of mg.graph_def?.library?.function ?? []) for (const n of f.node_def ?? []) if (n.op) ops.add(n.op);
  for (const o of mg.meta_info_def?.stripped_op_list?.op ?? []) if (o.name) ops.add(o.name);

  const signatures: Record<string, SavedSignature> = {};
  const skipped: string[] = [];
  for (const [sigName, def] of Object.entries(mg.signature_def ?? {})) {
    if (sigName === INIT_OP_SIGNATURE) continue;
    const problems: string[] = [];
    const side = (tensors: Record<string, TensorInfoObject> | undefined, what: string): Record<string, SavedTensorSpec> => {
      const out: Record<string, SavedTensorSpec> = {};
      for (const [alias, info] of Object.entries(tensors ?? {})) {
        const dtype = HOST_DTYPE[info.dtype ?? ""];
        if (!dtype) problems.push(`${what} "${alias}" is ${info.dtype ?? "DT_INVALID"} (served: ${Object.keys(HOST_DTYPE).join(", ")})`);
        else if (!info.name) problems.push(`${what} "${alias}" is not a dense tensor`);
        else if (info.tensor_shape?.unknown_rank) problems.push(`${what} "${alias}" has an unknown rank`);
        else out[alias] = { dtype, shape: (info.tensor_shape?.dim ?? []).map((d) => Number(d.size ?? -1)), tensorName: info.name };
      }
      return out;
    };
    const inputs = side(def.inputs, "input");
    const outputs = side(def.outputs, "output");
    if (Object.keys(outputs).length === 0 && problems.length === 0) problems.push("it has no outputs");
    if (problems.length > 0) {
      skipped.push(`signature "${sigName}": ${problems.join("; ")}`);
      continue;
    }
    signatures[sigName] = { methodName: def.method_name || "tensorflow/serving/predict", inputs, outputs };
  }
  if (Object.keys(signatures).length === 0) {
    throw new Error(`${where} has no signature the server can serve${skipped.length ? `: ${skipped.join("; ")}` : ""}`);
  }
  return {
    tags: mg.meta_info_def?.tags ?? [],
    tensorflowVersion: mg.meta_info_def?.tensorflow_version ?? "",
    producer: Number(mg.graph_def?.versions?.producer ?? 0),
    minConsumer: Number(mg.graph_def?.versions?.min_consumer ?? 0),
    ops: [...ops].sort(),
    signatures,
    skipped,
  };
}

/** The part of tfjs-node's kernel backend that runs SavedModel sessions. */
interface SessionBackend {
  readonly binding: { readonly TF_Version: string };
  loadSavedModelMetaGraph(dir: string, tags: string): number;
  runSavedModel(id: number, inputs: TF.Tensor[], infos: { name: string; dtype: string; tfDtype: string; shape: number[] }[], outputs: string[]): TF.Tensor[];
  deleteSavedModel(id: number): void;
}

/** The native backend, or why there is none (the pure-JS backend cannot run a graph). */
export function sessionBackend(tf: Tf): SessionBackend | string {
  const be = tf.backend() as unknown as Partial<SessionBackend>;
  if (tf.getBackend() !== "tensorflow" || typeof be.loadSavedModelMetaGraph !== "function" || !be.binding) {
    return `SavedModels need the native TensorFlow backend (@tensorflow/tfjs-node); this server runs on the "${tf.getBackend()}" backend`;
  }
  return be as SessionBackend;
}

/** The runtime's TensorFlow release, e.g. "2.12.1" ("" on the pure-JS backend). */
export function runtimeTensorflowVersion(tf: Tf): string {
  const be = sessionBackend(tf);
  return typeof be === "string" ? "" : be.binding.TF_Version;
}

/**
 * Turns the runtime's load failure into the reason a user can act on: the op it lacks or
 * the graph version it cannot read, which TensorFlow wrote the model, which one runs here.
 */
export function explainLoadFailure(raw: string, info: SavedModelInfo, runtime: string): string {
  const written = info.tensorflowVersion ? `TensorFlow ${info.tensorflowVersion}` : "an unstated TensorFlow release";
  const fix = `export it with TensorFlow ${runtime} or older, or serve it from a server whose runtime has it`;
  const op = /Op type not registered '([^']+)'/.exec(raw)?.[1];
  if (op) {
    // Written by the runtime's own release: not a version gap but an op outside TensorFlow.
    const why = info.tensorflowVersion === runtime ? "it is not a TensorFlow op (a custom op?); rebuild the model from standard ops" : fix;
    return `the SavedModel uses op "${op}", which this server's TensorFlow ${runtime} does not have (the model was written by ${written}); ${why}`;
  }
  const consumer = /min consumer version (\d+) above current version (\d+)/.exec(raw);
  if (consumer) {
    return (
      `the SavedModel's graph needs a TensorFlow that reads GraphDef version ${consumer[1]}, but this server's TensorFlow ${runtime} ` +
      `reads up to ${consumer[2]} (the model was written by ${written}); ${fix}`
    );
  }
  const firstLine = raw.split("\n")[0] ?? raw;
  return `TensorFlow ${runtime} could not load the SavedModel (written by ${written}): ${firstLine}`;
}

function toTf(tf: Tf, t: HostTensor): TF.Tensor {
  if (t.dtype === "string") return tf.tensor(t.values as Uint8Array[], t.shape as number[], "string");
  return tf.tensor(t.values as Float32Array | Int32Array | Uint8Array, t.shape as number[], t.dtype);
}

/** Optional `metadata.json` beside a SavedModel: labels and image preprocessing. */
export interface SavedModelExtras {
  readonly labels?: readonly string[];
  readonly preprocessing?: ImagePreprocessing;
  readonly createdAt?: string;
}

/** A loaded SavedModel session: run one signature on host tensors. */
export interface SavedModelSession {
  readonly info: SavedModelInfo;
  readonly runtime: string;
  run(signatureName: string, inputs: Readonly<Record<string, HostTensor>>): TF.Tensor[];
  dispose(): void;
}

/** Thrown when the runtime refuses a SavedModel; the message is already explained. */
export class SavedModelRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SavedModelRefused";
  }
}

/**
 * Loads the `serve` MetaGraph of the SavedModel in `dir` (a local directory: the runtime
 * reads `variables/` itself) as a session.
 */
export function openSavedModelSession(tf: Tf, dir: string, info: SavedModelInfo): SavedModelSession {
  const be = sessionBackend(tf);
  if (typeof be === "string") throw new SavedModelRefused(be);
  const runtime = be.binding.TF_Version;
  let id: number;
  try {
    id = be.loadSavedModelMetaGraph(dir, info.tags.join(","));
  } catch (e) {
    throw new SavedModelRefused(explainLoadFailure((e as Error).message.replace(/^Failed to load SavedModel: /, ""), info, runtime));
  }
  let disposed = false;
  return {
    info,
    runtime,
    run(signatureName, inputs) {
      if (disposed) throw new Error("SavedModel session used after dispose()");
      const sig = info.signatures[signatureName];
      if (!sig) throw new Error(`no signature "${signatureName}"`);
      const names = Object.keys(sig.inputs);
      const xs = names.map((n) => toTf(tf, inputs[n]!));
      try {
        return be.runSavedModel(
          id,
          xs,
          names.map((n) => {
            const s = sig.inputs[n]!;
            return { name: s.tensorName, dtype: s.dtype, tfDtype: Object.keys(HOST_DTYPE).find((k) => HOST_DTYPE[k] === s.dtype)!, shape: [...s.shape] };
          }),
          Object.values(sig.outputs).map((o) => o.tensorName),
        );
      } finally {
        for (const x of xs) x.dispose();
      }
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      be.deleteSavedModel(id);
    },
  };
}

/** Whether a version directory in storage is a SavedModel. */
export async function isSavedModelVersion(storage: ModelStorage, version: number): Promise<boolean> {
  return storage.hasFile(version, "saved_model.pb");
}

/** Reads `saved_model.pb` of a version; errors name the file. */
export async function readVersionInfo(storage: ModelStorage, version: number): Promise<SavedModelInfo> {
  const bytes = await storage.readFile(version, "saved_model.pb");
  return readSavedModelInfo(`${storage.location}/${version}/saved_model.pb`, bytes);
}

/** The default signature name, re-exported for callers that build metadata. */
export { DEFAULT_SIGNATURE };

/** Deletes a temporary copy of a version (S3) once the runtime has read it. */
export async function removeQuietly(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
}
