#!/usr/bin/env bash
# Builds the two images the real local node needs itself, as OCI archives in the image
# cache (where up.sh --node real imports every archive from):
#   - the pod sandbox image ($PAUSE_IMAGE from scripts/tools/versions.env): the static
#     `pause` binary that scripts/tools/build.sh compiles, and nothing else;
#   - $NODE_TEST_IMAGE, a small test image: Debian's busybox-static (sh, httpd, wget,
#     nslookup, ...), used by tests/cluster.
# Packed by scripts/images/oci-archive.py (deterministic). Idempotent: an archive is rebuilt
# only when its inputs changed.
#
# Usage: scripts/localcluster/node-images.sh        prints the archive paths
# Output: ${MLPLATFORM_IMAGES_DIR:-$HOME/.cache/mlplatform/images}/{pause,node-test}.oci.tar
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../tools/versions.env
source "$ROOT/scripts/tools/versions.env"
NODE_TEST_IMAGE=${NODE_TEST_IMAGE:-mlplatform.local/node-test:1}
IMAGES_DIR=${MLPLATFORM_IMAGES_DIR:-$HOME/.cache/mlplatform/images}
TOOLS_BIN=${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/bin
PACKER=$ROOT/scripts/images/oci-archive.py

log() { printf 'node-images.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# pack NAME REF ROOTFS STAMP_INPUT [packer options...]: packs unless the stamp matches.
pack() {
  local name=$1 ref=$2 rootfs=$3 input=$4 out stamp want
  shift 4
  out=$IMAGES_DIR/$name.oci.tar
  stamp=$IMAGES_DIR/.$name.stamp
  want=$(printf '%s\n%s\n%s\n' "$ref" "$input" "$(sha256sum "$PACKER" | cut -d' ' -f1) $*" | sha256sum | cut -d' ' -f1)
  if [[ -f $out && -f $stamp && $(<"$stamp") == "$want" ]]; then
    log "cached $ref ($out)"
  else
    python3 "$PACKER" --ref "$ref" -o "$out" "$@" "$rootfs" >/dev/null
    printf '%s\n' "$want" >"$stamp"
    log "built $ref ($out, $(du -k "$out" | cut -f1) KiB)"
  fi
  printf '%s\n' "$out"
}

main() {
  [[ -f $PACKER ]] || die "$PACKER not found"
  command -v python3 >/dev/null || die "python3 is required"
  local pause=$TOOLS_BIN/pause busybox
  [[ -x $pause ]] || die "$pause not found: run scripts/tools/build.sh pause"
  busybox=$(command -v busybox || true)
  [[ -n $busybox ]] || die "busybox not found: run scripts/setup-node.sh (busybox-static)"
  mkdir -p "$IMAGES_DIR"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK

  # Sandbox image: /pause only.
  mkdir -p "$work/pause"
  install -m 0755 "$pause" "$work/pause/pause"
  pack pause "$PAUSE_IMAGE" "$work/pause" "$(sha256sum "$pause")" \
    --entrypoint '["/pause"]' --user 65535:65535

  # Test image: busybox and its applets as symlinks, a writable /tmp, a nobody user.
  local bb=$work/node-test applet
  mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/www"
  chmod 1777 "$bb/tmp"
  install -m 0755 "$busybox" "$bb/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$bb/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n' >"$bb/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$bb/etc/group"
  pack node-test "$NODE_TEST_IMAGE" "$bb" "$(sha256sum "$busybox") $("$busybox" --list | sha256sum)" \
    --cmd '["sh"]' --env PATH=/bin
}

main "$@"
