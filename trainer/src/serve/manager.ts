/**
 * The versions of one model: which to load (the version policy), loading and unloading
 * them as they appear and disappear in storage, and handing out leases to requests.
 *
 * Swaps never drop a request: a new version is loaded and marked AVAILABLE before any old
 * one is unloaded, and an unloading version is disposed only when the last request holding
 * a lease on it has finished. A version that fails to load is left out of the policy, so
 * the versions already serving stay until a loadable newer one appears.
 */
import { codeName, GrpcStatus, invalidArgument, notFound, type Code } from "./errors";
import { loadServable, type Servable } from "./servable";
import type { ModelStorage } from "./storage";
import type { Tf } from "./tf";

/** TF Serving's `model_version_policy`. */
export type VersionPolicy =
  { readonly kind: "latest"; readonly numVersions: number } | { readonly kind: "all" } | { readonly kind: "specific"; readonly versions: readonly number[] };

export const DEFAULT_VERSION_POLICY: VersionPolicy = { kind: "latest", numVersions: 1 };

export interface ModelConfig {
  /** The name clients use (`ModelSpec.name`, `/v1/models/{name}`). */
  readonly name: string;
  /** Where the version directories are (see `storage.ts`). */
  readonly basePath: string;
  /** Default: the latest 1 version. */
  readonly versionPolicy?: VersionPolicy;
  /** Version labels, e.g. `{ stable: 1, canary: 2 }` (`ModelSpec.version_label`). */
  readonly versionLabels?: Readonly<Record<string, number>>;
}

export type VersionState = "START" | "LOADING" | "AVAILABLE" | "UNLOADING" | "END";

/** One entry of GetModelStatus / `GET /v1/models/{name}`. */
export interface VersionStatus {
  readonly version: number;
  readonly state: VersionState;
  readonly errorCode: Code;
  readonly errorMessage: string;
}

/** A request's hold on a version: keeps it loaded until `release`. Release exactly once. */
export interface Lease {
  readonly servable: Servable;
  release(): void;
}

/** What a request asks for: a version, a label, or (neither) the latest. */
export interface VersionChoice {
  readonly version?: number;
  readonly label?: string;
}

interface VersionRecord {
  readonly version: number;
  state: VersionState;
  servable?: Servable;
  inflight: number;
  drained?: () => void;
  error?: { code: Code; message: string; at: number };
}

export interface ManagerEvents {
  log(line: string): void;
  /** Called after every state change (metrics, health). */
  onChange?(name: string, statuses: readonly VersionStatus[]): void;
  /** Called after every load attempt, with its outcome and duration (metrics). */
  onLoad?(name: string, version: number, ok: boolean, seconds: number): void;
}

/** Picks the versions a policy wants from those in storage (ascending in, ascending out). */
export function aspiredVersions(policy: VersionPolicy, available: readonly number[]): number[] {
  switch (policy.kind) {
    case "all":
      return [...available];
    case "latest":
      return available.slice(Math.max(0, available.length - policy.numVersions));
    case "specific":
      return available.filter((v) => policy.versions.includes(v));
  }
}

/** How many END records to keep for status per model (older ones are forgotten). */
const MAX_ENDED = 16;

export class ModelManager {
  readonly name: string;
  private currentPolicy: VersionPolicy;
  private labels: Record<string, number>;
  private readonly records = new Map<number, VersionRecord>();
  private reconciling: Promise<void> | undefined;
  /** Versions storage listed last time (undefined before the first successful listing). */
  private listed: readonly number[] | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly tf: Tf,
    readonly config: ModelConfig,
    private readonly storage: ModelStorage,
    private readonly events: ManagerEvents,
    /** A version that failed to load is tried again after this long. */
    private readonly retryFailedMs = 60_000,
  ) {
    this.name = config.name;
    this.currentPolicy = config.versionPolicy ?? DEFAULT_VERSION_POLICY;
    this.labels = { ...(config.versionLabels ?? {}) };
  }

  /** The version policy in force. */
  get policy(): VersionPolicy {
    return this.currentPolicy;
  }

  /**
   * Takes a new policy and labels (model config reload; the base path is fixed for a
   * manager). The next reconcile loads and unloads versions to match.
   */
  reconfigure(config: Pick<ModelConfig, "versionPolicy" | "versionLabels">): void {
    this.currentPolicy = config.versionPolicy ?? DEFAULT_VERSION_POLICY;
    this.labels = { ...(config.versionLabels ?? {}) };
  }

  /** Starts polling storage every `intervalMs` (after one immediate reconcile). */
  async start(intervalMs: number): Promise<void> {
    await this.reconcile();
    if (intervalMs > 0 && !this.stopped) {
      const tick = (): void => {
        this.timer = setTimeout(() => {
          void this.reconcile().finally(() => {
            if (!this.stopped) tick();
          });
        }, intervalMs);
        this.timer.unref();
      };
      tick();
    }
  }

  /**
   * One pass: list storage, load aspired versions not yet loaded (newest first), then
   * unload loaded versions no longer aspired. Concurrent calls share the pass under way.
   */
  reconcile(): Promise<void> {
    if (!this.reconciling) {
      this.reconciling = this.reconcileOnce().finally(() => {
        this.reconciling = undefined;
      });
    }
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped) return;
    let onDisk: number[];
    try {
      onDisk = await this.storage.listVersions();
      this.listed = onDisk;
    } catch (err) {
      this.events.log(`model ${this.name}: cannot list ${this.storage.location}: ${(err as Error).message}`);
      return;
    }
    // A version that fails to load leaves the policy, so the next pass aspires to the one
    // before it (latest:1 with a broken newest version serves the previous one at once).
    let aspired: number[] = [];
    for (let pass = 0; pass < 4; pass++) {
      const now = Date.now();
      const loadable = onDisk.filter((v) => {
        const r = this.records.get(v);
        return !(r?.error && now - r.error.at < this.retryFailedMs);
      });
      aspired = aspiredVersions(this.currentPolicy, loadable);
      let failed = false;
      for (const v of [...aspired].reverse()) {
        const r = this.records.get(v);
        if (r && (r.state === "AVAILABLE" || r.state === "LOADING")) continue;
        if (this.stopped) return;
        if (!(await this.load(v))) failed = true;
      }
      if (!failed) break;
    }
    // Availability first: only unload when every aspired version that could load has.
    const keep = new Set(aspired.filter((v) => this.records.get(v)?.state === "AVAILABLE"));
    if (keep.size === 0 && aspired.length > 0) return;
    for (const r of this.records.values()) {
      if (r.state === "AVAILABLE" && !keep.has(r.version)) void this.unload(r);
    }
  }

  /** Loads one version; false when it failed (recorded in its status). */
  private async load(version: number): Promise<boolean> {
    const r: VersionRecord = { version, state: "LOADING", inflight: 0 };
    this.records.set(version, r);
    this.changed();
    const t0 = Date.now();
    try {
      r.servable = await loadServable(this.tf, this.storage, this.name, version);
      if (this.stopped) {
        r.servable.dispose();
        r.servable = undefined;
        r.state = "END";
        return true;
      }
      r.state = "AVAILABLE";
      this.events.log(`model ${this.name}: version ${version} AVAILABLE (loaded in ${Date.now() - t0} ms)`);
      this.events.onLoad?.(this.name, version, true, (Date.now() - t0) / 1000);
      return true;
    } catch (err) {
      r.state = "END";
      r.error = { code: GrpcStatus.UNKNOWN, message: (err as Error).message, at: Date.now() };
      this.events.log(`model ${this.name}: version ${version} failed to load: ${(err as Error).message}`);
      this.events.onLoad?.(this.name, version, false, (Date.now() - t0) / 1000);
      return false;
    } finally {
      this.changed();
    }
  }

  /** Marks a version UNLOADING, waits for its leases to be released, then frees it. */
  private async unload(r: VersionRecord): Promise<void> {
    r.state = "UNLOADING";
    this.changed();
    if (r.inflight > 0) await new Promise<void>((resolve) => (r.drained = resolve));
    r.servable?.dispose();
    r.servable = undefined;
    r.state = "END";
    this.events.log(`model ${this.name}: version ${r.version} unloaded`);
    this.forgetOldEnded();
    this.changed();
  }

  private forgetOldEnded(): void {
    const ended = [...this.records.values()].filter((r) => r.state === "END").map((r) => r.version);
    ended.sort((a, b) => a - b);
    for (const v of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) this.records.delete(v);
  }

  private changed(): void {
    this.events.onChange?.(this.name, this.status());
  }

  /**
   * Whether this model lets the server report SERVING: a version is AVAILABLE, or storage
   * has been listed and holds no version yet (a model the pipelines have not published
   * must not keep the others from serving). Versions on disk that all failed to load do
   * not count as ready.
   */
  ready(): boolean {
    return this.latest() !== undefined || (this.listed !== undefined && this.listed.length === 0);
  }

  /** Highest AVAILABLE version, if any. */
  latest(): number | undefined {
    let best: number | undefined;
    for (const r of this.records.values()) if (r.state === "AVAILABLE" && (best === undefined || r.version > best)) best = r.version;
    return best;
  }

  /** Versions currently AVAILABLE, ascending. */
  availableVersions(): number[] {
    return [...this.records.values()]
      .filter((r) => r.state === "AVAILABLE")
      .map((r) => r.version)
      .sort((a, b) => a - b);
  }

  /** Replaces the version labels (config reload). */
  setLabels(labels: Readonly<Record<string, number>>): void {
    this.labels = { ...labels };
  }

  /** Version labels as configured. */
  versionLabels(): Readonly<Record<string, number>> {
    return this.labels;
  }

  /**
   * Resolves a choice to an AVAILABLE version and leases it. Errors as TF Serving words
   * them: NOT_FOUND "Servable not found for request: Specific(name, 3)", INVALID_ARGUMENT
   * for an unknown label.
   */
  acquire(choice: VersionChoice): Lease {
    let version: number | undefined;
    let request: string;
    if (choice.label !== undefined) {
      if (!Object.prototype.hasOwnProperty.call(this.labels, choice.label)) {
        throw invalidArgument(`Unrecognized servable version label: ${choice.label}`);
      }
      version = this.labels[choice.label];
      request = `Specific(${this.name}, ${version})`;
    } else if (choice.version !== undefined) {
      version = choice.version;
      request = `Specific(${this.name}, ${version})`;
    } else {
      version = this.latest();
      request = `Latest(${this.name})`;
    }
    const r = version === undefined ? undefined : this.records.get(version);
    if (!r || r.state !== "AVAILABLE" || !r.servable) throw notFound(`Servable not found for request: ${request}`);
    r.inflight++;
    let released = false;
    return {
      servable: r.servable,
      release: () => {
        if (released) return;
        released = true;
        r.inflight--;
        if (r.inflight === 0 && r.drained) {
          const d = r.drained;
          r.drained = undefined;
          d();
        }
      },
    };
  }

  /** All known versions, newest first (as TF Serving lists them). */
  status(): VersionStatus[] {
    return [...this.records.values()]
      .sort((a, b) => b.version - a.version)
      .map((r) => ({
        version: r.version,
        state: r.state,
        errorCode: r.error?.code ?? GrpcStatus.OK,
        errorMessage: r.error?.message ?? "",
      }));
  }

  /** Status of one version; NOT_FOUND as TF Serving words it. */
  versionStatus(version: number): VersionStatus {
    const s = this.status().find((v) => v.version === version);
    if (!s) throw notFound(`Could not find version ${version} of model ${this.name}`);
    return s;
  }

  /** Stops polling and unloads everything once in-flight requests are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.reconciling;
    await Promise.all([...this.records.values()].filter((r) => r.state === "AVAILABLE").map((r) => this.unload(r)));
  }
}

/** `"OK"`, `"UNKNOWN"`... as status JSON writes `error_code`. */
export const statusCodeName = codeName;
