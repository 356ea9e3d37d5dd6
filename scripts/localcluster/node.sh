# shellcheck shell=bash
# The real local node, sourced by up.sh for --node real (uses its spawn, running,
# wait_for, api, find_bin, pick_port, log and die).
#
# Layout: one network namespace per state dir (mlp-<hash of the dir>, created with
# `ip netns add`) holds the whole cluster: etcd and kube-apiserver on its loopback, the
# node IP on a veth inside it, the pods on a CNI bridge (host-local IPAM), the Service
# range routed onto that veth so kube-proxy's DNAT applies to the namespace's
# own traffic too. The namespace has no link to the host and no default route, so
# nothing of the cluster can reach any address outside it; containerd's image pulls fail
# at once ("network is unreachable"). The host reaches the API server (and any
# --forward) through socat bound on 127.0.0.1, which runs `ns-connect.sh` per
# connection: a socat inside the namespace that connects to the target there.
#
# Processes run with `nsenter --net` (network namespace only, not `ip netns exec`): the
# kubelet's volume mounts and containerd's rootfs mounts must be in one mount namespace.
# State: $STATE_DIR/node (containerd root and state, kubelet root dir, pod logs, CNI
# config and IPAM data), all removed by down.sh --purge.

# shellcheck source=../tools/versions.env
source "$HERE/../tools/versions.env"
IMAGES_DIR=${MLPLATFORM_IMAGES_DIR:-$HOME/.cache/mlplatform/images}

node_ns_name() { printf 'mlp-%s\n' "$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-8)"; }

nsx() { "${NS_EXEC[@]}" "$@"; }

# Checks the tools, creates the namespace and its interfaces, builds the node's images.
node_prepare() {
  local t missing=()
  NODE_DIR=$STATE_DIR/node
  for t in containerd containerd-shim-runc-v2 runc ctr nsenter socat iptables ip; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/loopback ]] ||
    missing+=("CNI plugins in $CNI_BIN_DIR")
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]} (run scripts/setup-node.sh)"
  for t in kubelet kube-proxy coredns pause kube-controller-manager kube-scheduler etcd kube-apiserver; do
    [[ -x $TOOLS_BIN/$t ]] || missing+=("$t")
  done
  ((${#missing[@]} == 0)) ||
    die "missing in $TOOLS_BIN: ${missing[*]} (run scripts/tools/build.sh --with-node)"
  ((EUID == 0)) || die "--node real needs root (network namespace, containerd, kubelet)"

  mkdir -p "$NODE_DIR" && chmod 700 "$NODE_DIR"
  NODE_NS=$(node_ns_name)
  printf '%s\n' "$NODE_NS" >"$STATE_DIR/node.netns"
  CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
  if [[ ! -e /run/netns/$NODE_NS ]]; then
    # Remember whether /run/netns was a mount point before: down.sh undoes only ours.
    if ! mountpoint -q /run/netns 2>/dev/null; then touch "$STATE_DIR/node.netns-mount"; fi
    ip netns add "$NODE_NS"
    log "network namespace $NODE_NS created"
  fi
  NS_EXEC=(nsenter "--net=/run/netns/$NODE_NS" --)
  nsx ip link set lo up
  if ! nsx ip link show mlpnode0 >/dev/null 2>&1; then
    # A veth pair with both ends in the namespace (this kernel has no dummy interfaces):
    # the node IP on one end, nothing on the other.
    nsx ip link add mlpnode0 type veth peer name mlpnode1
    nsx ip addr add "$NODE_IP/32" dev mlpnode0
    nsx ip link set mlpnode1 up
    nsx ip link set mlpnode0 up
    # ClusterIPs from the namespace itself (host forwards, the node's processes): a route
    # must exist before kube-proxy's OUTPUT DNAT sees the packet. A packet no Service
    # claims comes back in on mlpnode1 with the node's own source address and is dropped.
    nsx ip route add "$SERVICE_CIDR" dev mlpnode0
  fi
  # Per-namespace settings: forwarding between the pods' bridge and the node, and bridged
  # pod-to-pod traffic through iptables (Service hairpin and same-bridge backends).
  nsx sysctl -qw net.ipv4.ip_forward=1
  nsx sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
    log "note: net.bridge.bridge-nf-call-iptables not settable (br_netfilter missing?)"
  "$HERE/node-images.sh" >/dev/null
}

# start_forward NAME IP PORT: socat on 127.0.0.1:<port> (the apiserver's is API_PORT, others
# picked and kept in fwd-NAME.port) to IP:PORT inside the namespace. Prints the host port.
start_forward() {
  local name=$1 ip=$2 port=$3 hport saved=("${NS_EXEC[@]}")
  if running "fwd-$name" socat; then
    cat "$STATE_DIR/fwd-$name.port"
    return 0
  fi
  if [[ $name == apiserver ]]; then hport=$API_PORT; else hport=$(pick_port "fwd_${name//-/_}"); fi
  NS_EXEC=()
  spawn "fwd-$name" socat "TCP-LISTEN:$hport,bind=$HOST,reuseaddr,fork" \
    "EXEC:$HERE/ns-connect.sh $NODE_NS $ip $port"
  NS_EXEC=("${saved[@]}")
  printf '%s\n' "$hport" >"$STATE_DIR/fwd-$name.port"
  wait_for "fwd-$name" socat 10 port_in_use "$hport"
  log "forward 127.0.0.1:$hport -> $ip:$port (namespace $NODE_NS)"
  printf '%s\n' "$hport"
}

# emit FILE: writes stdin to FILE only when it differs (kube-proxy exits when its config
# file changes, even to the same content).
emit() {
  local tmp=$1.tmp
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

write_node_configs() {
  local pki=$STATE_DIR/pki d=$NODE_DIR
  mkdir -p "$d/containerd/certs.d" "$d/cni/net.d" "$d/cni/ipam" "$d/kubelet" "$d/pod-logs"
  # Registry config dir with no host in it: nothing is mirrored, and pulls have no route.
  emit "$d/containerd/config.toml" <<EOF
# Generated by scripts/localcluster/node.sh
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj is refused (runc then fails with
  # "can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$d/containerd/certs.d"
EOF
  emit "$d/cni/net.d/10-mlplatform.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NODE_NS",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
  sign_cert kubelet "/CN=$NODE_NAME" \
    "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  emit "$d/kubelet.yaml" <<EOF
# Generated by scripts/localcluster/node.sh
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# This VM: cgroup v1 (hybrid), no systemd, no CAP_SYS_RESOURCE, swap allowed.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
# No host resolver for pods: names outside the cluster resolve nowhere.
resolvConf: ""
podLogsDir: $d/pod-logs
# Images can never be pulled again here: never collect them, and evict only when nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
serializeImagePulls: false
maxPods: 110
EOF
  emit "$d/kube-proxy.yaml" <<EOF
# Generated by scripts/localcluster/node.sh
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE_DIR/kubeconfig-node
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
iptables:
  localhostNodePorts: false
# Leave the (per-host, read-only in a namespace) conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  # CoreDNS: the cluster zone only (no `forward`: there is nowhere to forward to).
  emit "$d/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:10254
    ready 127.0.0.1:10253
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $STATE_DIR/kubeconfig-node $CONTEXT
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
}

start_containerd() {
  if running containerd containerd; then
    log "containerd already running (pid $(<"$STATE_DIR/containerd.pid"))"
  else
    spawn containerd "$(command -v containerd)" --config "$NODE_DIR/containerd/config.toml"
    wait_for containerd containerd 60 ctr --address "$CONTAINERD_SOCK" version
    log "containerd ready ($CONTAINERD_SOCK)"
  fi
}

# Imports every image archive in the image cache into containerd's k8s.io namespace, each
# once per content (a stamp per archive under containerd's root, which --purge removes).
# MLPLATFORM_NODE_IMPORT (space-separated file name patterns, default "*.tar") narrows the
# set, e.g. for tests that need only the node's own images.
import_images() {
  local f stamp_dir=$NODE_DIR/containerd/root/mlplatform-imported key n=0 s pat pats files=()
  mkdir -p "$stamp_dir"
  read -ra pats <<<"${MLPLATFORM_NODE_IMPORT:-*.tar}"
  shopt -s nullglob
  # shellcheck disable=SC2206 # the patterns are globbed on purpose
  for pat in "${pats[@]}"; do files+=("$IMAGES_DIR"/$pat); done
  for f in "${files[@]}"; do
    key=$(stat -c '%s %Y' "$f")
    stamp=$stamp_dir/${f##*/}
    [[ -f $stamp && $(<"$stamp") == "$key" ]] && continue
    s=$SECONDS
    if ! ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$f" >/dev/null; then
      log "WARNING: could not import $f (left out; tried again on the next start)"
      continue
    fi
    printf '%s\n' "$key" >"$stamp"
    log "imported ${f##*/} ($((SECONDS - s))s)"
    n=$((n + 1))
  done
  shopt -u nullglob
  ((n > 0)) || log "images: all archives in $IMAGES_DIR already imported"
  local have
  have=$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)
  grep -qx "$PAUSE_IMAGE" <<<"$have" ||
    die "the sandbox image $PAUSE_IMAGE is not in containerd (run scripts/localcluster/node-images.sh)"
}

node_ready() {
  local node
  node=$(api GET "/api/v1/nodes/$NODE_NAME") || return 1
  [[ $(tr -d ' \n' <<<"$node") == *'"type":"Ready","status":"True"'* ]]
}

start_kubelet() {
  if running kubelet kubelet; then
    log "kubelet already running (pid $(<"$STATE_DIR/kubelet.pid"))"
  else
    spawn kubelet "$TOOLS_BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" \
      --kubeconfig="$STATE_DIR/kubeconfig-node" --root-dir="$NODE_DIR/kubelet" \
      --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
  fi
  wait_for kubelet kubelet 120 node_ready
  log "node $NODE_NAME Ready"
}

start_kube_proxy() {
  if running kube-proxy kube-proxy; then
    log "kube-proxy already running (pid $(<"$STATE_DIR/kube-proxy.pid"))"
    return 0
  fi
  spawn kube-proxy "$TOOLS_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  wait_for kube-proxy kube-proxy 60 nsx curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
  log "kube-proxy ready"
}

# The kube-dns Service at DNS_SERVICE_IP, backed by CoreDNS on the node IP (an EndpointSlice
# this script owns: CoreDNS runs as a node process, not a pod).
ensure_dns_service() {
  local svc slice
  if ! api GET /api/v1/namespaces/kube-system/services/kube-dns >/dev/null 2>&1; then
    svc='{"apiVersion":"v1","kind":"Service","metadata":{"name":"kube-dns","namespace":"kube-system","labels":{"k8s-app":"kube-dns","kubernetes.io/name":"CoreDNS"}},"spec":{"clusterIP":"'$DNS_SERVICE_IP'","ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}]}}'
    api POST /api/v1/namespaces/kube-system/services -H 'Content-Type: application/json' -d "$svc" >/dev/null
  fi
  if ! api GET /apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns-node >/dev/null 2>&1; then
    slice='{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"kube-dns-node","namespace":"kube-system","labels":{"kubernetes.io/service-name":"kube-dns","endpointslice.kubernetes.io/managed-by":"mlplatform-localcluster"}},"addressType":"IPv4","endpoints":[{"addresses":["'$NODE_IP'"],"conditions":{"ready":true},"nodeName":"'$NODE_NAME'"}],"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}]}'
    api POST /apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices -H 'Content-Type: application/json' -d "$slice" >/dev/null
  fi
}

start_coredns() {
  ensure_dns_service
  if running coredns coredns; then
    log "coredns already running (pid $(<"$STATE_DIR/coredns.pid"))"
    return 0
  fi
  spawn coredns "$TOOLS_BIN/coredns" -conf "$NODE_DIR/Corefile"
  wait_for coredns coredns 60 nsx curl -fsS --max-time 2 http://127.0.0.1:10253/ready
  log "coredns ready on $NODE_IP:53 (Service kube-system/kube-dns $DNS_SERVICE_IP)"
}

# After the control plane (called from start_apiserver): the node itself.
start_node() {
  local t0=$SECONDS
  write_node_configs
  start_containerd
  import_images
  start_kubelet
  start_kube_proxy
  start_coredns
  log "real node up in $((SECONDS - t0))s"
}
