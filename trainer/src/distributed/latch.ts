/**
 * The first failure of a distributed run, kept so that every later call fails with the same
 * error (the one naming the lost replica), and pending waits end at once.
 */
export class FailureLatch {
  private failure: Error | undefined;
  private readonly listeners = new Set<(e: Error) => void>();

  get error(): Error | undefined {
    return this.failure;
  }

  /** Records `e` unless a failure is already recorded; returns the recorded one. */
  fail(e: Error): Error {
    if (!this.failure) {
      this.failure = e;
      for (const l of [...this.listeners]) l(e);
      this.listeners.clear();
    }
    return this.failure;
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** `p`, or the failure if one is recorded first. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const l = (e: Error) => reject(e);
      this.listeners.add(l);
      p.then(
        (v) => {
          this.listeners.delete(l);
          resolve(v);
        },
        (e: unknown) => {
          this.listeners.delete(l);
          reject(e);
        },
      );
    });
  }
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
