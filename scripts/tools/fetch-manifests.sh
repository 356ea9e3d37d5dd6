#!/usr/bin/env bash
# Fetches upstream Kubernetes manifests that the offline tests apply to the local API
# server, from the Go module proxy (the channel that reaches them here), at the versions
# pinned in versions.env. Idempotent: a complete copy is left alone.
#
#   scripts/tools/fetch-manifests.sh          fetch (if needed) and print the directory
#
# Output: ${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/manifests/
#   training-operator-<version>/   the release's manifests/ directory (base/crds/...)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$SCRIPT_DIR/versions.env"

TOOLS_DIR=${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}
DEST=$TOOLS_DIR/manifests/training-operator-$TRAINING_OPERATOR_VERSION

if [[ -f $DEST/.complete ]]; then
  printf '%s\n' "$DEST"
  exit 0
fi
command -v go >/dev/null || { echo "fetch-manifests.sh: go is not installed" >&2; exit 1; }

export GOMODCACHE=$TOOLS_DIR/go/mod GOPATH=$TOOLS_DIR/go/path GOTOOLCHAIN=local GOFLAGS=-modcacherw
dir=$(cd "$(mktemp -d)" && go mod download -json "$TRAINING_OPERATOR_MODULE@$TRAINING_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n $dir && -f $dir/manifests/base/crds/kubeflow.org_tfjobs.yaml ]] ||
  { echo "fetch-manifests.sh: $TRAINING_OPERATOR_MODULE@$TRAINING_OPERATOR_VERSION has no manifests/base/crds/kubeflow.org_tfjobs.yaml" >&2; exit 1; }

# Copy, then publish with one rename, so a reader never sees half a directory.
rm -rf "$DEST.tmp"
mkdir -p "$(dirname "$DEST")"
cp -R "$dir/manifests" "$DEST.tmp"
chmod -R u+w "$DEST.tmp"
touch "$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch-manifests.sh: $TRAINING_OPERATOR_MODULE@$TRAINING_OPERATOR_VERSION manifests in $DEST" >&2
printf '%s\n' "$DEST"
