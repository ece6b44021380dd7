# Sourced by demo.sh and test.sh: use the active virtualenv, else .venv/ at the repository root
# (created when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    python3 -m venv "$ROOT/.venv"
  fi
  PY="$ROOT/.venv/bin/python"
fi
BIN="$(dirname "$PY")"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
