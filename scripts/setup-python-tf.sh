#!/usr/bin/env bash
# Installs real TensorFlow for the model server's SavedModel tests, idempotently: a venv in
# ${MLPLATFORM_CACHE:-~/.cache/mlplatform}/venv-tf with tensorflow-cpu 2.12.1, the release
# whose C library the native tfjs backend runs here (scripts/setup-tfjs-native.sh), so a
# Keras model exported as a SavedModel by this venv is one the server's runtime can load.
# trainer/tests/serve-savedmodel.test.ts runs trainer/tests/fixtures/keras_savedmodel.py
# with it (build, train briefly, export, and write Keras's own predictions).
#
# The TF Serving client stays in the protos-only venv of scripts/setup-python-tools.sh:
# TensorFlow 2.12 pins protobuf 4, tensorflow-serving-api 2.21 needs protobuf 6.
#
# Usage:   scripts/setup-python-tf.sh [--force] [--check]
#   --force   rebuild the venv even if its stamp says it is up to date
#   --check   only verify the venv (exit 1 if TensorFlow does not import)
# Env:     MLPLATFORM_CACHE (default ~/.cache/mlplatform)   where the venv lives
#          PYTHON (default python3)                         interpreter: 3.8–3.11 (2.12.1 has
#                                                           no wheels for newer Pythons)
# Prints the venv's python on the last line of stdout.
set -euo pipefail

TF_VERSION="2.12.1"
# sha256 of tensorflow_cpu-2.12.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl;
# other Python versions get their own wheel, checked only by pip's own hash from the index.
TF_WHEEL_SHA256_CP311="7ffb595707a8fb376deaddc768784c7a0242b16cbc6e06393b1733b2ce19f855"
# What pip resolves for tensorflow-cpu 2.12.1 on Python 3.11, pinned so that a rebuilt
# venv is the same venv. The Keras throughput bench (trainer/bench/keras-compare.ts) runs in
# this venv too.
CONSTRAINTS=$(cat <<'PINS'
absl-py==2.5.1
astunparse==1.6.3
certifi==2026.10.18
cffi==2.1.1
charset-normalizer==3.5.2
cryptography==50.0.2
flatbuffers==25.12.19
gast==0.4.0
google-auth==2.62.2
google-auth-oauthlib==1.0.0
google-pasta==0.2.0
grpcio==1.74.0
h5py==3.16.0
idna==3.20
jax==0.4.38
jaxlib==0.4.38
keras==2.12.0
libclang==18.1.1
Markdown==3.11.3
MarkupSafe==3.0.4
ml_dtypes==0.5.4
numpy==1.24.3
oauthlib==4.0.1
opt_einsum==3.4.0
packaging==26.3
protobuf==4.25.9
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
requests==2.34.2
requests-oauthlib==2.0.0
scipy==1.15.3
six==1.17.0
tensorboard==2.12.3
tensorboard-data-server==0.7.2
tensorflow-estimator==2.12.0
tensorflow-io-gcs-filesystem==0.37.1
termcolor==3.3.0
typing_extensions==4.5.0
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==1.14.2
PINS
)

CACHE="${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}"
VENV="$CACHE/venv-tf"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.mlplatform-python-tf"
want="tensorflow-cpu=${TF_VERSION} $(printf '%s' "$CONSTRAINTS" | sha256sum | cut -c1-16)"

force=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "setup-python-tf: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

verify() {
  TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" - "$TF_VERSION" <<'PY'
import sys
import tensorflow as tf
want = sys.argv[1]
assert tf.__version__ == want, f"tensorflow {tf.__version__}, want {want}"
from tensorflow.core.protobuf import saved_model_pb2  # noqa: F401  (the fixture edits graphs)
print(f"tensorflow {tf.__version__} (keras {tf.keras.__version__}) OK", file=sys.stderr)
PY
}

if [[ $check_only == 1 ]]; then
  [[ -x $VENV/bin/python ]] || { echo "setup-python-tf: no venv at $VENV; run $0" >&2; exit 1; }
  verify
  echo "$VENV/bin/python"
  exit 0
fi

if [[ $force == 0 && -f $stamp && $(cat "$stamp") == "$want" ]] && verify 2>/dev/null; then
  echo "TensorFlow venv up to date in $VENV ($want)" >&2
  echo "$VENV/bin/python"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup-python-tf: $PYTHON not found; install Python 3.8–3.11 with venv and pip" >&2; exit 1; }
pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
case "$pyver" in
  38|39|310|311) ;;
  *) echo "setup-python-tf: tensorflow-cpu $TF_VERSION has wheels for Python 3.8–3.11; $PYTHON is ${pyver:0:1}.${pyver:1} (set PYTHON=python3.11)" >&2; exit 1 ;;
esac

echo "creating $VENV ($want)" >&2
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$CONSTRAINTS" >"$work/constraints.txt"

"${pip[@]}" download -q --no-deps --only-binary=:all: -d "$work" "tensorflow-cpu==${TF_VERSION}" >&2
wheel=$(ls "$work"/tensorflow_cpu-*.whl)
if [[ $pyver == 311 ]]; then
  echo "${TF_WHEEL_SHA256_CP311}  ${wheel}" | sha256sum -c --quiet - >&2 \
    || { echo "setup-python-tf: $(basename "$wheel") does not have the pinned sha256" >&2; exit 1; }
fi
"${pip[@]}" install -q -c "$work/constraints.txt" "$wheel" >&2

verify
echo "$want" >"$stamp"
echo "TensorFlow venv installed in $VENV" >&2
echo "$VENV/bin/python"
