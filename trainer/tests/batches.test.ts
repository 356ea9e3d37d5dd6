import { describe, expect, it } from "vitest";
import { BatchIterator, splitTrainValidation } from "../src/data/batches";
import { Rng } from "../src/util/rng";

describe("splitTrainValidation", () => {
  it("partitions all indices, disjointly, with the requested validation share", () => {
    const { train, validation } = splitTrainValidation(1000, 0.15, 7);
    expect(validation.length).toBe(150);
    expect(train.length).toBe(850);
    const all = new Set([...train, ...validation]);
    expect(all.size).toBe(1000);
    const v = new Set(validation);
    expect(train.some((i) => v.has(i))).toBe(false);
  });

  it("is deterministic per seed and differs across seeds", () => {
    expect(splitTrainValidation(100, 0.2, 1).validation).toEqual(splitTrainValidation(100, 0.2, 1).validation);
    expect(splitTrainValidation(100, 0.2, 1).validation).not.toEqual(splitTrainValidation(100, 0.2, 2).validation);
  });

  it("rejects fractions outside [0, 1)", () => {
    expect(() => splitTrainValidation(10, 1, 1)).toThrow(RangeError);
    expect(() => splitTrainValidation(10, -0.1, 1)).toThrow(RangeError);
  });
});

describe("BatchIterator", () => {
  it("visits every training index once per epoch and never a validation index", () => {
    const { train, validation } = splitTrainValidation(103, 0.1, 3);
    const it = new BatchIterator(train, 10, 5);
    const held = new Set(validation);
    for (let epoch = 0; epoch < 3; epoch++) {
      const seen: number[] = [];
      for (let s = 0; s < it.stepsPerEpoch; s++) seen.push(...it.next());
      expect(seen.some((i) => held.has(i))).toBe(false);
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from(train));
    }
  });

  it("reshuffles each epoch", () => {
    const idx = Uint32Array.from({ length: 50 }, (_, i) => i);
    const it = new BatchIterator(idx, 50, 1);
    expect(Array.from(it.next())).not.toEqual(Array.from(it.next()));
  });

  it("continues the same sequence from a saved position", () => {
    const idx = Uint32Array.from({ length: 37 }, (_, i) => i);
    const a = new BatchIterator(idx, 8, 11);
    for (let s = 0; s < 13; s++) a.next();
    const b = new BatchIterator(idx, 8, 11, JSON.parse(JSON.stringify(a.position)));
    for (let s = 0; s < 20; s++) expect(Array.from(b.next())).toEqual(Array.from(a.next()));
  });
});

describe("Rng", () => {
  it("continues from its state", () => {
    const r = new Rng(99);
    r.next();
    const copy = new Rng(r.state);
    expect([r.next(), r.next()]).toEqual([copy.next(), copy.next()]);
  });
});
