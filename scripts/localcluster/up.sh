#!/usr/bin/env bash
# Starts a throwaway control plane on 127.0.0.1 for offline `pulumi up` and
# tests: etcd + kube-apiserver (token auth, RBAC) and a MinIO server.
# When their binaries were built (build.sh --with-optional), also
# kube-controller-manager (namespace deletion, ReplicaSets, GC), kube-scheduler
# and kwok with two fake nodes (kwok-cpu-0, kwok-gpu-0 with nvidia.com/gpu: 4),
# so pods are scheduled and reported Running. No container ever runs.
#
# With --node real, a real single node instead of kwok: etcd, kube-apiserver,
# controller-manager, scheduler, containerd (runc, CNI bridge), kubelet,
# kube-proxy and CoreDNS all run inside a network namespace this script creates
# (node.sh), reached from the host through forwards on 127.0.0.1 only.
#
# Usage: scripts/localcluster/up.sh [--node kwok|real] [--only apiserver|minio]
#                                   [--no-controllers] [--forward NAME=IP:PORT]... [--check]
#   --node kwok       (default) fake nodes, no container ever runs
#   --node real       a real node in its own network namespace (see node.sh)
#   --only X          start just the API server side (with --node real: the whole
#                     cluster without MinIO) or just MinIO
#   --no-controllers  do not start controller-manager, scheduler and kwok
#   --forward N=IP:P  (real node) forward a port on 127.0.0.1 to IP:P inside the
#                     node's namespace (a Service's ClusterIP, a pod); the port
#                     is written to local.env as MLPLATFORM_FORWARD_<N>
#   --check           after start, create+delete a namespace (and a pod when
#                     the controllers run) and probe MinIO health
# Idempotent: what already runs is left alone. Prints the env file to source.
# State, certs, credentials and logs: ${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}
# Binaries: ${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/bin (scripts/tools/build.sh), else PATH.
set -euo pipefail

STATE_DIR=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}
TOOLS_BIN=${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST=127.0.0.1 # the only address anything here listens on or talks to
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1 # first address of SERVICE_CIDR: the `kubernetes` Service
CONTEXT=mlplatform-local
# Real node only: everything below lives inside the node's network namespace.
# shellcheck source=node.env
source "$HERE/node.env"
NODE_MODE=kwok
NS_EXEC=() # prefix that runs a command in the node's namespace (real node)

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Like find_bin, but prints nothing when the tool is absent.
find_opt_bin() {
  if [[ -x $TOOLS_BIN/$1 ]]; then printf '%s\n' "$TOOLS_BIN/$1"; return; fi
  command -v "$1" 2>/dev/null || true
}

find_bin() {
  if [[ -x $TOOLS_BIN/$1 ]]; then printf '%s\n' "$TOOLS_BIN/$1"; return; fi
  command -v "$1" 2>/dev/null ||
    die "$1 not found in $TOOLS_BIN or PATH: run scripts/tools/build.sh etcd kube-apiserver minio"
}

# True if the pid in $STATE_DIR/$1.pid is alive and still runs binary $2
# (guards against a recycled pid after a reboot or crash).
running() {
  local pidf=$STATE_DIR/$1.pid pid exe
  [[ -f $pidf ]] || return 1
  pid=$(<"$pidf")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ ${exe##*/} == "$2" || ${exe##*/} == "$2 (deleted)" ]]
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A port nothing listens on; reuses the one recorded for $1 when still free so
# kubeconfig and env files stay valid across restarts.
pick_port() {
  local name=$1 key=PORT_${1^^} p
  p=$(sed -n "s/^$key=//p" "$STATE_DIR/ports.env" 2>/dev/null || true)
  if [[ -n $p ]] && ! port_in_use "$p"; then printf '%s\n' "$p"; return; fi
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! port_in_use "$p" && ! grep -q "=$p\$" "$STATE_DIR/ports.env" 2>/dev/null; then
      sed -i "/^$key=/d" "$STATE_DIR/ports.env"
      printf '%s=%s\n' "$key" "$p" >>"$STATE_DIR/ports.env"
      printf '%s\n' "$p"
      return
    fi
  done
  die "no free port found for $name"
}

# Runs a daemon detached (own session, so it outlives this shell and its
# process group); the pid file holds the daemon's own pid.
spawn() {
  local name=$1; shift
  rm -f "$STATE_DIR/$name.pid"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid "${NS_EXEC[@]}" bash -c 'umask 022; echo $$ >"$0"; exec "$@"' "$STATE_DIR/$name.pid" "$@" \
    </dev/null >>"$STATE_DIR/logs/$name.log" 2>&1 &
  for _ in $(seq 50); do [[ -s $STATE_DIR/$name.pid ]] && return 0; sleep 0.1; done
  die "$name did not start (log: $STATE_DIR/logs/$name.log)"
}

# wait_for NAME PROCESS_BINARY SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local name=$1 exe=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running "$name" "$exe" || { tail -n 20 "$STATE_DIR/logs/$name.log" >&2; die "$name exited"; }
    ((SECONDS < deadline)) || { tail -n 20 "$STATE_DIR/logs/$name.log" >&2; die "$name not ready after ${secs}s"; }
    sleep 0.5
  done
}

rand_hex() { openssl rand -hex "$1"; }

# ---------------------------------------------------------------------------
# Certificates and credentials (generated once, kept across restarts)
# ---------------------------------------------------------------------------
make_pki() {
  local pki=$STATE_DIR/pki
  [[ -f $pki/apiserver.crt && -f $pki/sa.key && -f $pki/tokens.csv ]] && return 0
  mkdir -p "$pki" && chmod 700 "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mlplatform-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # Serving cert: what clients dial (127.0.0.1/localhost) plus the in-cluster
  # names and Service IP, so tokens/configs made for pods would verify too.
  cat >"$pki/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # Service-account token signing key pair.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # Static token for one admin user in system:masters (token,user,uid,"groups").
  printf '%s,mlplatform-admin,mlplatform-admin,"system:masters"\n' "$(rand_hex 32)" >"$pki/tokens.csv"
  rm -f "$pki/apiserver.csr" "$pki/apiserver.ext"
  chmod 600 "$pki"/*
}

admin_token() { cut -d, -f1 "$STATE_DIR/pki/tokens.csv"; }

# sign_cert NAME SUBJECT EXT: a key pair signed by the local CA (made once).
sign_cert() {
  local pki=$STATE_DIR/pki name=$1
  [[ -f $pki/$name.crt ]] && return 0
  printf '%s\n' "$3" >"$pki/$name.ext"
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
  chmod 600 "$pki/$name.key" "$pki/$name.crt"
}

api() { # api METHOD PATH [curl args...]
  local m=$1 p=$2; shift 2
  curl -fsS --max-time 10 --cacert "$STATE_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(admin_token)" -X "$m" "https://$HOST:$API_PORT$p" "$@"
}

# write_kubeconfig [FILE SERVER]: the admin kubeconfig (default: the host's, via 127.0.0.1).
write_kubeconfig() {
  local ca file=${1:-$STATE_DIR/kubeconfig} server=${2:-https://$HOST:$API_PORT}
  ca=$(base64 -w0 <"$STATE_DIR/pki/ca.crt")
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CONTEXT
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: mlplatform-admin
  user:
    token: $(admin_token)
contexts:
- name: $CONTEXT
  context:
    cluster: $CONTEXT
    user: mlplatform-admin
    namespace: default
current-context: $CONTEXT
EOF
}

# ---------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------
start_etcd() {
  local bin client peer
  bin=$(find_bin etcd)
  if [[ $NODE_MODE == real ]]; then
    # Inside the node's namespace: its own loopback, so fixed ports.
    client=$NODE_ETCD_PORT peer=$NODE_ETCD_PEER_PORT
  fi
  if running etcd etcd; then
    log "etcd already running (pid $(<"$STATE_DIR/etcd.pid"))"
  else
    [[ -n ${client:-} ]] || client=$(pick_port etcd_client)
    [[ -n ${peer:-} ]] || peer=$(pick_port etcd_peer)
    mkdir -p "$STATE_DIR/etcd" && chmod 700 "$STATE_DIR/etcd"
    # --unsafe-no-fsync: the data is disposable and fsync dominates on CI disks.
    spawn etcd "$bin" --name mlplatform --data-dir "$STATE_DIR/etcd" \
      --listen-client-urls "http://$HOST:$client" --advertise-client-urls "http://$HOST:$client" \
      --listen-peer-urls "http://$HOST:$peer" --initial-advertise-peer-urls "http://$HOST:$peer" \
      --initial-cluster "mlplatform=http://$HOST:$peer" --initial-cluster-state new \
      --log-level warn --unsafe-no-fsync
    wait_for etcd etcd 60 "${NS_EXEC[@]}" curl -fsS --max-time 2 "http://$HOST:$client/health"
    log "etcd ready on $HOST:$client${NODE_NS:+ (namespace $NODE_NS)}"
  fi
  if [[ $NODE_MODE == real ]]; then
    ETCD_URL=http://$HOST:$NODE_ETCD_PORT
  else
    ETCD_URL=http://$HOST:$(sed -n 's/^PORT_ETCD_CLIENT=//p' "$STATE_DIR/ports.env")
  fi
}

start_apiserver() {
  local bin
  bin=$(find_bin kube-apiserver)
  make_pki
  start_etcd
  local pki=$STATE_DIR/pki mode_flags=()
  if [[ $NODE_MODE == real ]]; then
    # In the namespace: all of its addresses (its loopback for the node's
    # components and the host forward, the node IP for pods via the
    # `kubernetes` Service), with ServiceAccount tokens for pods and a client
    # certificate for the kubelet's logs/exec endpoints.
    sign_cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      $'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
    mode_flags=(--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port="$NODE_API_PORT"
      --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key"
      --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP
      --endpoint-reconciler-type=lease)
  fi
  if running apiserver kube-apiserver; then
    API_PORT=$(sed -n 's/^PORT_APISERVER=//p' "$STATE_DIR/ports.env")
    log "kube-apiserver already running (pid $(<"$STATE_DIR/apiserver.pid"), port $API_PORT)"
    [[ $NODE_MODE != real ]] || start_forward apiserver "$HOST" "$NODE_API_PORT" >/dev/null
  else
    API_PORT=$(pick_port apiserver)
    if [[ $NODE_MODE == real ]]; then
      start_forward apiserver "$HOST" "$NODE_API_PORT" >/dev/null
    else
      # ServiceAccount admission is off: no controller-manager creates the
      # `default` ServiceAccount, and without it every Pod create would be refused.
      mode_flags=(--bind-address="$HOST" --advertise-address="$HOST" --secure-port="$API_PORT"
        --disable-admission-plugins=ServiceAccount)
    fi
    spawn apiserver "$bin" "${mode_flags[@]}" \
      --etcd-servers="$ETCD_URL" \
      --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
      --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
      --authorization-mode=RBAC --anonymous-auth=false \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
      --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
      --allow-privileged=true --profiling=false
    wait_for apiserver kube-apiserver 120 api GET /readyz
    log "kube-apiserver ready on https://$HOST:$API_PORT"
  fi
  write_kubeconfig
  if [[ $NODE_MODE == real ]]; then
    # What the node's own components use: the namespace's loopback.
    write_kubeconfig "$STATE_DIR/kubeconfig-node" "https://$HOST:$NODE_API_PORT"
    start_controllers
    start_node
  else
    ((NO_CONTROLLERS)) || start_controllers
  fi
}

# Controllers talk to the API server with the admin kubeconfig; none of them
# serves HTTPS (--secure-port=0), so they open no ports at all.
start_controllers() {
  local kcm sched kwok stages pki=$STATE_DIR/pki kc=$STATE_DIR/kubeconfig
  kcm=$(find_opt_bin kube-controller-manager)
  sched=$(find_opt_bin kube-scheduler)
  kwok=$(find_opt_bin kwok)
  if [[ $NODE_MODE == real ]]; then
    kc=$STATE_DIR/kubeconfig-node
    kcm=$(find_bin kube-controller-manager) sched=$(find_bin kube-scheduler) kwok=''
  fi
  stages=$TOOLS_BIN/../share/kwok/stages.yaml
  if [[ -n $kcm ]]; then
    if running controller-manager kube-controller-manager; then
      log "kube-controller-manager already running (pid $(<"$STATE_DIR/controller-manager.pid"))"
    else
      spawn controller-manager "$kcm" --kubeconfig="$kc" --secure-port=0 --leader-elect=false \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --service-cluster-ip-range="$SERVICE_CIDR"
      # The ServiceAccount controller creating default/default means it is up.
      wait_for controller-manager kube-controller-manager 60 \
        api GET /api/v1/namespaces/default/serviceaccounts/default
      log "kube-controller-manager ready"
    fi
  fi
  if [[ -n $sched ]]; then
    if running scheduler kube-scheduler; then
      log "kube-scheduler already running (pid $(<"$STATE_DIR/scheduler.pid"))"
    else
      spawn scheduler "$sched" --kubeconfig="$kc" --secure-port=0 --leader-elect=false
      sleep 1
      running scheduler kube-scheduler || { tail -n 20 "$STATE_DIR/logs/scheduler.log" >&2; die "kube-scheduler exited"; }
      log "kube-scheduler started"
    fi
  fi
  if [[ -n $kwok && -f $stages ]]; then
    if running kwok kwok; then
      log "kwok already running (pid $(<"$STATE_DIR/kwok.pid"))"
    else
      # Pod IPs come from a range apart from the Service range.
      spawn kwok "$kwok" --kubeconfig="$kc" --config="$stages" \
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --cidr=10.244.0.0/16 --node-ip=10.244.255.254
      sleep 1
      running kwok kwok || { tail -n 20 "$STATE_DIR/logs/kwok.log" >&2; die "kwok exited"; }
      log "kwok started"
    fi
    make_node kwok-cpu-0 '"cpu":"16","memory":"64Gi","pods":"110"' ''
    make_node kwok-gpu-0 '"cpu":"16","memory":"64Gi","pods":"110","nvidia.com/gpu":"4"' \
      ',"nvidia.com/gpu.present":"true"'
  elif [[ -n $kwok ]]; then
    log "kwok found but not $stages (run scripts/tools/build.sh kwok); no fake nodes"
  fi
  return 0
}

# make_node NAME RESOURCES EXTRA_LABELS: a fake node kwok keeps Ready.
make_node() {
  local body
  api GET "/api/v1/nodes/$1" >/dev/null 2>&1 && return 0
  body=$(printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},"labels":{"kubernetes.io/hostname":"%s","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","type":"kwok"%s}},"spec":{},"status":{"capacity":{%s},"allocatable":{%s}}}' \
    "$1" "$1" "$3" "$2" "$2")
  api POST /api/v1/nodes -H 'Content-Type: application/json' -d "$body" >/dev/null
  log "node $1 created"
}

start_minio() {
  local bin port console
  bin=$(find_bin minio)
  if [[ ! -f $STATE_DIR/minio.env ]]; then
    # Random root credentials, never MinIO's well-known defaults.
    MINIO_ROOT_USER=mlp$(rand_hex 6) MINIO_ROOT_PASSWORD=$(rand_hex 20)
  else
    MINIO_ROOT_USER=$(sed -n 's/^MINIO_ROOT_USER=//p' "$STATE_DIR/minio.env")
    MINIO_ROOT_PASSWORD=$(sed -n 's/^MINIO_ROOT_PASSWORD=//p' "$STATE_DIR/minio.env")
  fi
  if running minio minio; then
    port=$(sed -n 's/^PORT_MINIO=//p' "$STATE_DIR/ports.env")
    log "minio already running (pid $(<"$STATE_DIR/minio.pid"), port $port)"
  else
    port=$(pick_port minio)
    console=$(pick_port minio_console)
    mkdir -p "$STATE_DIR/minio"
    # Console off and update checks off: nothing here may reach the internet.
    # On the host's 127.0.0.1 even with a real node (its clients are host-side).
    local saved=("${NS_EXEC[@]}")
    NS_EXEC=()
    MINIO_ROOT_USER=$MINIO_ROOT_USER MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD \
      MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
      spawn minio "$bin" server "$STATE_DIR/minio" --address "$HOST:$port" \
      --console-address "$HOST:$console" --quiet
    NS_EXEC=("${saved[@]}")
    wait_for minio minio 60 curl -fsS --max-time 2 "http://$HOST:$port/minio/health/ready"
    log "minio ready on http://$HOST:$port"
  fi
  umask 077
  cat >"$STATE_DIR/minio.env" <<EOF
MINIO_ENDPOINT=http://$HOST:$port
MINIO_ROOT_USER=$MINIO_ROOT_USER
MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD
AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER
AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD
AWS_REGION=us-east-1
AWS_ENDPOINT_URL_S3=http://$HOST:$port
EOF
}

write_local_env() {
  umask 077
  {
    printf '# Generated by scripts/localcluster/up.sh; source this file.\n'
    if running apiserver kube-apiserver; then
      printf 'export KUBECONFIG=%s\n' "$STATE_DIR/kubeconfig"
    fi
    if running minio minio; then
      sed 's/^/export /' "$STATE_DIR/minio.env"
    fi
    if [[ $NODE_MODE == real ]]; then
      printf 'export MLPLATFORM_NODE=real\nexport MLPLATFORM_NETNS=%s\n' "$NODE_NS"
      printf 'export CONTAINERD_ADDRESS=%s\nexport CONTAINERD_NAMESPACE=k8s.io\n' "$CONTAINERD_SOCK"
      local f n
      for f in "$STATE_DIR"/fwd-*.port; do
        [[ -f $f ]] || continue
        n=${f##*/fwd-}; n=${n%.port}
        [[ $n == apiserver ]] && continue
        printf 'export MLPLATFORM_FORWARD_%s=%s:%s\n' "$(tr 'a-z-' 'A-Z_' <<<"$n")" "$HOST" "$(<"$f")"
      done
    fi
  } >"$STATE_DIR/local.env"
}

check() {
  local ns=mlp-check-$RANDOM
  if [[ -n ${API_PORT:-} ]]; then
    api GET /api/v1/namespaces >/dev/null
    api POST /api/v1/namespaces -H 'Content-Type: application/json' \
      -d "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" >/dev/null
    api GET "/api/v1/namespaces/$ns" >/dev/null
    local image=busybox
    [[ $NODE_MODE != real ]] || image=$NODE_TEST_IMAGE
    if { running kwok kwok || [[ $NODE_MODE == real ]]; } && running scheduler kube-scheduler; then
      api POST "/api/v1/namespaces/$ns/pods" -H 'Content-Type: application/json' \
        -d '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"check"},"spec":{"containers":[{"name":"c","image":"'"$image"'","imagePullPolicy":"Never","command":["sleep","3600"]}]}}' >/dev/null
      local deadline=$((SECONDS + 60)) phase=''
      until [[ $phase == Running ]]; do
        ((SECONDS < deadline)) || die "check: pod not Running after 60s (phase '$phase')"
        sleep 1
        phase=$(api GET "/api/v1/namespaces/$ns/pods/check" | sed -n 's/.*"phase": *"\([A-Za-z]*\)".*/\1/p')
      done
      log "check: pod scheduled onto a $NODE_MODE node and Running"
    fi
    api DELETE "/api/v1/namespaces/$ns" >/dev/null
    if running controller-manager kube-controller-manager; then
      # Namespace finalization is the controller-manager's job.
      local deadline=$((SECONDS + 60))
      while api GET "/api/v1/namespaces/$ns" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "check: namespace $ns still present after 60s"
        sleep 1
      done
      log "check: API server listed, created and deleted namespace $ns (gone)"
    else
      log "check: API server listed, created and deleted namespace $ns (stays Terminating without controller-manager)"
    fi
  fi
  if [[ -f $STATE_DIR/minio.env ]] && running minio minio; then
    curl -fsS --max-time 5 "$(sed -n 's/^MINIO_ENDPOINT=//p' "$STATE_DIR/minio.env")/minio/health/ready" >/dev/null
    log "check: minio /minio/health/ready OK"
  fi
}

main() {
  local only='' do_check=0 fwd
  NO_CONTROLLERS=0 FORWARDS=()
  while (($#)); do
    case $1 in
      --node) NODE_MODE=${2:-}; shift ;;
      --node=*) NODE_MODE=${1#--node=} ;;
      --forward) FORWARDS+=("${2:-}"); shift ;;
      --forward=*) FORWARDS+=("${1#--forward=}") ;;
      --no-controllers) NO_CONTROLLERS=1 ;;
      --only) only=${2:-}; shift ;;
      --only=*) only=${1#--only=} ;;
      --check) do_check=1 ;;
      -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}"; return 0 ;;
      *) die "unknown argument $1" ;;
    esac
    shift
  done
  [[ -z $only || $only == apiserver || $only == minio ]] || die "--only takes apiserver or minio"
  [[ $NODE_MODE == kwok || $NODE_MODE == real ]] || die "--node takes kwok or real"
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  mkdir -p "$STATE_DIR/logs" && chmod 700 "$STATE_DIR"
  touch "$STATE_DIR/ports.env"
  # One mode per state dir at a time: switching needs down.sh first.
  if [[ -f $STATE_DIR/node.mode && $(<"$STATE_DIR/node.mode") != "$NODE_MODE" ]] &&
    { running etcd etcd || running apiserver kube-apiserver; }; then
    die "the cluster in $STATE_DIR runs with --node $(<"$STATE_DIR/node.mode"); run down.sh first"
  fi
  if [[ $NODE_MODE == real ]]; then
    # --only apiserver: the whole cluster without MinIO; --only minio: just MinIO.
    # shellcheck source=node.sh
    source "$HERE/node.sh"
    node_prepare
  else
    ((${#FORWARDS[@]} == 0)) || die "--forward needs --node real"
  fi
  [[ $only == minio ]] || printf '%s\n' "$NODE_MODE" >"$STATE_DIR/node.mode"

  [[ $only == minio ]] || start_apiserver
  [[ $only == apiserver ]] || start_minio
  for fwd in "${FORWARDS[@]}"; do
    [[ $fwd =~ ^([a-z0-9-]+)=([0-9.]+):([0-9]+)$ ]] || die "--forward takes NAME=IP:PORT (got '$fwd')"
    start_forward "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" >/dev/null
  done
  write_local_env
  ((do_check == 0)) || check
  printf '%s\n' "$STATE_DIR/local.env"
}

[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"
