/**
 * `mlp verify-data`: the pipeline's first step. Checks that the dataset exists and is
 * readable (see pipeline/verify.ts) and prints a summary; exit 1 naming the file or URL
 * otherwise, so a run fails in seconds instead of after a training job was scheduled.
 */
import { closeLocation, openLocation } from "../pipeline/location";
import { writeResultFile } from "../pipeline/result";
import { describeSummary, verifyDataset } from "../pipeline/verify";
import { defineFlags } from "../util/flags";
import { defineCommand, type CommandIo } from "./command";
import { S3_FLAGS, s3Options, SPLIT_FLAGS, splitPercents } from "./shared-flags";

export const VERIFY_DATA_FLAGS = defineFlags({
  data: { kind: "string", arg: "<dir|s3://…>", help: "dataset directory or S3 prefix", required: true },
  kind: {
    kind: "choice",
    choices: ["idx", "images", "auto"],
    default: "auto",
    help: "what the dataset holds; auto: idx when <train-prefix>-images-idx3-ubyte[.gz] is there, else images",
  },
  "train-prefix": { kind: "string", arg: "<p>", default: "train", help: "IDX training pair prefix" },
  "test-prefix": { kind: "string", arg: "<p>", default: "t10k", help: "IDX test pair prefix" },
  ...SPLIT_FLAGS,
  ...S3_FLAGS,
  "result-file": { kind: "string", arg: "<file>", help: "write the summary as JSON" },
});

export const command = defineCommand({
  name: "verify-data",
  flags: VERIFY_DATA_FLAGS,
  help: {
    about: `Checks a dataset before training and prints a summary (counts, classes):
  idx     <train-prefix> and <test-prefix> image/label IDX pairs (optionally .gz) with
          valid headers, matching counts, equal image sizes, at least two classes
  images  at least two <label>/ folders, each with at least one image, all decodable
          (--validation-percent and --test-percent as given to mlp retrain)
Exit 1 with a message naming the file or URL when it is not usable.`,
    notes: "stdout: the summary as one JSON line; stderr: the summary for people.",
  },
  async run(f, io: CommandIo): Promise<number> {
    const { validationPercent, testPercent } = splitPercents(f);
    const loc = openLocation(f.data, s3Options(f, io.env));
    try {
      const summary = await verifyDataset(loc, {
        kind: f.kind === "auto" ? undefined : f.kind,
        trainPrefix: f["train-prefix"],
        testPrefix: f["test-prefix"],
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
});
