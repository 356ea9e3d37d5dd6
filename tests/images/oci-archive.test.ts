/**
 * scripts/images/oci-archive.py: the packer that turns a root filesystem directory into the OCI
 * image archives the local node imports (`ctr -n k8s.io images import`). Checks the layout
 * containerd reads (oci-layout, index.json with the image name, manifest, config, gzip layer,
 * every blob named by its digest), the image config, and that the same input gives the same
 * bytes whatever the files' timestamps and creation order.
 */
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..", "..");
const PACKER = path.join(ROOT, "scripts", "images", "oci-archive.py");

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  data: Buffer;
}

/** Minimal tar reader (ustar + pax `path`/`linkpath` records): enough for these archives. */
function readTar(buf: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  let off = 0;
  let pax: Record<string, string> = {};
  const str = (b: Buffer) => b.toString("utf8").replace(/\0.*$/s, "");
  const num = (b: Buffer) => parseInt(str(b).trim() || "0", 8);
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = num(h.subarray(124, 136));
    const type = String.fromCharCode(h[156] || 48);
    const data = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      pax = {};
      let rest = data.toString("utf8");
      while (rest.length > 0) {
        const sp = rest.indexOf(" ");
        const len = parseInt(rest.slice(0, sp), 10);
        const rec = Buffer.from(rest, "utf8").subarray(0, len).toString("utf8");
        const [k, ...v] = rec.slice(sp + 1, -1).split("=");
        pax[k] = v.join("=");
        rest = Buffer.from(rest, "utf8").subarray(len).toString("utf8");
      }
      continue;
    }
    const prefix = str(h.subarray(345, 500));
    const base = str(h.subarray(0, 100));
    out.push({
      name: (pax.path ?? (prefix ? `${prefix}/${base}` : base)).replace(/\/$/, ""),
      type,
      mode: num(h.subarray(100, 108)),
      uid: num(h.subarray(108, 116)),
      gid: num(h.subarray(116, 124)),
      mtime: num(h.subarray(136, 148)),
      linkname: pax.linkpath ?? str(h.subarray(157, 257)),
      data: Buffer.from(data),
    });
    pax = {};
  }
  return out;
}

const sha = (b: Buffer) => "sha256:" + crypto.createHash("sha256").update(b).digest("hex");

function pack(rootfs: string[], out: string, extra: string[] = []): string {
  return execFileSync("python3", [PACKER, "--ref", "quay.io/example/app:1.2.3", "-o", out, "--print-digest", ...extra, ...rootfs], { encoding: "utf8" }).trim();
}

/** A small root filesystem; `variant` changes timestamps and creation order, not content. */
function makeRootfs(dir: string, variant: number): void {
  const files: [string, string][] = [
    ["etc/os-release", "ID=test\n"],
    ["usr/bin/app", "#!/bin/sh\necho app\n"],
    ["usr/share/doc/a-very-long-directory-name-that-goes-past-the-ustar-limit-of-one-hundred-bytes/readme.txt", "x"],
    ["app/data.bin", "\u0000\u0001\u0002"],
  ];
  for (const [rel, content] of variant ? [...files].reverse() : files) {
    fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  fs.chmodSync(path.join(dir, "usr/bin/app"), 0o755);
  fs.symlinkSync("app", path.join(dir, "usr/bin/app-link"));
  fs.linkSync(path.join(dir, "etc/os-release"), path.join(dir, "usr/os-release"));
  fs.mkdirSync(path.join(dir, "proc", "self"), { recursive: true }); // contents excluded
  fs.writeFileSync(path.join(dir, "proc", "self", "junk"), "x");
  fs.mkdirSync(path.join(dir, "tmp"));
  fs.chmodSync(path.join(dir, "tmp"), 0o1777);
  const t = new Date(variant ? 2_000_000_000_000 : 1_000_000_000_000);
  for (const rel of ["etc/os-release", "usr/bin/app", "app", "usr"]) fs.utimesSync(path.join(dir, rel), t, t);
}

describe("scripts/images/oci-archive.py", () => {
  let work: string;
  let archive: TarEntry[];
  let digest: string;
  const blob = (d: string) => archive.find((e) => e.name === `blobs/sha256/${d.replace(/^sha256:/, "")}`)!.data;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-oci-"));
    makeRootfs(path.join(work, "a"), 0);
    digest = pack([path.join(work, "a")], path.join(work, "a.tar"), [
      "--entrypoint",
      '["/usr/bin/app"]',
      "--cmd",
      '["--help"]',
      "--env",
      "MODE=test",
      "--workdir",
      "/app",
      "--user",
      "1000:1000",
      "--expose",
      "8080",
      "--label",
      "org.opencontainers.image.title=app",
    ]);
    archive = readTar(fs.readFileSync(path.join(work, "a.tar")));
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it("prints the manifest digest and lays out an OCI image layout", () => {
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const names = archive.map((e) => e.name);
    expect(names.slice(0, 2)).toEqual(["oci-layout", "index.json"]);
    expect(JSON.parse(archive[0].data.toString())).toEqual({ imageLayoutVersion: "1.0.0" });
    // Every blob is named by the digest of its content.
    for (const e of archive.filter((x) => x.name.startsWith("blobs/sha256/") && x.type === "0")) {
      expect(sha(e.data)).toBe(`sha256:${path.basename(e.name)}`);
    }
  });

  it("names the image in index.json as containerd imports it", () => {
    const index = JSON.parse(archive[1].data.toString());
    expect(index.schemaVersion).toBe(2);
    expect(index.manifests).toHaveLength(1);
    const m = index.manifests[0];
    expect(m.digest).toBe(digest);
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(m.platform).toEqual({ architecture: "amd64", os: "linux" });
    expect(m.annotations["io.containerd.image.name"]).toBe("quay.io/example/app:1.2.3");
    expect(m.annotations["org.opencontainers.image.ref.name"]).toBe("quay.io/example/app:1.2.3");
    expect(m.size).toBe(blob(digest).length);
  });

  it("writes a config whose diff_ids match the uncompressed layer", () => {
    const manifest = JSON.parse(blob(digest).toString());
    expect(manifest.config.mediaType).toBe("application/vnd.oci.image.config.v1+json");
    expect(manifest.layers).toHaveLength(1);
    expect(manifest.layers[0].mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    const layerGz = blob(manifest.layers[0].digest);
    expect(layerGz.length).toBe(manifest.layers[0].size);
    const config = JSON.parse(blob(manifest.config.digest).toString());
    expect(config.architecture).toBe("amd64");
    expect(config.os).toBe("linux");
    expect(config.rootfs).toEqual({ type: "layers", diff_ids: [sha(zlib.gunzipSync(layerGz))] });
    expect(config.config).toEqual({
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MODE=test"],
      Entrypoint: ["/usr/bin/app"],
      Cmd: ["--help"],
      WorkingDir: "/app",
      User: "1000:1000",
      ExposedPorts: { "8080/tcp": {} },
      Labels: { "org.opencontainers.image.title": "app" },
    });
  });

  it("packs the rootfs sorted, with fixed times, links kept and /proc left empty", () => {
    const manifest = JSON.parse(blob(digest).toString());
    const layer = readTar(zlib.gunzipSync(blob(manifest.layers[0].digest)));
    const names = layer.map((e) => e.name);
    expect(names).toContain("usr/share/doc/a-very-long-directory-name-that-goes-past-the-ustar-limit-of-one-hundred-bytes/readme.txt");
    expect(names).toContain("proc");
    expect(names.filter((n) => n.startsWith("proc/"))).toEqual([]);
    // Parents before children, siblings in byte order.
    for (const n of names) {
      const parent = path.dirname(n);
      if (parent !== ".") expect(names.indexOf(parent)).toBeLessThan(names.indexOf(n));
    }
    expect(layer.every((e) => e.mtime === 0)).toBe(true);
    const byName = new Map(layer.map((e) => [e.name, e]));
    expect(byName.get("usr/bin/app")!.mode & 0o777).toBe(0o755);
    expect(byName.get("tmp")!.mode).toBe(0o1777);
    expect(byName.get("usr/bin/app-link")).toMatchObject({ type: "2", linkname: "app" });
    expect(byName.get("usr/os-release")).toMatchObject({ type: "1", linkname: "etc/os-release" });
    expect(byName.get("app/data.bin")!.data).toEqual(Buffer.from([0, 1, 2]));
  });

  it("gives the same bytes for the same content, whatever the timestamps and creation order", () => {
    makeRootfs(path.join(work, "b"), 1);
    const args = ["--entrypoint", '["/usr/bin/app"]', "--cmd", '["--help"]', "--env", "MODE=test", "--workdir", "/app"];
    args.push("--user", "1000:1000", "--expose", "8080", "--label", "org.opencontainers.image.title=app");
    const again = pack([path.join(work, "b")], path.join(work, "b.tar"), args);
    expect(again).toBe(digest);
    expect(fs.readFileSync(path.join(work, "b.tar")).equals(fs.readFileSync(path.join(work, "a.tar")))).toBe(true);
    // A content change moves the digest.
    fs.writeFileSync(path.join(work, "b", "etc", "os-release"), "ID=changed\n");
    expect(pack([path.join(work, "b")], path.join(work, "c.tar"), args)).not.toBe(digest);
  });

  it("stacks several directories as layers, in order", () => {
    fs.mkdirSync(path.join(work, "top", "app"), { recursive: true });
    fs.writeFileSync(path.join(work, "top", "app", "extra"), "y");
    const d = pack([path.join(work, "a"), path.join(work, "top")], path.join(work, "two.tar"));
    const two = readTar(fs.readFileSync(path.join(work, "two.tar")));
    const manifest = JSON.parse(two.find((e) => e.name === `blobs/sha256/${d.slice(7)}`)!.data.toString());
    expect(manifest.layers).toHaveLength(2);
  });

  it("qualifies short references the way the kubelet looks them up", () => {
    const name = (ref: string) => {
      pack([path.join(work, "top")], path.join(work, "n.tar"), ["--ref", ref]);
      const idx = readTar(fs.readFileSync(path.join(work, "n.tar"))).find((e) => e.name === "index.json")!;
      return JSON.parse(idx.data.toString()).manifests[0].annotations["io.containerd.image.name"];
    };
    expect(name("busybox:1.36")).toBe("docker.io/library/busybox:1.36");
    expect(name("tensorflow/tensorflow:2.17.0")).toBe("docker.io/tensorflow/tensorflow:2.17.0");
    expect(name("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z")).toBe("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z");
    expect(name("localhost:5001/mlplatform-trainer:cpu")).toBe("localhost:5001/mlplatform-trainer:cpu");
    expect(name("mlplatform-trainer")).toBe("docker.io/library/mlplatform-trainer:latest");
  });
});
