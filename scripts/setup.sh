#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently:
#   1. npm packages from the lockfile (install scripts off: the ones that download
#      binaries from the internet are replaced by the steps below);
#   2. each optional step's own script, when it exists (native TensorFlow for tfjs-node,
#      Go-built tools for the integration tests, Python clients for compatibility tests).
# Tools land in a cache outside the repository (MLPLATFORM_CACHE, default ~/.cache/mlplatform).
set -euo pipefail
cd "$(dirname "$0")/.."

phase() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

phase "npm packages"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.mlplatform-lock-hash
if [[ -f $stamp && $(cat "$stamp") == "$lock_hash" ]]; then
  echo "node_modules matches package-lock.json; skipping npm ci"
else
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

for step in setup-tfjs-native.sh tools/build.sh setup-python-tools.sh; do
  if [[ -x scripts/$step ]]; then
    phase "$step"
    s=$SECONDS
    "scripts/$step"
    echo "$step took $((SECONDS - s)) s"
  fi
done

echo
echo "setup done in $((SECONDS - t0)) s"
