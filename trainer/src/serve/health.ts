/**
 * The state behind `grpc.health.v1.Health`: one status per service name ("" is the
 * server as a whole). SERVING once every configured model has an AVAILABLE version or
 * nothing published yet (see `ModelManager.ready`); NOT_SERVING before that and from the
 * moment shutdown begins.
 */
import type { HealthCheckResponse } from "./protos";

export type HealthStatus = HealthCheckResponse["status"];

export class HealthState {
  private readonly statuses = new Map<string, HealthStatus>();
  private readonly watchers = new Set<(service: string, status: HealthStatus) => void>();

  constructor(readonly services: readonly string[]) {
    for (const s of ["", ...services]) this.statuses.set(s, "NOT_SERVING");
  }

  /** The status of a service, or undefined for a name we do not serve. */
  get(service: string): HealthStatus | undefined {
    return this.statuses.get(service);
  }

  /** Sets every service's status and tells the watchers of those that changed. */
  setAll(status: HealthStatus): void {
    for (const [s, old] of this.statuses) {
      if (old === status) continue;
      this.statuses.set(s, status);
      for (const w of this.watchers) w(s, status);
    }
  }

  /** Calls `fn` on every change until the returned function is called. */
  watch(fn: (service: string, status: HealthStatus) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }
}
