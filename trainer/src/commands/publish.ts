/**
 * `mlp publish`: copies an exported version (from the run's staging area) to the next free
 * version number under `<model-base>/<name>/`, atomically for the model servers that watch
 * it (see pipeline/publish.ts), and reports `{version, uri}`.
 */
import { resolveS3Options } from "../data/source";
import { UsageError } from "../errors";
import { openLocation, S3Location } from "../pipeline/location";
import { publishLocal, publishS3 } from "../pipeline/publish";
import { writeResultFile } from "../pipeline/result";
import { parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const USAGE = `Usage: mlp publish --from <version dir> --model-base <dir|s3://bucket/prefix> --name <model> [options]

Publishes an exported version (model.json, weights, metadata.json) as the next free integer
version <model-base>/<name>/<version>/, rewriting metadata.json's name and version. Servers
watching <model-base>/<name> never see a half-written version: a local copy is renamed into
place; in S3 the number is claimed with a conditional write and metadata.json goes last.
Concurrent publishers get distinct versions.

  --from <dir>               the version directory to publish (required)
  --model-base <dir|s3://…>  root of published models; must exist (required)
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
    if (f.from.startsWith("s3://")) throw new UsageError("--from must be a local (or mounted) directory, such as the run's staging directory");
    const base = openLocation(f["model-base"], resolveS3Options({ endpoint: f["s3-endpoint"], region: f["s3-region"] }, io.env));
    const say = (line: string) => io.stderr.write(`${line}\n`);
    let result;
    if (base instanceof S3Location) {
      try {
        result = await publishS3(base, { from: f.from, name: f.name, log: say });
      } finally {
        await base.close();
      }
    } else {
      result = await publishLocal(base.uri, { from: f.from, name: f.name, log: say });
    }
    say(`published ${f.from} as ${result.name} version ${result.version}: ${result.uri}`);
    if (f["result-file"]) await writeResultFile(f["result-file"], { version: result.version, uri: result.uri });
    io.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  },
};
