/**
 * `npm run dataset -- mnist` against a real MinIO on 127.0.0.1: the IDX files land where the
 * MNIST WorkflowTemplate reads them, with the credentials from the stack's outputs; bad usage
 * is refused before anything is uploaded.
 */
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetOptions, uploadMnist } from "../../scripts/dataset";
import { UsageError } from "../../scripts/submit";
import { parseIdx } from "../../trainer/src/data/idx";
import { startLocal, stopLocal } from "../integration/support";

describe("npm run dataset -- mnist", () => {
  it("refuses bad usage with the reason", () => {
    const bad: [string[], RegExp][] = [
      [[], /expected the dataset name "mnist"/],
      [["cifar"], /expected the dataset name "mnist"/],
      [["mnist", "--to", "data/mnist"], /--to must be s3:\/\/BUCKET\/PREFIX/],
      [["mnist", "--train-examples", "9000", "--test-examples", "2000"], /must be ≤ 10000/],
      [["mnist", "--test-examples", "1.5"], /--test-examples must be an integer ≥ 10/],
      [["mnist", "--endpoint", "minio:9000"], /--endpoint must be an http\(s\):\/\/ URL/],
      [["mnist", "--stack", "dev", "--outputs-file", "o.json"], /exclude each other/],
      [["mnist", "--bucket", "x"], /Unknown option '--bucket'/],
    ];
    for (const [args, why] of bad) expect(() => parseDatasetOptions(args), args.join(" ")).toThrow(why);
    expect(() => parseDatasetOptions(["cifar"])).toThrow(UsageError);
    expect(parseDatasetOptions(["mnist", "--to", "s3://data/runs/mnist-1/"])).toMatchObject({ bucket: "data", prefix: "runs/mnist-1", trainExamples: 8000, testExamples: 2000, stack: "dev" });
  });

  describe("against MinIO", () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-dataset-"));
    let vars: Record<string, string>;
    beforeAll(() => {
      vars = startLocal(path.join(work, "minio"), "minio");
    }, 120_000);
    afterAll(() => {
      stopLocal(path.join(work, "minio"));
      fs.rmSync(work, { recursive: true, force: true });
    });

    it("uploads train and held-out IDX files with the stack's credentials; a wrong key fails naming the endpoint", { timeout: 120_000 }, async () => {
      const outputsFile = path.join(work, "outputs.json");
      fs.writeFileSync(outputsFile, JSON.stringify({ objectStoreEndpoint: "http://minio.invalid:9000", objectStoreAccessKeyId: vars.AWS_ACCESS_KEY_ID, objectStoreSecretAccessKey: vars.AWS_SECRET_ACCESS_KEY }));
      const lines: string[] = [];
      const o = parseDatasetOptions(["mnist", "--endpoint", vars.MINIO_ENDPOINT!, "--outputs-file", outputsFile, "--train-examples", "300", "--test-examples", "100"]);
      if (o === "help") throw new Error("help");
      const r = await uploadMnist(o, (l) => lines.push(l));
      expect(r.files).toEqual(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"].map((n) => `s3://data/mnist/${n}`));
      expect(lines.join("\n")).toContain("300 training and 100 held-out digits");

      const s3 = new S3Client({ endpoint: vars.MINIO_ENDPOINT, forcePathStyle: true, region: "us-east-1", credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! } });
      try {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: "data", Prefix: "mnist/" }));
        expect(listed.Contents?.map((c) => c.Key).sort()).toEqual(r.files.map((f) => f.replace("s3://data/", "")));
        const get = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: key }))).Body!.transformToByteArray());
        expect(parseIdx(await get("mnist/train-images-idx3-ubyte"), "train").dims).toEqual([300, 28, 28]);
        expect(parseIdx(await get("mnist/t10k-labels-idx1-ubyte"), "t10k").dims).toEqual([100]);
      } finally {
        s3.destroy();
      }

      fs.writeFileSync(outputsFile, JSON.stringify({ objectStoreEndpoint: "x", objectStoreAccessKeyId: "nobody", objectStoreSecretAccessKey: "wrong-secret-key" }));
      await expect(uploadMnist({ ...o, prefix: "other" }, () => {})).rejects.toThrow(new RegExp(`endpoint ${vars.MINIO_ENDPOINT!.replace(/[.:/]/g, "\\$&")}`));
    });
  });
});
