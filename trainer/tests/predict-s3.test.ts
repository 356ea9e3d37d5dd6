import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { localInput } from "../src/commands/predict";
import { encodeIdxUint8 } from "../src/data/idx";
import { startFakeS3, type FakeS3 } from "./fixtures/fake-s3";

describe("mlp predict inputs from the object store", () => {
  let s3: FakeS3 | undefined;
  const saved = { ...process.env };
  afterEach(async () => {
    await s3?.close();
    s3 = undefined;
    process.env = { ...saved };
  });

  it("fetches an s3:// IDX file (with the .gz fallback) into a temporary file; local paths pass through", async () => {
    const idx = encodeIdxUint8([1, 2, 2], Uint8Array.of(0, 255, 9, 7));
    s3 = await startFakeS3({ data: { "mnist/t10k-images-idx3-ubyte.gz": gzipSync(idx) } });
    Object.assign(process.env, { AWS_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s", AWS_REGION: "us-east-1" });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "predict-s3-"));
    try {
      const file = await localInput("s3://data/mnist/t10k-images-idx3-ubyte", async () => tmp);
      expect(path.dirname(file)).toBe(tmp);
      expect(path.basename(file)).toBe("t10k-images-idx3-ubyte.gz");
      expect(fs.readFileSync(file)).toEqual(gzipSync(idx));
      expect(s3.requests).toContain("GET /data/mnist/t10k-images-idx3-ubyte.gz");
      expect(await localInput("/some/local/file.png", async () => tmp)).toBe("/some/local/file.png");
      await expect(localInput("s3://data/mnist/missing", async () => tmp)).rejects.toThrow(/s3:\/\/data\/mnist\/missing/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
