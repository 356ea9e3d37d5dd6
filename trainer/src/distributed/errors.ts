import { MlpError } from "../errors";

/**
 * Another replica of the TFJob died, hung or stopped: this one stops too (exit 1), so the
 * TFJob's restart policy restarts the job, which resumes from the chief's last checkpoint.
 * The message names the lost replica.
 */
export class ReplicaLostError extends MlpError {}

/** Replicas disagree on the run's settings (their TFJob replica specs differ). */
export class ReplicaMismatchError extends MlpError {}
