/**
 * Experiment for keras-compare.ts (variant `tfjs-tuned`), not used by the trainer: a cheaper
 * `Step` kernel for the native backend.
 *
 * Why: tfjs computes the gradient of every ReLU as `dy · step(y)` (tfjs-core's Relu gradient
 * and its fused conv2d/matMul gradients). tfjs-node 4.22 implements `Step` with six
 * TensorFlow ops, two of them `Fill`s of the whole activation shape (`ones(x.shape)`,
 * `fill(x.shape, alpha)`); on the MNIST CNN that one kernel was ~25% of a training step
 * (tf.profile: 8.3 of ~35 ms for the [64, 26, 26, 32] activation). For `alpha = 0` (ReLU)
 * on float32 the same values come from `Select(IsNan(x), x, Cast(Greater(x, 0)))`: four ops,
 * no fills, NaN still propagated. Other cases go to the original kernel.
 */
import { createTensorsTypeOpAttr } from "@tensorflow/tfjs-node/dist/nodejs_kernel_backend";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { tf, type Tensor } from "../src/tf";

interface NativeBackend {
  executeSingleOutput(name: string, attrs: unknown[], inputs: TensorInfo[]): Tensor;
  binding: { TF_ATTR_TYPE: number; TF_ATTR_BOOL: number; TF_BOOL: number; TF_FLOAT: number };
}

/** Replaces the `tensorflow` backend's Step kernel; returns a function that restores the original. */
export function installFastStepKernel(): () => void {
  const original = tf.getKernel("Step", "tensorflow");
  if (!original) throw new Error("no Step kernel for the tensorflow backend: is tfjs-node loaded?");
  const kernelFunc = ((args: Parameters<KernelFunc>[0]) => {
    const x = args.inputs.x as Tensor;
    const alpha = (args.attrs?.alpha as number | undefined) ?? 0;
    if (alpha !== 0 || x.dtype !== "float32") return original.kernelFunc(args);
    const be = args.backend as unknown as NativeBackend;
    const { TF_ATTR_TYPE, TF_ATTR_BOOL, TF_BOOL, TF_FLOAT } = be.binding;
    const T = createTensorsTypeOpAttr("T", "float32");
    const zero = tf.scalar(0);
    const positive = be.executeSingleOutput("Greater", [T], [x, zero]);
    const cast = [
      { name: "SrcT", type: TF_ATTR_TYPE, value: TF_BOOL },
      { name: "DstT", type: TF_ATTR_TYPE, value: TF_FLOAT },
      { name: "Truncate", type: TF_ATTR_BOOL, value: false },
    ];
    const steps = be.executeSingleOutput("Cast", cast, [positive]);
    const nan = be.executeSingleOutput("IsNan", [T], [x]);
    const out = be.executeSingleOutput("Select", [T], [nan, x, steps]);
    tf.dispose([zero, positive, steps, nan]);
    return out;
  }) as KernelFunc;
  tf.unregisterKernel("Step", "tensorflow");
  tf.registerKernel({ kernelName: "Step", backendName: "tensorflow", kernelFunc } as KernelConfig);
  return () => {
    tf.unregisterKernel("Step", "tensorflow");
    tf.registerKernel(original);
  };
}
