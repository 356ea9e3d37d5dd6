/**
 * Training progress: a redrawn bar with rate and ETA on a terminal, plain lines (one every
 * `lineEverySteps` steps or `lineEveryMs`, whichever comes first) when output goes to a log.
 */

export interface ProgressStream {
  write(s: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressUpdate {
  readonly step: number;
  readonly loss?: number;
  readonly accuracy?: number;
}

export type ProgressMode = "auto" | "bar" | "lines" | "none";

export interface ProgressOptions {
  readonly total: number;
  /** Step the run starts from (a resumed run counts its rate from there). Default 0. */
  readonly startStep?: number;
  /** Examples per step, to report images/s. */
  readonly examplesPerStep?: number;
  readonly mode?: ProgressMode;
  readonly lineEverySteps?: number;
  readonly lineEveryMs?: number;
  /** Injectable clock (ms) for tests. */
  readonly now?: () => number;
}

/** `95` → `1:35`, `3725` → `1:02:05`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export class Progress {
  private readonly mode: Exclude<ProgressMode, "auto">;
  private readonly now: () => number;
  private readonly t0: number;
  private readonly start: number;
  private lastDraw = -Infinity;
  private lastLineStep: number;
  private lastLineTime: number;

  constructor(
    private readonly out: ProgressStream,
    private readonly opts: ProgressOptions,
  ) {
    const mode = opts.mode ?? "auto";
    this.mode = mode === "auto" ? (out.isTTY ? "bar" : "lines") : mode;
    this.now = opts.now ?? (() => performance.now());
    this.t0 = this.now();
    this.start = opts.startStep ?? 0;
    this.lastLineStep = this.start;
    this.lastLineTime = this.t0;
  }

  /** Seconds since start, steps/s and ETA for `step`. */
  stats(step: number): { elapsed: number; stepsPerSec: number; eta: number } {
    const elapsed = (this.now() - this.t0) / 1000;
    const done = step - this.start;
    const stepsPerSec = elapsed > 0 ? done / elapsed : 0;
    const eta = stepsPerSec > 0 ? (this.opts.total - step) / stepsPerSec : NaN;
    return { elapsed, stepsPerSec, eta };
  }

  private describe(u: ProgressUpdate): string {
    const { stepsPerSec, eta } = this.stats(u.step);
    const parts: string[] = [];
    if (u.loss !== undefined) parts.push(`loss ${u.loss.toFixed(4)}`);
    if (u.accuracy !== undefined) parts.push(`acc ${u.accuracy.toFixed(4)}`);
    if (this.opts.examplesPerStep) parts.push(`${Math.round(stepsPerSec * this.opts.examplesPerStep)} img/s`);
    parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join("  ");
  }

  update(u: ProgressUpdate): void {
    if (this.mode === "none") return;
    const t = this.now();
    const last = u.step >= this.opts.total;
    if (this.mode === "bar") {
      if (!last && t - this.lastDraw < 100) return;
      this.lastDraw = t;
      const total = this.opts.total;
      const frac = total > 0 ? Math.min(1, u.step / total) : 1;
      const width = Math.max(10, Math.min(30, (this.out.columns ?? 80) - 70));
      const filled = Math.round(frac * width);
      const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? (frac >= 1 ? "=" : ">") : "") + " ".repeat(width - filled);
      this.out.write(`\r[${bar}] ${u.step}/${total} ${Math.floor(frac * 100)}%  ${this.describe(u)}\x1b[K`);
      if (last) this.out.write("\n");
      return;
    }
    const every = this.opts.lineEverySteps ?? 50;
    const everyMs = this.opts.lineEveryMs ?? 10_000;
    if (last || u.step - this.lastLineStep >= every || t - this.lastLineTime >= everyMs) {
      this.lastLineStep = u.step;
      this.lastLineTime = t;
      const pct = this.opts.total > 0 ? Math.floor((100 * u.step) / this.opts.total) : 100;
      this.out.write(`step ${u.step}/${this.opts.total} (${pct}%)  ${this.describe(u)}\n`);
    }
  }

  /** A message that does not break the bar (the bar is redrawn on the next update). */
  log(message: string): void {
    this.out.write(this.mode === "bar" ? `\r\x1b[K${message}\n` : `${message}\n`);
  }
}
