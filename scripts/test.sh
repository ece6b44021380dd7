#!/usr/bin/env bash
# Install converter with every extra CI tests (dev, tf, dask, remote, hf), torch's CPU build and
# transformers, and run the linter, the type checker and the test suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
"$PY" -m pip install -q --disable-pip-version-check -e "$ROOT[dev,tf,dask,remote,hf]"
# The Hugging Face tests load our output with transformers 5 on torch. torch is pinned to its
# CPU build: unpinned, pip reaches for a CUDA build of several GB.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" "transformers>=5,<6"
cd "$ROOT"
"$BIN/ruff" check converter tests scripts
"$PY" -m mypy
"$PY" -m pytest "$@"
