import { describe, expect, it } from "vitest";
import { createMnistModel, MNIST_INPUT_NAME, MNIST_OUTPUT_NAME } from "../src/model/mnist";
import { tf, type Tensor } from "../src/tf";

describe("createMnistModel", () => {
  it("runs on the native backend", () => {
    expect(tf.getBackend()).toBe("tensorflow");
  });

  it("maps [b,28,28,1] images to [b,10] probabilities, uncompiled, with named ends", () => {
    const model = createMnistModel({ seed: 1 });
    expect(model.optimizer).toBeUndefined();
    expect(model.inputs[0]!.name).toBe(MNIST_INPUT_NAME);
    expect(model.outputs[0]!.name.startsWith(MNIST_OUTPUT_NAME)).toBe(true);
    const before = tf.memory().numTensors;
    let shape: number[] = [];
    let sums: number[] = [];
    tf.tidy(() => {
      const out = model.predict(tf.zeros([3, 28, 28, 1])) as Tensor;
      shape = out.shape;
      sums = Array.from(out.sum(-1).dataSync());
    });
    expect(shape).toEqual([3, 10]);
    expect(tf.memory().numTensors).toBe(before);
    for (const s of sums) expect(s).toBeCloseTo(1, 5);
    model.dispose();
  });

  it("takes the hidden layer width, class count and image size as options", () => {
    const model = createMnistModel({ hiddenUnits: 16, numClasses: 3, height: 20, width: 20, dropout: 0 });
    expect(model.getLayer("hidden").outputShape).toEqual([null, 16]);
    expect(model.outputs[0]!.shape).toEqual([null, 3]);
    expect(model.layers.some((l) => l.name === "dropout")).toBe(false);
    model.dispose();
    expect(() => createMnistModel({ hiddenUnits: 0 })).toThrow(/hiddenUnits/);
  });

  it("is reproducible with a seed", () => {
    const a = createMnistModel({ seed: 5 });
    const b = createMnistModel({ seed: 5 });
    expect(Array.from(a.getWeights()[0]!.dataSync())).toEqual(Array.from(b.getWeights()[0]!.dataSync()));
    a.dispose();
    b.dispose();
  });
});
