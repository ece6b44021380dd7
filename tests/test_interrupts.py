"""Ctrl-C, SIGTERM and SIGHUP stop a conversion cleanly at any moment: one line on stderr, exit
128 + the signal number, no temporary and no partial output left. The signal is sent while the
writer is provably mid-write (it waits for it there), beside processes that keep every core
busy, so the outcome does not depend on timing."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import outputs
from converter.cli import main
from tests.helpers import PAUSED_CLI

FORMATS = {  # name: (destination, extra CLI flags)
    "tf": ("out.ckpt", []),
    "tf-sharded": ("out.ckpt", ["--max-shard-size", "300000"]),
    "safetensors": ("out.safetensors", []),
    "npz": ("out.npz", []),
    "npz-deflate": ("out.npz", ["--compress"]),
    "npy-dir": ("out", ["--to", "npy"]),
    "hdf5": ("out.h5", []),
}

@pytest.fixture(scope="module")
def busy_cpus():
    """Processes that keep both cores busy while the tests run."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "src.safetensors"
    rng = np.random.default_rng(0)
    converter.write({f"layer{i}/w": rng.standard_normal(64 * 1024).astype(np.float32)
                     for i in range(6)}, path)
    return path


def _stop_mid_write(tmp_path: Path, source: Path, fmt: str, sig: int
                    ) -> tuple[subprocess.CompletedProcess, Path]:
    name, flags = FORMATS[fmt]
    out = tmp_path / "out"
    out.mkdir()
    ready, sent = tmp_path / "ready", tmp_path / "sent"
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_CLI, str(ready), str(sent), "convert",
                             str(source), str(out / "new" / name), "-q", *flags],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, f"finished before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the writer never reached its second tensor"
        time.sleep(0.005)
    proc.send_signal(sig)
    sent.touch()
    _, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), out


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_ctrl_c_leaves_nothing(tmp_path, source, busy_cpus, fmt):
    done, out = _stop_mid_write(tmp_path, source, fmt, signal.SIGINT)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["ckpt: interrupted"]
    assert list(out.iterdir()) == []  # no temporary, no output, not the directory made for it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
@pytest.mark.parametrize("fmt", ["tf", "npz-deflate"])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, source, busy_cpus, fmt, sig):
    done, out = _stop_mid_write(tmp_path, source, fmt, sig)
    assert done.returncode == 128 + sig, done.stderr
    assert done.stderr.splitlines() == [f"ckpt: interrupted by {signal.Signals(sig).name}"]
    assert list(out.iterdir()) == []


def test_an_ignored_sighup_stays_ignored(tmp_path, source):
    # Under nohup a closed terminal must not stop the conversion.
    code = ("import signal, sys\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n" + PAUSED_CLI)
    ready, sent = tmp_path / "ready", tmp_path / "sent"
    dst = tmp_path / "out.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", code, str(ready), str(sent), "convert",
                             str(source), str(dst), "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGHUP)
    sent.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and stderr == ""
    with converter.read(dst) as got, converter.read(source) as want:
        assert {k: np.asarray(v).tobytes() for k, v in got.items()} == {
            k: np.asarray(v).tobytes() for k, v in want.items()}


def test_sighup_is_held_while_committing():
    got: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: got.append(signum))
    try:
        with outputs.signals_held():
            signal.raise_signal(signal.SIGHUP)
            assert got == []
        assert got == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("at", [1, 2, 3])
def test_ctrl_c_inside_zipfile_bookkeeping(tmp_path, monkeypatch, capsys, at):
    """An interrupt that lands just after zipfile marked a member open (before the writer holds
    the member) used to become a ValueError and a ZipFile.__del__ traceback."""
    real = zipfile.ZipFile._open_to_write
    calls = []

    def interrupted_here(self, *args, **kwargs):
        handle = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == at:
            signal.raise_signal(signal.SIGINT)  # delivered at the next bytecode, right here
        return handle

    monkeypatch.setattr(zipfile.ZipFile, "_open_to_write", interrupted_here)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    src = tmp_path / "src.safetensors"
    converter.write({f"t{i}": np.full(8, i, np.float32) for i in range(4)}, src)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["convert", str(src), str(out / "w.npz"), "-q", "--compress"])
    gc.collect()
    assert (code, capsys.readouterr().err) == (130, "ckpt: interrupted\n")
    assert unraisable == [] and list(out.iterdir()) == []
