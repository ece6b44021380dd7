#!/usr/bin/env bash
# Fuzz the parsers long: the hypothesis targets of tests/test_fuzz.py with many examples, then,
# where atheris installs, each target under libFuzzer's coverage guidance for a while.
#
#   scripts/fuzz.sh                        # 20000 examples per hypothesis test, 60 s per target
#   FUZZ_EXAMPLES=100000 FUZZ_SECONDS=600 scripts/fuzz.sh
#   scripts/fuzz.sh table entry            # atheris on these targets only
#   FUZZ_ATHERIS=0 scripts/fuzz.sh         # hypothesis only
#
# A failure prints the input (hypothesis) or leaves it in $FUZZ_ARTIFACTS (atheris, replay with
# `python -m tests.test_fuzz TARGET FILE`).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
EXAMPLES="${FUZZ_EXAMPLES:-20000}"
PER_TARGET="${FUZZ_SECONDS:-60}"
ARTIFACTS="${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/converter-fuzz-artifacts}"

echo "hypothesis: $EXAMPLES examples per test"
CONVERTER_FUZZ_EXAMPLES="$EXAMPLES" "$PY" -m pytest -q -p no:cacheprovider tests/test_fuzz.py

if [ "${FUZZ_ATHERIS:-1}" = "0" ]; then
  exit 0
fi
if ! "$PY" -c "import atheris" 2>/dev/null && \
   ! "$PY" -m pip install -q --disable-pip-version-check atheris >/dev/null 2>&1; then
  echo "atheris does not install here: hypothesis only"
  exit 0
fi
mkdir -p "$ARTIFACTS"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("$PY" -m tests.test_fuzz --list)
fi
for target in "${targets[@]}"; do
  echo "atheris: $target for ${PER_TARGET} s"
  "$PY" -m tests.test_fuzz "$target" -max_total_time="$PER_TARGET" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$ARTIFACTS/$target-" \
    || { echo "atheris: $target failed; inputs in $ARTIFACTS"; exit 1; }
done
