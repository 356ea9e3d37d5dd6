#!/usr/bin/env bash
# Stops what scripts/localcluster/up.sh started (by its pid files only).
#
# Usage: scripts/localcluster/down.sh [--purge]
#   --purge   also delete the state dir (etcd data, MinIO data, certs, credentials)
set -euo pipefail

STATE_DIR=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}

log() { printf 'down.sh: %s\n' "$*" >&2; }

# stop NAME BINARY: TERM, then KILL after 20s; only if the pid still runs BINARY,
# so a stale pid file never takes down an unrelated process.
stop() {
  local name=$1 exe=$2 pidf=$STATE_DIR/$1.pid pid cur
  [[ -f $pidf ]] || return 0
  pid=$(<"$pidf")
  cur=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  cur=${cur##*/}
  if [[ $pid =~ ^[0-9]+$ && ( $cur == "$exe" || $cur == "$exe (deleted)" ) ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored TERM; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  else
    log "$name not running (stale pid file)"
  fi
  rm -f "$pidf"
}

main() {
  local purge=0
  case ${1:-} in
    '') ;;
    --purge) purge=1 ;;
    -h | --help) sed -n '2,5p' "${BASH_SOURCE[0]}"; return 0 ;;
    *) log "unknown argument $1"; return 1 ;;
  esac
  if [[ -d $STATE_DIR ]]; then
    # Clients before their server, apiserver before its store (etcd).
    stop minio minio
    stop kwok kwok
    stop scheduler kube-scheduler
    stop controller-manager kube-controller-manager
    stop apiserver kube-apiserver
    stop etcd etcd
    rm -f "$STATE_DIR/local.env"
  fi
  if ((purge)); then
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
}

main "$@"
