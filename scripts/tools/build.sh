#!/usr/bin/env bash
# Builds the native tools the platform needs offline (Pulumi CLI + plugins,
# etcd, kube-apiserver, MinIO; with --with-node the real node's kubelet,
# kube-proxy, CoreDNS and pause) from Go modules at the versions pinned in
# versions.env. Each tool gets a small generated wrapper module under the cache
# dir (never in the repo) that requires the upstream module and repeats its
# go.mod `replace` lines, since `go build mod@version` alone ignores them.
#
# Usage: scripts/tools/build.sh [--keep-going] [--with-optional] [--with-node] [--list] [TOOL...]
#   no TOOL       build the default set (see DEFAULT_TOOLS)
#   --keep-going  build the rest after a failure, report failures at the end
#   --with-optional  also build kube-controller-manager, kube-scheduler, kwok
#   --with-node   also build what a real node needs (NODE_TOOLS; implies --with-optional)
#   --list        print tools and pins, build nothing
# Output: ${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/bin (and share/kwok)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$SCRIPT_DIR/versions.env"

DEFAULT_TOOLS=(pulumi pulumi-language-nodejs pulumi-resource-kubernetes etcd kube-apiserver minio)
OPTIONAL_TOOLS=(kube-controller-manager kube-scheduler kwok)
# The real node (scripts/localcluster/up.sh --node real). pause is the pod sandbox
# binary, compiled with the C compiler from the pause.c inside the k8s.io/kubernetes
# module (nothing of it is copied into the repo).
NODE_TOOLS=(kubelet kube-proxy coredns pause)
# Asked for by the program (npm @pulumi/random) but not obtainable offline; only
# built when named explicitly, so the default run stays green (see versions.env).
UNAVAILABLE_TOOLS=(pulumi-resource-random)

TOOLS_DIR=${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}
BIN_DIR=$TOOLS_DIR/bin
STAMP_DIR=$TOOLS_DIR/stamps
WRAP_ROOT=$TOOLS_DIR/wrappers
LOG_DIR=$TOOLS_DIR/logs

# Module and build caches live beside the binaries so a second run (or another
# checkout) reuses them; GOTOOLCHAIN=local because no toolchain can be downloaded.
export GOMODCACHE=$TOOLS_DIR/go/mod
export GOCACHE=$TOOLS_DIR/go/cache
export GOPATH=$TOOLS_DIR/go/path
export GOTOOLCHAIN=local GOWORK=off GO111MODULE=on
# Static binaries: no C toolchain needed, and they run on any glibc.
export CGO_ENABLED=0
# -mod=mod lets the wrapper's go.mod/go.sum be completed during the build;
# -modcacherw keeps the module cache deletable with a plain rm -rf.
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}$GO_NOSUMDB_PATTERNS

log() { printf '%s\n' "$*" >&2; }
die() { log "build.sh: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Tool recipes. Each sets:
#   T_MOD T_VER   upstream module and version the wrapper requires
#   T_PKG         package to build (import path, or "." for a generated main)
#   T_LDFLAGS     extra -X flags (version strings the tool reports)
#   T_LOCALVER    version for modules upstream replaces with local paths
#                 (empty: the version upstream's own require line names)
#   T_EXTRA       extra "module version" requires
#   T_RESOLVE     function run first in the build (network allowed) that may
#                 switch T_MOD/T_VER/T_PKG to a fallback (optional)
#   T_PREP        function run in the wrapper dir before building (optional)
#   T_PIN         text identifying the pin (goes into the stamp)
#   T_BUILD       function that builds "$1" itself instead of the wrapper + go build (optional)
# ---------------------------------------------------------------------------
reset_recipe() {
  T_MOD='' T_VER='' T_PKG='' T_LDFLAGS='' T_LOCALVER='' T_PREP='' T_PIN='' T_RESOLVE='' T_BUILD=''
  T_EXTRA=()
}

k8s_ldflags() {
  # component-base/version feeds --version, /version and the compatibility-version
  # logic of 1.31+; unset it reports v0.0.0-master.
  local v=$KUBERNETES_VERSION minor
  minor=${v#v1.}; minor=${minor%%.*}
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf ' -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
      "$p" "$v" "$p" "$p" "$minor" "$p"
  done
}

recipe() {
  reset_recipe
  case $1 in
    pulumi)
      T_MOD=$PULUMI_MODULE T_VER=$PULUMI_VERSION
      T_PKG=$PULUMI_MODULE/cmd/pulumi
      T_LDFLAGS="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
      T_EXTRA=("$PULUMI_SDK_MODULE $PULUMI_SDK_VERSION")
      ;;
    pulumi-language-nodejs)
      T_PIN="$PULUMI_NODEJS_MODULE@$PULUMI_NODEJS_VERSION fallback=$PULUMI_NODEJS_FALLBACK_MODULE@$PULUMI_NODEJS_FALLBACK_VERSION"
      T_MOD=$PULUMI_NODEJS_MODULE T_VER=$PULUMI_NODEJS_VERSION T_PKG=$PULUMI_NODEJS_MODULE
      T_RESOLVE=resolve_nodejs_host
      T_PREP=prep_nodejs_shims
      ;;
    pulumi-resource-kubernetes)
      T_MOD=$K8S_PROVIDER_MODULE T_VER=$K8S_PROVIDER_VERSION T_PKG=.
      T_PIN="$T_MOD@$T_VER semver=$K8S_PROVIDER_SEMVER sdk=$K8S_PROVIDER_SDK_VERSION"
      # The engine reads this through GetPluginInfo; the user agent uses it too.
      T_LDFLAGS="-X $K8S_PROVIDER_MODULE/pkg/version.Version=$K8S_PROVIDER_SEMVER"
      T_EXTRA=("$K8S_PROVIDER_SDK_MODULE $K8S_PROVIDER_SDK_VERSION")
      T_PREP=prep_k8s_provider
      ;;
    pulumi-resource-random)
      T_MOD=$RANDOM_PROVIDER_MODULE T_VER=$RANDOM_PROVIDER_VERSION
      T_PKG=$RANDOM_PROVIDER_MODULE/cmd/pulumi-resource-random
      T_LDFLAGS="-X $RANDOM_PROVIDER_MODULE/pkg/version.Version=${RANDOM_PROVIDER_VERSION#v}"
      ;;
    etcd)
      T_MOD=$ETCD_MODULE T_VER=$ETCD_VERSION T_PKG=.
      T_PREP=prep_etcd_main
      ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      T_MOD=$KUBERNETES_MODULE T_VER=$KUBERNETES_VERSION
      T_PKG=$KUBERNETES_MODULE/cmd/$1
      T_LOCALVER=v0.${KUBERNETES_VERSION#v1.}
      T_LDFLAGS=$(k8s_ldflags)
      ;;
    minio)
      # MinIO's own Makefile sets these; the date comes from the pseudo-version.
      local ts commit date
      ts=${MINIO_VERSION#v0.0.0-}; ts=${ts%%-*}
      commit=${MINIO_VERSION##*-}
      date=$(printf '%s-%s-%sT%s:%s:%sZ' "${ts:0:4}" "${ts:4:2}" "${ts:6:2}" "${ts:8:2}" "${ts:10:2}" "${ts:12:2}")
      T_MOD=$MINIO_MODULE T_VER=$MINIO_VERSION T_PKG=$MINIO_MODULE
      T_LDFLAGS="-X github.com/minio/minio/cmd.Version=$date"
      T_LDFLAGS+=" -X github.com/minio/minio/cmd.ReleaseTag=DEVELOPMENT.${date//:/-}"
      T_LDFLAGS+=" -X github.com/minio/minio/cmd.CommitID=$commit"
      T_LDFLAGS+=" -X github.com/minio/minio/cmd.ShortCommitID=$commit"
      T_LDFLAGS+=" -X github.com/minio/minio/cmd.CopyrightYear=${ts:0:4}"
      ;;
    coredns)
      T_MOD=$COREDNS_MODULE T_VER=$COREDNS_VERSION T_PKG=$COREDNS_MODULE
      T_LDFLAGS="-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
      ;;
    pause)
      T_MOD=$KUBERNETES_MODULE T_VER=$KUBERNETES_VERSION
      T_PIN="$T_MOD@$T_VER build/pause/linux/pause.c cc=$(cc -dumpfullversion 2>/dev/null || echo none)"
      T_BUILD=build_pause
      ;;
    kwok)
      T_MOD=$KWOK_MODULE T_VER=$KWOK_VERSION T_PKG=$KWOK_MODULE/cmd/kwok
      T_LDFLAGS="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
      T_PIN="$T_MOD@$T_VER +share/kwok/stages.yaml"
      T_PREP=prep_kwok_stages
      ;;
    *) return 1 ;;
  esac
  : "${T_PIN:=$T_MOD@$T_VER}"
  return 0
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Prints the path of MOD@VER's go.mod (downloading it); fails with go's error.
gomod_path() {
  local out err
  out=$(go mod download -json "$1@$2" 2>&1) || true
  err=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$out")
  if [[ -n $err ]]; then log "$err"; return 1; fi
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$out"
}

module_dir() {
  local out dir
  out=$(go mod download -json "$1@$2") || return 1
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$out")
  [[ -n $dir ]] && printf '%s\n' "$dir"
}

module_available() {
  go mod download -json "$1@$2" >/dev/null 2>&1
}

# Prints upstream replace directives, one per line, comments stripped.
replace_lines() {
  awk '
    { sub(/[[:space:]]*\/\/.*$/, "") }
    /^replace[[:space:]]*\($/ { inblk = 1; next }
    inblk && /^\)/ { inblk = 0; next }
    inblk && NF { sub(/^[[:space:]]+/, ""); print; next }
    /^replace[[:space:]]/ { sub(/^replace[[:space:]]+/, ""); print }
  ' "$1"
}

# Version upstream's go.mod requires for module $2 (empty if none).
required_version() {
  awk -v m="$2" '
    { sub(/[[:space:]]*\/\/.*$/, "") }
    /^require[[:space:]]*\($/ { inblk = 1; next }
    inblk && /^\)/ { inblk = 0; next }
    inblk && $1 == m { print $2; exit }
    /^require[[:space:]]/ && $2 == m { print $3; exit }
  ' "$1"
}

# Writes the wrapper go.mod for the current recipe into $1.
write_wrapper() {
  local dir=$1 upstream goline line old new requires=() replaces=() extra m v
  upstream=$(gomod_path "$T_MOD" "$T_VER") || return 1
  # Same go line as upstream: it sets the language version and GODEBUG defaults.
  goline=$(awk '$1 == "go" { print; exit }' "$upstream")
  requires+=("$T_MOD $T_VER")
  for extra in "${T_EXTRA[@]}"; do requires+=("$extra"); done
  while IFS= read -r line; do
    old=${line%%=>*}; new=${line#*=>}
    read -r new _ <<<"$new"
    read -r m _ <<<"$old"
    if [[ $new == .* || $new == /* ]]; then
      # A path inside the upstream checkout: depend on the published module
      # instead, unless an explicit extra require already covers it.
      local covered=0
      for extra in "${T_EXTRA[@]}"; do [[ ${extra%% *} == "$m" ]] && covered=1; done
      ((covered)) && continue
      v=${T_LOCALVER:-$(required_version "$upstream" "$m")}
      [[ -n $v ]] && requires+=("$m $v")
    else
      replaces+=("$line")
    fi
  done < <(replace_lines "$upstream")

  {
    printf '// Generated by scripts/tools/build.sh for %s; do not edit.\n' "$T_PIN"
    printf 'module mlplatform.local/tools/wrapper\n\n%s\n\nrequire (\n' "${goline:-go 1.22}"
    printf '\t%s\n' "${requires[@]}"
    printf ')\n'
    if ((${#replaces[@]})); then
      printf '\nreplace (\n'
      printf '\t%s\n' "${replaces[@]}"
      printf ')\n'
    fi
  } >"$dir/go.mod"
}

# etcd's binary main lives in the repo-root module; this is the same main.
prep_etcd_main() {
  cat >main.go <<'EOF'
// Generated by scripts/tools/build.sh: the etcd binary's main, as upstream's.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
}

# The provider's main embeds schema-embed.json, which upstream generates
# (`go generate`) from schema.json with the version filled in: do the same here,
# with upstream's own generator, then build upstream's main.go beside it.
prep_k8s_provider() {
  local src
  src=$(module_dir "$T_MOD" "$T_VER") || return 1
  src+=/cmd/pulumi-resource-kubernetes
  cp "$src/main.go" "$src/schema.json" "$src/terraform-mapping.json" . &&
    mkdir -p gen && cp "$src/generate.go" gen/ &&
    chmod u+w ./*.json ./*.go gen/*.go &&
    VERSION=$K8S_PROVIDER_SEMVER go run ./gen/generate.go &&
    rm -rf gen schema.json terraform-mapping.json
}

# Prefer the host module of the CLI's release; fall back to the last sdk/v3
# release that still contained it when the proxy does not serve that module.
resolve_nodejs_host() {
  if ! module_available "$PULUMI_NODEJS_MODULE" "$PULUMI_NODEJS_VERSION"; then
    log "note: $PULUMI_NODEJS_MODULE@$PULUMI_NODEJS_VERSION is not served by the module proxy;" \
      "building the host inside $PULUMI_NODEJS_FALLBACK_MODULE@$PULUMI_NODEJS_FALLBACK_VERSION"
    T_MOD=$PULUMI_NODEJS_FALLBACK_MODULE T_VER=$PULUMI_NODEJS_FALLBACK_VERSION
    T_PKG=$PULUMI_NODEJS_FALLBACK_MODULE/nodejs/cmd/pulumi-language-nodejs
  fi
  T_LDFLAGS="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$T_VER"
}

# kwok does nothing without Stage configs (kwokctl normally supplies them):
# install upstream's "fast" node and pod stages (nodes Ready at once, pods
# Running as soon as they are scheduled) for scripts/localcluster/up.sh.
prep_kwok_stages() {
  local src f out=$TOOLS_DIR/share/kwok/stages.yaml
  src=$(module_dir "$T_MOD" "$T_VER") || return 1
  mkdir -p "${out%/*}" || return 1
  {
    printf '# Generated by scripts/tools/build.sh from %s@%s kustomize/stage/{node,pod}/fast\n' "$T_MOD" "$T_VER"
    for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      printf -- '---\n'
      cat "$src/kustomize/stage/$f.yaml" || exit 1
    done
  } >"$out.tmp" && mv -f "$out.tmp" "$out"
}

# The pod sandbox ("pause") binary: upstream's C source, read from the module
# cache, compiled static (the image holds nothing else).
build_pause() {
  local src ver=$KUBERNETES_VERSION
  command -v cc >/dev/null || { log "no C compiler (cc): run scripts/setup-node.sh"; return 1; }
  src=$(module_dir "$T_MOD" "$T_VER") || return 1
  src+=/build/pause/linux/pause.c
  [[ -f $src ]] || { log "$src not found"; return 1; }
  cc -Os -Wall -Werror -static -DVERSION="$ver" -o "$1" "$src" && strip "$1"
}

# The Node.js SDK's dynamic-provider shim ships beside the host in Pulumi's
# release archives; copy it from the sdk module of the CLI's release.
prep_nodejs_shims() {
  local dist
  dist=$(module_dir "$PULUMI_SDK_MODULE" "$PULUMI_SDK_VERSION") || return 1
  dist+=/nodejs/dist
  install -m 0755 "$dist/pulumi-resource-pulumi-nodejs" "$BIN_DIR/pulumi-resource-pulumi-nodejs"
}

# ---------------------------------------------------------------------------
# Build one tool: 0 built/cached, 1 failed.
# ---------------------------------------------------------------------------
build_tool() {
  local tool=$1 stamp bin wrap logf start secs from
  recipe "$tool" || { log "unknown tool: $tool"; return 1; }
  bin=$BIN_DIR/$tool
  stamp=$STAMP_DIR/$tool
  local want
  want="$T_PIN go=$(go env GOVERSION) ldflags=$T_LDFLAGS"
  if [[ -x $bin && -f $stamp && $(head -n1 "$stamp") == "$want" ]]; then
    # Line 2 of the stamp: "built TOOL from MODULE@VERSION in Ns".
    from=$(sed -n '2s/^built [^ ]* from \([^ ]*\) in .*/\1/p' "$stamp")
    printf 'cached %s %s\n' "$tool" "${from##*@}"
    return 0
  fi

  wrap=$WRAP_ROOT/$tool
  logf=$LOG_DIR/$tool.log
  start=$SECONDS
  rm -rf "$wrap" && mkdir -p "$wrap"
  # main() tests this function's status, which switches errexit off for
  # everything it runs (subshells too), so each step checks its own status.
  (
    cd "$wrap" || exit 1
    if [[ -n $T_RESOLVE ]]; then "$T_RESOLVE" || exit 1; fi
    if [[ -n $T_BUILD ]]; then
      "$T_BUILD" "$bin.tmp" || exit 1
    else
      write_wrapper "$wrap" || exit 1
      if [[ -n $T_PREP ]]; then "$T_PREP" || exit 1; fi
      go build -trimpath -ldflags="-s -w $T_LDFLAGS" -o "$bin.tmp" "$T_PKG" || exit 1
    fi
    mv -f "$bin.tmp" "$bin" || exit 1
    printf '%s@%s\n' "$T_MOD" "$T_VER" >"$wrap/.built-from"
  ) >"$logf" 2>&1
  local rc=$?
  if ((rc != 0)); then
    rm -f "$bin.tmp"
    log "FAILED $tool $T_VER (log: $logf):"
    tail -n 25 "$logf" | sed 's/^/  | /' >&2
    return 1
  fi
  grep '^note:' "$logf" >&2 || true
  secs=$((SECONDS - start))
  from=$(<"$wrap/.built-from")
  printf '%s\nbuilt %s from %s in %ss\n' "$want" "$tool" "$from" "$secs" >"$stamp"
  printf 'built %s %s in %ss\n' "$tool" "${from##*@}" "$secs"
}

main() {
  local keep_going=0 with_optional=0 with_node=0 list=0 tools=() t
  while (($#)); do
    case $1 in
      --keep-going) keep_going=1 ;;
      --with-optional) with_optional=1 ;;
      --with-node) with_optional=1 with_node=1 ;;
      --list) list=1 ;;
      -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}"; return 0 ;;
      -*) die "unknown option $1" ;;
      *) tools+=("$1") ;;
    esac
    shift
  done
  command -v go >/dev/null || die "go is not on PATH"
  if ((${#tools[@]} == 0)); then
    tools=("${DEFAULT_TOOLS[@]}")
    ((with_optional)) && tools+=("${OPTIONAL_TOOLS[@]}")
    ((with_node)) && tools+=("${NODE_TOOLS[@]}")
  fi
  for t in "${tools[@]}"; do
    recipe "$t" >/dev/null 2>&1 || die "unknown tool '$t' (known: ${DEFAULT_TOOLS[*]} ${OPTIONAL_TOOLS[*]} ${NODE_TOOLS[*]} ${UNAVAILABLE_TOOLS[*]})"
  done
  if ((list)); then
    for t in "${tools[@]}"; do recipe "$t" 2>/dev/null; printf '%-28s %s\n' "$t" "$T_PIN"; done
    return 0
  fi

  mkdir -p "$BIN_DIR" "$STAMP_DIR" "$WRAP_ROOT" "$LOG_DIR" "$GOMODCACHE" "$GOCACHE"
  local failed=() total_start=$SECONDS
  for t in "${tools[@]}"; do
    if ! build_tool "$t"; then
      failed+=("$t")
      ((keep_going)) || die "failed to build $t"
    fi
  done
  log "tools in $BIN_DIR ($((SECONDS - total_start))s)"
  if [[ " ${tools[*]} " != *" pulumi-resource-random "* ]]; then
    log "note: pulumi-resource-random is not built (not obtainable offline, see versions.env)"
  fi
  if ((${#failed[@]})); then
    die "failed: ${failed[*]}"
  fi
}

main "$@"
