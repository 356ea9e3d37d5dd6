/**
 * Distributed training from `TF_CONFIG`: the reducer a training replica uses, the parameter
 * server a PS replica runs, and the command-line flags both commands share.
 */
import type { CommandIo } from "../commands/command";
import { UsageError } from "../errors";
import { parseTfConfig } from "../train/tfconfig";
import type { Reducer } from "../train/reducer";
import { replicaName, type TfTask } from "../train/tfconfig";
import { choiceFlag, floatFlag } from "../util/args";
import { AllReduceChief, AllReduceWorker, type ClusterTiming } from "./allreduce";
import { ParameterServer, PsTrainer, type PsMode } from "./ps";

export { ReplicaLostError, ReplicaMismatchError } from "./errors";

export interface DistributedOptions extends ClusterTiming {
  readonly psMode: PsMode;
}

/** The flags, declared once for `train-mnist` and `retrain`. */
export const DISTRIBUTED_FLAGS = {
  "replica-timeout": { type: "string" },
  "startup-timeout": { type: "string" },
  "ps-mode": { type: "string" },
} as const;

export const DISTRIBUTED_USAGE = `Distributed (TF_CONFIG from a TFJob: chief/master + workers → synchronous all-reduce;
with PS replicas → parameter servers; the chief checkpoints, logs and publishes)
  --replica-timeout <s>      a replica that sends nothing for this long within a step is
                             lost: every replica stops with an error naming it (default 60)
  --startup-timeout <s>      how long replicas wait for each other to start (default 600)
  --ps-mode <sync|async>     parameter-server updates (default sync)`;

export function parseDistributedFlags(f: Partial<Record<keyof typeof DISTRIBUTED_FLAGS, string>>): DistributedOptions {
  return {
    timeoutMs: 1000 * (floatFlag("replica-timeout", f["replica-timeout"], 0.1, 86_400) ?? 60),
    startupTimeoutMs: 1000 * (floatFlag("startup-timeout", f["startup-timeout"], 0.1, 86_400) ?? 600),
    psMode: choiceFlag("ps-mode", f["ps-mode"], ["sync", "async"] as const, "sync"),
  };
}

export const DEFAULT_DISTRIBUTED: DistributedOptions = { timeoutMs: 60_000, startupTimeoutMs: 600_000, psMode: "sync" };

/** The reducer of a training replica, or undefined for a single-replica (local) run. */
export async function createReducer(task: TfTask | undefined, opts: DistributedOptions, log: (m: string) => void): Promise<Reducer | undefined> {
  if (!task || task.strategy === "single") return undefined;
  if (task.rank === undefined) throw new UsageError(`${replicaName(task)} is a parameter server: it serves variables and trains nothing`);
  if (task.strategy === "parameter-server") return new PsTrainer(task.trainers, task.ps, task.rank, opts.psMode, opts, log);
  return task.rank === 0 ? AllReduceChief.listen(task.trainers, opts, log) : new AllReduceWorker(task.trainers, task.rank, opts, log);
}

/** Runs this PS replica until every training replica is done (resolves) or one is lost (rejects, naming it). */
export async function runParameterServer(task: TfTask, opts: DistributedOptions, log: (m: string) => void): Promise<void> {
  const ps = await ParameterServer.listen(task, task.trainers, opts.psMode, opts, log);
  log(`${replicaName(task)}: parameter server for ${task.trainers.length} training replica(s), ${opts.psMode}`);
  await ps.completion;
}

/**
 * For the training commands: if `TF_CONFIG` makes this process a parameter server, serve
 * until training ends (true; the command exits 0) or a replica is lost (throws, exit 1).
 */
export async function servedAsParameterServer(io: CommandIo, opts: DistributedOptions): Promise<boolean> {
  const task = parseTfConfig(io.env.TF_CONFIG);
  if (task?.type !== "ps") return false;
  await runParameterServer(task, opts, (m) => io.stderr.write(`${m}\n`));
  io.stdout.write(`${JSON.stringify({ replica: replicaName(task), published: false })}\n`);
  return true;
}
