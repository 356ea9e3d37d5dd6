/**
 * `npm run dataset -- mnist` and `-- images` against a real MinIO on 127.0.0.1: the IDX files
 * land where the MNIST WorkflowTemplate reads them, a labelled image folder under
 * PREFIX/<label>/<file> (again only what changed), with the credentials from the stack's
 * outputs; bad usage and folders retrain would refuse are refused before anything is uploaded.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetOptions, uploadImages, uploadMnist, type ImagesOptions, type MnistOptions } from "../../scripts/dataset";
import { UsageError } from "../../scripts/submit";
import { parseIdx } from "../../trainer/src/data/idx";
import { writeColourImages } from "../../trainer/tests/fixtures/base-models";
import { startLocal, stopLocal } from "../integration/support";

/** The parsed options of `args`, which must be a `kind` upload. */
function parsed<K extends "mnist" | "images">(kind: K, args: string[]): K extends "images" ? ImagesOptions : MnistOptions {
  const o = parseDatasetOptions([kind, ...args]);
  if (o === "help" || (o.kind ?? "mnist") !== kind) throw new Error(`not a ${kind} upload: ${JSON.stringify(o)}`);
  return o as K extends "images" ? ImagesOptions : MnistOptions;
}

describe("npm run dataset", () => {
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
      [["images"], /images needs --from DIR/],
      [["images", "--from", "x", "--train-examples", "200"], /--train-examples is for mnist only/],
      [["images", "--from", "x", "--to", "s3://data"], /--to must be s3:\/\/BUCKET\/PREFIX/],
      [["images", "mnist", "--from", "x"], /expected the dataset name "mnist" or "images"/],
    ];
    for (const [args, why] of bad) expect(() => parseDatasetOptions(args), args.join(" ")).toThrow(why);
    expect(() => parseDatasetOptions(["cifar"])).toThrow(UsageError);
    expect(parseDatasetOptions(["mnist", "--to", "s3://data/runs/mnist-1/"])).toMatchObject({
      bucket: "data",
      prefix: "runs/mnist-1",
      trainExamples: 8000,
      testExamples: 2000,
      stack: "dev",
    });
    expect(parseDatasetOptions(["images", "--from", "photos"])).toEqual({
      kind: "images",
      from: path.resolve("photos"),
      bucket: "data",
      prefix: "images",
      stack: "dev",
      endpoint: undefined,
      outputsFile: undefined,
    });
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
      fs.writeFileSync(
        outputsFile,
        JSON.stringify({
          objectStoreEndpoint: "http://minio.invalid:9000",
          objectStoreAccessKeyId: vars.AWS_ACCESS_KEY_ID,
          objectStoreSecretAccessKey: vars.AWS_SECRET_ACCESS_KEY,
        }),
      );
      const lines: string[] = [];
      const o = parsed("mnist", ["--endpoint", vars.MINIO_ENDPOINT!, "--outputs-file", outputsFile, "--train-examples", "300", "--test-examples", "100"]);
      const r = await uploadMnist(o, (l) => lines.push(l));
      expect(r.files).toEqual(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"].map((n) => `s3://data/mnist/${n}`));
      expect(lines.join("\n")).toContain("300 training and 100 held-out digits");

      const s3 = new S3Client({
        endpoint: vars.MINIO_ENDPOINT,
        forcePathStyle: true,
        region: "us-east-1",
        credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! },
      });
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

    it(
      "images: uploads <label>/<file> under the prefix with progress; a rerun uploads nothing, then only what changed; objects not in the folder are reported",
      { timeout: 120_000 },
      async () => {
        const folder = path.join(work, "colours");
        await writeColourImages(folder, 5);
        fs.writeFileSync(path.join(folder, "red", "notes.txt"), "not an image: not uploaded");
        const outputsFile = path.join(work, "outputs-images.json");
        fs.writeFileSync(
          outputsFile,
          JSON.stringify({
            objectStoreEndpoint: "http://minio.invalid:9000",
            objectStoreAccessKeyId: vars.AWS_ACCESS_KEY_ID,
            objectStoreSecretAccessKey: vars.AWS_SECRET_ACCESS_KEY,
          }),
        );
        const o = parsed("images", ["--from", folder, "--to", "s3://data/photos/colours", "--endpoint", vars.MINIO_ENDPOINT!, "--outputs-file", outputsFile]);
        const images = ["blue", "green", "red"].flatMap((l) => [0, 1, 2, 3, 4].map((n) => `${l}/${n}.png`)).sort();

        const lines: string[] = [];
        const first = await uploadImages(o, (l) => lines.push(l), 0);
        expect(first).toMatchObject({ labels: ["blue", "green", "red"], files: 15, uploaded: 15, skipped: 0, extra: [] });
        expect(lines[0]).toMatch(/^dataset: .*colours: 3 labels \(blue, green, red\), 15 images, /);
        expect(lines.filter((l) => /^dataset: \d+ of 15 files \(/.test(l))).toHaveLength(15);
        expect(lines.at(-1)).toMatch(/^dataset: 15 of 15 files \(.* uploaded, 0 already there\)$/);

        const s3 = new S3Client({
          endpoint: vars.MINIO_ENDPOINT,
          forcePathStyle: true,
          region: "us-east-1",
          credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! },
        });
        const get = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: key }))).Body!.transformToByteArray());
        try {
          const listed = await s3.send(new ListObjectsV2Command({ Bucket: "data", Prefix: "photos/colours/" }));
          expect(listed.Contents?.map((c) => c.Key).sort()).toEqual(images.map((f) => `photos/colours/${f}`));
          for (const f of images) {
            const local = fs.readFileSync(path.join(folder, f));
            expect((await get(`photos/colours/${f}`)).equals(local), f).toBe(true);
          }
          const head = await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "photos/colours/red/0.png" }));
          expect(head.ContentType).toBe("image/png");
          expect(head.ETag).toBe(
            `"${createHash("md5")
              .update(fs.readFileSync(path.join(folder, "red", "0.png")))
              .digest("hex")}"`,
          );

          expect(await uploadImages(o, () => {})).toMatchObject({ files: 15, uploaded: 0, skipped: 15, extra: [] });

          // A changed image of the same size as before is found by its MD5.
          const red0 = fs.readFileSync(path.join(folder, "red", "0.png"));
          const changed = Buffer.from(red0.map((b, i) => (i === red0.length - 20 ? b ^ 0xff : b)));
          fs.writeFileSync(path.join(folder, "red", "0.png"), changed);
          await s3.send(new PutObjectCommand({ Bucket: "data", Key: "photos/colours/old/x.png", Body: "an image removed from the folder" }));
          const warned: string[] = [];
          expect(await uploadImages(o, (l) => warned.push(l))).toMatchObject({
            files: 15,
            uploaded: 1,
            uploadedBytes: changed.length,
            skipped: 14,
            extra: ["photos/colours/old/x.png"],
          });
          expect((await get("photos/colours/red/0.png")).equals(changed)).toBe(true);
          expect(warned.join("\n")).toContain("dataset: warning: 1 objects under s3://data/photos/colours are not in");
          expect(warned.join("\n")).toContain("s3://data/photos/colours/old/x.png");
          await s3.send(new DeleteObjectCommand({ Bucket: "data", Key: "photos/colours/old/x.png" }));
        } finally {
          s3.destroy();
        }

        fs.writeFileSync(outputsFile, JSON.stringify({ objectStoreEndpoint: "x", objectStoreAccessKeyId: "nobody", objectStoreSecretAccessKey: "wrong-secret-key" }));
        await expect(uploadImages(o, () => {})).rejects.toThrow(new RegExp(`^s3://data/photos/colours: .*\\(endpoint ${vars.MINIO_ENDPOINT!.replace(/[.:/]/g, "\\$&")}\\)$`));
      },
    );

    it("images: refuses, before connecting, a folder with fewer than two labels, a label without images, or no folder at all", async () => {
      const write = (rel: string): void => {
        fs.mkdirSync(rel.endsWith("/") ? path.join(work, rel) : path.dirname(path.join(work, rel)), { recursive: true });
        if (!rel.endsWith("/")) fs.writeFileSync(path.join(work, rel), "x");
      };
      for (const f of ["one/red/0.png", "empty/red/0.png", "empty/green/", "empty/green/readme.txt", "none/a/", "none/b/"]) write(f);
      // Nothing is listening here, and there is no outputs file: only a check made before connecting can answer.
      const o = parsed("images", ["--from", "unused", "--endpoint", "http://127.0.0.1:1", "--outputs-file", path.join(work, "no-such-outputs.json")]);
      const refuse = (from: string) => uploadImages({ ...o, from: path.join(work, from) }, () => {});
      await expect(refuse("one")).rejects.toThrow(`--from ${path.join(work, "one")}: needs at least two label directories (<root>/<label>/*.jpg); found 1`);
      await expect(refuse("empty")).rejects.toThrow(new RegExp(`^--from ${path.join(work, "empty", "green").replace(/[.:/-]/g, "\\$&")}: no images \\(\\.jpg, \\.jpeg, \\.png`));
      await expect(refuse("none")).rejects.toThrow(`--from ${path.join(work, "none", "a")}: no images`);
      await expect(refuse("missing")).rejects.toThrow(`--from ${path.join(work, "missing")}: cannot list the image folder: ENOENT`);
    });
  });
});
