// Checks that @tensorflow/tfjs-node loads its native backend and trains one step of a
// small Conv2D model. Run from the repository root: `node scripts/tfjs-native/verify.js`.
// Exits non-zero with the reason when anything is off.
"use strict";
const path = require("node:path");

const trainerDir = path.resolve(__dirname, "..", "..", "trainer");
process.env.TF_CPP_MIN_LOG_LEVEL ??= "1"; // hide TensorFlow's INFO lines
const tf = require(require.resolve("@tensorflow/tfjs-node", { paths: [trainerDir] }));

function fail(msg) {
  console.error(`verify: ${msg}`);
  process.exit(1);
}

(async () => {
  if (tf.getBackend() !== "tensorflow") fail(`backend is ${tf.getBackend()}, want tensorflow`);
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 4, kernelSize: 3, activation: "relu" }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: "softmax" }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(0.01), loss: "categoricalCrossentropy" });
  const xs = tf.randomUniform([8, 28, 28, 1]);
  const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32"), 10);
  const before = model.getWeights()[0].dataSync().slice();
  const loss = await model.trainOnBatch(xs, ys);
  const after = model.getWeights()[0].dataSync();
  if (!Number.isFinite(loss)) fail(`training step gave loss ${loss}`);
  if (before.every((v, i) => v === after[i])) fail("training step left the Conv2D kernel unchanged");
  console.log(
    JSON.stringify({
      backend: tf.getBackend(),
      tfjs: tf.version.tfjs,
      tfjsNode: tf.version["tfjs-node"],
      libtensorflow: tf.backend().binding.TF_Version,
      conv2dTrainStepLoss: Number(loss.toFixed(4)),
    }),
  );
})().catch((e) => fail(e && e.stack ? e.stack : String(e)));
