"""Progress bars: every tensor passes through, and a bar appears only once the work has run
for DELAY seconds (before that, tqdm is not even imported)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import converter
from converter import progress


def _tensors(n: int) -> list[converter.Tensor]:
    return [converter.Tensor.from_array(f"t{i}", np.zeros(100, np.float32)) for i in range(n)]


def test_disabled_and_quick_runs_show_nothing(capsys):
    tensors = _tensors(50)
    total = sum(t.nbytes for t in tensors)
    assert list(progress.tracked(tensors, total=total, enabled=False)) == tensors
    assert list(progress.tracked(tensors, total=total, enabled=True)) == tensors
    assert capsys.readouterr().err == ""


def test_slow_runs_show_a_bar_that_counts_what_was_done(monkeypatch, capsys):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    tensors = _tensors(5)
    assert list(progress.tracked(tensors, total=sum(t.nbytes for t in tensors),
                                 enabled=True, desc="copying")) == tensors
    err = capsys.readouterr().err
    # The bar appears after the first tensor, which it counts: 400 of 2000 bytes (1.95 KiB).
    assert "copying" in err and "400/1.95k" in err


def test_quick_conversion_does_not_import_tqdm(tmp_path):
    src = tmp_path / "m.npz"
    np.savez(src, w=np.arange(10.0))
    code = textwrap.dedent(f"""
        import sys
        import converter
        converter.convert(r"{src}", r"{tmp_path}/m.safetensors", progress=True).close()
        print("tqdm" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def _slow_convert(tmp_path, monkeypatch, capsys, *, terminal: bool) -> str:
    from converter.cli import main

    monkeypatch.setattr(progress, "DELAY", 0.0)  # every conversion is slow enough for a bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    src = tmp_path / "m.npz"
    np.savez(src, **{f"w{i}": np.arange(1000.0) for i in range(5)})
    assert main(["convert", str(src), str(tmp_path / f"o{terminal}.safetensors")]) == 0
    return capsys.readouterr().err


def test_the_bar_is_drawn_on_a_terminal(tmp_path, monkeypatch, capsys):
    assert "writing" in _slow_convert(tmp_path, monkeypatch, capsys, terminal=True)


def test_a_log_or_a_pipe_gets_no_bar_only_the_summary(tmp_path, monkeypatch, capsys):
    err = _slow_convert(tmp_path, monkeypatch, capsys, terminal=False)
    assert "\r" not in err and err.startswith("wrote ") and err.count("\n") == 1
