/**
 * `mlp publish`: copies an exported version (from the run's staging area, or from the object
 * store, where sweep trials leave theirs) to the next free version number under
 * `<model-base>/<name>/`, atomically for the model servers that watch it (see
 * pipeline/publish.ts), and reports `{version, uri}`.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { openLocation, S3Location } from "../pipeline/location";
import { downloadVersion, publishLocal, publishS3 } from "../pipeline/publish";
import { writeResultFile } from "../pipeline/result";
import { defineFlags } from "../util/flags";
import { defineCommand, type CommandIo } from "./command";
import { S3_FLAGS, s3Options } from "./shared-flags";

export const PUBLISH_FLAGS = defineFlags({
  from: {
    kind: "string",
    arg: "<dir|s3://…>",
    help: "the version to publish: a directory, or an S3 prefix such as s3://models/sweeps/<run>/trial-0/<name>/1",
    required: true,
  },
  "model-base": { kind: "string", arg: "<dir|s3://…>", help: "root of published models; a missing directory is created", required: true },
  name: { kind: "string", arg: "<model>", help: "model name (the one servers use)", required: true },
  ...S3_FLAGS,
  "result-file": { kind: "string", arg: "<file>", help: "write {version, uri} as JSON" },
});

export const command = defineCommand({
  name: "publish",
  flags: PUBLISH_FLAGS,
  help: {
    about: `Publishes an exported version (model.json, weights, metadata.json) as the next free integer
version <model-base>/<name>/<version>/, rewriting metadata.json's name and version. Servers
watching <model-base>/<name> never see a half-written version: a local copy is renamed into
place; in S3 the number is claimed with a conditional write and metadata.json goes last.
Concurrent publishers get distinct versions.`,
    notes: "stdout: {version, uri, name} as one JSON line.",
  },
  async run(f, io: CommandIo): Promise<number> {
    const s3 = s3Options(f, io.env);
    const say = (line: string) => io.stderr.write(`${line}\n`);
    let from = f.from;
    let tmp: string | undefined;
    let result;
    try {
      const source = openLocation(f.from, s3);
      if (source instanceof S3Location) {
        tmp = await fs.mkdtemp(path.join(os.tmpdir(), "mlp-publish-"));
        try {
          from = await downloadVersion(source, path.join(tmp, "version"));
        } finally {
          await source.close();
        }
        say(`fetched ${f.from}`);
      }
      const base = openLocation(f["model-base"], s3);
      if (base instanceof S3Location) {
        try {
          result = await publishS3(base, { from, name: f.name, log: say });
        } finally {
          await base.close();
        }
      } else {
        result = await publishLocal(base.uri, { from, name: f.name, log: say });
      }
    } finally {
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    }
    say(`published ${f.from} as ${result.name} version ${result.version}: ${result.uri}`);
    if (f["result-file"]) await writeResultFile(f["result-file"], { version: result.version, uri: result.uri });
    io.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  },
});
