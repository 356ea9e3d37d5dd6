import { describe, expect, it } from "vitest";
import { TfConfigError } from "../src/errors";
import { parseTfConfig } from "../src/train/tfconfig";

const cfg = (cluster: object, task: object) => JSON.stringify({ cluster, task, environment: "cloud" });
/** A TFJob's TF_CONFIG: names as the Training Operator writes them. */
const host = (job: string, type: string, i: number) => `${job}-${type}-${i}.team.svc:2222`;

describe("parseTfConfig", () => {
  it("treats unset or empty as a local run", () => {
    expect(parseTfConfig(undefined)).toBeUndefined();
    expect(parseTfConfig("  ")).toBeUndefined();
  });

  it("runs a single chief, master or worker locally", () => {
    expect(parseTfConfig(cfg({ chief: ["a:2222"] }, { type: "chief", index: 0 }))).toMatchObject({
      type: "chief",
      isChief: true,
      numTrainingReplicas: 1,
      strategy: "single",
      rank: 0,
    });
    expect(parseTfConfig(cfg({ master: ["a:2222"] }, { type: "master", index: 0 }))).toMatchObject({ type: "master", isChief: true, strategy: "single" });
    expect(parseTfConfig(cfg({ worker: ["w:2222"] }, { type: "worker", index: 0 }))).toMatchObject({ type: "worker", isChief: true, strategy: "single" });
  });

  it("ranks chief first, then workers: all-reduce, the chief is rank 0", () => {
    const cluster = { chief: [host("mnist", "chief", 0)], worker: [0, 1].map((i) => host("mnist", "worker", i)) };
    const w1 = parseTfConfig(cfg(cluster, { type: "worker", index: 1 }))!;
    expect(w1).toMatchObject({ strategy: "all-reduce", rank: 2, isChief: false, numTrainingReplicas: 3, address: "mnist-worker-1.team.svc:2222" });
    expect(w1.trainers.map((t) => `${t.type}${t.index}`)).toEqual(["chief0", "worker0", "worker1"]);
    expect(parseTfConfig(cfg(cluster, { type: "chief", index: 0 }))).toMatchObject({ rank: 0, isChief: true });
    // Without a chief, worker 0 is the chief.
    const workers = { worker: [0, 1].map((i) => host("j", "worker", i)) };
    expect(parseTfConfig(cfg(workers, { type: "worker", index: 0 }))).toMatchObject({ rank: 0, isChief: true, strategy: "all-reduce" });
    expect(parseTfConfig(cfg(workers, { type: "worker", index: 1 }))).toMatchObject({ rank: 1, isChief: false });
  });

  it("parameter servers: the walkthroughs' 2 PS + 4 workers and 1 PS + 2 workers", () => {
    const cluster = { ps: [0, 1].map((i) => host("dist", "ps", i)), worker: [0, 1, 2, 3].map((i) => host("dist", "worker", i)) };
    const ps1 = parseTfConfig(cfg(cluster, { type: "ps", index: 1 }))!;
    expect(ps1).toMatchObject({ strategy: "parameter-server", rank: undefined, isChief: false, numTrainingReplicas: 4 });
    expect(ps1.ps.map((p) => p.address)).toEqual(cluster.ps);
    expect(parseTfConfig(cfg(cluster, { type: "worker", index: 0 }))).toMatchObject({ strategy: "parameter-server", rank: 0, isChief: true });
    const small = { ps: [host("d", "ps", 0)], worker: [0, 1].map((i) => host("d", "worker", i)), chief: [host("d", "chief", 0)] };
    expect(parseTfConfig(cfg(small, { type: "chief", index: 0 }))).toMatchObject({ strategy: "parameter-server", rank: 0, numTrainingReplicas: 3 });
  });

  it("refuses inconsistent clusters, naming the key, the value and the fix", () => {
    const bad = (cluster: object, task: object) => () => parseTfConfig(cfg(cluster, task));
    expect(bad({ chief: ["c:1"], master: ["m:1"] }, { type: "chief", index: 0 })).toThrow(/both chief \(1\) and master \(1\).*keep one of them/);
    expect(bad({ chief: ["c:1", "d:1"] }, { type: "chief", index: 0 })).toThrow(/TF_CONFIG.cluster.chief lists 2 replicas; a TFJob has at most one Chief/);
    expect(bad({ ps: ["p:1"] }, { type: "ps", index: 0 })).toThrow(/no chief, master or worker replica: nothing would train/);
    expect(bad({ worker: ["w:1"], evaluator: ["e:1"] }, { type: "worker", index: 0 })).toThrow(/cluster.evaluator lists 1.*remove the Evaluator/);
    expect(bad({ worker: ["w:1", "w:1"] }, { type: "worker", index: 0 })).toThrow(/TF_CONFIG.cluster.worker\[1\] is "w:1", the same address as TF_CONFIG.cluster.worker\[0\]/);
    expect(bad({ worker: ["w0"] }, { type: "worker", index: 0 })).toThrow(/TF_CONFIG.cluster.worker\[0\] is "w0": expected "host:port"/);
    expect(bad({ worker: ["w:99999"] }, { type: "worker", index: 0 })).toThrow(/port in 1–65535/);
    for (const e of [bad({ worker: ["w0"] }, { type: "worker" }), bad({ chief: ["c:1", "d:1"] }, { type: "chief" })]) expect(e).toThrow(TfConfigError);
  });

  it("names the problem in malformed documents", () => {
    expect(() => parseTfConfig("{nope")).toThrow(/TF_CONFIG is not valid JSON/);
    expect(() => parseTfConfig("[1]")).toThrow(/TF_CONFIG must be a JSON object/);
    expect(() => parseTfConfig(cfg({ boss: ["b:1"] }, { type: "chief", index: 0 }))).toThrow(/TF_CONFIG.cluster.boss: unknown replica type/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"] }, { type: "worker", index: 3 }))).toThrow(/worker #3 but cluster.worker lists 1/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"] }, { type: "worker", index: -1 }))).toThrow(/task.index must be a non-negative integer; got -1/);
    expect(() => parseTfConfig(cfg({ worker: ["w:1"] }, { type: "driver" }))).toThrow(/task.type must be one of/);
    expect(() => parseTfConfig(JSON.stringify({ cluster: { worker: "w:1" }, task: { type: "worker" } }))).toThrow(/must be an array/);
    expect(() => parseTfConfig(JSON.stringify({ task: { type: "worker" } }))).toThrow(/TF_CONFIG.cluster must be an object/);
  });
});
