#!/usr/bin/env bash
# Deploys the dev stack onto the real local node with the real Pulumi engine (file backend
# and passphrase secrets under ${MLPLATFORM_DEV_WORK:-~/.cache/mlplatform/dev-local}),
# `kubernetes.skipAwait` off, Argo and JupyterHub from ../shared/charts, local images, and
# the hostPath shared-storage backend; then prints each workload's time to Ready.
#
# Usage: source "$(scripts/localcluster/up.sh --node real --only apiserver)"
#        scripts/localcluster/deploy-dev.sh [up|destroy]     (default up)
# Needs: the tools (scripts/tools/build.sh), the images (scripts/images/build.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE_DIR=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}
env_file=$STATE_DIR/local.env
[[ -f $env_file && -f $STATE_DIR/node.mode && $(<"$STATE_DIR/node.mode") == real ]] ||
  { echo "deploy-dev.sh: no real node in $STATE_DIR: run scripts/localcluster/up.sh --node real --only apiserver" >&2; exit 1; }
cd "$ROOT"
exec npx tsx tests/cluster/deployDev.ts "${1:-up}" "$env_file"
