/**
 * Picks the TensorFlow.js backend for serving. `MLP_TFJS_BACKEND` (the variable the
 * trainer's `src/tf.ts` reads too):
 *
 *   unset / auto  `@tensorflow/tfjs-node` when its native addon loads, else the pure-JS
 *                 `@tensorflow/tfjs` CPU backend with a loud warning (same API and results,
 *                 much slower on big models)
 *   node          `@tensorflow/tfjs-node`; a missing addon is fatal
 *   gpu           `@tensorflow/tfjs-node-gpu` (the GPU trainer image); fatal if missing
 *   js            the pure-JS backend (tests comparing backends, machines without the addon)
 *
 * Unlike `src/tf.ts`, loading happens on the first call, not at import time, so the
 * server can start (slowly) where the native addon is not installed.
 */
import type * as TF from "@tensorflow/tfjs";

export type Tf = typeof TF;

export interface LoadedBackend {
  readonly tf: Tf;
  readonly package: "tfjs-node" | "tfjs-node-gpu" | "tfjs";
  /** Why the native backend is not in use, when it is not. */
  readonly fallbackReason?: string;
}

let loaded: LoadedBackend | undefined;

/* eslint-disable @typescript-eslint/no-require-imports */
/** Loads the backend once; `log` receives the fallback warning. */
export function loadBackend(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): LoadedBackend {
  if (loaded) return loaded;
  const wanted = process.env.MLP_TFJS_BACKEND || "auto";
  if (!["auto", "node", "gpu", "js"].includes(wanted)) {
    throw new Error(`MLP_TFJS_BACKEND must be auto, node, gpu or js; got ${JSON.stringify(wanted)}`);
  }
  process.env.TF_CPP_MIN_LOG_LEVEL ??= "1";
  if (wanted === "gpu") {
    loaded = { tf: require("@tensorflow/tfjs-node-gpu") as Tf, package: "tfjs-node-gpu" };
    return loaded;
  }
  let reason = "MLP_TFJS_BACKEND=js";
  if (wanted !== "js") {
    try {
      loaded = { tf: require("@tensorflow/tfjs-node") as Tf, package: "tfjs-node" };
      return loaded;
    } catch (err) {
      reason = (err as Error).message.split("\n")[0] ?? String(err);
      if (wanted === "node") throw new Error(`MLP_TFJS_BACKEND=node but @tensorflow/tfjs-node does not load: ${reason}`, { cause: err });
    }
  }
  const tf = require("@tensorflow/tfjs") as Tf;
  if (wanted !== "js") {
    log(`WARNING: @tensorflow/tfjs-node is not usable, serving on the pure-JS CPU backend (slow). Reason: ${reason}`);
  }
  loaded = { tf, package: "tfjs", fallbackReason: reason };
  return loaded;
}
/* eslint-enable @typescript-eslint/no-require-imports */

/** The tf namespace of {@link loadBackend}. */
export function loadTf(): Tf {
  return loadBackend().tf;
}
