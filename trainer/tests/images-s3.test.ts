/**
 * Labelled images in a real MinIO on 127.0.0.1: the incremental mirror retrain reads them
 * through (pipeline/mirror.ts) — first sync, no-change sync, changed/added/removed objects,
 * an interrupted download (a proxy cuts a response halfway), a killed sync's temporary files
 * — and `mlp retrain --images s3://…` end to end against the same images in a local folder,
 * with its error messages naming the URL.
 *
 * Skipped, saying why, when the minio binary is not installed (scripts/tools/build.sh minio).
 */
import { promises as fs } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli";
import { resolveS3Options } from "../src/data/source";
import { parseMetadata } from "../src/metadata";
import { isFolderImage } from "../src/pipeline/dataset";
import { S3Location } from "../src/pipeline/location";
import { MIRROR_MANIFEST, mirrorDir, mirrorPrefix, STALE_TEMP_MS, type MirrorProgress } from "../src/pipeline/mirror";
import { scanImageFolder } from "../src/retrain/folder";
import { writeColourImages, writeGraphModel } from "./fixtures/base-models";
import { closedPort } from "./fixtures/fake-s3";
import { haveMinio, minioClient, minioEnv, startMinio, stopMinio, TOOLS_BIN, uploadDir } from "./fixtures/minio";
import { captureIo, tempDir } from "./fixtures/tmp";

if (!haveMinio) console.log(`SKIPPED images-s3 tests: no minio binary in ${TOOLS_BIN} or PATH (scripts/tools/build.sh minio)`);

let dir: string;
let cleanup: () => Promise<void>;
let stateDir: string;
let env: Record<string, string>;
let s3: S3Client;
/** 20 PNGs each of red, green, blue (60 in all). */
let colours: string;

/** Every file below `root` (relative, `/`-separated), the manifest left out. */
async function filesBelow(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(d, e.name), r);
      else if (r !== MIRROR_MANIFEST) out.push(r);
    }
  };
  await walk(root, "");
  return out.sort();
}

const put = (key: string, body: Buffer | string) => s3.send(new PutObjectCommand({ Bucket: "data", Key: key, Body: body }));

/**
 * A TCP forwarder to MinIO that, while `cutPath` is set, sends only the headers and half the
 * body of the response to `GET <cutPath>` and then drops the connection (an interrupted
 * download: a network failure or a killed peer mid-transfer). `cuts` counts them.
 */
async function cuttingProxy(target: string) {
  const to = new URL(target);
  const state = { cutPath: undefined as string | undefined, cuts: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    let cutting = false;
    let head = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      const line = chunk.toString("latin1", 0, Math.min(chunk.length, 1024));
      if (state.cutPath && (line.startsWith(`GET ${state.cutPath}?`) || line.startsWith(`GET ${state.cutPath} `))) cutting = true;
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!cutting) {
        client.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(head.toString("latin1", 0, end))?.[1] ?? 0);
      const keep = end + 4 + Math.floor(length / 2);
      if (head.length < keep) return;
      state.cuts++;
      cutting = false;
      client.write(head.subarray(0, keep), () => client.destroy());
      upstream.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    state,
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe.skipIf(!haveMinio)("labelled images in S3 (real MinIO)", () => {
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir("images-s3"));
    stateDir = path.join(dir, "minio-state");
    env = minioEnv(startMinio(stateDir));
    s3 = minioClient(env);
    await s3.send(new CreateBucketCommand({ Bucket: "data" }));
    colours = path.join(dir, "colours");
    await writeColourImages(colours, 20);
    await uploadDir(s3, "data", "colours", colours);
    await writeGraphModel(path.join(dir, "graph"));
  });

  afterAll(async () => {
    s3?.destroy();
    if (stateDir) stopMinio(stateDir);
    await cleanup?.();
  });

  describe("the mirror", () => {
    it("puts each prefix in a directory of its own", () => {
      expect(mirrorDir("/c", { bucket: "data", prefix: "images" })).toBe("/c/data/images");
      expect(mirrorDir("/c", { bucket: "data", prefix: "images/cats" })).toBe("/c/data/images%2Fcats");
      expect(mirrorDir("/c", { bucket: "data", prefix: "" })).toBe("/c/data/%");
    });

    it("downloads everything once, then only changed and added objects, and deletes what was removed", async () => {
      await uploadDir(s3, "data", "sync", colours);
      await put("sync/README.txt", "not an image, not in a label folder");
      await put("sync/red/notes.txt", "not an image");
      const loc = new S3Location("s3://data/sync", resolveS3Options({}, env));
      const local = path.join(dir, "mirror-sync");
      const events: MirrorProgress[] = [];
      const sync = () => mirrorPrefix(loc, local, { filter: isFolderImage, onProgress: (p) => events.push(p) });
      try {
        const first = await sync();
        const total = (await Promise.all((await filesBelow(colours)).map(async (f) => (await fs.stat(path.join(colours, f))).size))).reduce((a, b) => a + b, 0);
        expect(first).toMatchObject({ objects: 60, downloaded: 60, unchanged: 0, removed: 0, ignored: 2, bytes: total, totalBytes: total });
        expect(await filesBelow(local)).toEqual(await filesBelow(colours));
        for (const f of await filesBelow(colours)) expect((await fs.readFile(path.join(local, f))).equals(await fs.readFile(path.join(colours, f))), f).toBe(true);
        expect(events.at(-1)).toEqual({ files: 60, totalFiles: 60, bytes: total, totalBytes: total });

        expect(await sync()).toMatchObject({ objects: 60, downloaded: 0, unchanged: 60, removed: 0, bytes: 0 });

        // Same size, other bytes: only the ETag tells.
        const red0 = await fs.readFile(path.join(colours, "red", "0.png"));
        const changed = Buffer.from(red0.map((b, i) => (i === red0.length - 20 ? b ^ 0xff : b)));
        await put("sync/red/0.png", changed);
        const other = await fs.readFile(path.join(colours, "blue", "1.png"));
        await put("sync/green/1.png", other);
        await put("sync/red/new.png", other);
        for (const k of ["sync/blue/2.png", "sync/blue/3.png"]) await s3.send(new DeleteObjectCommand({ Bucket: "data", Key: k }));
        const third = await sync();
        expect(third).toMatchObject({ objects: 59, downloaded: 3, unchanged: 56, removed: 2, bytes: changed.length + 2 * other.length });
        expect((await fs.readFile(path.join(local, "red", "0.png"))).equals(changed)).toBe(true);
        expect((await fs.readFile(path.join(local, "green", "1.png"))).equals(other)).toBe(true);
        expect((await fs.readFile(path.join(local, "red", "new.png"))).equals(other)).toBe(true);
        expect(await filesBelow(path.join(local, "blue"))).not.toContain("2.png");
        expect(await filesBelow(path.join(local, "blue"))).not.toContain("3.png");

        // A local file that no longer matches the manifest (truncated by something else) is fetched again.
        await fs.truncate(path.join(local, "green", "5.png"), 10);
        expect(await sync()).toMatchObject({ downloaded: 1, unchanged: 58, removed: 0 });
        expect((await fs.readFile(path.join(local, "green", "5.png"))).equals(await fs.readFile(path.join(colours, "green", "5.png")))).toBe(true);

        // A label whose images are all gone disappears with its directory.
        for (let n = 0; n < 20; n++) if (n !== 2 && n !== 3) await s3.send(new DeleteObjectCommand({ Bucket: "data", Key: `sync/blue/${n}.png` }));
        expect(await sync()).toMatchObject({ objects: 41, downloaded: 0, removed: 18 });
        expect((await fs.readdir(local)).sort()).toEqual([MIRROR_MANIFEST, "green", "red"]);
        const folder = await scanImageFolder(local);
        expect(folder.labels).toEqual(["green", "red"]);
        expect(folder.images).toHaveLength(41);
        const manifest = JSON.parse(await fs.readFile(path.join(local, MIRROR_MANIFEST), "utf8"));
        expect(manifest.uri).toBe("s3://data/sync");
        expect(Object.keys(manifest.objects)).toHaveLength(41);
      } finally {
        await loc.close();
      }
    });

    it("lists every page: images after the first 1,000 keys are mirrored", async () => {
      const png = await fs.readFile(path.join(colours, "red", "0.png"));
      const keys = Array.from({ length: 1000 }, (_, i) => `pages/aaa/${String(i).padStart(4, "0")}.txt`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => put(k, "x")));
      await put("pages/zz1/a.png", png);
      await put("pages/zz2/b.png", png);
      const loc = new S3Location("s3://data/pages", resolveS3Options({}, env));
      try {
        expect(await mirrorPrefix(loc, path.join(dir, "mirror-pages"), { filter: isFolderImage })).toMatchObject({ objects: 2, downloaded: 2, ignored: 1000 });
      } finally {
        await loc.close();
      }
    });

    it("an interrupted download leaves the previous file or none, never part of one, and no temporary file; the next sync fetches only what is missing", async () => {
      await uploadDir(s3, "data", "cut", colours);
      const proxy = await cuttingProxy(env.AWS_ENDPOINT_URL_S3!);
      const viaProxy = new S3Location("s3://data/cut", resolveS3Options({ endpoint: proxy.endpoint, maxAttempts: 1 }, env));
      const direct = new S3Location("s3://data/cut", resolveS3Options({}, env));
      const local = path.join(dir, "mirror-cut");
      const size = (await fs.stat(path.join(colours, "red", "5.png"))).size;
      try {
        proxy.state.cutPath = "/data/cut/red/5.png";
        // (How much of the half that arrived reaches the reader before the reset varies.)
        await expect(mirrorPrefix(viaProxy, local, { filter: isFolderImage })).rejects.toThrow(
          new RegExp(`^s3://data/cut/red/5\\.png: download interrupted after \\d+ of ${size} bytes at ${proxy.endpoint.replace(/[.:/]/g, "\\$&")}: `),
        );
        expect(proxy.state.cuts).toBe(1);
        const present = await filesBelow(local);
        expect(present).not.toContain("red/5.png");
        expect(present.filter((f) => f.endsWith(".tmp"))).toEqual([]);
        // Whatever did arrive is complete, and recorded.
        for (const f of present) expect((await fs.readFile(path.join(local, f))).equals(await fs.readFile(path.join(colours, f))), f).toBe(true);
        const manifest = JSON.parse(await fs.readFile(path.join(local, MIRROR_MANIFEST), "utf8"));
        expect(Object.keys(manifest.objects).sort()).toEqual(present);

        const resumed = await mirrorPrefix(direct, local, { filter: isFolderImage });
        expect(resumed.downloaded).toBe(60 - present.length);
        expect(resumed.unchanged).toBe(present.length);
        expect(await filesBelow(local)).toEqual(await filesBelow(colours));

        // A new version of an image cut off mid-download: the old one stays, whole.
        const old = await fs.readFile(path.join(local, "red", "5.png"));
        const replacement = await fs.readFile(path.join(colours, "green", "7.png"));
        await put("cut/red/5.png", replacement);
        await expect(mirrorPrefix(viaProxy, local, { filter: isFolderImage })).rejects.toThrow(
          new RegExp(`^s3://data/cut/red/5\\.png: download interrupted after \\d+ of ${replacement.length} bytes`),
        );
        expect(proxy.state.cuts).toBe(2);
        expect((await fs.readFile(path.join(local, "red", "5.png"))).equals(old)).toBe(true);
        expect((await filesBelow(local)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
        expect(await mirrorPrefix(direct, local, { filter: isFolderImage })).toMatchObject({ downloaded: 1, unchanged: 59 });
        expect((await fs.readFile(path.join(local, "red", "5.png"))).equals(replacement)).toBe(true);
      } finally {
        await Promise.all([viaProxy.close(), direct.close(), proxy.close()]);
      }
    });

    it("removes a killed sync's old temporary file, keeps a fresh one (another sync's download in progress); scans see neither", async () => {
      await uploadDir(s3, "data", "temps", colours);
      const loc = new S3Location("s3://data/temps", resolveS3Options({}, env));
      const local = path.join(dir, "mirror-temps");
      try {
        await mirrorPrefix(loc, local, { filter: isFolderImage });
        const stale = path.join(local, "red", ".7.png.4242.deadbeef.tmp");
        const fresh = path.join(local, "red", ".8.png.4243.cafebabe.tmp");
        await fs.writeFile(stale, "half an image");
        await fs.writeFile(fresh, "half an image");
        const old = new Date(Date.now() - STALE_TEMP_MS - 60_000);
        await fs.utimes(stale, old, old);
        expect((await scanImageFolder(local)).images).toHaveLength(60);
        expect(await mirrorPrefix(loc, local, { filter: isFolderImage })).toMatchObject({ downloaded: 0, removed: 1 });
        expect(await filesBelow(path.join(local, "red"))).toContain(".8.png.4243.cafebabe.tmp");
        expect(await filesBelow(path.join(local, "red"))).not.toContain(".7.png.4242.deadbeef.tmp");
      } finally {
        await loc.close();
      }
    });
  });

  describe("mlp retrain --images s3://", () => {
    const flags = () => [
      "--base-model",
      path.join(dir, "graph"),
      "--model-base",
      path.join(dir, "models"),
      "--steps",
      "150",
      "--learning-rate",
      "0.1",
      "--batch-size",
      "8",
      "--hidden-units",
      "6",
      "--validation-percent",
      "0",
      "--test-percent",
      "25",
      "--progress",
      "none",
    ];
    async function retrain(args: string[], withEnv = env) {
      const c = captureIo(withEnv);
      const code = await main(["retrain", ...args], c.io);
      return { code, stdout: c.stdout(), stderr: c.stderr() };
    }

    it("trains on the mirror as on the local folder: same split, same accuracy; a rerun downloads nothing", async () => {
      const local = await retrain(["--images", colours, "--name", "local", "--cache-dir", path.join(dir, "cache-local"), ...flags()]);
      expect(local.code, local.stderr).toBe(0);
      const cache = path.join(dir, "cache-s3");
      const fromS3 = await retrain(["--images", "s3://data/colours", "--name", "from-s3", "--cache-dir", cache, ...flags()]);
      expect(fromS3.code, fromS3.stderr).toBe(0);
      const mirror = path.join(cache, "images", "data", "colours");
      expect(fromS3.stderr).toContain(`images s3://data/colours → ${mirror}: 60 files`);
      expect(fromS3.stderr).toContain("60 downloaded");
      expect(fromS3.stderr).toMatch(/images s3:\/\/data\/colours: 60 of 60 files, /);
      const split = (stderr: string, source: string) => new RegExp(`images ${source}: (3 labels, \\d+ training, 0 validation, \\d+ test);`).exec(stderr)?.[1];
      expect(split(fromS3.stderr, "s3://data/colours")).toBeDefined();
      expect(split(fromS3.stderr, "s3://data/colours")).toBe(split(local.stderr, colours));
      expect(fromS3.stderr).toContain("bottlenecks: 60 computed, 0 from the cache");

      const a = JSON.parse(local.stdout);
      const b = JSON.parse(fromS3.stdout);
      expect(b.labels).toEqual(["blue", "green", "red"]);
      expect(b.metrics.testAccuracy).toBeGreaterThanOrEqual(0.9);
      expect(b.metrics).toEqual(a.metrics);
      const meta = parseMetadata("m", JSON.parse(await fs.readFile(path.join(b.dir, "metadata.json"), "utf8")));
      const metaLocal = parseMetadata("m", JSON.parse(await fs.readFile(path.join(a.dir, "metadata.json"), "utf8")));
      expect(meta.training?.images).toBe("s3://data/colours");
      expect(meta.training?.confusionMatrix).toEqual(metaLocal.training?.confusionMatrix);

      const again = await retrain(["--images", "s3://data/colours", "--name", "from-s3", "--cache-dir", cache, ...flags()]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain("60 files (");
      expect(again.stderr).toContain("0 downloaded (0 B), 60 unchanged, 0 removed");
      expect(again.stderr).toContain("bottlenecks: 0 computed, 60 from the cache");
      expect(JSON.parse(again.stdout).metrics).toEqual(a.metrics);
    });

    it("errors name the s3:// URL: missing bucket, empty prefix, bad credentials, unreachable endpoint, no label folders, an undecodable image", async () => {
      const where = ` at ${env.AWS_ENDPOINT_URL_S3}`;
      const last = (r: { stderr: string }) => r.stderr.trim().split("\n").pop();
      const cacheDir = ["--cache-dir", path.join(dir, "cache-errors")];
      let r = await retrain(["--images", "s3://no-such-bucket/colours", ...cacheDir, ...flags()]);
      expect(r.code).toBe(1);
      expect(last(r)).toBe(`mlp retrain: s3://no-such-bucket/colours: bucket no-such-bucket does not exist${where}`);

      r = await retrain(["--images", "s3://data/nothing-here", ...cacheDir, ...flags()]);
      expect(r.code).toBe(1);
      expect(last(r)).toBe(`mlp retrain: s3://data/nothing-here: no objects under this prefix${where}`);

      r = await retrain(["--images", "s3://data/colours", ...cacheDir, ...flags()], { ...env, AWS_SECRET_ACCESS_KEY: "not-the-secret" });
      expect(r.code).toBe(1);
      expect(last(r)).toMatch(
        new RegExp(`^mlp retrain: s3://data/colours: access denied${where.replace(/[.:/]/g, "\\$&")} \\(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\\)`),
      );

      const port = await closedPort();
      r = await retrain(["--images", "s3://data/colours", "--s3-endpoint", `http://127.0.0.1:${port}`, ...cacheDir, ...flags()]);
      expect(r.code).toBe(1);
      expect(last(r)).toMatch(new RegExp(`^mlp retrain: s3://data/colours: cannot reach S3 at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));

      r = await retrain(["--images", "s3://data/colours/red", ...cacheDir, ...flags()]);
      expect(r.code).toBe(1);
      expect(last(r)).toBe("mlp retrain: s3://data/colours/red: needs at least two label directories (<root>/<label>/*.jpg); found 0");

      await uploadDir(s3, "data", "broken", colours);
      await put("broken/red/bad.png", "not a png");
      r = await retrain(["--images", "s3://data/broken", ...cacheDir, ...flags()]);
      expect(r.code).toBe(1);
      expect(last(r)).toMatch(/^mlp retrain: s3:\/\/data\/broken\/red\/bad\.png: cannot decode image/);
    });
  });
});
