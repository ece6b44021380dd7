"""scripts/bench.py runs (a smoke test; timings are reported, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "bench.py"


def test_bench_quick(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--workdir", str(tmp_path),
                             "--json", str(tmp_path / "rows.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for task in ("inspect", "read", "to-safetensors", "to-npz", "to-h5", "safetensors-to-tf",
                 "npz-to-safetensors"):
        assert f"quick  {task}" in result.stdout
    assert (tmp_path / "rows.json").is_file()
