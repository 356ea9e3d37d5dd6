/**
 * Flags several commands take, declared once (see util/flags.ts): spread a table into a
 * command's own, `{ ...S3_FLAGS }`.
 */
import { resolveS3Options, type S3Options } from "../data/source";
import { UsageError } from "../errors";
import { defineFlags, type FlagValues } from "../util/flags";

/** Where S3 is; credentials come only from the environment (flags would show in `ps`). */
export const S3_FLAGS = defineFlags({
  "s3-endpoint": {
    kind: "string",
    arg: "<url>",
    help: "S3 endpoint",
    defaultHelp: "$AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, $S3_ENDPOINT",
  },
  "s3-region": {
    kind: "string",
    arg: "<r>",
    help: "S3 region; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    defaultHelp: "$AWS_REGION, $AWS_DEFAULT_REGION or us-east-1",
  },
});

/** The S3 client options of the `S3_FLAGS` values and the environment. */
export function s3Options(f: FlagValues<typeof S3_FLAGS>, env: NodeJS.ProcessEnv): S3Options {
  return resolveS3Options({ endpoint: f["s3-endpoint"], region: f["s3-region"] }, env);
}

/**
 * How `mlp retrain` assigns images to validation and test (by a hash of the file name);
 * `verify-data` and `evaluate` must be given the same percentages.
 */
export const SPLIT_FLAGS = defineFlags({
  "validation-percent": { kind: "float", min: 0, max: 90, default: 10, arg: "<p>", help: "images: percentage held out for validation" },
  "test-percent": { kind: "float", min: 0, max: 90, default: 10, arg: "<p>", help: "images: percentage held out for the test" },
});

/** The two percentages, checked to leave room for training. */
export function splitPercents(f: FlagValues<typeof SPLIT_FLAGS>): { validationPercent: number; testPercent: number } {
  const validationPercent = f["validation-percent"];
  const testPercent = f["test-percent"];
  if (validationPercent + testPercent >= 100) {
    throw new UsageError(`--validation-percent plus --test-percent must leave room for training (< 100); got ${validationPercent} + ${testPercent}`);
  }
  return { validationPercent, testPercent };
}

/** A `lo,hi` input pixel range with lo < hi (the `parse` of a `range` flag). */
export function parseRange(raw: string, flag: string): [number, number] {
  const parts = raw.split(",").map((p) => (p.trim() === "" ? NaN : Number(p)));
  if (parts.length !== 2 || !parts.every(Number.isFinite) || parts[0]! >= parts[1]!) {
    throw new UsageError(`${flag} must be "lo,hi" with lo < hi, e.g. 0,1 or -1,1; got ${JSON.stringify(raw)}`);
  }
  return [parts[0]!, parts[1]!];
}
