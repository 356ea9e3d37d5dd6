#!/usr/bin/env bash
# Installs the native TensorFlow backend of @tensorflow/tfjs-node without the internet.
#
# tfjs-node's own install script downloads a libtensorflow tarball and a prebuilt addon from
# a CDN, which a machine that reaches only package registries cannot do. This script gets the
# TensorFlow C library from the PyPI `tensorflow-cpu` wheel instead, lays it out as tfjs-node
# expects (deps/lib, deps/include) and compiles the addon with node-gyp against the local Node
# headers. Everything downloaded or built is cached outside the repository, so a second run,
# or a run after `npm ci --ignore-scripts` wiped node_modules, only copies files.
#
# Usage:   scripts/setup-tfjs-native.sh [--force] [--check]
#   --force  rebuild the addon and re-copy the library even if the stamp says it is in place
#   --check  only verify the installed backend (exit 1 if it does not work)
# Env:     MLPLATFORM_CACHE (default ~/.cache/mlplatform)  where wheels and builds are kept
#          PIP (default "python3 -m pip")                   the pip used to fetch the wheel
#
# Needs: python3 with pip, a C++ toolchain (g++, make), Node headers (the include/node
# directory of the Node installation: Debian/NodeSource packages and the official tarballs
# have it; otherwise set npm_config_nodedir).
#
# Version choice: tfjs-node 4.22.0 was built against libtensorflow 2.9.1, but the 2.9.1 wheel
# has the C API only inside the Python extension `_pywrap_tensorflow_internal.so`, which does
# not load outside Python ("undefined symbol: PyTuple_Type"). 2.12 is the first wheel line
# that ships the plain C library `libtensorflow_cc.so.2`; 2.12.1 is its last patch release.
# Its C and eager C API exports every symbol the binding uses (see README, "Native backend").
set -euo pipefail

TF_VERSION="2.12.1"
TFJS_NODE_VERSION="4.22.0"
WHEEL="tensorflow_cpu-${TF_VERSION}-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256="d05b8268da5bd87cf43d46da177e3b3ca39f2db0437e56c5e18351db4cde8679"

force=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "setup-tfjs-native: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "setup-tfjs-native: $*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}"
read -r -a pip_cmd <<< "${PIP:-python3 -m pip}"

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
  || die "only Linux x86_64 is supported here (got $(uname -s)-$(uname -m)); elsewhere the normal 'npm install' with internet access works"

tfjs_dir="$(cd "$repo/trainer" && node -p "require('path').dirname(require.resolve('@tensorflow/tfjs-node/package.json'))" 2>/dev/null)" \
  || die "@tensorflow/tfjs-node is not installed; run 'npm ci --ignore-scripts' at the repository root first"
tfjs_version="$(node -p "require('$tfjs_dir/package.json').version")"
[ "$tfjs_version" = "$TFJS_NODE_VERSION" ] \
  || die "found @tensorflow/tfjs-node $tfjs_version at $tfjs_dir but this script is pinned to $TFJS_NODE_VERSION; update TFJS_NODE_VERSION after checking the binding builds"

verify() { (cd "$repo" && node scripts/tfjs-native/verify.js); }

if [ "$check_only" = 1 ]; then
  verify
  exit $?
fi

# Where node-pre-gyp looks for the addon for this Node (lib/napi-v<N>/tfjs_binding.node).
addon_path="$(cd "$tfjs_dir" && node -p "require('@mapbox/node-pre-gyp').find(require.resolve('./package.json'))")"
napi_dir="$(basename "$(dirname "$addon_path")")"
stamp_value="tensorflow-cpu ${TF_VERSION} ${WHEEL_SHA256} tfjs-node ${TFJS_NODE_VERSION} ${napi_dir}"
stamp_file="$tfjs_dir/deps/.mlplatform-stamp"

if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_value" ] && [ -f "$addon_path" ]; then
  log "already set up ($stamp_value); verifying"
  verify
  exit $?
fi

# 1. The wheel, from PyPI, for any Python: only its shared libraries and headers are used.
mkdir -p "$cache/wheels"
wheel_path="$cache/wheels/$WHEEL"
if [ ! -f "$wheel_path" ]; then
  log "downloading tensorflow-cpu==$TF_VERSION wheel with pip"
  tmp_dl="$(mktemp -d "$cache/wheels/.dl.XXXXXX")"
  "${pip_cmd[@]}" download --no-deps --only-binary=:all: --implementation cp --python-version 3.10 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp_dl" "tensorflow-cpu==$TF_VERSION" >&2 \
    || { rm -rf "$tmp_dl"; die "pip could not download tensorflow-cpu==$TF_VERSION (is the package index reachable? PIP_INDEX_URL may point to a mirror)"; }
  [ -f "$tmp_dl/$WHEEL" ] || { ls "$tmp_dl" >&2; rm -rf "$tmp_dl"; die "pip did not produce $WHEEL"; }
  mv "$tmp_dl/$WHEEL" "$wheel_path"
  rm -rf "$tmp_dl"
fi
actual_sha="$(sha256sum "$wheel_path" | cut -d' ' -f1)"
[ "$actual_sha" = "$WHEEL_SHA256" ] \
  || die "$wheel_path has sha256 $actual_sha, expected $WHEEL_SHA256; delete it and run again"

# 2. The library in the libtensorflow tarball layout, cached.
libdir="$cache/libtensorflow/cpu-linux-x86_64-$TF_VERSION"
if [ ! -f "$libdir/lib/libtensorflow_cc.so.2" ]; then
  log "extracting the C library and headers from $WHEEL"
  rm -rf "$libdir" "$libdir.tmp"
  mkdir -p "$(dirname "$libdir")"
  python3 "$here/tfjs-native/extract-wheel.py" "$wheel_path" "$libdir" >&2
fi

# 3. deps/ inside the installed package (binding.gyp links -ltensorflow -ltensorflow_framework
#    from deps/lib with rpath $ORIGIN/../../deps/lib and includes deps/include).
log "installing the library into $tfjs_dir/deps"
rm -rf "$tfjs_dir/deps.tmp"
cp -a "$libdir" "$tfjs_dir/deps.tmp"
rm -rf "$tfjs_dir/deps"
mv "$tfjs_dir/deps.tmp" "$tfjs_dir/deps"

# 4. The addon: compiled once per (tfjs-node, TensorFlow, N-API version) and cached; N-API
#    addons do not depend on the Node ABI, so Node upgrades reuse it.
addon_cache="$cache/tfjs-node-addon/${TFJS_NODE_VERSION}-tf${TF_VERSION}-${napi_dir}-linux-x64/tfjs_binding.node"
if [ "$force" = 1 ] || [ ! -f "$addon_cache" ]; then
  nodedir="${npm_config_nodedir:-$(dirname "$(dirname "$(node -p process.execPath)")")}"
  [ -f "$nodedir/include/node/node_api.h" ] \
    || die "Node headers not found under $nodedir/include/node (node-gyp would try to download them); set npm_config_nodedir to a directory with include/node"
  if ! command -v g++ >/dev/null || ! command -v make >/dev/null; then
    die "g++ and make are needed to compile the addon (apt-get install -y g++ make)"
  fi
  log "compiling the addon with node-gyp (nodedir $nodedir); this takes a few minutes"
  (
    cd "$tfjs_dir"
    export npm_config_nodedir="$nodedir"
    export JOBS="${JOBS:-2}"
    node "$(node -p "require.resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp')")" \
      install --build-from-source --nodedir="$nodedir" >&2
  ) || die "the addon did not compile; see the node-gyp output above"
  [ -f "$addon_path" ] || die "node-gyp finished but $addon_path is missing"
  mkdir -p "$(dirname "$addon_cache")"
  cp "$addon_path" "$addon_cache.tmp" && mv "$addon_cache.tmp" "$addon_cache"
else
  log "using the cached addon $addon_cache"
  mkdir -p "$(dirname "$addon_path")"
  cp "$addon_cache" "$addon_path"
fi

echo "$stamp_value" > "$stamp_file"
verify
log "done: @tensorflow/tfjs-node $TFJS_NODE_VERSION on libtensorflow $TF_VERSION"
