#!/usr/bin/env python3
"""Packs root filesystem directories into an OCI image archive (no Docker, no registry).

Usage: oci-archive.py --ref REF -o OUT.tar [options] ROOTFS [ROOTFS...]

Each ROOTFS directory becomes one gzip layer, in the order given (later layers are laid
over earlier ones; no whiteouts: a later layer can add or replace files, not delete them).
The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) packed as a
tar, which `ctr -n k8s.io images import OUT.tar`, `skopeo copy oci-archive:OUT.tar ...` and
`podman load` accept. index.json names the image twice: `io.containerd.image.name` with the
fully qualified reference (what containerd stores and the kubelet looks up, e.g.
docker.io/library/busybox:1.36 for "busybox:1.36") and `org.opencontainers.image.ref.name`
with the same full reference.

Deterministic: entries sorted by name, every mtime set to --mtime (default
SOURCE_DATE_EPOCH or 0), owner names dropped (numeric uid/gid kept), gzip without name or
time. The same directories and options give the same manifest digest, byte for byte.

Options:
  --ref REF              image reference to tag (required), e.g. quay.io/minio/mc:RELEASE.x
  -o, --output OUT.tar   archive to write (written to OUT.tar.tmp, then renamed)
  --entrypoint JSON      e.g. '["/usr/bin/tini","--"]'
  --cmd JSON             e.g. '["server","/data"]'
  --env K=V              repeatable
  --workdir DIR          working directory
  --user UID[:GID]       user the container runs as
  --expose PORT[/PROTO]  repeatable (proto defaults to tcp)
  --label K=V            repeatable (config labels)
  --annotation K=V       repeatable (manifest annotations)
  --mtime SECONDS        timestamp for every file and the config's `created`
  --level N              gzip level 1-9 (default 6)
  --exclude PATH         repeatable; path inside the rootfs whose CONTENTS are left out
                         (the directory itself is kept). Default: /proc /sys /dev
  --print-digest         print the manifest digest (sha256:...) on stdout when done
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

ARCH = "amd64"
OS = "linux"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def normalize_ref(ref):
    """Fully qualified form of a reference, as containerd and the kubelet spell it."""
    name, sep, rest = ref, "", ""
    at = ref.find("@")
    if at >= 0:
        name, sep, rest = ref[:at], "@", ref[at + 1 :]
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        if colon > slash:
            name, sep, rest = ref[:colon], ":", ref[colon + 1 :]
    if not sep:
        sep, rest = ":", "latest"
    first, _, remainder = name.partition("/")
    if not remainder or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + name
        if not remainder:
            name = "docker.io/library/" + first
    elif first == "docker.io" and "/" not in remainder:
        name = "docker.io/library/" + remainder
    if name != name.lower():
        raise SystemExit(f"oci-archive: repository names must be lowercase: {ref}")
    return f"{name}{sep}{rest}"


class Hasher(io.RawIOBase):
    """Write-only stream that hashes and counts what passes through to `sink`."""

    def __init__(self, sink):
        super().__init__()
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, b):
        self.sha.update(b)
        self.size += len(b)
        if self.sink is not None:
            self.sink.write(b)
        return len(b)

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


def walk_sorted(root, excludes):
    """Yields (relative path, full path) of everything under root, parents first, sorted."""

    def rec(rel):
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            r = f"{rel}/{name}" if rel else name
            f = os.path.join(full, name)
            yield r, f
            if "/" + r in excludes:
                continue
            st = os.lstat(f)
            if stat.S_ISDIR(st.st_mode):
                yield from rec(r)

    yield from rec("")


def write_layer(rootfs, out, mtime, level, excludes):
    """Writes rootfs as a gzip tar to `out`; returns (diff_id, digest, size)."""
    compressed = Hasher(out)
    gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=compressed, mtime=0)
    plain = Hasher(gz)
    hardlinks = {}
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for rel, full in walk_sorted(rootfs, excludes):
            st = os.lstat(full)
            mode = st.st_mode
            ti = tarfile.TarInfo(rel)
            ti.mode = stat.S_IMODE(mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ti.mtime = mtime
            data = None
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(mode) and st.st_nlink > 1 and key in hardlinks:
                ti.type = tarfile.LNKTYPE
                ti.linkname = hardlinks[key]
            elif stat.S_ISREG(mode):
                ti.type = tarfile.REGTYPE
                ti.size = st.st_size
                data = full
                if st.st_nlink > 1:
                    hardlinks[key] = rel
            elif stat.S_ISDIR(mode):
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(full)
            elif stat.S_ISFIFO(mode):
                ti.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:  # sockets: not representable, and never needed in an image
                continue
            if data is None:
                tar.addfile(ti)
            else:
                with open(data, "rb") as f:
                    tar.addfile(ti, f)
    gz.close()
    return plain.digest(), compressed.digest(), compressed.size


def kv_list(items, what):
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise SystemExit(f"oci-archive: {what} must be K=V, got {item!r}")
        out[k] = v
    return out


def json_list(text, what):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"oci-archive: {what} is not JSON: {e}")
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise SystemExit(f"oci-archive: {what} must be a JSON list of strings")
    return value


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def add_bytes(tar, name, data, mtime, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = mtime
    ti.mode = mode
    ti.uname = ti.gname = ""
    tar.addfile(ti, io.BytesIO(data))


def main(argv):
    p = argparse.ArgumentParser(
        prog="oci-archive.py",
        usage="%(prog)s --ref REF -o OUT.tar [options] ROOTFS [ROOTFS...]",
        description="Pack root filesystem directories into a deterministic OCI image archive.",
    )
    p.add_argument("rootfs", nargs="+")
    p.add_argument("--ref", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append")
    p.add_argument("--workdir")
    p.add_argument("--user")
    p.add_argument("--expose", action="append")
    p.add_argument("--label", action="append")
    p.add_argument("--annotation", action="append")
    p.add_argument("--mtime", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    p.add_argument("--level", type=int, default=6, choices=range(1, 10))
    p.add_argument("--exclude", action="append")
    p.add_argument("--print-digest", action="store_true")
    a = p.parse_args(argv)

    for d in a.rootfs:
        if not os.path.isdir(d):
            raise SystemExit(f"oci-archive: {d} is not a directory")
    ref = normalize_ref(a.ref)
    excludes = {"/" + e.strip("/") for e in (a.exclude if a.exclude is not None else ["/proc", "/sys", "/dev"])}
    mtime = a.mtime
    out = a.output
    tmp = out + ".tmp"
    blobs_tmp = out + ".blobs.tmp"
    os.makedirs(blobs_tmp, exist_ok=True)

    try:
        layers = []
        for i, d in enumerate(a.rootfs):
            path = os.path.join(blobs_tmp, f"layer{i}")
            with open(path, "wb") as f:
                diff_id, digest, size = write_layer(d, f, mtime, a.level, excludes)
            layers.append((diff_id, digest, size, path))

        cfg = {}
        env = kv_list(a.env, "--env")
        if env:
            cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
        if "PATH" not in env:
            cfg.setdefault("Env", []).insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        ep = json_list(a.entrypoint, "--entrypoint")
        cmd = json_list(a.cmd, "--cmd")
        if ep is not None:
            cfg["Entrypoint"] = ep
        if cmd is not None:
            cfg["Cmd"] = cmd
        if a.workdir:
            cfg["WorkingDir"] = a.workdir
        if a.user:
            cfg["User"] = a.user
        if a.expose:
            cfg["ExposedPorts"] = {(e if "/" in e else e + "/tcp"): {} for e in a.expose}
        labels = kv_list(a.label, "--label")
        if labels:
            cfg["Labels"] = labels
        created = __import__("datetime").datetime.fromtimestamp(mtime, __import__("datetime").timezone.utc)
        config = {
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "architecture": ARCH,
            "os": OS,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [l[0] for l in layers]},
            "history": [{"created": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "created_by": "scripts/images/oci-archive.py"} for _ in layers],
        }
        config_bytes = canonical(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": MT_LAYER, "digest": l[1], "size": l[2]} for l in layers],
        }
        annotations = kv_list(a.annotation, "--annotation")
        if annotations:
            manifest["annotations"] = annotations
        manifest_bytes = canonical(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "platform": {"architecture": ARCH, "os": OS},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref,
                    },
                }
            ],
        }

        # The archive itself: fixed order, fixed metadata.
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), mtime)
            add_bytes(tar, "index.json", canonical(index), mtime)
            blobs = {config_digest: config_bytes, manifest_digest: manifest_bytes}
            for _, digest, _, path in layers:
                blobs.setdefault(digest, path)
            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.DIRTYPE, 0o755, mtime, "", ""
                tar.addfile(ti)
            for digest in sorted(blobs):
                name = "blobs/sha256/" + digest.split(":", 1)[1]
                content = blobs[digest]
                if isinstance(content, bytes):
                    add_bytes(tar, name, content, mtime)
                else:
                    ti = tarfile.TarInfo(name)
                    ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = os.path.getsize(content), mtime, 0o644, "", ""
                    with open(content, "rb") as lf:
                        tar.addfile(ti, lf)
        os.replace(tmp, out)
    finally:
        for name in os.listdir(blobs_tmp) if os.path.isdir(blobs_tmp) else []:
            os.unlink(os.path.join(blobs_tmp, name))
        if os.path.isdir(blobs_tmp):
            os.rmdir(blobs_tmp)
        if os.path.exists(tmp):
            os.unlink(tmp)

    if a.print_digest:
        print(manifest_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
