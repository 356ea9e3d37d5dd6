/**
 * `TF_CONFIG` as the Kubeflow Training Operator (TFJob) sets it:
 *
 *   {"cluster": {"chief": ["job-chief-0:2222"], "worker": ["job-worker-0:2222", …], "ps": […]},
 *    "task": {"type": "worker", "index": 0}}
 *
 * Replica types: `chief` (or the older `master`), `worker`, `ps`, `evaluator`.
 *
 * This trainer trains on one replica: a cluster with more than one training replica
 * (chief/master + workers) is refused with an error saying how to fix the TFJob, rather than
 * silently training the same model N times. Parameter servers and evaluators are refused too.
 */
import { TfConfigError } from "../errors";

export type ReplicaType = "chief" | "master" | "worker" | "ps" | "evaluator";

export interface TfTask {
  readonly type: ReplicaType;
  readonly index: number;
  /** Training replicas (chief/master + worker) in the cluster. */
  readonly numTrainingReplicas: number;
  /** The replica that writes checkpoints, summaries and the exported model. */
  readonly isChief: boolean;
  readonly cluster: Readonly<Record<string, readonly string[]>>;
}

const TYPES: readonly ReplicaType[] = ["chief", "master", "worker", "ps", "evaluator"];

/**
 * Parses `TF_CONFIG` (the raw environment value). Unset or empty means a single local process
 * and returns `undefined`. Throws {@link TfConfigError} for malformed JSON, unknown replica types,
 * a task index outside the cluster, or a cluster layout this trainer does not run.
 */
export function parseTfConfig(raw: string | undefined): TfTask | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (e) {
    throw new TfConfigError(`TF_CONFIG is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null) throw new TfConfigError("TF_CONFIG must be a JSON object");
  const { cluster, task } = doc as { cluster?: unknown; task?: unknown };
  if (typeof cluster !== "object" || cluster === null || Array.isArray(cluster)) {
    throw new TfConfigError("TF_CONFIG.cluster must be an object mapping replica types to address lists");
  }
  const clusterSpec: Record<string, string[]> = {};
  for (const [type, addrs] of Object.entries(cluster)) {
    if (!TYPES.includes(type as ReplicaType)) {
      throw new TfConfigError(`TF_CONFIG.cluster.${type}: unknown replica type (expected one of ${TYPES.join(", ")})`);
    }
    if (!Array.isArray(addrs) || !addrs.every((a) => typeof a === "string")) {
      throw new TfConfigError(`TF_CONFIG.cluster.${type} must be an array of "host:port" strings`);
    }
    clusterSpec[type] = addrs;
  }
  if (typeof task !== "object" || task === null) throw new TfConfigError('TF_CONFIG.task must be an object like {"type": "worker", "index": 0}');
  const { type, index } = task as { type?: unknown; index?: unknown };
  if (typeof type !== "string" || !TYPES.includes(type as ReplicaType)) {
    throw new TfConfigError(`TF_CONFIG.task.type must be one of ${TYPES.join(", ")}; got ${JSON.stringify(type)}`);
  }
  const idx = index ?? 0;
  if (!Number.isInteger(idx) || (idx as number) < 0) {
    throw new TfConfigError(`TF_CONFIG.task.index must be a non-negative integer; got ${JSON.stringify(index)}`);
  }
  const members = clusterSpec[type] ?? [];
  if ((idx as number) >= members.length) {
    throw new TfConfigError(`TF_CONFIG.task is ${type} #${idx} but cluster.${type} lists ${members.length} address(es)`);
  }

  const chiefs = (clusterSpec.chief?.length ?? 0) + (clusterSpec.master?.length ?? 0);
  const workers = clusterSpec.worker?.length ?? 0;
  const numTrainingReplicas = chiefs + workers;
  if (type === "ps" || (clusterSpec.ps?.length ?? 0) > 0) {
    throw new TfConfigError(
      `TF_CONFIG lists ${clusterSpec.ps?.length ?? 0} parameter server(s): parameter-server training is not supported; remove the PS replicas from the TFJob`,
    );
  }
  if (type === "evaluator") {
    throw new TfConfigError("TF_CONFIG.task is an evaluator: this trainer evaluates on the training replica; remove the Evaluator replica from the TFJob");
  }
  if (numTrainingReplicas > 1) {
    throw new TfConfigError(
      `TF_CONFIG describes ${numTrainingReplicas} training replicas (chief/master: ${chiefs}, worker: ${workers}); ` +
        "this trainer does not do multi-worker training: set the TFJob to exactly one Chief (or one Worker) replica",
    );
  }
  return {
    type: type as ReplicaType,
    index: idx as number,
    numTrainingReplicas,
    isChief: true,
    cluster: clusterSpec,
  };
}
