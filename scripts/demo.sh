#!/usr/bin/env bash
# Install converter and convert the bundled TF1 checkpoint (examples/mlp) to safetensors and npz.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
"$PY" -m pip install -q --disable-pip-version-check -e "$ROOT"
OUT="$ROOT/demo-out"
mkdir -p "$OUT"
echo "== ckpt inspect examples/mlp"
"$BIN/ckpt" inspect "$ROOT/examples/mlp"
echo
echo "== ckpt convert examples/mlp demo-out/mlp.safetensors"
"$BIN/ckpt" convert "$ROOT/examples/mlp" "$OUT/mlp.safetensors" --force
echo "== ckpt convert examples/mlp demo-out/mlp.npz"
"$BIN/ckpt" convert "$ROOT/examples/mlp" "$OUT/mlp.npz" --force
echo
echo "== ckpt inspect demo-out/mlp.safetensors"
"$BIN/ckpt" inspect "$OUT/mlp.safetensors"
