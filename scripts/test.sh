#!/usr/bin/env bash
# Install converter with every extra CI tests (dev, tf, dask, remote) and run the linter, the type
# checker and the test suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
"$PY" -m pip install -q --disable-pip-version-check -e "$ROOT[dev,tf,dask,remote]"
cd "$ROOT"
"$BIN/ruff" check converter tests scripts
"$PY" -m mypy
"$PY" -m pytest "$@"
