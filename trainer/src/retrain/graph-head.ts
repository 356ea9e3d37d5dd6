/**
 * Base + head as one tfjs Graph model, for Graph-model bases (TF Hub feature vectors): the
 * base's model.json gains the head as graph nodes (MatMul, AddV2, Relu, Softmax on Const
 * weights) fed by the base's feature output, and a signature `images` → `probabilities`
 * (the names the published metadata uses). The base's weight shards are copied unchanged;
 * the head's weights go into one more shard.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { ExportError } from "../errors";
import { tf, type LayersModel } from "../tf";
import type { BaseModel } from "./base-model";

/** Name of the head's output node and of the signature's input and output. */
export const GRAPH_OUTPUT = "probabilities";
export const GRAPH_INPUT = "images";
const HEAD_SHARD = "head-weights.bin";

interface GraphJson {
  format?: string;
  modelTopology: { node: Record<string, unknown>[] } & Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
  signature?: unknown;
  [k: string]: unknown;
}

const F32 = { type: "DT_FLOAT" };
const shapeProto = (shape: readonly number[]) => ({ dim: shape.map((d) => ({ size: String(d) })) });

/** Something `publishModelVersion` can save: writes model.json and weights under a `file://` directory. */
export interface SavableModel {
  save(url: string): Promise<unknown>;
}

/**
 * The base's graph with `head` (dense layers, as {@link createHead} makes them; dropout is the
 * identity at inference) appended to its feature output.
 */
export function graphWithHead(base: BaseModel, head: LayersModel): SavableModel {
  if (base.model.kind !== "graph") throw new Error("graphWithHead needs a graph base model");
  const { inputName } = base.model;
  const [height, width, channels] = [base.spec.height, base.spec.width, base.spec.channels];
  return {
    async save(url: string): Promise<void> {
      if (!url.startsWith("file://")) throw new ExportError(`cannot save a graph model to ${url}: only file:// directories`);
      const out = url.slice("file://".length);
      const json = JSON.parse(await fs.readFile(path.join(base.dir, "model.json"), "utf8")) as GraphJson;
      const taken = new Set(json.modelTopology.node.map((n) => n.name as string));
      const nodeName = (n: string) => {
        const name = `head/${n}`;
        if (taken.has(name) || taken.has(GRAPH_OUTPUT)) throw new ExportError(`${base.dir}: the base graph already has a node ${taken.has(name) ? name : GRAPH_OUTPUT}`);
        taken.add(name);
        return name;
      };
      const nodes: Record<string, unknown>[] = [];
      const weights: { name: string; shape: number[]; dtype: string }[] = [];
      const data: Float32Array[] = [];
      const constant = (name: string, values: Float32Array, shape: number[]) => {
        nodes.push({ name, op: "Const", attr: { value: { tensor: { dtype: "DT_FLOAT", tensorShape: shapeProto(shape) } }, dtype: F32 } });
        weights.push({ name, shape, dtype: "float32" });
        data.push(values);
      };
      let x = base.bottleneckLayer;
      const dense = head.layers.filter((l) => l.getClassName() === "Dense");
      for (const layer of head.layers.slice(1)) {
        const kind = layer.getClassName();
        if (kind === "Dropout") continue;
        if (kind !== "Dense") throw new ExportError(`head layer ${layer.name} (${kind}) has no graph form; graph bases take dense heads on a feature vector`);
        const [kernel, bias] = layer.getWeights();
        const last = layer === dense[dense.length - 1];
        const k = nodeName(`${layer.name}/kernel`);
        constant(k, kernel!.dataSync() as Float32Array, kernel!.shape);
        const b = nodeName(`${layer.name}/bias`);
        constant(b, bias!.dataSync() as Float32Array, bias!.shape);
        const mm = nodeName(`${layer.name}/MatMul`);
        nodes.push({ name: mm, op: "MatMul", input: [x, k], attr: { T: F32, transpose_a: { b: false }, transpose_b: { b: false } } });
        const add = nodeName(`${layer.name}/BiasAdd`);
        nodes.push({ name: add, op: "AddV2", input: [mm, b], attr: { T: F32 } });
        const activation = (layer.getConfig() as { activation?: string }).activation ?? "linear";
        if (last && activation !== "softmax") throw new ExportError(`the head's last layer ${layer.name} must be a softmax; it is ${activation}`);
        if (activation === "softmax") {
          nodes.push({ name: GRAPH_OUTPUT, op: "Softmax", input: [add], attr: { T: F32 } });
          x = GRAPH_OUTPUT;
        } else if (activation === "relu") {
          const r = nodeName(`${layer.name}/Relu`);
          nodes.push({ name: r, op: "Relu", input: [add], attr: { T: F32 } });
          x = r;
        } else if (activation === "linear") {
          x = add;
        } else {
          throw new ExportError(`head layer ${layer.name}: activation ${activation} has no graph form here`);
        }
      }
      const numClasses = (head.outputs[0]!.shape as number[])[1]!;
      json.modelTopology.node.push(...nodes);
      json.weightsManifest.push({ paths: [HEAD_SHARD], weights });
      json.signature = {
        inputs: { [GRAPH_INPUT]: { name: `${inputName}:0`, dtype: "DT_FLOAT", tensorShape: shapeProto([-1, height, width, channels]) } },
        outputs: { [GRAPH_OUTPUT]: { name: `${GRAPH_OUTPUT}:0`, dtype: "DT_FLOAT", tensorShape: shapeProto([-1, numClasses]) } },
      };
      await fs.mkdir(out, { recursive: true });
      for (const group of json.weightsManifest.slice(0, -1)) {
        for (const p of group.paths) {
          await fs.mkdir(path.dirname(path.join(out, p)), { recursive: true });
          await fs.copyFile(path.join(base.dir, p), path.join(out, p));
        }
      }
      const bytes = new Uint8Array(data.reduce((n, d) => n + d.byteLength, 0));
      let at = 0;
      for (const d of data) {
        bytes.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
        at += d.byteLength;
      }
      await fs.writeFile(path.join(out, HEAD_SHARD), bytes);
      await fs.writeFile(path.join(out, "model.json"), JSON.stringify(json));
      // Fail here, not in the server, if the graph does not load or has the wrong shape.
      const check = await tf.loadGraphModel(`file://${path.join(out, "model.json")}`);
      try {
        const y = tf.tidy(() => (check.execute({ [GRAPH_INPUT]: tf.zeros([1, height, width, channels]) }, GRAPH_OUTPUT) as ReturnType<typeof tf.zeros>).shape);
        if (y.length !== 2 || y[1] !== numClasses) throw new ExportError(`the combined graph's output is [${y.join(", ")}], expected [1, ${numClasses}]`);
      } finally {
        check.dispose();
      }
    },
  };
}
