#!/usr/bin/env bash
# Stops what scripts/localcluster/up.sh started (by its pid files only). With a real
# node (up.sh --node real) it also removes the containers, the pods' network
# namespaces, every mount under the state dir, the node's network namespace (and
# with it its interfaces and iptables rules) and the CNI cache entries: nothing is
# left behind. Idempotent.
#
# Usage: scripts/localcluster/down.sh [--purge]
#   --purge   also delete the state dir (etcd data, MinIO data, images imported
#             into the node's containerd, certs, credentials)
set -euo pipefail

STATE_DIR=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}

log() { printf 'down.sh: %s\n' "$*" >&2; }

# Alive and not a zombie (an exited daemon stays a zombie until init reaps it).
alive() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

# stop NAME:BINARY...: TERM to each, then KILL what still runs after 20s; only pids
# that still run their BINARY, so a stale pid file never takes down an unrelated process.
stop() {
  local spec name exe pidf pid cur pids=() names=()
  # Old form: stop NAME BINARY.
  if (($# == 2)) && [[ $1 != *:* ]]; then set -- "$1:$2"; fi
  for spec in "$@"; do
    name=${spec%%:*} exe=${spec#*:} pidf=$STATE_DIR/$name.pid
    [[ -f $pidf ]] || continue
    pid=$(<"$pidf")
    cur=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    cur=${cur##*/}
    if [[ $pid =~ ^[0-9]+$ && ( $cur == "$exe" || $cur == "$exe (deleted)" ) ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    else
      log "$name not running (stale pid file)"
    fi
    rm -f "$pidf"
  done
  local i left
  for _ in $(seq 200); do
    left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if alive "${pids[i]}"; then
      log "${names[i]} (pid ${pids[i]}) ignored TERM; killing"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    log "stopped ${names[i]} (pid ${pids[i]})"
  done
}

# Pids of every process whose network namespace has inode $1.
pids_in_netns() {
  local p ino
  for p in /proc/[0-9]*; do
    ino=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
    [[ $ino == "$1" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# Pid $1 and all its descendants.
process_tree() {
  local c
  printf '%s\n' "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do process_tree "$c"; done
}

# Mount points at or under $1, deepest first.
mounts_under() {
  awk -v d="$1" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' /proc/self/mountinfo |
    awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

unmount_all_under() {
  local m
  while IFS= read -r m; do
    [[ -n $m ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(mounts_under "$1")
}

# The real node: containers, pod network namespaces, mounts, the node's namespace.
teardown_node() {
  local ns sock=$STATE_DIR/node/containerd/containerd.sock ids='' id pod_ns=() p pids ino
  ns=$(<"$STATE_DIR/node.netns")
  stop kubelet:kubelet kube-proxy:kube-proxy coredns:coredns scheduler:kube-scheduler \
    controller-manager:kube-controller-manager
  if [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1; then
    ids=$(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null || true)
    for id in $ids; do
      # Sandboxes name their network namespace (/var/run/netns/cni-...) in their spec.
      while IFS= read -r p; do pod_ns+=("$p"); done < <(ctr --address "$sock" -n k8s.io containers info "$id" 2>/dev/null |
        grep -o '"/var/run/netns/cni-[0-9a-f-]*"' | tr -d '"' | sort -u)
    done
    for id in $ids; do ctr --address "$sock" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do ctr --address "$sock" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do ctr --address "$sock" -n k8s.io containers rm "$id" >/dev/null 2>&1 || true; done
    [[ -z $ids ]] || log "removed $(wc -w <<<"$ids") containers"
  fi
  stop containerd containerd
  # Also from libcni's cache (works when containerd is gone): each of our network's entries
  # names its sandbox (file name) and the pod's network namespace (content).
  local f sid
  for f in /var/lib/cni/results/"$ns"-*; do
    [[ -f $f ]] || continue
    while IFS= read -r p; do pod_ns+=("$p"); done < <(grep -o '"/var/run/netns/cni-[0-9a-f-]*"' "$f" | tr -d '"' | sort -u)
    sid=${f##*/"$ns"-}; sid=${sid%-*}
    [[ $sid =~ ^[0-9a-f]{64}$ ]] && ids+=" $sid"
  done
  mapfile -t pod_ns < <(printf '%s\n' "${pod_ns[@]}" | sort -u | sed '/^$/d')
  # Shims (and what runs under them) that outlived containerd: they name its socket.
  for p in $(pgrep -f -- "-address $sock" 2>/dev/null || true); do
    alive "$p" || continue
    pids=$(process_tree "$p")
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    log "killed leftover shim $p and its processes"
  done
  for p in "${pod_ns[@]}"; do
    if [[ -e $p ]]; then
      ino=$(stat -L -c %i "$p" 2>/dev/null || true)
      # shellcheck disable=SC2046
      [[ -z $ino ]] || kill -KILL $(pids_in_netns "$ino") 2>/dev/null || true
      umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
      rm -f "$p"
    fi
  done
  ((${#pod_ns[@]} == 0)) || log "removed ${#pod_ns[@]} pod network namespace(s)"
  local fwds=()
  for p in "$STATE_DIR"/fwd-*.pid; do
    [[ -f $p ]] || continue
    p=${p##*/}; fwds+=("${p%.pid}:socat")
  done
  ((${#fwds[@]} == 0)) || stop "${fwds[@]}"
  rm -f "$STATE_DIR"/fwd-*.port
  stop apiserver:kube-apiserver
  stop etcd:etcd
  if [[ -e /run/netns/$ns ]]; then
    # Anything still inside the namespace (nothing should be) goes with it.
    ino=$(stat -L -c %i "/run/netns/$ns")
    pids=$(pids_in_netns "$ino")
    if [[ -n $pids ]]; then
      log "killing leftover processes in $ns: $(tr '\n' ' ' <<<"$pids")"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      sleep 0.5
    fi
  fi
  unmount_all_under "$STATE_DIR"
  if [[ -e /run/netns/$ns ]]; then
    ip netns del "$ns" && log "deleted network namespace $ns (its interfaces and iptables rules)"
  fi
  # /run/netns itself, if `ip netns add` made it a mount point for us and nothing else uses it.
  if [[ -f $STATE_DIR/node.netns-mount ]]; then
    if [[ -z $(ls -A /run/netns 2>/dev/null) ]] && mountpoint -q /run/netns; then umount /run/netns 2>/dev/null || true; fi
    rm -f "$STATE_DIR/node.netns-mount"
  fi
  # libcni's result cache (outside the state dir: our network's entries and the loopback
  # entries of our sandboxes) and our IPAM leases (all pods are gone).
  rm -f /var/lib/cni/results/"$ns"-*
  for id in $ids; do rm -f /var/lib/cni/results/cni-loopback-"$id"-*; done
  # containerd 1.6 keeps runc's state and shim sockets under /run/containerd whatever its
  # config says. After a crash (containerd or shims killed) some stay: runc's state of our
  # containers names their rootfs under our state dir; a shim's socket is named by the
  # sha256 of "<containerd address>/<namespace>/<id>".
  local st cid
  for st in /run/containerd/runc/k8s.io/*/state.json; do
    [[ -f $st ]] && grep -qF "\"$STATE_DIR/node/" "$st" || continue
    cid=${st%/state.json}; cid=${cid##*/}
    rm -rf "/run/containerd/runc/k8s.io/$cid"
    rm -f "/run/containerd/s/$(printf '%s' "$sock/k8s.io/$cid" | sha256sum | cut -d' ' -f1)"
  done
  # Then the directories it left empty, unless another containerd runs.
  if ! pgrep -x containerd >/dev/null; then
    for p in /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/fifo /run/containerd/s /run/containerd; do
      rmdir "$p" 2>/dev/null || true
    done
  fi
  rm -rf "$STATE_DIR/node/cni/ipam"
  rm -f "$STATE_DIR/node.netns"
}

main() {
  local purge=0
  case ${1:-} in
    '') ;;
    --purge) purge=1 ;;
    -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}"; return 0 ;;
    *) log "unknown argument $1"; return 1 ;;
  esac
  if [[ -d $STATE_DIR ]]; then
    if [[ -f $STATE_DIR/node.netns ]]; then
      teardown_node
    fi
    # Clients before their server, apiserver before its store (etcd).
    stop minio:minio kwok:kwok scheduler:kube-scheduler controller-manager:kube-controller-manager
    stop apiserver:kube-apiserver
    stop etcd:etcd
    rm -f "$STATE_DIR/local.env" "$STATE_DIR/node.mode"
  fi
  if ((purge)); then
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
}

main "$@"
