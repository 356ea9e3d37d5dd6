"""Keras side of keras-compare.ts: trains the MNIST CNN of trainer/src/model/mnist.ts (same
layers, sizes, initialisers, optimizer, loss and batch size) on the IDX files the parent wrote,
and prints one JSON line with the measured throughput.

    python keras_mnist.py --data DIR --batch-size 64 --warmup 25 --steps 100 --seed 42

Timing: a Keras callback records the time at the end of every batch; the throughput is
`steps · batch size / (end of the last timed batch − end of the last warm-up batch)`, so the
tf.function tracing of the first steps is excluded exactly as the tfjs side excludes its
warm-up steps. The callback also makes Keras hand over each batch's logs as Python numbers,
the same per-step synchronisation the trainer's loop does with `dataSync()`.

Run by keras-compare.ts in the venv of scripts/setup-python-tf.sh.
"""
import argparse
import json
import math
import os
import platform
import struct
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def read_idx(path):
    """Reads an uncompressed uint8 IDX file (magic 0x00000803 images or 0x00000801 labels)."""
    with open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte"))
    # Same input as src/data/tensors.ts: float32 [b, 28, 28, 1] in [0, 1], one-hot float32 labels.
    x = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    y = tf.keras.utils.to_categorical(labels, 10).astype(np.float32)
    return x, y


def create_model(seed, hidden_units=128, dropout=0.25, filters=(32, 64)):
    """The layers of createMnistModel() in trainer/src/model/mnist.ts, one for one."""
    L = tf.keras.layers
    seeds = iter(range(seed, seed + 10))
    init = lambda: tf.keras.initializers.GlorotUniform(seed=next(seeds))  # noqa: E731
    inputs = tf.keras.Input(shape=(28, 28, 1), name="images")
    x = L.Conv2D(filters[0], 3, activation="relu", kernel_initializer=init(), name="conv1")(inputs)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(filters[1], 3, activation="relu", kernel_initializer=init(), name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(hidden_units, activation="relu", kernel_initializer=init(), name="hidden")(x)
    if dropout > 0:
        x = L.Dropout(dropout, name="dropout")(x)
    outputs = L.Dense(10, activation="softmax", kernel_initializer=init(), name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name="mnist_cnn")


class BatchClock(tf.keras.callbacks.Callback):
    """Time at the end of each batch; stops training after `total` batches."""

    def __init__(self, total):
        super().__init__()
        self.total = total
        self.ends = []
        self.cpu = []  # process CPU time (all threads) at the same moments
        self.last_logs = {}

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.last_logs = dict(logs or {})
        if len(self.ends) >= self.total:
            self.model.stop_training = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=25)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--learning-rate", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    t_start = time.perf_counter()
    tf.keras.utils.set_random_seed(args.seed)
    x, y = load(args.data, "train")
    x_test, y_test = load(args.data, "t10k")
    model = create_model(args.seed)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=args.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    total = args.warmup + args.steps
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    clock = BatchClock(total)
    # The last batch of an epoch may be smaller; the count below uses the real sizes.
    model.fit(x, y, batch_size=args.batch_size, epochs=math.ceil(total / steps_per_epoch), shuffle=True, verbose=0, callbacks=[clock])
    sizes = [min(args.batch_size, len(x) - (i % steps_per_epoch) * args.batch_size) for i in range(total)]
    seconds = clock.ends[total - 1] - clock.ends[args.warmup - 1]
    examples = sum(sizes[args.warmup : total])
    cpu_seconds = clock.cpu[total - 1] - clock.cpu[args.warmup - 1]
    _, test_acc = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(
        json.dumps(
            {
                "framework": "keras",
                "imagesPerSec": examples / seconds,
                "timedSteps": args.steps,
                "warmupSteps": args.warmup,
                "batchSize": args.batch_size,
                "timedSeconds": seconds,
                "cpuSeconds": cpu_seconds,
                "imagesPerCpuSecond": examples / cpu_seconds,
                "setupSeconds": clock.ends[0] - t_start,
                "trainLoss": float(clock.last_logs.get("loss", float("nan"))),
                "testAccuracy": float(test_acc),
                "testExamples": int(len(x_test)),
                "versions": {
                    "python": platform.python_version(),
                    "tensorflow": tf.__version__,
                    "keras": tf.keras.__version__,
                    "numpy": np.__version__,
                },
                "threads": {
                    "intraOp": tf.config.threading.get_intra_op_parallelism_threads(),
                    "interOp": tf.config.threading.get_inter_op_parallelism_threads(),
                },
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
