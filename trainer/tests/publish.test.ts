import { promises as fs } from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExportError } from "../src/errors";
import { nextVersion, publishModelVersion, type MetadataInput } from "../src/export/publish";
import { parseMetadata } from "../src/metadata";
import { createMnistModel } from "../src/model/mnist";
import { tf, type LayersModel } from "../src/tf";
import { list, tempDir } from "./fixtures/tmp";

const metadata: MetadataInput = {
  modelType: "layers",
  signatures: {
    serving_default: {
      methodName: "tensorflow/serving/predict",
      inputs: { images: { dtype: "float32", shape: [-1, 28, 28, 1] } },
      outputs: { probabilities: { dtype: "float32", shape: [-1, 10] } },
    },
  },
  labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  metrics: { testAccuracy: 0.5 },
};

describe("publishModelVersion", () => {
  let base: string;
  let cleanup: () => Promise<void>;
  let model: LayersModel;
  beforeEach(async () => {
    ({ dir: base, cleanup } = await tempDir("publish"));
    model = createMnistModel({ hiddenUnits: 8, filters: [2, 2], seed: 1 });
  });
  afterEach(async () => {
    model.dispose();
    await cleanup();
  });

  it("writes model, metadata and labels as version 1, then 2", async () => {
    const now = () => new Date("2026-01-02T03:04:05Z");
    const v1 = await publishModelVersion({ modelBase: base, name: "mnist", model, metadata, now });
    expect(v1).toEqual({ version: 1, dir: path.join(base, "mnist", "1") });
    expect((await list(v1.dir)).sort()).toEqual(["labels.txt", "metadata.json", "model.json", "weights.bin"]);
    const doc = parseMetadata("m", JSON.parse(await fs.readFile(path.join(v1.dir, "metadata.json"), "utf8")));
    expect(doc).toMatchObject({ format: "mlplatform.model/v1", name: "mnist", version: 1, createdAt: "2026-01-02T03:04:05.000Z" });
    expect((await fs.readFile(path.join(v1.dir, "labels.txt"), "utf8")).split("\n")[9]).toBe("9");
    const loaded = await tf.loadLayersModel(`file://${path.join(v1.dir, "model.json")}`);
    expect(loaded.outputs[0]!.shape).toEqual([null, 10]);
    loaded.dispose();
    expect((await publishModelVersion({ modelBase: base, name: "mnist", model, metadata })).version).toBe(2);
  });

  it("takes one more than the highest integer directory and ignores the rest", async () => {
    for (const d of ["1", "7", "latest", ".tmp-publish-1-x", "08"]) await fs.mkdir(path.join(base, "m", d), { recursive: true });
    expect(await nextVersion(path.join(base, "m"))).toBe(8);
    expect(await nextVersion(path.join(base, "none"))).toBe(1);
  });

  it("gives concurrent publishers distinct versions", async () => {
    const results = await Promise.all([1, 2, 3].map(() => publishModelVersion({ modelBase: base, name: "mnist", model, metadata })));
    expect(results.map((r) => r.version).sort()).toEqual([1, 2, 3]);
    for (const r of results) {
      const doc = JSON.parse(await fs.readFile(path.join(r.dir, "metadata.json"), "utf8")) as { version: number };
      expect(doc.version).toBe(r.version);
    }
    expect((await list(path.join(base, "mnist"))).sort()).toEqual(["1", "2", "3"]);
  });

  it("publishes nothing and leaves no temporary directory when saving fails", async () => {
    const broken = { save: async () => Promise.reject(new Error("disk full")) } as unknown as LayersModel;
    const err = await publishModelVersion({ modelBase: base, name: "mnist", model: broken, metadata }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExportError);
    expect((err as Error).message).toBe(`${path.join(base, "mnist")}: cannot publish a new version: disk full`);
    expect(await list(path.join(base, "mnist"))).toEqual([]);
  });

  it("refuses invalid metadata and bad names before publishing", async () => {
    const bad = { ...metadata, signatures: {} };
    await expect(publishModelVersion({ modelBase: base, name: "mnist", model, metadata: bad })).rejects.toThrow(/signatures must name at least one/);
    await expect(publishModelVersion({ modelBase: base, name: "../evil", model, metadata })).rejects.toThrow(/model name must match/);
    expect(await list(path.join(base, "mnist"))).toEqual([]);
  });
});
