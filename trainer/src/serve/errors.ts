/**
 * One error type for everything a request can get wrong, carrying the canonical code (the
 * gRPC status code; TF Serving's `tensorflow.error.Code` has the same numbers). REST maps
 * the code to an HTTP status the way TF Serving does.
 */
import { status as GrpcStatus } from "@grpc/grpc-js";

export { GrpcStatus };
export type Code = GrpcStatus;

/** A failure with a code a client can act on; the message is safe to send to the client. */
export class ServingError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    /** REST status when it should differ from the code's usual one (413 for a huge body). */
    readonly httpStatus?: number,
  ) {
    super(message);
    this.name = "ServingError";
  }
}

export const invalidArgument = (msg: string): ServingError => new ServingError(GrpcStatus.INVALID_ARGUMENT, msg);
export const notFound = (msg: string): ServingError => new ServingError(GrpcStatus.NOT_FOUND, msg);
export const failedPrecondition = (msg: string): ServingError => new ServingError(GrpcStatus.FAILED_PRECONDITION, msg);
export const resourceExhausted = (msg: string): ServingError => new ServingError(GrpcStatus.RESOURCE_EXHAUSTED, msg);
export const unavailable = (msg: string): ServingError => new ServingError(GrpcStatus.UNAVAILABLE, msg);
export const deadlineExceeded = (msg: string): ServingError => new ServingError(GrpcStatus.DEADLINE_EXCEEDED, msg);
export const cancelled = (msg: string): ServingError => new ServingError(GrpcStatus.CANCELLED, msg);

/** What clients see for a bug on our side; the details go to the server log only. */
export const GENERIC_INTERNAL_MESSAGE = "Internal error while serving the request; see the server log";

/** HTTP status for a canonical code, as TF Serving's REST API maps them. */
export function httpStatusFor(code: Code): number {
  switch (code) {
    case GrpcStatus.OK:
      return 200;
    case GrpcStatus.CANCELLED:
      return 499;
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.OUT_OF_RANGE:
      return 400;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 504;
    case GrpcStatus.NOT_FOUND:
      return 404;
    case GrpcStatus.ALREADY_EXISTS:
    case GrpcStatus.ABORTED:
      return 409;
    case GrpcStatus.PERMISSION_DENIED:
      return 403;
    case GrpcStatus.UNAUTHENTICATED:
      return 401;
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 429;
    case GrpcStatus.UNIMPLEMENTED:
      return 501;
    case GrpcStatus.UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

/** Canonical name of a code (`INVALID_ARGUMENT`), used in metrics and model status JSON. */
export function codeName(code: Code): string {
  return GrpcStatus[code] ?? "UNKNOWN";
}
