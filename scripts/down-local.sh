#!/usr/bin/env bash
# Counterpart of scripts/up-local.sh: destroys the dev stack on the local node (pulumi
# destroy, then the volumes and CRDs deploy-dev.sh made), then stops the node and removes
# its network namespace, mounts and processes. `--purge` also deletes the node's state
# (certificates, etcd data); the build caches in ~/.cache/mlplatform stay.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${MLPLATFORM_LOCAL_DIR:-$HOME/.cache/mlplatform/local}
if [[ -f $state/local.env && -f $state/node.mode && $(<"$state/node.mode") == real ]] &&
  [[ -n $(sed -n 's/^PORT_APISERVER=//p' "$state/ports.env" 2>/dev/null) ]]; then
  env_file=$(scripts/localcluster/up.sh --node real --only apiserver)
  # shellcheck disable=SC1090
  source "$env_file"
  scripts/localcluster/deploy-dev.sh destroy
fi
scripts/localcluster/down.sh "$@"
