/**
 * The pipeline's steps as `mlp` command lines: one builder per step. The Argo
 * WorkflowTemplates (components/trainingPipeline.ts, components/hyperparameterSweep.ts),
 * scripts/pipeline-local.ts and the tests all take a step's flags from here, and the tests run
 * every template's command lines through the commands' own parsers (src/commands/*.ts), so a
 * renamed flag fails a test instead of a first run in a cluster.
 *
 * Also the contract between the templates and their users (scripts/submit.ts): the template
 * names, the output parameters a run reports and what they hold, and the per-run directories
 * on the shared volume.
 *
 * Why here: it sits next to the parsers it must satisfy, it imports nothing (so the Pulumi
 * program and the scripts load it without the trainer's dependencies), and the trainer image
 * builds it without any of the Pulumi packages (the image copies only trainer/).
 */

/** WorkflowTemplate names. */
export const PIPELINE_TEMPLATES = {
  mnist: "mnist-pipeline",
  retrain: "retrain-pipeline",
  sweep: "hyperparameter-sweep",
} as const;

/** Output parameters of a run (node outputs), by the name the templates give them. */
export const PIPELINE_OUTPUTS = {
  /** The evaluate step's result file: {@link EvaluationOutput}. */
  evaluation: "evaluation",
  /** The publish step's result file: {@link PublishedOutput}. */
  published: "published",
  /** The sweep's promoted trial: {@link SweepTrialOutput}. */
  best: "best",
} as const;

/** What `mlp evaluate --result-file` writes (the fields users read; there are more). */
export interface EvaluationOutput {
  readonly accuracy: number;
  readonly gate: number;
  readonly passed: boolean;
  readonly examples: number;
}

/** What `mlp publish --result-file` writes. */
export interface PublishedOutput {
  readonly version: number;
  readonly uri: string;
}

/** One sweep trial's line (the promote step picks the best of them). */
export interface SweepTrialOutput {
  readonly trial: number;
  readonly lr: string;
  readonly hu: string;
  readonly bs: string;
  /** Its TensorBoard run: the directory under the shared log directory. */
  readonly run: string;
  readonly metrics: Record<string, number>;
  /** Where its model version is (`s3://…/<name>/1`). */
  readonly model: string;
}

/** A value on a command line: a literal, or a placeholder that Argo (or the shell) fills in. */
export type Value = string | number;

/**
 * The directories of one run on the shared volume (`root` is its mount path): the staging
 * area the run exports into before the gate, its TensorBoard log directory, its checkpoints.
 * TensorBoard reads `<root>/logs`, so every run (and every sweep trial, below its run) shows
 * up there under its own name.
 */
export function runDirs(root: string, run: string): { staging: string; logs: string; checkpoints: string } {
  return { staging: `${root}/staging/${run}`, logs: `${root}/logs/${run}`, checkpoints: `${root}/checkpoints/${run}` };
}

/** The TensorBoard run name of a sweep trial, below the sweep's own run. */
export function trialRunName(run: Value, trial: Value): string {
  return `${run}/trial-${trial}`;
}

/**
 * The version a training step exports into the staging area: a run's staging area starts
 * empty, so its first (and only) version is 1.
 */
export function stagedVersion(staging: string, name: Value): string {
  return `${staging}/${name}/1`;
}

type Flag = readonly [flag: string, value: Value | boolean | undefined];

/** `command --flag value …`; undefined values and false booleans are left out, true ones are bare. */
function commandLine(command: string, flags: readonly Flag[]): string[] {
  const out = [command];
  for (const [flag, value] of flags) {
    if (value === undefined || value === false) continue;
    out.push(`--${flag}`);
    if (value !== true) out.push(String(value));
  }
  return out;
}

export type DataKind = "idx" | "images";
export type ProgressMode = "auto" | "bar" | "lines" | "none";

/** `mlp verify-data`: the dataset is complete and readable. */
export function verifyDataArgs(o: { data: Value; kind: DataKind; resultFile?: Value }): string[] {
  return commandLine("verify-data", [
    ["data", o.data],
    ["kind", o.kind],
    ["result-file", o.resultFile],
  ]);
}

/** `mlp train-mnist`: trains and exports into `modelBase` (the run's staging area). */
export function trainMnistArgs(o: {
  data: Value;
  steps: Value;
  learningRate?: Value;
  batchSize?: Value;
  hiddenUnits?: Value;
  modelBase: Value;
  name: Value;
  logdir?: Value;
  checkpointDir?: Value;
  resultFile?: Value;
  progress?: ProgressMode;
}): string[] {
  return commandLine("train-mnist", [
    ["data", o.data],
    ["steps", o.steps],
    ["learning-rate", o.learningRate],
    ["batch-size", o.batchSize],
    ["hidden-units", o.hiddenUnits],
    ["model-base", o.modelBase],
    ["name", o.name],
    ["logdir", o.logdir],
    ["checkpoint-dir", o.checkpointDir],
    ["result-file", o.resultFile],
    ["progress", o.progress ?? "lines"],
  ]);
}

/** `mlp fetch-base`: a named base model into the cache on the shared volume (a no-op when cached). */
export function fetchBaseArgs(o: { name: Value; baseModels: Value; sha256?: Value; resultFile?: Value }): string[] {
  return commandLine("fetch-base", [
    ["name", o.name],
    ["sha256", o.sha256],
    ["base-models", o.baseModels],
    ["result-file", o.resultFile],
  ]);
}

/** `mlp retrain`: a new head on a base model, exported into `modelBase` (the staging area). */
export function retrainArgs(o: {
  images: Value;
  /** A model directory, or a name fetched into `baseModels` by {@link fetchBaseArgs}. */
  baseModel: Value;
  baseModels?: Value;
  steps: Value;
  learningRate?: Value;
  batchSize?: Value;
  modelBase: Value;
  name: Value;
  logdir?: Value;
  cacheDir?: Value;
  resultFile?: Value;
  progress?: ProgressMode;
}): string[] {
  return commandLine("retrain", [
    ["images", o.images],
    ["base-model", o.baseModel],
    ["base-models", o.baseModels],
    ["steps", o.steps],
    ["learning-rate", o.learningRate],
    ["batch-size", o.batchSize],
    ["model-base", o.modelBase],
    ["name", o.name],
    ["logdir", o.logdir],
    ["cache-dir", o.cacheDir],
    ["result-file", o.resultFile],
    ["progress", o.progress ?? "lines"],
  ]);
}

/** `mlp evaluate`: the gate (exit 3 below it); the result file is written either way. */
export function evaluateArgs(o: { model: Value; data: Value; kind: DataKind; gate: Value; resultFile?: Value }): string[] {
  return commandLine("evaluate", [
    ["model", o.model],
    ["data", o.data],
    ["kind", o.kind],
    ["gate", o.gate],
    ["result-file", o.resultFile],
  ]);
}

/** `mlp publish`: the next free version under `<modelBase>/<name>` (local or s3://, from local or s3://). */
export function publishArgs(o: { from: Value; modelBase: Value; name: Value; resultFile?: Value }): string[] {
  return commandLine("publish", [
    ["from", o.from],
    ["model-base", o.modelBase],
    ["name", o.name],
    ["result-file", o.resultFile],
  ]);
}

/** What the smoke test sends: an image file, or one sample of an IDX file (with its labels, to print the truth). */
export type PredictInput = { readonly image: Value } | { readonly idx: Value; readonly labels?: Value; readonly index?: Value };

/** `mlp predict`: one input to the model server (gRPC unless `rest`). */
export function predictArgs(o: { server: Value; model: Value; version?: Value; rest?: boolean; json?: boolean; input: PredictInput }): string[] {
  const input: Flag[] =
    "image" in o.input
      ? [["image", o.input.image]]
      : [
          ["idx", o.input.idx],
          ["idx-labels", o.input.labels],
          ["index", o.input.index],
        ];
  return commandLine("predict", [["rest", o.rest], ["server", o.server], ["model", o.model], ["version", o.version], ...input, ["json", o.json]]);
}

/**
 * One shell word for `args` of a step that must run in `sh` (several commands in one
 * container). Values from outside (Argo parameters) never go into the script text: they come
 * in as environment variables, written `${NAME}` in the arguments, which stay expandable here
 * and expand to exactly one word; everything else is literal.
 */
export function shellWord(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  const escaped = arg.replace(/[\\"`]/g, "\\$&").replace(/\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})/g, "\\$");
  return `"${escaped}"`;
}

/**
 * The program a pipeline container runs: `mlp`, on PATH in the trainer image (trainer/Dockerfile
 * and the local build). Workflow steps name it: Argo's emissary executor otherwise looks the
 * image's entrypoint up in its registry, which fails for private registries without pull
 * credentials and for images that were never pushed (a local node's imported images).
 */
export const MLP_PROGRAM = "mlp";

/** A shell command line running `mlp <args>` (see {@link shellWord}). */
export function shellCommand(args: readonly string[], program = MLP_PROGRAM): string {
  return [program, ...args].map(shellWord).join(" ");
}
