"""scripts/bench.py runs (a smoke test; timings are reported, never asserted)."""

from __future__ import annotations

import json
import re
import shutil
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
        assert re.search(rf"^quick\s+{task}\s+\d", result.stdout, re.M), task
    assert re.search(r"^batch\s+10 items, jobs 2\s+\d", result.stdout, re.M)
    assert "FAILED" not in result.stdout  # baselines left out by --quick show as skipped
    assert (tmp_path / "rows.json").is_file()


def test_bench_stats_only_gives_the_ratio_and_its_range(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--stats-only", "--workdir",
                             str(tmp_path), "--json", str(tmp_path / "rows.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^quick\s+inspect --stats\s+\S+\s+cat data\s+\S+\s+\d+\.\d\d\s+"
                     r"\d+\.\d\d-\d+\.\d\d\s+\d+\s+\d+$", result.stdout, re.M), result.stdout
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [r["task"] for r in rows] == ["inspect --stats"]
    low, high = rows[0]["ratio_range"]
    assert low <= rows[0]["ratio"] <= high


def test_bench_diff_verify_gives_warm_and_cold_rows_in_turns(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--diff-verify", "--workdir",
                             str(tmp_path), "--json", str(tmp_path / "rows.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["task"], r["baseline"]) for r in rows] == [
        ("verify (cache warm)", "cat data"), ("diff (cache warm)", "cat data + copy"),
        ("verify (cache cold)", "cat data"), ("diff (cache cold)", "cat data + copy")]
    for r in rows:
        assert r["kind"] == "quick" and not r["ours_error"] and not r["baseline_error"], r
        low, high = r["ratio_range"]
        assert low <= r["ratio"] <= high and r["ours_rss_mib"] > 0
    # diff compared two files, not one with itself: the copy has the bundle's index and data
    copied = sorted(p.name for p in (tmp_path / "quick.copy").iterdir())
    assert copied == sorted(p.name for p in (tmp_path / "quick").iterdir()
                            if p.name.startswith("model.ckpt."))
    assert re.search(r"^quick\s+diff \(cache cold\)\s+\S+\s+cat data \+ copy\s", result.stdout,
                     re.M), result.stdout


def test_bench_before_runs_the_other_checkouts_code_in_turns(tmp_path):
    before = tmp_path / "before"
    shutil.copytree(Path(__file__).parent.parent / "converter", before / "converter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--batch", "0", "--before",
                             str(before), "--workdir", str(work), "--json",
                             str(tmp_path / "rows.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "rows.json").read_text())
    # Each side's children imported their own checkout's converter.
    assert Path(report["before"]["converter"]).is_relative_to(before / "converter")
    ours_root = Path(report["before"]["ours_checkout"])
    assert Path(report["before"]["ours_converter"]).is_relative_to(ours_root / "converter")
    assert report["before"]["label"] == "before before"  # not a git checkout: its name
    rows = [r for r in report["rows"] if r["baseline"] == "before before"]
    assert [r["task"] for r in rows] == ["inspect", "to-safetensors", "to-npz", "to-h5",
                                         "safetensors-to-tf", "npz-to-safetensors"]
    for r in rows:
        assert r["kind"] == "quick" and not r["ours_error"] and not r["baseline_error"], r
        low, high = r["ratio_range"]
        assert low <= r["ratio"] <= high and r["baseline_rss_mib"] > 0
    assert re.search(r"^quick\s+to-h5\s+\S+\s+before before\s+\d", result.stdout, re.M)


def test_bench_before_refuses_a_directory_without_converter(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--before", str(tmp_path),
                             "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no converter package" in result.stderr.splitlines()[-1]
