/**
 * TF Serving's REST JSON for tensors: request bodies in the row (`instances`) and
 * columnar (`inputs`) forms decoded against a signature into {@link HostTensor}s, and
 * outputs written back as `predictions` / `outputs` shaped exactly as TF Serving does.
 *
 * The decoder walks a parsed JSON value guided by the signature's rank, so its recursion
 * depth is bounded by the rank limit whatever the client sends.
 */
import type { SignatureSpec, TensorDtype, TensorSpec } from "../metadata";
import { invalidArgument } from "./errors";
import { DEFAULT_TENSOR_LIMITS, HostTensor, shapeString, type TensorLimits } from "./tensor";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const isPlainObject = (v: unknown): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v);
const isB64 = (v: unknown): v is { b64: string } => isPlainObject(v) && Object.keys(v).length === 1 && typeof (v as Record<string, unknown>).b64 === "string";

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function decodeB64(where: string, s: string): Uint8Array {
  if (!BASE64.test(s) || s.replace(/=+$/, "").length % 4 === 1) throw invalidArgument(`${where}: "b64" value is not valid base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
}

/** Collects leaf values of one dtype into a growable flat array. */
class Leaves {
  readonly nums: number[] = [];
  readonly bytes: Uint8Array[] = [];
  constructor(
    private readonly where: string,
    private readonly dtype: TensorDtype,
    private readonly limits: TensorLimits,
  ) {}

  get length(): number {
    return this.dtype === "string" ? this.bytes.length : this.nums.length;
  }

  push(v: unknown): void {
    const where = this.where;
    switch (this.dtype) {
      case "float32": {
        if (typeof v !== "number") throw invalidArgument(`${where}: expected a number, got ${describe(v)}`);
        const f = Math.fround(v);
        if (this.limits.rejectNonFinite && !Number.isFinite(f)) {
          throw invalidArgument(`${where}: value ${v} is not a finite float32`);
        }
        this.nums.push(f);
        return;
      }
      case "int32":
        if (typeof v !== "number" || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
          throw invalidArgument(`${where}: expected a 32-bit integer, got ${describe(v)}`);
        }
        this.nums.push(v);
        return;
      case "bool":
        if (typeof v !== "boolean") throw invalidArgument(`${where}: expected true or false, got ${describe(v)}`);
        this.nums.push(v ? 1 : 0);
        return;
      case "string":
        if (typeof v === "string") this.bytes.push(new Uint8Array(Buffer.from(v, "utf8")));
        else if (isB64(v)) this.bytes.push(decodeB64(where, v.b64));
        else throw invalidArgument(`${where}: expected a string or {"b64": ...}, got ${describe(v)}`);
        return;
    }
  }

  toTensor(shape: number[]): HostTensor {
    switch (this.dtype) {
      case "float32":
        return { dtype: "float32", shape, values: Float32Array.from(this.nums) };
      case "int32":
        return { dtype: "int32", shape, values: Int32Array.from(this.nums) };
      case "bool":
        return { dtype: "bool", shape, values: Uint8Array.from(this.nums) };
      case "string":
        return { dtype: "string", shape, values: this.bytes };
    }
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects returned above: String() sees only undefined here
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/**
 * Reads the shape of a nested list of rank `rank` by following first elements, then
 * appends its leaves to `out`, checking that every list has the length of its dimension.
 */
function readNested(where: string, value: unknown, rank: number, out: Leaves, limits: TensorLimits): number[] {
  const shape: number[] = [];
  let probe: unknown = value;
  for (let d = 0; d < rank; d++) {
    if (!Array.isArray(probe)) throw invalidArgument(`${where}: expected a list of rank ${rank}, got ${describe(probe)} at depth ${d}`);
    shape.push(probe.length);
    if (probe.length === 0) {
      // An empty list fixes the element count at 0 whatever the deeper sizes are.
      while (shape.length < rank) shape.push(0);
      return shape;
    }
    probe = probe[0];
  }
  let n = 1;
  for (const d of shape) n *= d;
  if (n + out.length > limits.maxElements) throw invalidArgument(`${where}: more than ${limits.maxElements} values`);
  const walk = (v: unknown, d: number): void => {
    if (d === rank) {
      out.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) {
      throw invalidArgument(`${where}: ragged list: expected ${shape[d]} elements at depth ${d}, got ${Array.isArray(v) ? v.length : describe(v)}`);
    }
    for (const e of v) walk(e, d + 1);
  };
  walk(value, 0);
  return shape;
}

/** Which of the two request forms a body used; the response uses the matching one. */
export type RequestFormat = "row" | "columnar";

export interface ParsedPredictBody {
  readonly signatureName: string;
  readonly format: RequestFormat;
  readonly inputs: Record<string, HostTensor>;
}

/** Top-level checks shared by predict and classify: a JSON object, signature_name a string. */
export function readSignatureName(body: unknown): string {
  if (!isPlainObject(body)) throw invalidArgument("the request body must be a JSON object");
  const sig = body.signature_name;
  if (sig !== undefined && typeof sig !== "string") throw invalidArgument('"signature_name" must be a string');
  return sig ?? "";
}

/**
 * Decodes a `:predict` body against a signature. Row form: `instances` is a list with one
 * entry per example, each the value of the sole input or an object naming every input.
 * Columnar form: `inputs` is the whole tensor of the sole input or an object naming each.
 */
export function parsePredictBody(body: unknown, signatureName: string, sig: SignatureSpec, limits: TensorLimits = DEFAULT_TENSOR_LIMITS): ParsedPredictBody {
  const o = body as Record<string, Json>;
  const hasInstances = "instances" in o;
  const hasInputs = "inputs" in o;
  if (hasInstances === hasInputs) {
    throw invalidArgument(hasInstances ? "Not formatted correctly: expecting only one of 'inputs' or 'instances' keys" : "Missing 'inputs' or 'instances' key");
  }
  const names = Object.keys(sig.inputs);
  const sole = names.length === 1 ? names[0]! : undefined;
  if (hasInputs) {
    const v = o.inputs;
    const named: Record<string, unknown> = isPlainObject(v) && !isB64(v) ? v : sole ? { [sole]: v } : {};
    if (!isPlainObject(v) && !sole) throw invalidArgument(`"inputs" must be an object naming each of the inputs: ${names.join(", ")}`);
    const inputs: Record<string, HostTensor> = {};
    for (const [name, value] of Object.entries(named)) {
      const spec = sig.inputs[name];
      if (!spec) throw invalidArgument(`input "${name}" is not an input of signature "${signatureName}"; inputs are: ${names.join(", ")}`);
      const leaves = new Leaves(`input "${name}"`, spec.dtype, limits);
      const shape = readNested(`input "${name}"`, value, spec.shape.length, leaves, limits);
      inputs[name] = leaves.toTensor(shape);
    }
    return { signatureName, format: "columnar", inputs };
  }
  const instances = o.instances;
  if (!Array.isArray(instances)) throw invalidArgument('"instances" must be a list');
  if (instances.length === 0) throw invalidArgument('"instances" is an empty list');
  const leaves = new Map<string, Leaves>();
  const shapes = new Map<string, number[]>();
  const add = (name: string, spec: TensorSpec, value: unknown, i: number): void => {
    if (spec.shape.length === 0) throw invalidArgument(`input "${name}" is a scalar; use the columnar "inputs" form`);
    const where = `instances[${i}] input "${name}"`;
    let l = leaves.get(name);
    if (!l) leaves.set(name, (l = new Leaves(where, spec.dtype, limits)));
    const shape = readNested(where, value, spec.shape.length - 1, l, limits);
    const first = shapes.get(name);
    if (!first) shapes.set(name, shape);
    else if (first.join() !== shape.join()) {
      throw invalidArgument(`${where} has shape ${shapeString(shape)}; instances[0] has ${shapeString(first)}`);
    }
  };
  instances.forEach((inst, i) => {
    if (isPlainObject(inst) && !isB64(inst)) {
      const keys = Object.keys(inst);
      for (const name of keys) {
        const spec = sig.inputs[name];
        if (!spec) throw invalidArgument(`instances[${i}]: "${name}" is not an input of signature "${signatureName}"; inputs are: ${names.join(", ")}`);
        add(name, spec, inst[name], i);
      }
      for (const name of names) if (!(name in inst)) throw invalidArgument(`instances[${i}] is missing input "${name}"`);
    } else if (sole) {
      add(sole, sig.inputs[sole]!, inst, i);
    } else {
      throw invalidArgument(`instances[${i}] must be an object naming each of the inputs: ${names.join(", ")}`);
    }
  });
  const inputs: Record<string, HostTensor> = {};
  for (const [name, l] of leaves) inputs[name] = l.toTensor([instances.length, ...shapes.get(name)!]);
  return { signatureName, format: "row", inputs };
}

// ---------------------------------------------------------------------------------------
// Writing outputs
// ---------------------------------------------------------------------------------------

/** Shortest decimal that reads back as the same float32 (what TF Serving's writer aims for). */
export function formatFloat32(x: number): string {
  if (!Number.isFinite(x)) return "null";
  if (Number.isInteger(x) && Math.abs(x) < 2 ** 24) return String(x);
  for (let p = 1; p < 9; p++) {
    const c = Number(x.toPrecision(p));
    if (Math.fround(c) === x) return String(c);
  }
  return String(Number(x.toPrecision(9)));
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function formatString(b: Uint8Array): string {
  try {
    return JSON.stringify(utf8.decode(b));
  } catch {
    return `{"b64":${JSON.stringify(Buffer.from(b).toString("base64"))}}`;
  }
}

function formatLeaf(t: HostTensor, i: number): string {
  switch (t.dtype) {
    case "float32":
      return formatFloat32((t.values as Float32Array)[i]!);
    case "int32":
      return String((t.values as Int32Array)[i]!);
    case "bool":
      return (t.values as Uint8Array)[i] ? "true" : "false";
    case "string":
      return formatString((t.values as Uint8Array[])[i]!);
  }
}

/** Writes the sub-tensor starting at flat `offset` spanning dims `shape[d..]`. */
function writeNested(t: HostTensor, d: number, offset: number, out: string[]): void {
  if (d === t.shape.length) {
    out.push(formatLeaf(t, offset));
    return;
  }
  let stride = 1;
  for (let k = d + 1; k < t.shape.length; k++) stride *= t.shape[k]!;
  out.push("[");
  for (let i = 0; i < t.shape[d]!; i++) {
    if (i > 0) out.push(",");
    writeNested(t, d + 1, offset + i * stride, out);
  }
  out.push("]");
}

/** One output as nested JSON lists (a scalar as a bare value). */
export function tensorToJson(t: HostTensor): string {
  const out: string[] = [];
  writeNested(t, 0, 0, out);
  return out.join("");
}

/**
 * The `:predict` response. Row form: `{"predictions": [...]}`, one entry per example, each
 * the bare value when the signature has one output and an object keyed by output name
 * otherwise. Columnar form: `{"outputs": value}` or `{"outputs": {name: value}}`.
 */
export function formatPredictResponse(outputs: Readonly<Record<string, HostTensor>>, format: RequestFormat): string {
  const names = Object.keys(outputs);
  if (format === "columnar") {
    if (names.length === 1) return `{"outputs":${tensorToJson(outputs[names[0]!]!)}}`;
    return `{"outputs":{${names.map((n) => `${JSON.stringify(n)}:${tensorToJson(outputs[n]!)}`).join(",")}}}`;
  }
  const batch = outputs[names[0]!]?.shape[0];
  for (const n of names) {
    const t = outputs[n]!;
    if (t.shape.length === 0 || t.shape[0] !== batch) {
      throw invalidArgument(`the outputs do not share a batch size (dimension 0), so they cannot be returned as "predictions"; use the columnar "inputs" form`);
    }
  }
  const rows: string[] = [];
  for (let i = 0; i < (batch ?? 0); i++) {
    const parts = names.map((n) => {
      const t = outputs[n]!;
      const inner = t.shape.slice(1);
      let stride = 1;
      for (const d of inner) stride *= d;
      const out: string[] = [];
      writeNested({ dtype: t.dtype, shape: t.shape, values: t.values }, 1, i * stride, out);
      return names.length === 1 ? out.join("") : `${JSON.stringify(n)}:${out.join("")}`;
    });
    rows.push(names.length === 1 ? parts[0]! : `{${parts.join(",")}}`);
  }
  return `{"predictions":[${rows.join(",")}]}`;
}

// ---------------------------------------------------------------------------------------
// Classify
// ---------------------------------------------------------------------------------------

/** One tf.Example as plain data: feature name → list of numbers or byte strings. */
export type ExampleFeatures = Map<string, number[] | Uint8Array[]>;

function readFeature(where: string, v: unknown): number[] | Uint8Array[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) return [];
  if (list.every((x) => typeof x === "number")) {
    for (const x of list as number[]) if (!Number.isFinite(x)) throw invalidArgument(`${where}: value ${x} is not finite`);
    return list as number[];
  }
  return list.map((x, i) => {
    if (typeof x === "string") return new Uint8Array(Buffer.from(x, "utf8"));
    if (isB64(x)) return decodeB64(`${where}[${i}]`, x.b64);
    throw invalidArgument(`${where}: a feature is a number, a string, {"b64": ...} or a list of one kind; got ${describe(x)}`);
  });
}

function readExample(where: string, v: unknown): ExampleFeatures {
  if (!isPlainObject(v)) throw invalidArgument(`${where} must be an object of feature name to value`);
  const m: ExampleFeatures = new Map();
  for (const [k, f] of Object.entries(v)) m.set(k, readFeature(`${where}.${k}`, f));
  return m;
}

/** Decodes a `:classify` body: `{"signature_name"?, "context"?: {...}, "examples": [{...}]}`. */
export function parseClassifyBody(body: unknown): { signatureName: string; examples: ExampleFeatures[] } {
  const signatureName = readSignatureName(body);
  const o = body as Record<string, Json>;
  const examples = o.examples;
  if (!Array.isArray(examples)) throw invalidArgument('"examples" must be a list');
  if (examples.length === 0) throw invalidArgument('"examples" is an empty list');
  const context = o.context === undefined ? (new Map() as ExampleFeatures) : readExample("context", o.context);
  return {
    signatureName,
    examples: examples.map((e, i) => {
      const m = readExample(`examples[${i}]`, e);
      for (const [k, f] of context) if (!m.has(k)) m.set(k, f);
      return m;
    }),
  };
}

/** `{"results": [[["label", score], ...], ...]}`, TF Serving's classify response. */
export function formatClassifyResponse(results: readonly (readonly { label: string; score: number }[])[]): string {
  const rows = results.map((classes) => `[${classes.map((c) => `[${JSON.stringify(c.label)},${formatFloat32(c.score)}]`).join(",")}]`);
  return `{"results":[${rows.join(",")}]}`;
}
