/**
 * `mlp evaluate`: the pipeline's gate. Evaluates an exported version on held-out data,
 * prints the accuracy and a confusion matrix, writes `{accuracy, gate, passed, examples, …}`
 * and exits 0 when the accuracy reaches the gate, 3 when it does not (so the workflow stops
 * before publishing). The result file is written in both cases.
 */
import { formatConfusionMatrix } from "../retrain/confusion";
import { evaluateVersion, loadVersion } from "../pipeline/evaluate";
import { closeLocation, openLocation } from "../pipeline/location";
import { formatAccuracy, GateError, writeResultFile } from "../pipeline/result";
import { defineFlags } from "../util/flags";
import { defineCommand, type CommandIo } from "./command";
import { S3_FLAGS, s3Options, SPLIT_FLAGS, splitPercents } from "./shared-flags";

export const EVALUATE_FLAGS = defineFlags({
  model: { kind: "string", arg: "<dir|s3://…>", help: "the version directory, e.g. <model-base>/<name>/1", required: true },
  data: { kind: "string", arg: "<dir|s3://…>", help: "dataset directory or S3 prefix", required: true },
  gate: { kind: "float", min: 0, max: 1, arg: "<accuracy>", help: "the minimum accuracy, e.g. 0.97", required: true },
  kind: {
    kind: "choice",
    choices: ["idx", "images", "auto"],
    default: "auto",
    help: "what the dataset holds; auto: idx when <test-prefix>-images-idx3-ubyte[.gz] is there, else images",
  },
  "test-prefix": { kind: "string", arg: "<p>", default: "t10k", help: "IDX test pair prefix" },
  ...SPLIT_FLAGS,
  "batch-size": { kind: "int", min: 1, max: 65536, help: "examples per inference batch", defaultHelp: "256 for IDX, 64 for images" },
  ...S3_FLAGS,
  "result-file": { kind: "string", arg: "<file>", help: "write {accuracy, gate, passed, examples, …} as JSON (also when below the gate)" },
});

export const command = defineCommand({
  name: "evaluate",
  flags: EVALUATE_FLAGS,
  help: {
    about: `Evaluates an exported model version (model.json + metadata.json, e.g. <model-base>/<name>/1)
on held-out data and compares the accuracy with the gate:
  idx     the <test-prefix> IDX pair
  images  the test split of <label>/ folders, assigned as mlp retrain does (give the same
          --validation-percent and --test-percent)
Prints the accuracy and a confusion matrix (rows actual, columns predicted).
Exit 0 when accuracy ≥ gate; exit 3 when below ("… is below the gate …: not publishing").`,
    notes: "stdout: the same JSON as one line; stderr: the report for people.",
  },
  async run(f, io: CommandIo): Promise<number> {
    const gate = f.gate;
    const { validationPercent, testPercent } = splitPercents(f);
    const batchSize = f["batch-size"];
    const say = (line: string) => io.stderr.write(`${line}\n`);

    const s3 = s3Options(f, io.env);
    const modelLoc = openLocation(f.model, s3);
    const dataLoc = openLocation(f.data, s3);
    try {
      const model = await loadVersion(modelLoc);
      let evaluation;
      try {
        evaluation = await evaluateVersion(model, dataLoc, {
          kind: f.kind === "auto" ? undefined : f.kind,
          testPrefix: f["test-prefix"],
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
});
