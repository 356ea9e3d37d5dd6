/**
 * Converts a model bundled in the npm `nsfwjs` package (MobileNetV2 or InceptionV3, stored as
 * JavaScript modules) into a plain tfjs model directory (`model.json` + `.bin`) that
 * `mlp retrain --base-model` loads. `nsfwjs` is not a dependency of the trainer: pass the
 * path of an installed copy.
 *
 *   npx tsx trainer/bench/prepare-nsfwjs-base.ts --package node_modules/nsfwjs \
 *     [--model mobilenet_v2] [--out ~/.cache/mlplatform/base-models/nsfwjs-mobilenet_v2]
 *
 * The models take RGB images scaled to [0, 1] (see nsfwjs' own preprocessing).
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";

interface BundledModel {
  modelTopology: unknown;
  weightsManifest: { paths: string[]; weights: unknown[] }[];
}

export async function prepareNsfwjsBase(pkg: string, model: string, out: string): Promise<string> {
  if (
    await fs.access(path.join(out, "model.json")).then(
      () => true,
      () => false,
    )
  )
    return out;
  const dir = path.join(path.resolve(pkg), "dist", "models", model);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bundled = require(path.join(dir, "model.min.js")) as BundledModel;
  const tmp = `${out}.tmp-${process.pid}`;
  await fs.mkdir(tmp, { recursive: true });
  const manifest = [];
  for (const group of bundled.weightsManifest) {
    const paths: string[] = [];
    for (const p of group.paths) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const b64 = require(path.join(dir, `${p}.min.js`)) as string;
      await fs.writeFile(path.join(tmp, `${p}.bin`), Buffer.from(b64, "base64"));
      paths.push(`${p}.bin`);
    }
    manifest.push({ ...group, paths });
  }
  await fs.writeFile(path.join(tmp, "model.json"), JSON.stringify({ modelTopology: bundled.modelTopology, weightsManifest: manifest }));
  await fs.rm(out, { recursive: true, force: true });
  await fs.rename(tmp, out);
  return out;
}

if (require.main === module) {
  const { values } = parseArgs({ options: { package: { type: "string" }, model: { type: "string" }, out: { type: "string" } } });
  const model = values.model ?? "mobilenet_v2";
  const cache = process.env.MLPLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlplatform");
  const pkg = values.package ?? path.dirname(require.resolve("nsfwjs/package.json"));
  prepareNsfwjsBase(pkg, model, values.out ?? path.join(cache, "base-models", `nsfwjs-${model}`)).then(
    (dir) => console.log(dir),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
