/**
 * `mlp fetch-base`: downloads a named base model for `mlp retrain` into the shared cache,
 * `<base-models>/<name>/<sha256>/`, verified by digest (see retrain/fetch-base.ts). A second
 * fetch of the same name and digest downloads nothing.
 */
import { UsageError } from "../errors";
import { writeResultFile } from "../pipeline/result";
import { BASE_MODELS, catalogueEntry, DEFAULT_BASE_MODEL, type BaseInputSpec } from "../retrain/base-catalogue";
import { baseModelsDir, checkName, DEFAULT_BASE_MODELS_DIR, fetchBaseModel, recordedDigest, resolveBaseModel } from "../retrain/fetch-base";
import { defineFlags, givenFlags } from "../util/flags";
import { defineCommand, type CommandIo } from "./command";
import { parseRange } from "./shared-flags";

const catalogue = BASE_MODELS.map((m) => `  ${m.name.padEnd(18)} ${m.description}`).join("\n");

const about = `Downloads a tfjs base model (model.json and its weight shards) into
<base-models>/<name>/<sha256>/ and records it as <name>'s current version, so that
\`mlp retrain --base-model <name>\` uses it. The sha256 is that of model.json followed by
the weight files in manifest order. The download goes to a temporary directory and is
renamed into place only when complete and verified; a second fetch with the same name and
digest downloads nothing.

Models (default ${DEFAULT_BASE_MODEL}):
${catalogue}

The catalogue pins no digests: the first fetch of a name records the digest it got, and later
fetches must match it (a changed upstream model is an error until accepted with --sha256).`;

export const FETCH_BASE_FLAGS = defineFlags({
  name: { kind: "string", arg: "<model>", default: DEFAULT_BASE_MODEL, help: "a catalogue model, or the name to cache a --url model under" },
  url: { kind: "string", arg: "<url>", help: "any tfjs model.json (http or https); needs --name" },
  sha256: { kind: "string", arg: "<hex>", help: "expected digest; a mismatch is an error and caches nothing" },
  "image-size": { kind: "parsed", arg: "<h>x<w>", help: "with --url: input size, when model.json does not fix it", parse: parseImageSize },
  range: { kind: "parsed", arg: "<lo,hi>", help: "with --url: input pixel range", defaultHelp: "0,1", parse: parseRange },
  "base-models": { kind: "string", arg: "<dir>", help: "cache root", defaultHelp: `$MLP_BASE_MODELS or ${DEFAULT_BASE_MODELS_DIR}` },
  "result-file": { kind: "string", arg: "<file>", help: "write {name, sha256, dir, cached} as JSON" },
  list: { kind: "boolean", help: "print the catalogue as JSON lines and exit" },
});

function parseImageSize(raw: string, flag: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(raw);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UsageError(`${flag} must be <height>x<width>, e.g. 299x299; got ${JSON.stringify(raw)}`);
  return [Number(m[1]), Number(m[2])];
}

export const command = defineCommand({
  name: "fetch-base",
  flags: FETCH_BASE_FLAGS,
  help: {
    synopsis: "[--name <model>] [--url <model.json URL> [--sha256 <hex>]] [flags]",
    about,
    notes: "stdout: {name, sha256, dir, cached, recorded, bytes} as one JSON line; stderr: progress.",
  },
  async run(f, io: CommandIo): Promise<number> {
    if (f.list) {
      for (const m of BASE_MODELS) io.stdout.write(`${JSON.stringify(m)}\n`);
      return 0;
    }
    const name = f.name;
    checkName(name);
    const entry = catalogueEntry(name);
    let source: { url: string; format?: "graph" | "layers"; input?: Partial<BaseInputSpec>; bottleneckLayer?: string; sha256?: string };
    if (f.url !== undefined) {
      if (!givenFlags(f).has("name")) throw new UsageError("--url needs --name (the name to cache it under and to pass to retrain --base-model)");
      if (entry) throw new UsageError(`--name ${name} is a catalogue model; give a --url model another name`);
      const size = f["image-size"];
      source = {
        url: f.url,
        input: { ...(size && { height: size[0], width: size[1] }), ...(f.range !== undefined && { range: f.range }) },
      };
    } else {
      if (!entry) {
        // A model fetched earlier with --url under this name (e.g. by hand into the shared
        // cache, before a pipeline run whose fetch-base step names it): already there.
        const root = f["base-models"] ?? baseModelsDir(io.env);
        const sha = await recordedDigest(root, name);
        if (sha !== undefined && (f.sha256 === undefined || f.sha256 === sha)) {
          const dir = await resolveBaseModel(name, root);
          io.stderr.write(`base model ${name} sha256:${sha} is already in ${dir}; nothing to fetch\n`);
          const result = { name, sha256: sha, dir, cached: true, recorded: false, bytes: 0 };
          if (f["result-file"]) await writeResultFile(f["result-file"], { name, sha256: sha, dir, cached: true });
          io.stdout.write(`${JSON.stringify(result)}\n`);
          return 0;
        }
        throw new UsageError(
          `unknown base model ${JSON.stringify(name)}; catalogue: ${BASE_MODELS.map((m) => m.name).join(", ")} (or give --url, or fetch it under this name first)`,
        );
      }
      if (f["image-size"] !== undefined || f.range !== undefined) throw new UsageError("--image-size and --range describe --url models; catalogue models carry their own");
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
});
