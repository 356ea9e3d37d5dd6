/**
 * `mlp verify-data`: the pipeline's first step. Checks that the dataset exists and is
 * readable (see pipeline/verify.ts) and prints a summary; exit 1 naming the file or URL
 * otherwise, so a run fails in seconds instead of after a training job was scheduled.
 */
import { resolveS3Options } from "../data/source";
import { UsageError } from "../errors";
import type { DataKind } from "../pipeline/dataset";
import { closeLocation, openLocation } from "../pipeline/location";
import { writeResultFile } from "../pipeline/result";
import { describeSummary, verifyDataset } from "../pipeline/verify";
import { floatFlag, parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const USAGE = `Usage: mlp verify-data --data <dir|s3://bucket/prefix> [--kind idx|images] [options]

Checks a dataset before training and prints a summary (counts, classes):
  idx     <train-prefix> and <test-prefix> image/label IDX pairs (optionally .gz) with
          valid headers, matching counts, equal image sizes, at least two classes
  images  at least two <label>/ folders, each with at least one image, all decodable
Exit 1 with a message naming the file or URL when it is not usable.

  --data <dir|s3://…>        dataset directory or S3 prefix (required)
  --kind <k>                 idx, images or auto (default auto: idx when
                             <train-prefix>-images-idx3-ubyte[.gz] is there, else images)
  --train-prefix <p>         IDX training pair prefix (default train)
  --test-prefix <p>          IDX test pair prefix (default t10k)
  --validation-percent <p>   images: validation share, as retrain (default 10)
  --test-percent <p>         images: test share, as retrain (default 10)
  --s3-endpoint <url>        S3 endpoint (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, $S3_ENDPOINT)
  --s3-region <r>            (default $AWS_REGION or us-east-1); credentials from AWS_ACCESS_KEY_ID/…
  --result-file <file>       write the summary as JSON

stdout: the summary as one JSON line; stderr: the summary for people.`;

export const command: Command = {
  name: "verify-data",
  summary: "check that a dataset (IDX files or image folders, local or s3://) is complete and readable",
  usage: USAGE,
  async run(args: string[], io: CommandIo): Promise<number> {
    const f = parseFlags("verify-data", args, {
      data: { type: "string" },
      kind: { type: "string" },
      "train-prefix": { type: "string" },
      "test-prefix": { type: "string" },
      "validation-percent": { type: "string" },
      "test-percent": { type: "string" },
      "s3-endpoint": { type: "string" },
      "s3-region": { type: "string" },
      "result-file": { type: "string" },
    });
    if (!f.data) throw new UsageError("mlp verify-data: --data is required (a directory or s3://bucket/prefix)");
    if (f.kind !== undefined && !["idx", "images", "auto"].includes(f.kind)) {
      throw new UsageError(`--kind must be one of idx, images, auto; got ${JSON.stringify(f.kind)}`);
    }
    const validationPercent = floatFlag("validation-percent", f["validation-percent"], 0, 90) ?? 10;
    const testPercent = floatFlag("test-percent", f["test-percent"], 0, 90) ?? 10;
    if (validationPercent + testPercent >= 100) throw new UsageError("--validation-percent plus --test-percent must leave room for training (< 100)");
    const loc = openLocation(f.data, resolveS3Options({ endpoint: f["s3-endpoint"], region: f["s3-region"] }, io.env));
    try {
      const summary = await verifyDataset(loc, {
        kind: f.kind === "auto" ? undefined : (f.kind as DataKind | undefined),
        trainPrefix: f["train-prefix"] ?? "train",
        testPrefix: f["test-prefix"] ?? "t10k",
        validationPercent,
        testPercent,
        log: (line) => io.stderr.write(`${line}\n`),
      });
      io.stderr.write(`${describeSummary(summary).join("\n")}\n`);
      if (f["result-file"]) await writeResultFile(f["result-file"], summary);
      io.stdout.write(`${JSON.stringify(summary)}\n`);
      return 0;
    } finally {
      await closeLocation(loc);
    }
  },
};
