/**
 * `mlp fetch-base`: downloads a named base model for `mlp retrain` into the shared cache,
 * `<base-models>/<name>/<sha256>/`, verified by digest (see retrain/fetch-base.ts). A second
 * fetch of the same name and digest downloads nothing.
 */
import { UsageError } from "../errors";
import { writeResultFile } from "../pipeline/result";
import { BASE_MODELS, catalogueEntry, DEFAULT_BASE_MODEL, type BaseInputSpec } from "../retrain/base-catalogue";
import { baseModelsDir, checkName, DEFAULT_BASE_MODELS_DIR, fetchBaseModel } from "../retrain/fetch-base";
import { parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const catalogue = BASE_MODELS.map((m) => `  ${m.name.padEnd(18)} ${m.description}`).join("\n");

const USAGE = `Usage: mlp fetch-base [--name <model>] [--url <model.json URL> [--sha256 <hex>]] [options]

Downloads a tfjs base model (model.json and its weight shards) into
<base-models>/<name>/<sha256>/ and records it as <name>'s current version, so that
\`mlp retrain --base-model <name>\` uses it. The sha256 is that of model.json followed by
the weight files in manifest order. The download goes to a temporary directory and is
renamed into place only when complete and verified; a second fetch with the same name and
digest downloads nothing.

Models (default ${DEFAULT_BASE_MODEL}):
${catalogue}

The catalogue pins no digests: the first fetch of a name records the digest it got, and later
fetches must match it (a changed upstream model is an error until accepted with --sha256).

  --name <model>             a catalogue model, or the name to cache a --url model under
  --url <url>                any tfjs model.json (http or https); needs --name
  --sha256 <hex>             expected digest; a mismatch is an error and caches nothing
  --image-size <h>x<w>       with --url: input size, when model.json does not fix it
  --range <lo,hi>            with --url: input pixel range (default 0,1)
  --base-models <dir>        cache root (default $MLP_BASE_MODELS or ${DEFAULT_BASE_MODELS_DIR})
  --result-file <file>       write {name, sha256, dir, cached} as JSON
  --list                     print the catalogue as JSON lines and exit

stdout: {name, sha256, dir, cached, recorded, bytes} as one JSON line; stderr: progress.`;

function parseRange(raw: string): [number, number] {
  const parts = raw.split(",").map(Number);
  if (parts.length !== 2 || !parts.every(Number.isFinite) || parts[0]! >= parts[1]!) {
    throw new UsageError(`--range must be "lo,hi" with lo < hi, e.g. 0,1 or -1,1; got ${JSON.stringify(raw)}`);
  }
  return [parts[0]!, parts[1]!];
}

function parseImageSize(raw: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(raw);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UsageError(`--image-size must be <height>x<width>, e.g. 299x299; got ${JSON.stringify(raw)}`);
  return [Number(m[1]), Number(m[2])];
}

export const command: Command = {
  name: "fetch-base",
  summary: "download a named base model for retrain (Inception v3, MobileNet, or any tfjs URL) into the shared cache, verified by sha256",
  usage: USAGE,
  async run(args: string[], io: CommandIo): Promise<number> {
    const f = parseFlags("fetch-base", args, {
      name: { type: "string" },
      url: { type: "string" },
      sha256: { type: "string" },
      "image-size": { type: "string" },
      range: { type: "string" },
      "base-models": { type: "string" },
      "result-file": { type: "string" },
      list: { type: "boolean" },
    });
    if (f.list) {
      for (const m of BASE_MODELS) io.stdout.write(`${JSON.stringify(m)}\n`);
      return 0;
    }
    const name = f.name ?? DEFAULT_BASE_MODEL;
    checkName(name);
    const entry = catalogueEntry(name);
    let source: { url: string; format?: "graph" | "layers"; input?: Partial<BaseInputSpec>; bottleneckLayer?: string; sha256?: string };
    if (f.url !== undefined) {
      if (f.name === undefined) throw new UsageError("mlp fetch-base: --url needs --name (the name to cache it under and to pass to retrain --base-model)");
      if (entry) throw new UsageError(`mlp fetch-base: --name ${name} is a catalogue model; give a --url model another name`);
      const size = f["image-size"] === undefined ? undefined : parseImageSize(f["image-size"]);
      source = {
        url: f.url,
        input: { ...(size && { height: size[0], width: size[1] }), ...(f.range !== undefined && { range: parseRange(f.range) }) },
      };
    } else {
      if (!entry) throw new UsageError(`mlp fetch-base: unknown base model ${JSON.stringify(name)}; catalogue: ${BASE_MODELS.map((m) => m.name).join(", ")} (or give --url)`);
      if (f["image-size"] !== undefined || f.range !== undefined) throw new UsageError("mlp fetch-base: --image-size and --range describe --url models; catalogue models carry their own");
      source = entry;
    }
    const result = await fetchBaseModel({
      name,
      url: source.url,
      sha256: f.sha256 ?? source.sha256,
      format: source.format,
      input: source.input,
      bottleneckLayer: source.bottleneckLayer,
      root: f["base-models"] ?? baseModelsDir(io.env),
      log: (line) => io.stderr.write(`${line}\n`),
    });
    if (f["result-file"]) await writeResultFile(f["result-file"], { name: result.name, sha256: result.sha256, dir: result.dir, cached: result.cached });
    io.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  },
};
