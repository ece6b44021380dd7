#!/usr/bin/env bash
# Creates the virtualenv that scripts/hf_reference/make_references.py runs in: TensorFlow to write
# checkpoints under the original releases' names, and transformers 4.57 (the last release with TF
# support and the load_tf_weights_in_* functions) to convert them. It is kept apart from the
# project's own virtualenv, whose transformers is 5.x.
#
# Usage: scripts/hf_reference/make_env.sh [VENV_DIR]   (default: .hf-ref-venv at the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$root/.hf-ref-venv}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)
"${pip[@]}" --upgrade pip

# torch first and pinned alone: once it is installed, nothing later can make pip pick another
# torch (the CUDA builds are several gigabytes). The CPU wheel comes from the local wheel directory
# pip is configured with, or from the CPU index if the "+cpu" build is named.
"${pip[@]}" "torch==2.13.0"

# TensorFlow 2.16+ ships Keras 3; transformers' TF classes need Keras 2, which is tf-keras of the
# same minor version as TensorFlow.
"${pip[@]}" "torch==2.13.0" \
    "transformers==4.57.6" \
    "tensorflow==2.21.0" "tf-keras==2.21.0" \
    numpy safetensors sentencepiece h5py

"$venv/bin/python" - <<'PY'
import tensorflow as tf, torch, transformers
print("tensorflow", tf.__version__, "torch", torch.__version__, "transformers", transformers.__version__)
PY
