"""``ckpt batch`` stopped by SIGTERM says so in one line and exits 143, like every other
command; and run from Python, it leaves a SIGTERM handler of the caller's in place."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np

import converter
from converter.cli import main
from tests.helpers import PAUSED_CLI


def test_sigterm_stops_batch_with_one_line(tmp_path):
    rng = np.random.default_rng(0)
    converter.write({f"w{i}": rng.standard_normal(1024).astype(np.float32) for i in range(4)},
                    tmp_path / "src" / "a.npz")
    ready, sent, out = tmp_path / "ready", tmp_path / "sent", tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_CLI, str(ready), str(sent), "batch",
                             str(tmp_path / "src"), "--to", "safetensors", "--out", str(out),
                             "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    sent.touch()
    _, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, stderr.splitlines()) == (143, ["ckpt: interrupted by SIGTERM"])
    assert not [p for p in out.rglob("*") if p.name != "manifest.jsonl"]


def test_batch_keeps_the_callers_sigterm_handler(tmp_path):
    converter.write({"w": np.zeros(3, np.float32)}, tmp_path / "src" / "a.npz")

    def callers(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, callers)
    try:
        assert main(["batch", str(tmp_path / "src"), "--to", "npz", "--out",
                     str(tmp_path / "o"), "-q"]) == 0
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, previous)
