#!/usr/bin/env bash
# Installs the Python clients the trainer's compatibility tests call, idempotently:
# a venv in ${MLPLATFORM_CACHE:-~/.cache/mlplatform}/venv with TensorFlow Serving's own
# Python API (`tensorflow-serving-api`), so a real TF Serving client talks to `mlp serve`
# (trainer/tests/serve-python.test.ts runs trainer/tests/fixtures/tfs_client.py with it).
#
# Usage:   scripts/setup-python-tools.sh [--force] [--check] [--full-tensorflow]
#   --force            rebuild the venv even if its stamp says it is up to date
#   --check            only verify the venv (exit 1 if the stubs do not import)
#   --full-tensorflow  install the whole tensorflow-cpu package instead of its protos
# Env:     MLPLATFORM_CACHE (default ~/.cache/mlplatform)   where the venv lives
#          PYTHON (default python3)                         the interpreter of the venv
#
# Why not just `pip install tensorflow-serving-api`: it depends on `tensorflow` (~600 MB
# installed with its dependencies, 5–10 s to import) only because its generated modules
# (`tensorflow_serving/apis/*_pb2.py`) import TensorFlow's own generated protobuf modules
# (`tensorflow.core.framework.tensor_pb2`, `...example_pb2`, `...meta_graph_pb2`, ...),
# nothing else of TensorFlow. So by default we install the API with --no-deps plus grpcio
# and protobuf, and take those `*_pb2.py` modules out of the official tensorflow-cpu wheel
# (same version) into a `tensorflow` package that holds only them. The client therefore
# uses the real, unmodified stubs of both packages; only TensorFlow's runtime is left out.
set -euo pipefail

TFS_API_VERSION="2.21.0"
TFS_API_SHA256="8f0c45be6e1a9c034dd3be63d73d09b1a899cf5a66d9caa1d557f137c2eff51d"
TF_VERSION="2.21.0"
# The protos are pure Python, so one fixed wheel serves every platform and Python version.
TF_WHEEL="tensorflow_cpu-${TF_VERSION}-cp311-cp311-manylinux_2_27_x86_64.whl"
TF_WHEEL_SHA256="2b847d217b02ee7731ed91431daf3250daa0196c3c94614d23be27232e6e5b6c"
GRPCIO_VERSION="1.85.1"
# tensorflow 2.21 and tensorflow-serving-api 2.21 require protobuf >= 6.31.1, < 8.
PROTOBUF_VERSION="6.33.6"

CACHE="${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}"
VENV="$CACHE/venv"
PYTHON="${PYTHON:-python3}"

force=0
check_only=0
full=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --check) check_only=1 ;;
    --full-tensorflow) full=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "setup-python-tools: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

mode=$([[ $full == 1 ]] && echo full || echo protos)
want="tensorflow-serving-api=${TFS_API_VERSION} tensorflow=${TF_VERSION}/${mode} grpcio=${GRPCIO_VERSION} protobuf=${PROTOBUF_VERSION}"
stamp="$VENV/.mlplatform-python-tools"

verify() {
  "$VENV/bin/python" - <<'EOF'
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow.core.framework import tensor_pb2, types_pb2
import grpc, google.protobuf
req = predict_pb2.PredictRequest()
req.model_spec.name = "check"
req.inputs["x"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0]))
assert predict_pb2.PredictRequest.FromString(req.SerializeToString()) == req
print(f"tensorflow_serving.apis OK (grpcio {grpc.__version__}, protobuf {google.protobuf.__version__})")
EOF
}

if [[ $check_only == 1 ]]; then
  [[ -x $VENV/bin/python ]] || { echo "setup-python-tools: no venv at $VENV" >&2; exit 1; }
  verify
  exit 0
fi

if [[ $force == 0 && -f $stamp && $(cat "$stamp") == "$want" ]] && verify >/dev/null 2>&1; then
  echo "python tools up to date in $VENV ($want)"
  exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup-python-tools: $PYTHON not found; install Python ≥ 3.10 with venv and pip" >&2; exit 1; }
echo "creating $VENV ($want)"
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)

"${pip[@]}" install -q "grpcio==${GRPCIO_VERSION}" "protobuf==${PROTOBUF_VERSION}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"${pip[@]}" download -q --no-deps -d "$work" "tensorflow-serving-api==${TFS_API_VERSION}"
api_wheel=$(ls "$work"/tensorflow_serving_api-*.whl)
echo "${TFS_API_SHA256}  ${api_wheel}" | sha256sum -c --quiet -
"${pip[@]}" install -q --no-deps "$api_wheel"

if [[ $mode == full ]]; then
  "${pip[@]}" install -q "tensorflow-cpu==${TF_VERSION}"
else
  echo "fetching the tensorflow-cpu ${TF_VERSION} wheel for its generated protobuf modules"
  "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_27_x86_64 -d "$work" "tensorflow-cpu==${TF_VERSION}"
  echo "${TF_WHEEL_SHA256}  $work/${TF_WHEEL}" | sha256sum -c --quiet -
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$VENV/bin/python" - "$work/$TF_WHEEL" "$site" "$TF_VERSION" <<'EOF'
import os, sys, zipfile
wheel, site, version = sys.argv[1:]
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("tensorflow/") and name.endswith("_pb2.py"):
            z.extract(name, site)
            n += 1
root = os.path.join(site, "tensorflow")
for d, _, _ in os.walk(root):
    init = os.path.join(d, "__init__.py")
    if not os.path.exists(init):
        open(init, "w").close()
with open(os.path.join(root, "__init__.py"), "w") as f:
    f.write(f'"""Only the generated protobuf modules of tensorflow-cpu {version} '
            '(installed by mlplatform scripts/setup-python-tools.sh); not TensorFlow."""\n'
            f'__version__ = "{version}"\n')
print(f"installed {n} protobuf modules of tensorflow {version}")
EOF
fi

verify
echo "$want" >"$stamp"
echo "python tools installed in $VENV"
