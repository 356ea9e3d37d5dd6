/**
 * `TF_CONFIG` as the Kubeflow Training Operator (TFJob) sets it:
 *
 *   {"cluster": {"chief": ["job-chief-0.ns.svc:2222"], "worker": ["job-worker-0.ns.svc:2222", …], "ps": […]},
 *    "task": {"type": "worker", "index": 0}, "environment": "cloud"}
 *
 * Replica types: `chief` (or the older `master`), `worker`, `ps`, `evaluator`.
 *
 * What the trainer does with it (see `../distributed/`):
 *   - one training replica (a chief/master or a worker, no PS): a local run;
 *   - several training replicas, no PS: synchronous data parallelism, gradients averaged
 *     across all training replicas every step (all-reduce, coordinated by the chief);
 *   - PS replicas: parameter-server training, variables sharded across the PS replicas, the
 *     training replicas (chief and workers) pull, compute and push.
 * Training replicas are ranked chief/master first, then workers by index; rank 0 is the
 * chief that writes checkpoints, summaries and the export (worker 0 when there is no chief).
 * Evaluator replicas are refused: the chief evaluates.
 */
import { TfConfigError } from "../errors";

export type ReplicaType = "chief" | "master" | "worker" | "ps" | "evaluator";

/** How a cluster trains. */
export type Strategy = "single" | "all-reduce" | "parameter-server";

/** One replica of the cluster: its type, index and `host:port`. */
export interface Replica {
  readonly type: ReplicaType;
  readonly index: number;
  readonly address: string;
}

export interface TfTask {
  readonly type: ReplicaType;
  readonly index: number;
  /** This replica's `host:port` from the cluster spec. */
  readonly address: string;
  /** Training replicas (chief/master + worker) in the cluster. */
  readonly numTrainingReplicas: number;
  /** The replica that writes checkpoints, summaries and the exported model (training rank 0). */
  readonly isChief: boolean;
  readonly strategy: Strategy;
  /** Training replicas in rank order: chief/master, then workers by index. */
  readonly trainers: readonly Replica[];
  /** This replica's rank among {@link trainers}; undefined on a parameter server. */
  readonly rank: number | undefined;
  /** Parameter servers by index. */
  readonly ps: readonly Replica[];
  readonly cluster: Readonly<Record<string, readonly string[]>>;
}

const TYPES: readonly ReplicaType[] = ["chief", "master", "worker", "ps", "evaluator"];

/** `replica` as messages name it: `worker #1 (host:port)`. */
export function replicaName(r: Replica): string {
  return `${r.type} #${r.index} (${r.address})`;
}

/** `host:port` with a port in 1–65535; the host a DNS name, IPv4 or bracketed IPv6. */
function checkAddress(key: string, a: string): void {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(a);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new TfConfigError(`${key} is ${JSON.stringify(a)}: expected "host:port" with a port in 1–65535, as the Training Operator writes it (e.g. "job-worker-0.ns.svc:2222")`);
  }
}

/**
 * Parses `TF_CONFIG` (the raw environment value). Unset or empty means a single local process
 * and returns `undefined`. Throws {@link TfConfigError} naming the key, the value and the fix
 * for malformed JSON, unknown replica types, bad addresses, a task outside the cluster, and
 * inconsistent clusters (a chief and a master, two chiefs, PS without workers, evaluators,
 * one address for two replicas).
 */
export function parseTfConfig(raw: string | undefined): TfTask | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (e) {
    throw new TfConfigError(`TF_CONFIG is not valid JSON: ${(e as Error).message}; the Training Operator sets it, check the pod's env for an override`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new TfConfigError(`TF_CONFIG must be a JSON object; got ${raw.slice(0, 80)}`);
  const { cluster, task } = doc as { cluster?: unknown; task?: unknown };
  if (typeof cluster !== "object" || cluster === null || Array.isArray(cluster)) {
    throw new TfConfigError(`TF_CONFIG.cluster must be an object mapping replica types to address lists, like {"worker": ["w-0:2222"]}; got ${JSON.stringify(cluster)}`);
  }
  const clusterSpec: Record<string, string[]> = {};
  const seen = new Map<string, string>();
  for (const [type, addrs] of Object.entries(cluster)) {
    if (!TYPES.includes(type as ReplicaType)) {
      throw new TfConfigError(`TF_CONFIG.cluster.${type}: unknown replica type (expected one of ${TYPES.join(", ")})`);
    }
    if (!Array.isArray(addrs) || !addrs.every((a) => typeof a === "string")) {
      throw new TfConfigError(`TF_CONFIG.cluster.${type} must be an array of "host:port" strings; got ${JSON.stringify(addrs)}`);
    }
    addrs.forEach((a, i) => {
      const key = `TF_CONFIG.cluster.${type}[${i}]`;
      checkAddress(key, a);
      const other = seen.get(a);
      if (other) throw new TfConfigError(`${key} is ${JSON.stringify(a)}, the same address as ${other}; every replica needs its own host:port`);
      seen.set(a, key);
    });
    clusterSpec[type] = addrs;
  }
  if (typeof task !== "object" || task === null) throw new TfConfigError(`TF_CONFIG.task must be an object like {"type": "worker", "index": 0}; got ${JSON.stringify(task)}`);
  const { type, index } = task as { type?: unknown; index?: unknown };
  if (typeof type !== "string" || !TYPES.includes(type as ReplicaType)) {
    throw new TfConfigError(`TF_CONFIG.task.type must be one of ${TYPES.join(", ")}; got ${JSON.stringify(type)}`);
  }
  const idx = index ?? 0;
  if (typeof idx !== "number" || !Number.isInteger(idx) || idx < 0) {
    throw new TfConfigError(`TF_CONFIG.task.index must be a non-negative integer; got ${JSON.stringify(index)}`);
  }
  const members = clusterSpec[type] ?? [];
  if (idx >= members.length) {
    throw new TfConfigError(`TF_CONFIG.task is ${type} #${idx} but cluster.${type} lists ${members.length} address(es); the task must be one of the cluster's replicas`);
  }

  const nChief = clusterSpec.chief?.length ?? 0;
  const nMaster = clusterSpec.master?.length ?? 0;
  if (nChief > 0 && nMaster > 0) {
    throw new TfConfigError(`TF_CONFIG.cluster has both chief (${nChief}) and master (${nMaster}) replicas; they are the same role: keep one of them in the TFJob`);
  }
  if (nChief + nMaster > 1) {
    const key = nChief ? "chief" : "master";
    throw new TfConfigError(
      `TF_CONFIG.cluster.${key} lists ${nChief + nMaster} replicas; a TFJob has at most one ${key === "chief" ? "Chief" : "Master"}: set its replicas to 1 and add Workers instead`,
    );
  }
  const mk = (t: ReplicaType) => (clusterSpec[t] ?? []).map((address, i) => ({ type: t, index: i, address }));
  const trainers = [...mk("chief"), ...mk("master"), ...mk("worker")];
  const ps = mk("ps");
  if (trainers.length === 0) {
    throw new TfConfigError("TF_CONFIG.cluster has no chief, master or worker replica: nothing would train; add a Chief or Worker replica to the TFJob");
  }
  if ((clusterSpec.evaluator?.length ?? 0) > 0) {
    throw new TfConfigError(
      `TF_CONFIG.cluster.evaluator lists ${clusterSpec.evaluator!.length} replica(s): this trainer evaluates on the chief (validation and test sets); remove the Evaluator replica from the TFJob`,
    );
  }
  const strategy: Strategy = ps.length > 0 ? "parameter-server" : trainers.length > 1 ? "all-reduce" : "single";
  const self = { type: type as ReplicaType, index: idx, address: members[idx]! };
  const rank = self.type === "ps" ? undefined : trainers.findIndex((t) => t.type === self.type && t.index === self.index);
  return {
    ...self,
    numTrainingReplicas: trainers.length,
    isChief: rank === 0,
    strategy,
    trainers,
    rank,
    ps,
    cluster: clusterSpec,
  };
}
