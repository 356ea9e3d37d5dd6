/**
 * `mlp publish`: copies an exported version (from the run's staging area, or from the object
 * store, where sweep trials leave theirs) to the next free version number under
 * `<model-base>/<name>/`, atomically for the model servers that watch it (see
 * pipeline/publish.ts), and reports `{version, uri}`.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveS3Options } from "../data/source";
import { UsageError } from "../errors";
import { openLocation, S3Location } from "../pipeline/location";
import { downloadVersion, publishLocal, publishS3 } from "../pipeline/publish";
import { writeResultFile } from "../pipeline/result";
import { parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const USAGE = `Usage: mlp publish --from <version dir> --model-base <dir|s3://bucket/prefix> --name <model> [options]

Publishes an exported version (model.json, weights, metadata.json) as the next free integer
version <model-base>/<name>/<version>/, rewriting metadata.json's name and version. Servers
watching <model-base>/<name> never see a half-written version: a local copy is renamed into
place; in S3 the number is claimed with a conditional write and metadata.json goes last.
Concurrent publishers get distinct versions.

  --from <dir|s3://…>        the version to publish: a directory, or an S3 prefix such as
                             s3://models/sweeps/<run>/trial-0/<name>/1 (required)
  --model-base <dir|s3://…>  root of published models; a missing directory is created (required)
  --name <model>             model name (required)
  --s3-endpoint <url>        S3 endpoint (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, $S3_ENDPOINT)
  --s3-region <r>            (default $AWS_REGION or us-east-1); credentials from AWS_ACCESS_KEY_ID/…
  --result-file <file>       write {version, uri} as JSON

stdout: {version, uri, name} as one JSON line.`;

export const command: Command = {
  name: "publish",
  summary: "publish an exported model version as the next version under <model-base>/<name> (local or s3://)",
  usage: USAGE,
  async run(args: string[], io: CommandIo): Promise<number> {
    const f = parseFlags("publish", args, {
      from: { type: "string" },
      "model-base": { type: "string" },
      name: { type: "string" },
      "s3-endpoint": { type: "string" },
      "s3-region": { type: "string" },
      "result-file": { type: "string" },
    });
    if (!f.from) throw new UsageError("mlp publish: --from is required (the version directory to publish)");
    if (!f["model-base"]) throw new UsageError("mlp publish: --model-base is required (a directory or s3://bucket/prefix)");
    if (!f.name) throw new UsageError("mlp publish: --name is required (the model name servers use)");
    const s3 = resolveS3Options({ endpoint: f["s3-endpoint"], region: f["s3-region"] }, io.env);
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
};
