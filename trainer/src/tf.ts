/**
 * The one place that loads TensorFlow.js with its native backend. Everything else imports
 * `tf` from here, so the GPU build can be chosen at run time without code changes:
 * `MLP_TFJS_BACKEND=gpu` loads `@tensorflow/tfjs-node-gpu` (the trainer image installs it),
 * anything else `@tensorflow/tfjs-node`.
 *
 * TensorFlow's C++ INFO lines (oneDNN, CPU feature notes) are hidden unless
 * `TF_CPP_MIN_LOG_LEVEL` is set explicitly.
 */
import { MlpError } from "./errors";

type Tfjs = typeof import("@tensorflow/tfjs-node");

/** The native TensorFlow backend could not be loaded. */
export class NativeBackendError extends MlpError {}

function load(): Tfjs {
  process.env.TF_CPP_MIN_LOG_LEVEL ??= "1";
  const gpu = process.env.MLP_TFJS_BACKEND === "gpu";
  const pkg = gpu ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(pkg) as Tfjs;
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0]! : String(e);
    if ((e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && msg.includes(pkg)) {
      throw new NativeBackendError(`${gpu ? "MLP_TFJS_BACKEND=gpu, but " : ""}${pkg} is not installed`);
    }
    // tfjs-node's own advice ("npm rebuild") downloads from the internet; ours does not.
    throw new NativeBackendError(`${pkg} cannot load its native TensorFlow backend (${msg}); run scripts/setup-tfjs-native.sh from the repository root`, { cause: e });
  }
}

export const tf: Tfjs = load();
export type { Tensor, Tensor1D, Tensor2D, Tensor4D, LayersModel, Optimizer, Scalar, Variable } from "@tensorflow/tfjs-node";
