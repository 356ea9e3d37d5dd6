/**
 * `mlp evaluate`: the pipeline's gate. Evaluates an exported version on held-out data,
 * prints the accuracy and a confusion matrix, writes `{accuracy, gate, passed, examples, …}`
 * and exits 0 when the accuracy reaches the gate, 3 when it does not (so the workflow stops
 * before publishing). The result file is written in both cases.
 */
import { resolveS3Options } from "../data/source";
import { UsageError } from "../errors";
import { formatConfusionMatrix } from "../retrain/confusion";
import type { DataKind } from "../pipeline/dataset";
import { evaluateVersion, loadVersion } from "../pipeline/evaluate";
import { closeLocation, openLocation } from "../pipeline/location";
import { formatAccuracy, GateError, writeResultFile } from "../pipeline/result";
import { floatFlag, intFlag, parseFlags } from "../util/args";
import type { Command, CommandIo } from "./command";

const USAGE = `Usage: mlp evaluate --model <version dir> --data <dir|s3://bucket/prefix> --gate <accuracy> [options]

Evaluates an exported model version (model.json + metadata.json, e.g. <model-base>/<name>/1)
on held-out data and compares the accuracy with the gate:
  idx     the <test-prefix> IDX pair (default t10k)
  images  the test split of <label>/ folders, assigned as mlp retrain does (same percentages)
Prints the accuracy and a confusion matrix (rows actual, columns predicted).
Exit 0 when accuracy ≥ gate; exit 3 when below ("… is below the gate …: not publishing").

  --model <dir|s3://…>       the version directory (required)
  --data <dir|s3://…>        dataset directory or S3 prefix (required)
  --gate <f>                 minimum accuracy in [0, 1] (required)
  --kind <k>                 idx, images or auto (default auto: idx when
                             <test-prefix>-images-idx3-ubyte[.gz] is there, else images)
  --test-prefix <p>          IDX test pair prefix (default t10k)
  --validation-percent <p>   images: as given to mlp retrain (default 10)
  --test-percent <p>         images: as given to mlp retrain (default 10)
  --batch-size <n>           examples per inference batch (default 256 IDX, 64 images)
  --s3-endpoint <url>        S3 endpoint (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, $S3_ENDPOINT)
  --s3-region <r>            (default $AWS_REGION or us-east-1); credentials from AWS_ACCESS_KEY_ID/…
  --result-file <file>       write {accuracy, gate, passed, examples, …} as JSON (also when
                             below the gate)

stdout: the same JSON as one line; stderr: the report for people.`;

export const command: Command = {
  name: "evaluate",
  summary: "evaluate a model version on held-out data; exit 3 when its accuracy is below the gate",
  usage: USAGE,
  async run(args: string[], io: CommandIo): Promise<number> {
    const f = parseFlags("evaluate", args, {
      model: { type: "string" },
      data: { type: "string" },
      gate: { type: "string" },
      kind: { type: "string" },
      "test-prefix": { type: "string" },
      "validation-percent": { type: "string" },
      "test-percent": { type: "string" },
      "batch-size": { type: "string" },
      "s3-endpoint": { type: "string" },
      "s3-region": { type: "string" },
      "result-file": { type: "string" },
    });
    if (!f.model) throw new UsageError("mlp evaluate: --model is required (a version directory such as <model-base>/<name>/1)");
    if (!f.data) throw new UsageError("mlp evaluate: --data is required (a directory or s3://bucket/prefix)");
    if (f.gate === undefined) throw new UsageError("mlp evaluate: --gate is required (the minimum accuracy, e.g. 0.97)");
    const gate = floatFlag("gate", f.gate, 0, 1)!;
    if (f.kind !== undefined && !["idx", "images", "auto"].includes(f.kind)) {
      throw new UsageError(`--kind must be one of idx, images, auto; got ${JSON.stringify(f.kind)}`);
    }
    const validationPercent = floatFlag("validation-percent", f["validation-percent"], 0, 90) ?? 10;
    const testPercent = floatFlag("test-percent", f["test-percent"], 0, 90) ?? 10;
    if (validationPercent + testPercent >= 100) throw new UsageError("--validation-percent plus --test-percent must leave room for training (< 100)");
    const batchSize = intFlag("batch-size", f["batch-size"], 1, 65536);
    const say = (line: string) => io.stderr.write(`${line}\n`);

    const s3 = resolveS3Options({ endpoint: f["s3-endpoint"], region: f["s3-region"] }, io.env);
    const modelLoc = openLocation(f.model, s3);
    const dataLoc = openLocation(f.data, s3);
    try {
      const model = await loadVersion(modelLoc);
      let evaluation;
      try {
        evaluation = await evaluateVersion(model, dataLoc, {
          kind: f.kind === "auto" ? undefined : (f.kind as DataKind | undefined),
          testPrefix: f["test-prefix"] ?? "t10k",
          validationPercent,
          testPercent,
          batchSize,
          log: say,
        });
      } finally {
        model.dispose();
      }
      const passed = evaluation.accuracy >= gate;
      const { name, version } = model.metadata;
      say(`model ${model.source} (${name} version ${version}) on ${evaluation.data}: ${evaluation.examples} held-out examples`);
      say(`accuracy ${formatAccuracy(evaluation.accuracy)} (${evaluation.correct}/${evaluation.examples}); gate ${gate}: ${passed ? "passed" : "FAILED"}`);
      say(`confusion matrix (rows actual, columns predicted):\n${formatConfusionMatrix(evaluation.confusionMatrix, evaluation.labels)}`);
      const result = {
        accuracy: evaluation.accuracy,
        gate,
        passed,
        examples: evaluation.examples,
        correct: evaluation.correct,
        model: model.source,
        name,
        version,
        kind: evaluation.kind,
        data: evaluation.data,
        labels: evaluation.labels,
        confusionMatrix: evaluation.confusionMatrix,
      };
      if (f["result-file"]) await writeResultFile(f["result-file"], result);
      io.stdout.write(`${JSON.stringify(result)}\n`);
      if (!passed) throw new GateError(`accuracy ${formatAccuracy(evaluation.accuracy)} is below the gate ${gate}: not publishing`);
      return 0;
    } finally {
      await Promise.all([closeLocation(modelLoc), closeLocation(dataLoc)]);
    }
  },
};
