#!/usr/bin/env bash
# The platform on this machine, one command. Where it goes:
#   - a kubeconfig with a current context (kind, minikube, a cloud cluster): the dev stack is
#     deployed there with `pulumi up`, as `pulumi stack select --create dev && pulumi up` would;
#   - no kubeconfig: it builds what is missing (cached in ~/.cache/mlplatform), starts a real
#     single-node Kubernetes in its own network namespace (scripts/localcluster/up.sh --node
#     real), deploys the dev stack onto it with the real Pulumi engine
#     (scripts/localcluster/deploy-dev.sh), and prints where JupyterHub, the Argo server,
#     TensorBoard, the model server and MinIO answer on 127.0.0.1.
#
# Usage: scripts/up-local.sh [--local | --context NAME] [--yes] [--dry-run]
#   --local         the local node even when a kubeconfig context exists (needs root:
#                   containerd, network namespaces)
#   --context NAME  that kubeconfig context instead of the current one
#   --yes           on a kubeconfig context, deploy without asking (pulumi up --yes)
#   --dry-run       say where it would deploy and how, and stop
#        scripts/down-local.sh          destroys the local stack and stops the node
# A cold first run of the local node builds the Pulumi engine, Kubernetes and the images from
# package registries (about an hour on 2 cores); later runs take a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "up-local.sh: $*" >&2; exit 2; }

target='' context='' yes=0 dry=0
while (($#)); do
  case $1 in
    --local) target=local ;;
    --context) [[ $# -ge 2 && -n $2 ]] || die "--context needs a context name"; target=context context=$2; shift ;;
    --yes) yes=1 ;;
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# The current context of the kubeconfig kubectl would use (the first file of $KUBECONFIG
# that names one, else ~/.kube/config); empty when there is none.
current_context() {
  local f ctx
  IFS=: read -ra files <<<"${KUBECONFIG:-$HOME/.kube/config}"
  for f in "${files[@]}"; do
    [[ -n $f && -r $f ]] || continue
    ctx=$(sed -n 's/^current-context:[[:space:]]*//p' "$f" | tr -d "\"'" | head -n1)
    [[ -n $ctx ]] && { printf '%s\n' "$ctx"; return 0; }
  done
  return 0
}
if [[ -z $target ]]; then
  context=$(current_context)
  if [[ -n $context ]]; then target=context; else target=local; fi
fi

if [[ $target == context ]]; then
  stack_context=$(sed -n 's/^    context:[[:space:]]*//p' Pulumi.dev.yaml | head -n1)
  echo "up-local.sh: deploying the dev stack to kubeconfig context \"$context\" (scripts/up-local.sh --local for a node on this machine instead)"
  cmds=("pulumi stack select --create dev")
  [[ $context != "$stack_context" ]] && cmds+=("pulumi config set --path mlplatform:cluster.context $context")
  if ((yes)); then cmds+=("pulumi up --yes"); else cmds+=("pulumi up"); fi
  if ((dry)); then printf '  %s\n' "${cmds[@]}"; exit 0; fi
  log "npm packages"
  npm ci --no-audit --no-fund
  command -v pulumi >/dev/null || die "the Pulumi CLI is not on PATH (it deploys to your cluster; install it, or build ours: scripts/tools/build.sh pulumi pulumi-language-nodejs pulumi-resource-kubernetes and add ~/.cache/mlplatform/tools/bin to PATH)"
  for c in "${cmds[@]}"; do
    log "$c"
    # shellcheck disable=SC2086
    $c
  done
  echo
  echo "The platform runs in context \"$context\". Its endpoints: pulumi stack output (cluster-internal names; kubectl port-forward to reach them from here)."
  echo "The trainer image is not built for an existing cluster: build and push it, then set mlplatform:trainerImage.image (see Pulumi.dev.yaml)."
  exit 0
fi

if ((dry)); then
  echo "up-local.sh: no kubeconfig context; starting a local node (containerd, runc, kubelet) and deploying the dev stack onto it"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "up-local.sh: the local node needs root (containerd, network namespaces); with a cluster of your own, put it in your kubeconfig" >&2; exit 1; }

log "npm packages"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.mlplatform-lock-hash || $(cat node_modules/.mlplatform-lock-hash) != "$lock_hash" ]]; then
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$lock_hash" >node_modules/.mlplatform-lock-hash
fi
# npm ci drops tfjs-node's native addon; the host-side tools (mlp predict, npm run dataset) need it.
scripts/setup-tfjs-native.sh >/dev/null

log "tools: Pulumi engine, Kubernetes provider, control plane (cached)"
scripts/tools/build.sh pulumi pulumi-language-nodejs pulumi-resource-kubernetes etcd kube-apiserver \
  kube-controller-manager kube-scheduler
scripts/tools/fetch-manifests.sh >/dev/null

log "the node: containerd, runc, CNI, kubelet, kube-proxy, CoreDNS (cached)"
scripts/setup-node.sh --build

log "images (cached)"
scripts/images/build.sh

log "starting the node"
env_file=$(scripts/localcluster/up.sh --node real --only apiserver)
# shellcheck disable=SC1090
source "$env_file"

log "pulumi up (dev stack)"
scripts/localcluster/deploy-dev.sh up

log "forwards on 127.0.0.1"
state=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}
api() {
  local port token
  port=$(sed -n 's/^PORT_APISERVER=//p' "$state/ports.env")
  token=$(cut -d, -f1 "$state/pki/tokens.csv")
  curl -fsS --max-time 10 --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $token" "https://127.0.0.1:$port$1"
}
forwards=()
# NAME NAMESPACE SERVICE-NAME-PREFIX PORT: each Service a person opens (Pulumi suffixes some
# names), reached by its cluster IP.
while read -r name ns prefix port; do
  ip=$(api "/api/v1/namespaces/$ns/services" 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin)["items"]:
    if s["metadata"]["name"].startswith(sys.argv[1]):
        print(s["spec"]["clusterIP"]); break' "$prefix" 2>/dev/null || true)
  if [[ -n $ip ]]; then forwards+=(--forward "$name=$ip:$port"); else echo "up-local.sh: no Service $ns/$prefix* (is it switched off?)" >&2; fi
done <<'EOF'
jupyterhub ml-notebooks proxy-public 80
argo argo argo-workflows-server 2746
tensorboard mlplatform platform-tensorboard 80
serving-rest ml-serving model-server 8501
serving-grpc ml-serving model-server 8500
minio mlplatform minio 9000
EOF
scripts/localcluster/up.sh --node real --only apiserver "${forwards[@]}" >/dev/null
echo
echo "The platform runs on a local node (KUBECONFIG=$KUBECONFIG):"
for f in "$state"/fwd-*.port; do
  n=$(basename "$f" .port); n=${n#fwd-}
  [[ $n == apiserver ]] && continue
  printf '  %-14s 127.0.0.1:%s\n' "$n" "$(<"$f")"
done
echo "All plain HTTP (gRPC for serving-grpc). JupyterHub logs in any user name (dummy authenticator, dev only); the Argo server wants a bearer token (auth mode client)."
outputs=${MLPLATFORM_DEV_WORK:-$HOME/.cache/mlplatform/dev-local}/outputs.json
echo "Run the MNIST pipeline (dataset into MinIO, then submit and follow it until the model is served):"
echo "  npm run dataset -- mnist --endpoint http://127.0.0.1:$(cat "$state/fwd-minio.port" 2>/dev/null || echo PORT) --outputs-file $outputs"
echo "  npm run submit -- pipeline --outputs-file $outputs"
echo "Tear down: scripts/down-local.sh"
