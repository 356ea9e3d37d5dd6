/**
 * A small writer for TensorFlow graphs: nodes with typed attributes, serialised as a
 * SavedModel (`saved_model.pb`: SavedModel → MetaGraphDef → GraphDef → NodeDef → AttrValue)
 * that tfjs-node's SavedModel loader hands to TensorFlow's C API. Only what the compiled
 * training step of `./graph-step.ts` needs; field numbers are those of TensorFlow's protos
 * (tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape,types}.proto and
 * tensorflow/core/protobuf/{saved_model,meta_graph}.proto).
 */
import { Writer } from "protobufjs/minimal";

/** TensorFlow DataType enum values used here. */
export const DT = { float: 1, int32: 3, bool: 10 } as const;
export type DType = (typeof DT)[keyof typeof DT];

export type Attr =
  | { readonly type: DType }
  | { readonly i: number }
  | { readonly f: number }
  | { readonly b: boolean }
  | { readonly s: string }
  /** `null` dimensions are unknown (-1); `shape: null` is an unknown rank. */
  | { readonly shape: readonly (number | null)[] | null }
  | { readonly ints: readonly number[] }
  | { readonly tensor: { readonly dtype: DType; readonly shape: readonly number[]; readonly content: Int32Array | Float32Array } };

export interface NodeSpec {
  readonly name: string;
  readonly op: string;
  /** `"node"`, `"node:1"` for a second output, `"^node"` for a control dependency. */
  readonly inputs: readonly string[];
  readonly attrs: Readonly<Record<string, Attr>>;
}

/** Collects nodes under unique names. */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  private readonly names = new Set<string>();

  /** Adds a node; returns its name (made unique with a numeric suffix if taken). */
  add(op: string, name: string, inputs: readonly string[], attrs: Readonly<Record<string, Attr>> = {}): string {
    let unique = name;
    for (let k = 1; this.names.has(unique); k++) unique = `${name}_${k}`;
    this.names.add(unique);
    this.nodes.push({ name: unique, op, inputs, attrs });
    return unique;
  }

  /** A constant int32 or float32 tensor. */
  constant(name: string, values: Int32Array | Float32Array, shape: readonly number[] = [values.length]): string {
    const dtype = values instanceof Int32Array ? DT.int32 : DT.float;
    return this.add("Const", name, [], { dtype: { type: dtype }, value: { tensor: { dtype, shape, content: values } } });
  }

  /** `saved_model.pb` bytes holding this graph as one MetaGraphDef with `tags`. */
  toSavedModel(tags: readonly string[], producer = 1205): Uint8Array {
    const graph = message((w) => {
      for (const n of this.nodes) w.uint32(tag(1, LEN)).bytes(encodeNode(n));
      w.uint32(tag(4, LEN)).bytes(message((v) => v.uint32(tag(1, VARINT)).int32(producer)));
    });
    const metaInfo = message((w) => {
      for (const t of tags) w.uint32(tag(4, LEN)).string(t);
    });
    const metaGraph = message((w) => {
      w.uint32(tag(1, LEN)).bytes(metaInfo);
      w.uint32(tag(2, LEN)).bytes(graph);
    });
    return message((w) => {
      w.uint32(tag(1, VARINT)).int64(1);
      w.uint32(tag(2, LEN)).bytes(metaGraph);
    });
  }
}

const VARINT = 0;
const LEN = 2;
const FIXED32 = 5;
const tag = (field: number, wire: number) => (field << 3) | wire;

function message(write: (w: Writer) => void): Uint8Array {
  const w = Writer.create();
  write(w);
  return w.finish();
}

function encodeShape(dims: readonly (number | null)[] | null): Uint8Array {
  return message((w) => {
    if (dims === null) {
      w.uint32(tag(3, VARINT)).bool(true);
      return;
    }
    for (const d of dims) w.uint32(tag(2, LEN)).bytes(message((v) => v.uint32(tag(1, VARINT)).int64(d ?? -1)));
  });
}

function encodeAttr(a: Attr): Uint8Array {
  return message((w) => {
    if ("type" in a) w.uint32(tag(6, VARINT)).int32(a.type);
    else if ("i" in a) w.uint32(tag(3, VARINT)).int64(a.i);
    else if ("f" in a) w.uint32(tag(4, FIXED32)).float(a.f);
    else if ("b" in a) w.uint32(tag(5, VARINT)).bool(a.b);
    else if ("s" in a) w.uint32(tag(2, LEN)).bytes(Buffer.from(a.s, "utf8"));
    else if ("shape" in a) w.uint32(tag(7, LEN)).bytes(encodeShape(a.shape));
    else if ("ints" in a) {
      // ListValue { repeated int64 i = 3 [packed] }; an empty list is an empty ListValue.
      const list = message((l) => {
        if (a.ints.length === 0) return;
        l.uint32(tag(3, LEN)).fork();
        for (const v of a.ints) l.int64(v);
        l.ldelim();
      });
      w.uint32(tag(1, LEN)).bytes(list);
    } else {
      const t = a.tensor;
      const bytes = new Uint8Array(t.content.buffer, t.content.byteOffset, t.content.byteLength);
      const tensor = message((v) => {
        v.uint32(tag(1, VARINT)).int32(t.dtype);
        v.uint32(tag(2, LEN)).bytes(encodeShape(t.shape));
        v.uint32(tag(4, LEN)).bytes(bytes);
      });
      w.uint32(tag(8, LEN)).bytes(tensor);
    }
  });
}

function encodeNode(n: NodeSpec): Uint8Array {
  return message((w) => {
    w.uint32(tag(1, LEN)).string(n.name);
    w.uint32(tag(2, LEN)).string(n.op);
    for (const i of n.inputs) w.uint32(tag(3, LEN)).string(i);
    for (const [key, value] of Object.entries(n.attrs)) {
      const entry = message((e) => {
        e.uint32(tag(1, LEN)).string(key);
        e.uint32(tag(2, LEN)).bytes(encodeAttr(value));
      });
      w.uint32(tag(5, LEN)).bytes(entry);
    }
  });
}
