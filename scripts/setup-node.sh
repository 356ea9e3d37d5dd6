#!/usr/bin/env bash
# Installs the Debian packages a real local node needs (scripts/localcluster/up.sh --node real):
# containerd, runc, the CNI plugins, iptables, conntrack, socat (the 127.0.0.1 forwards),
# busybox-static (the test image's userland) and the C toolchain for the pause binary.
# Idempotent: installs only what is missing, after one `apt-get update`.
#
# Usage: scripts/setup-node.sh [--check | --build]
#   --check   only report what is missing (exit 1 if anything is)
#   --build   also build the node's tools (scripts/tools/build.sh: kubelet, kube-proxy,
#             CoreDNS, pause and the control plane) and its images
#             (scripts/localcluster/node-images.sh); all cached, so a second run is quick
#
# Pins: Debian bookworm's versions, checked when this was written. A different installed or
# candidate version is reported, not refused (security updates move the +debNuM suffix).
set -euo pipefail

# package=version the node was tested with
PACKAGES=(
  "containerd=1.6.20~ds1-1+deb12u3"
  "runc=1.1.5+ds1-1+deb12u1"
  "containernetworking-plugins=1.1.1+ds1-3+b5"
  "iptables=1.8.9-2"
  "conntrack=1:1.4.7-1+b2"
  "socat=1.7.4.4-2"
  "busybox-static=1:1.35.0-4+deb12u1+b1"
  "iproute2="
  "util-linux="
  "gcc="
  "libc6-dev="
)

log() { printf 'setup-node.sh: %s\n' "$*" >&2; }

installed_version() { { dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null || true; } | awk '$1 == "ii" { print $2 }'; }

main() {
  local check=0 missing=() p name want have
  case ${1:-} in
    '') ;;
    --check) check=1 ;;
    --build)
      printf '\n== Real node: Debian packages, kubelet, kube-proxy, CoreDNS, pause, its images\n'
      local t0=$SECONDS
      install_packages
      local root
      root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
      # The control plane and the node (the rest of build.sh's tools are setup.sh's business).
      "$root/scripts/tools/build.sh" --keep-going etcd kube-apiserver kube-controller-manager \
        kube-scheduler kubelet kube-proxy coredns pause
      "$root/scripts/localcluster/node-images.sh" >/dev/null
      echo "took $((SECONDS - t0)) s"
      return 0
      ;;
    -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}"; return 0 ;;
    *) log "unknown argument $1"; return 2 ;;
  esac
  install_packages "$check"
}

install_packages() {
  local check=${1:-0} missing=() p name want have
  for p in "${PACKAGES[@]}"; do
    name=${p%%=*} want=${p#*=}
    have=$(installed_version "$name")
    if [[ -z $have ]]; then
      missing+=("$name")
    elif [[ -n $want && $have != "$want" ]]; then
      log "note: $name $have installed (tested with $want)"
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "all node packages installed"
    return 0
  fi
  if ((check)); then
    log "missing: ${missing[*]}"
    return 1
  fi
  ((EUID == 0)) || { log "must run as root to install: ${missing[*]}"; return 1; }
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Install the tested version where the archive still has it, else the candidate.
  local args=() v
  for name in "${missing[@]}"; do
    for p in "${PACKAGES[@]}"; do [[ ${p%%=*} == "$name" ]] && want=${p#*=}; done
    v=$(apt-cache madison "$name" 2>/dev/null | awk -F'|' -v w="$want" '{ gsub(/ /, "", $2); if ($2 == w) print $2 }' | head -n1)
    if [[ -n $want && -n $v ]]; then args+=("$name=$want"); else args+=("$name"); fi
  done
  # --no-install-recommends: containerd recommends nothing we need; no services are wanted.
  apt-get install -y -qq --no-install-recommends "${args[@]}" >/dev/null
  # Debian starts containerd as a service on install where an init system runs; the local
  # node runs its own containerd (own socket and state), so a system one is not needed.
  for p in "${PACKAGES[@]}"; do
    name=${p%%=*}
    [[ -n $(installed_version "$name") ]] || { log "failed to install $name"; return 1; }
  done
  log "installed: ${missing[*]}"
}

main "$@"
