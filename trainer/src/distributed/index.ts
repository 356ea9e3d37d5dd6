/**
 * Distributed training from `TF_CONFIG`: the reducer a training replica uses, the parameter
 * server a PS replica runs, and the command-line flags both commands share.
 */
import type { CommandIo } from "../commands/command";
import { UsageError } from "../errors";
import { parseTfConfig } from "../train/tfconfig";
import type { Reducer } from "../train/reducer";
import { replicaName, type TfTask } from "../train/tfconfig";
import { defineFlags, type FlagValues } from "../util/flags";
import { AllReduceChief, AllReduceWorker, type ClusterTiming } from "./allreduce";
import { ParameterServer, PsTrainer, type PsMode } from "./ps";

export { ReplicaLostError, ReplicaMismatchError } from "./errors";

export interface DistributedOptions extends ClusterTiming {
  readonly psMode: PsMode;
}

/** The flags, declared once for `train-mnist` and `retrain` (spread into their tables). */
export const DISTRIBUTED_FLAGS = defineFlags({
  "replica-timeout": {
    kind: "float",
    min: 0.1,
    max: 86_400,
    default: 60,
    arg: "<s>",
    help: "a replica that sends nothing for this long within a step is lost: every replica stops with an error naming it",
    section: `Distributed (TF_CONFIG from a TFJob: chief/master + workers → synchronous all-reduce;
with PS replicas → parameter servers; the chief checkpoints, logs and publishes)`,
  },
  "startup-timeout": { kind: "float", min: 0.1, max: 86_400, default: 600, arg: "<s>", help: "how long replicas wait for each other to start" },
  "ps-mode": { kind: "choice", choices: ["sync", "async"], default: "sync", help: "parameter-server updates" },
});

/** The options of the `DISTRIBUTED_FLAGS` values. */
export function distributedOptions(f: FlagValues<typeof DISTRIBUTED_FLAGS>): DistributedOptions {
  return { timeoutMs: 1000 * f["replica-timeout"], startupTimeoutMs: 1000 * f["startup-timeout"], psMode: f["ps-mode"] };
}

/** The flags' defaults, for callers that do not parse a command line (tests, benchmarks). */
export const DEFAULT_DISTRIBUTED: DistributedOptions = distributedOptions({
  "replica-timeout": DISTRIBUTED_FLAGS["replica-timeout"].default,
  "startup-timeout": DISTRIBUTED_FLAGS["startup-timeout"].default,
  "ps-mode": DISTRIBUTED_FLAGS["ps-mode"].default,
});

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
