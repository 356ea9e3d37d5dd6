#!/usr/bin/env bash
# Fetches the Argo Workflows release's own CRDs (manifests/base/crds/{full,minimal}) from the
# Go module proxy (the channel that reaches them here), so the offline tests validate our
# WorkflowTemplates with the real schemas. The vendored chart (../shared/charts) carries the
# same CRDs; tests/integration/crds.test.ts checks that both agree. Idempotent: a complete
# copy is left alone.
#
#   scripts/tools/fetch-argo-crds.sh          fetch (if needed) and print the directory
#
# Output: ${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}/manifests/argo-workflows-<version>/
#   full/ minimal/   the CRDs as the release ships them
set -euo pipefail

# The Argo Workflows release of the chart components/versions.ts pins (its appVersion); a
# unit test (tests/kubeflow.test.ts) keeps the two equal.
ARGO_WORKFLOWS_MODULE=github.com/argoproj/argo-workflows/v4
ARGO_WORKFLOWS_VERSION=v4.0.5

TOOLS_DIR=${MLPLATFORM_TOOLS_DIR:-$HOME/.cache/mlplatform/tools}
DEST=$TOOLS_DIR/manifests/argo-workflows-$ARGO_WORKFLOWS_VERSION

if [[ -f $DEST/.complete ]]; then
  printf '%s\n' "$DEST"
  exit 0
fi
command -v go >/dev/null || { echo "fetch-argo-crds.sh: go is not installed" >&2; exit 1; }

export GOMODCACHE=$TOOLS_DIR/go/mod GOPATH=$TOOLS_DIR/go/path GOTOOLCHAIN=local GOFLAGS=-modcacherw
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dir=$(cd "$scratch" && go mod download -json "$ARGO_WORKFLOWS_MODULE@$ARGO_WORKFLOWS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
crds=$dir/manifests/base/crds
[[ -n $dir && -f $crds/full/argoproj.io_workflowtemplates.yaml ]] ||
  { echo "fetch-argo-crds.sh: $ARGO_WORKFLOWS_MODULE@$ARGO_WORKFLOWS_VERSION has no manifests/base/crds/full/argoproj.io_workflowtemplates.yaml" >&2; exit 1; }

# Copy, then publish with one rename, so a reader never sees half a directory.
rm -rf "$DEST.tmp"
mkdir -p "$(dirname "$DEST")"
cp -R "$crds" "$DEST.tmp"
chmod -R u+w "$DEST.tmp"
touch "$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch-argo-crds.sh: $ARGO_WORKFLOWS_MODULE@$ARGO_WORKFLOWS_VERSION CRDs in $DEST" >&2
printf '%s\n' "$DEST"
