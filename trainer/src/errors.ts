/**
 * Error classes per failure kind. The CLI prints `message` (which always says what failed
 * and where) and exits with `exitCode`; anything else is a bug and gets a stack trace.
 */

/** Base class of the errors the CLI reports without a stack trace. */
export class MlpError extends Error {
  /** Process exit code the CLI uses for this failure. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad command line: unknown flag, missing or malformed value. Exit code 2. */
export class UsageError extends MlpError {
  override readonly exitCode = 2;
}

/** A data file is missing, unreadable, or not in the expected format. */
export class DataError extends MlpError {}

/** A data source (local directory or S3 bucket) could not be reached or read. */
export class SourceError extends MlpError {}

/** `TF_CONFIG` is malformed or describes a cluster this trainer does not support. */
export class TfConfigError extends MlpError {}

/** A checkpoint could not be written, read, or does not match the current run. */
export class CheckpointError extends MlpError {}

/** Publishing a model version failed (nothing was published). */
export class ExportError extends MlpError {}

/** A download (of a base model) failed or was interrupted; nothing was cached. */
export class FetchError extends MlpError {}

/** Downloaded content does not have the expected sha256; nothing was cached. */
export class DigestMismatchError extends FetchError {}

/** Training ran but the result is unusable (NaN loss, accuracy below the required minimum). */
export class TrainingError extends MlpError {}

/** Formats an unknown thrown value's message for inclusion in another message. */
export function describeError(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code && !e.message.includes(code) ? `${code}: ${e.message}` : e.message || e.name;
  }
  return String(e);
}
