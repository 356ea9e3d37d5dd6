/**
 * The operations both protocols serve: predict, classify, model metadata and status. The
 * REST and gRPC front ends only translate their wire formats to these calls and the
 * ServingErrors back to status codes.
 */
import type { ImagePreprocessing, SignatureSpec, TensorSpec } from "../metadata";
import { Batcher, type BatchingOptions, type CallContext } from "./batcher";
import { cancelled, deadlineExceeded, failedPrecondition, GrpcStatus, invalidArgument, notFound, type Code } from "./errors";
import { decodeImageInputs } from "./images";
import type { ExampleFeatures } from "./json";
import type { Lease, ModelManager, VersionStatus } from "./manager";
import type { ServingMetrics } from "./metrics";
import type { Servable } from "./servable";
import { checkInputs, DEFAULT_TENSOR_LIMITS, DT_NAME, shapeString, sizeOf, type HostTensor, type TensorLimits } from "./tensor";

export type { CallContext };

/** The model part of a request (`ModelSpec`, or the REST path). */
export interface ModelRef {
  readonly name: string;
  readonly version?: number;
  readonly label?: string;
  /** "" means `serving_default`. */
  readonly signatureName?: string;
}

export interface ServiceOptions {
  /** Largest dimension 0 of one request. Default 4096. */
  readonly maxRequestBatch: number;
  readonly tensorLimits: TensorLimits;
  /** Server-side batching of predict and classify runs; off when undefined. */
  readonly batching?: BatchingOptions;
}

export const DEFAULT_SERVICE_OPTIONS: ServiceOptions = { maxRequestBatch: 4096, tensorLimits: DEFAULT_TENSOR_LIMITS };

export interface Answer<T> {
  readonly name: string;
  readonly version: number;
  readonly signatureName: string;
  readonly value: T;
}

export interface ClassResult {
  readonly label: string;
  readonly score: number;
}

export type Api = "predict" | "classify" | "metadata" | "status";
export type Protocol = "grpc" | "rest";

/**
 * One model run per event-loop turn. Runs are synchronous (TensorFlow runs the ops on this
 * thread), and a burst of requests arrives in one socket read: run back to back in that
 * turn, every answer waits for the last run and they leave together, while the client
 * (and its next requests) wait. Taking a turn lets each answer go out as soon as it is
 * ready. Costs nothing when requests come one at a time: the turn is free again by then.
 */
export class RunTurns {
  private busy = false;
  private readonly free = (): void => {
    this.busy = false;
  };

  async take(): Promise<void> {
    while (this.busy) await new Promise<void>((r) => setImmediate(r));
    this.busy = true;
    setImmediate(this.free);
  }
}

export class InferenceService {
  readonly batcher: Batcher | undefined;
  private readonly turns = new RunTurns();

  constructor(
    private readonly managers: ReadonlyMap<string, ModelManager>,
    readonly metrics: ServingMetrics,
    readonly options: ServiceOptions = DEFAULT_SERVICE_OPTIONS,
  ) {
    this.batcher = options.batching
      ? new Batcher(
          options.batching,
          (s, n) => this.metrics.batchSize.observe({ model: s.name, version: String(s.version) }, n),
          (s, seconds) => this.observeRun(s, "predict", seconds),
        )
      : undefined;
  }

  /** Names of the configured models. */
  modelNames(): string[] {
    return [...this.managers.keys()];
  }

  /** The manager of a configured model; NOT_FOUND in TF Serving's words otherwise. */
  manager(ref: ModelRef): ModelManager {
    const m = this.managers.get(ref.name);
    if (!m) {
      const req = ref.version !== undefined ? `Specific(${ref.name}, ${ref.version})` : ref.label !== undefined ? `Label(${ref.name}, ${ref.label})` : `Latest(${ref.name})`;
      throw notFound(`Servable not found for request: ${req}`);
    }
    return m;
  }

  private lease(ref: ModelRef): Lease {
    if (ref.name === "") throw invalidArgument("Missing ModelSpec name");
    return this.manager(ref).acquire({ version: ref.version, label: ref.label });
  }

  /** Bounds on decoded images: the request batch and tensor size limits. */
  private imageLimits(): { maxBatch: number; maxElements: number } {
    return { maxBatch: this.options.maxRequestBatch, maxElements: this.options.tensorLimits.maxElements };
  }

  /** `:tensorflow:serving:runtime_latency` of one model run. */
  private observeRun(servable: Servable, api: Api, seconds: number): void {
    const runtime = servable.metadata.modelType === "savedmodel" ? "TF" : "TFJS";
    this.metrics.tfsRuntimeLatency.observe({ model_name: servable.name, API: api, runtime }, seconds * 1e6);
  }

  private async runChecked(
    api: Api,
    servable: Servable,
    signatureName: string,
    sig: SignatureSpec,
    inputs: Readonly<Record<string, HostTensor>>,
    ctx: CallContext,
  ): Promise<Record<string, HostTensor>> {
    const size = checkInputs(signatureName, sig, inputs, this.options.maxRequestBatch);
    this.metrics.tfsRequestExampleCounts.observe({ model_name: servable.name }, size);
    if (ctx.signal?.aborted) throw cancelled("The client cancelled the request");
    if (ctx.deadline !== undefined && Date.now() >= ctx.deadline) throw deadlineExceeded("Deadline exceeded before the model ran");
    // Only signatures whose every input has a free batch dimension can be concatenated.
    const batchable = Object.values(sig.inputs).every((s) => s.shape.length > 0 && s.shape[0]! < 0);
    if (this.batcher && batchable) return this.batcher.run(servable, signatureName, inputs, size, ctx);
    await this.turns.take();
    if (ctx.signal?.aborted) throw cancelled("The client cancelled the request");
    this.metrics.batchSize.observe({ model: servable.name, version: String(servable.version) }, size);
    const t0 = process.hrtime.bigint();
    const out = await servable.run(signatureName, inputs);
    this.observeRun(servable, api, Number(process.hrtime.bigint() - t0) / 1e9);
    return out;
  }

  /**
   * Predict. `decode` turns the request's wire inputs into host tensors once the signature
   * is known (REST JSON needs its dtypes and ranks). `outputFilter` empty: all outputs.
   */
  async predict(
    ref: ModelRef,
    decode: (signatureName: string, sig: SignatureSpec, images: ReadonlyMap<string, ImagePreprocessing>) => Record<string, HostTensor>,
    outputFilter: readonly string[],
    ctx: CallContext,
  ): Promise<Answer<Record<string, HostTensor>>> {
    const lease = this.lease(ref);
    try {
      const { servable } = lease;
      const { name: signatureName, spec } = servable.signature(ref.signatureName ?? "");
      const seen = new Set<string>();
      for (const o of outputFilter) {
        if (!(o in spec.outputs)) throw invalidArgument(`output tensor alias not found in signature: ${o}`);
        if (seen.has(o)) throw invalidArgument(`duplicate output tensor alias in output_filter: ${o}`);
        seen.add(o);
      }
      const images = servable.imageInputs(signatureName);
      let inputs = decode(signatureName, spec, images);
      // Encoded images (DT_STRING JPEG/PNG) given for pixel inputs are decoded here.
      if (images.size > 0) inputs = await decodeImageInputs(inputs, images, this.imageLimits());
      const all = await this.runChecked("predict", servable, signatureName, spec, inputs, ctx);
      const outputs: Record<string, HostTensor> = {};
      for (const o of outputFilter.length ? outputFilter : Object.keys(spec.outputs)) outputs[o] = all[o]!;
      return { name: servable.name, version: servable.version, signatureName, value: outputs };
    } finally {
      lease.release();
    }
  }

  /**
   * Classify: examples' features become the signature's inputs (by input name; a sole
   * input also takes a sole feature of any name), the `scores` output (or the sole output,
   * shaped [batch, classes]) becomes (label, score) pairs in class order.
   */
  async classify(ref: ModelRef, examples: readonly ExampleFeatures[], ctx: CallContext): Promise<Answer<ClassResult[][]>> {
    const lease = this.lease(ref);
    try {
      const { servable } = lease;
      const { name: signatureName, spec } = servable.signature(ref.signatureName ?? "");
      const outNames = Object.keys(spec.outputs);
      const scoresName = "scores" in spec.outputs ? "scores" : outNames.length === 1 ? outNames[0]! : undefined;
      const scoresSpec = scoresName ? spec.outputs[scoresName] : undefined;
      if (!scoresName || !scoresSpec || scoresSpec.dtype !== "float32" || scoresSpec.shape.length !== 2) {
        throw failedPrecondition(`signature "${signatureName}" cannot classify: it needs a float output "scores" (or a sole output) shaped [batch, classes]`);
      }
      if (examples.length === 0) throw invalidArgument("Input is empty: no examples");
      const images = servable.imageInputs(signatureName);
      // An image input whose feature is a bytes_list carries one encoded image per example.
      const encoded = new Map(
        [...images].filter(([n]) => {
          const f = examples[0]!.get(n) ?? (Object.keys(spec.inputs).length === 1 && examples[0]!.size === 1 ? examples[0]!.values().next().value : undefined);
          return f !== undefined && f.length > 0 && f[0] instanceof Uint8Array;
        }),
      );
      const wire: SignatureSpec =
        encoded.size === 0
          ? spec
          : {
              ...spec,
              inputs: Object.fromEntries(Object.entries(spec.inputs).map(([n, t]) => [n, encoded.has(n) ? { dtype: "string" as const, shape: [-1, 1] } : t])),
            };
      let inputs = examplesToInputs(signatureName, wire, examples);
      if (encoded.size > 0) inputs = await decodeImageInputs(inputs, encoded, this.imageLimits());
      const out = await this.runChecked("classify", servable, signatureName, spec, inputs, ctx);
      const scores = out[scoresName]!;
      const k = scores.shape[1]!;
      const labels = servable.labels && servable.labels.length === k ? servable.labels : undefined;
      const values = scores.values as Float32Array;
      const results: ClassResult[][] = [];
      for (let i = 0; i < examples.length; i++) {
        const row: ClassResult[] = [];
        for (let c = 0; c < k; c++) row.push({ label: labels ? labels[c]! : String(c), score: values[i * k + c]! });
        results.push(row);
      }
      return { name: servable.name, version: servable.version, signatureName, value: results };
    } finally {
      lease.release();
    }
  }

  /** Signatures and metadata of a version (GetModelMetadata). */
  metadata(ref: ModelRef): Answer<Servable["metadata"]> {
    const lease = this.lease(ref);
    try {
      const s = lease.servable;
      return { name: s.name, version: s.version, signatureName: ref.signatureName ?? "", value: s.metadata };
    } finally {
      lease.release();
    }
  }

  /** GetModelStatus: all known versions, or the one asked for (by number or label). */
  status(ref: ModelRef): VersionStatus[] {
    if (ref.name === "") throw invalidArgument("Missing ModelSpec name");
    const m = this.managers.get(ref.name);
    if (!m) throw notFound(`Could not find any versions of model ${ref.name}`);
    let version = ref.version;
    if (ref.label !== undefined) {
      const labels = m.versionLabels();
      if (!Object.prototype.hasOwnProperty.call(labels, ref.label)) {
        throw invalidArgument(`Unrecognized servable version label: ${ref.label}`);
      }
      version = labels[ref.label];
    }
    if (version !== undefined) return [m.versionStatus(version)];
    const all = m.status();
    if (all.length === 0) throw notFound(`Could not find any versions of model ${ref.name}`);
    return all;
  }

  /** Records one finished request in the metrics. */
  observe(api: Api, protocol: Protocol, modelName: string, version: number | undefined, code: Code, seconds: number): void {
    // Only configured names become label values (see metrics.ts).
    const model = this.managers.has(modelName) ? modelName : "";
    const v = version === undefined ? "" : String(version);
    this.metrics.requests.inc({ model, version: v, api, protocol, code: GrpcStatus[code] ?? "UNKNOWN" });
    if (code !== GrpcStatus.OK) this.metrics.errors.inc({ model, version: v, code: GrpcStatus[code] ?? "UNKNOWN" });
    this.metrics.latency.observe({ model, api, protocol }, seconds);
    this.metrics.tfsRequestCount.inc({ model_name: model, status: GrpcStatus[code] ?? "UNKNOWN" });
    this.metrics.tfsRequestLatency.observe({ model_name: model, API: api, entrypoint: protocol === "grpc" ? "GRPC" : "REST" }, seconds * 1e6);
  }
}

function featureFor(input: string, sole: boolean, ex: ExampleFeatures, i: number): number[] | Uint8Array[] {
  const f = ex.get(input);
  if (f) return f;
  if (sole && ex.size === 1) return ex.values().next().value!;
  throw invalidArgument(`examples[${i}] has no feature "${input}"`);
}

/** Stacks per-example feature lists into one tensor per signature input. */
export function examplesToInputs(signatureName: string, sig: SignatureSpec, examples: readonly ExampleFeatures[]): Record<string, HostTensor> {
  const names = Object.keys(sig.inputs);
  const inputs: Record<string, HostTensor> = {};
  for (const name of names) {
    const spec = sig.inputs[name] as TensorSpec;
    const inner = spec.shape.slice(1);
    if (spec.shape.length === 0 || inner.some((d) => d < 0)) {
      throw failedPrecondition(`signature "${signatureName}" input "${name}" has shape ${shapeString(spec.shape)}; classify needs [batch, known sizes...]`);
    }
    const per = sizeOf(inner);
    const shape = [examples.length, ...inner];
    const rows = examples.map((ex, i) => {
      const f = featureFor(name, names.length === 1, ex, i);
      if (f.length !== per) {
        throw invalidArgument(`examples[${i}] feature "${name}" has ${f.length} values; input shape ${shapeString(spec.shape)} needs ${per}`);
      }
      const isBytes = f.length > 0 && f[0] instanceof Uint8Array;
      if ((spec.dtype === "string") !== isBytes && per > 0) {
        throw invalidArgument(`examples[${i}] feature "${name}" must be ${spec.dtype === "string" ? "a bytes_list" : "a float_list or int64_list"} for ${DT_NAME[spec.dtype]}`);
      }
      return f;
    });
    if (spec.dtype === "string") {
      inputs[name] = { dtype: "string", shape, values: rows.flatMap((r) => r as Uint8Array[]) };
      continue;
    }
    const flat = rows.flatMap((r) => r as number[]);
    if (spec.dtype === "float32") {
      const values = Float32Array.from(flat);
      for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) throw invalidArgument(`feature "${name}" has a value that is not a finite float32`);
      inputs[name] = { dtype: "float32", shape, values };
    } else if (spec.dtype === "int32") {
      if (!flat.every((v) => Number.isInteger(v) && v >= -2147483648 && v <= 2147483647)) {
        throw invalidArgument(`feature "${name}" has a value that is not a 32-bit integer`);
      }
      inputs[name] = { dtype: "int32", shape, values: Int32Array.from(flat) };
    } else {
      inputs[name] = { dtype: "bool", shape, values: Uint8Array.from(flat, (v) => (v ? 1 : 0)) };
    }
  }
  return inputs;
}
