import { describe, expect, it } from "vitest";
import { TfConfigError } from "../src/errors";
import { parseTfConfig } from "../src/train/tfconfig";

const cfg = (cluster: object, task: object) => JSON.stringify({ cluster, task });

describe("parseTfConfig", () => {
  it("treats unset or empty as a local run", () => {
    expect(parseTfConfig(undefined)).toBeUndefined();
    expect(parseTfConfig("  ")).toBeUndefined();
  });

  it("accepts a single chief, master or worker", () => {
    expect(parseTfConfig(cfg({ chief: ["a:2222"] }, { type: "chief", index: 0 }))).toMatchObject({ type: "chief", isChief: true, numTrainingReplicas: 1 });
    expect(parseTfConfig(cfg({ master: ["a:2222"] }, { type: "master", index: 0 }))).toMatchObject({ type: "master", isChief: true });
    expect(parseTfConfig(cfg({ worker: ["w:2222"] }, { type: "worker", index: 0 }))).toMatchObject({ type: "worker", isChief: true });
  });

  it("refuses multi-worker clusters with a message saying how to fix the TFJob", () => {
    const raw = cfg({ chief: ["c:1"], worker: ["w0:1", "w1:1"] }, { type: "worker", index: 1 });
    expect(() => parseTfConfig(raw)).toThrow(TfConfigError);
    expect(() => parseTfConfig(raw)).toThrow(/3 training replicas \(chief\/master: 1, worker: 2\).*exactly one Chief/);
  });

  it("refuses parameter servers and evaluators", () => {
    expect(() => parseTfConfig(cfg({ worker: ["w:1"], ps: ["p:1"] }, { type: "worker", index: 0 }))).toThrow(/parameter-server/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"], evaluator: ["e:1"] }, { type: "evaluator", index: 0 }))).toThrow(/evaluator/);
  });

  it("names the problem in malformed documents", () => {
    expect(() => parseTfConfig("{nope")).toThrow(/TF_CONFIG is not valid JSON/);
    expect(() => parseTfConfig(cfg({ boss: ["b:1"] }, { type: "chief", index: 0 }))).toThrow(/TF_CONFIG.cluster.boss: unknown replica type/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"] }, { type: "worker", index: 3 }))).toThrow(/worker #3 but cluster.worker lists 1/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"] }, { type: "driver" }))).toThrow(/task.type must be one of/);
    expect(() => parseTfConfig(JSON.stringify({ cluster: { worker: "w:1" }, task: { type: "worker" } }))).toThrow(/must be an array/);
  });
});
