import { tf, type LayersModel } from "../tf";

/** Options of {@link createMnistModel}; every field has a default. */
export interface MnistModelOptions {
  /** Input image height and width. Default 28×28. */
  readonly height?: number;
  readonly width?: number;
  /** Number of classes (size of the softmax). Default 10. */
  readonly numClasses?: number;
  /** Filters of the two convolution layers. Default [32, 64]. */
  readonly filters?: readonly [number, number];
  /** Units of the fully connected hidden layer. Default 128. */
  readonly hiddenUnits?: number;
  /** Dropout rate before the output layer (0 disables). Default 0.25. */
  readonly dropout?: number;
  /** Seed for the weight initialisers, for reproducible runs. Default: unseeded. */
  readonly seed?: number;
}

/** Name of the model's input layer, which is also the serving signature's input tensor name. */
export const MNIST_INPUT_NAME = "images";
/** Name of the output layer, which is also the serving signature's output tensor name. */
export const MNIST_OUTPUT_NAME = "probabilities";

/**
 * A small CNN for greyscale digits: conv(3×3) → maxpool → conv(3×3) → maxpool → dense → softmax.
 * Input `images` float32 `[b, height, width, 1]` in [0, 1]; output `probabilities` float32
 * `[b, numClasses]`. Returned uncompiled (the training loop brings its own optimizer).
 */
export function createMnistModel(opts: MnistModelOptions = {}): LayersModel {
  const height = opts.height ?? 28;
  const width = opts.width ?? 28;
  const numClasses = opts.numClasses ?? 10;
  const [f1, f2] = opts.filters ?? [32, 64];
  const hiddenUnits = opts.hiddenUnits ?? 128;
  const dropout = opts.dropout ?? 0.25;
  if (!Number.isInteger(hiddenUnits) || hiddenUnits < 1) throw new RangeError(`hiddenUnits must be a positive integer; got ${hiddenUnits}`);
  if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`dropout must be in [0, 1); got ${dropout}`);
  let seed = opts.seed;
  const init = () => tf.initializers.glorotUniform(seed === undefined ? {} : { seed: seed++ });

  const input = tf.input({ shape: [height, width, 1], name: MNIST_INPUT_NAME });
  let x = tf.layers.conv2d({ name: "conv1", filters: f1, kernelSize: 3, activation: "relu", kernelInitializer: init() }).apply(input);
  x = tf.layers.maxPooling2d({ name: "pool1", poolSize: 2 }).apply(x);
  x = tf.layers.conv2d({ name: "conv2", filters: f2, kernelSize: 3, activation: "relu", kernelInitializer: init() }).apply(x);
  x = tf.layers.maxPooling2d({ name: "pool2", poolSize: 2 }).apply(x);
  x = tf.layers.flatten({ name: "flatten" }).apply(x);
  x = tf.layers.dense({ name: "hidden", units: hiddenUnits, activation: "relu", kernelInitializer: init() }).apply(x);
  if (dropout > 0) x = tf.layers.dropout({ name: "dropout", rate: dropout }).apply(x);
  const output = tf.layers.dense({ name: MNIST_OUTPUT_NAME, units: numClasses, activation: "softmax", kernelInitializer: init() }).apply(x) as ReturnType<typeof tf.input>;
  return tf.model({ name: "mnist_cnn", inputs: input, outputs: output });
}
