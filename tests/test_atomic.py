"""Writes are atomic: a temporary name in the destination directory, fsync, rename. A full disk,
Ctrl-C or a second writer of the same destination never leaves a partial or mixed output, nor a
stray temporary; existing outputs are kept unless forced."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import outputs
from converter.cli import main

FORMATS = {  # name: (destination, extra CLI flags)
    "tf": ("out.ckpt", []),
    "safetensors": ("out.safetensors", []),
    "npz": ("out.npz", []),
    "npz-deflate": ("out.npz", ["--compress"]),
    "npy-dir": ("out", ["--to", "npy"]),
    "npy": ("out.npy", []),
    "hdf5": ("out.h5", []),
}


def _data(seed: int, n: int = 6, size: int = 4096) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}/w": rng.standard_normal(size).astype(np.float32) for i in range(n)}


def _source(tmp_path: Path, fmt: str, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    data = _data(seed) if fmt != "npy" else {"w": _data(seed)["layer0/w"]}
    src = tmp_path / f"src-{seed}.safetensors"
    converter.write(data, src)
    return src, data


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


def _outputs(directory: Path, dst: Path) -> list[str]:
    """Every file the destination left behind (a TF prefix leaves several, a directory many)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.name.startswith(dst.name) or p.name == "checkpoint" or dst in p.parents)


def _same(path: Path, data: dict[str, np.ndarray], fmt: str | None = None) -> bool:
    with converter.read(path, format=fmt) as ckpt:
        if path.suffix == ".npy":  # one tensor, named after the file
            return [np.asarray(t).tobytes() for t in ckpt.values()] == [
                v.tobytes() for v in data.values()]
        return sorted(ckpt) == sorted(data) and all(
            np.asarray(ckpt[k]).tobytes() == data[k].tobytes() for k in data)


# --- disk full ------------------------------------------------------------------------------


class FullDisk:
    """A file that takes ``budget`` bytes, then fails the way a full disk does."""

    def __init__(self, f, budget: int) -> None:
        self._f = f
        self._left = budget

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self._left:
            self._f.write(memoryview(data).cast("B")[:self._left])
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= n
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Call it to make every writer's data file fail with ENOSPC after 10 KiB (midway through
    the tensors)."""
    return lambda: _fill_disk(monkeypatch)


def _fill_disk(monkeypatch, budget: int = 10_000) -> None:

    def failing_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        return FullDisk(f, budget) if "w" in mode or "+" in mode else f

    from converter.formats import npy, npz, safetensors
    from converter.formats.tfbundle import writer

    for module in (npy, npz, safetensors, writer):
        monkeypatch.setattr(module, "open", failing_open, raising=False)

    class FailingZipFile(zipfile.ZipFile):
        def __init__(self, file, mode="r", *args, **kwargs):
            if mode == "w" and not hasattr(file, "write"):
                file = failing_open(file, "w+b")
            super().__init__(file, mode, *args, **kwargs)

        def close(self) -> None:
            fp = self.fp
            super().close()
            if isinstance(fp, FullDisk):
                fp.close()

    names = {k: getattr(zipfile, k) for k in dir(zipfile) if not k.startswith("__")}
    monkeypatch.setattr(npz, "zipfile", types.SimpleNamespace(**{**names,
                                                                 "ZipFile": FailingZipFile}))


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "hdf5"])
def test_disk_full_leaves_nothing(tmp_path, fmt, full_disk, capsys):
    src, _ = _source(tmp_path, fmt)
    out = tmp_path / "out-dir"
    name, flags = FORMATS[fmt]
    dst = out / name
    full_disk()
    assert main(["convert", str(src), str(dst), "-q", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(dst) in err[0], err
    assert _leftovers(out) == [] and _outputs(out, dst) == []


@pytest.mark.parametrize("fmt", ["tf", "safetensors", "npz", "npy-dir"])
def test_disk_full_keeps_the_existing_output(tmp_path, fmt, full_disk, capsys):
    old_src, old = _source(tmp_path, fmt, seed=1)
    src, _ = _source(tmp_path, fmt, seed=2)
    name, flags = FORMATS[fmt]
    dst = tmp_path / "out-dir" / name
    assert main(["convert", str(old_src), str(dst), "-q", *flags]) == 0
    full_disk()
    assert main(["convert", str(src), str(dst), "-q", "--force", *flags]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _same(dst, old, "npy" if fmt == "npy-dir" else None)
    assert _leftovers(dst.parent) == []


def _with_file_size_limit(limit: int, argv: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI where the kernel refuses to grow any file past ``limit`` bytes (EFBIG): a
    real write failure, which reaches h5py's C writes too."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from converter.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_write_failure_from_the_kernel_leaves_nothing(tmp_path, fmt):
    src, _ = _source(tmp_path, fmt)
    name, flags = FORMATS[fmt]
    out = tmp_path / "out-dir"
    dst = out / name
    done = _with_file_size_limit(12_000, ["convert", str(src), str(dst), "-q", *flags])
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and err[0].startswith("ckpt: error: ") and str(out) in err[0], err
    assert _leftovers(out) == [] and _outputs(out, dst) == []


# --- Ctrl-C ---------------------------------------------------------------------------------


# Interrupting a writer mid-write is tested in test_interrupts.py.


def test_second_interrupt_before_signals_are_held_still_cleans_up(tmp_path, monkeypatch):
    # The first interrupt unwinds the writer; a second lands while the cleanup is starting,
    # before the signals are held (seen with `ckpt batch` under SIGTERM from the shell and from
    # the parent process at once).
    real = outputs.signals_held
    calls = []
    failed = []

    def second_interrupt():
        if failed:  # the cleanup has begun
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
        return real()

    monkeypatch.setattr(outputs, "signals_held", second_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with outputs.outputs() as group:
            for name in ("m.ckpt.index", "m.ckpt.data-00000-of-00001"):
                group.new(out / name).write_bytes(b"partial")
            failed.append(1)
            raise KeyboardInterrupt
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []  # the temporaries, and the directory made for them


# --- two writers of one destination -----------------------------------------------------------


def test_concurrent_commits_do_not_interleave(tmp_path, monkeypatch):
    """While one writer renames its files into place, a second writer of the same destination
    waits: the renames of the two never interleave (which could pair one's index with the
    other's data)."""
    real_replace = os.replace
    log: list[tuple[str, str]] = []
    first_inside = threading.Event()

    def slow_replace(src, dst):
        log.append((threading.current_thread().name, Path(dst).name))
        first_inside.set()
        time.sleep(0.05)
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", slow_replace)
    dst = tmp_path / "m.ckpt"
    a, b = _data(1, n=2, size=16), _data(2, n=2, size=16)
    errors: list[BaseException] = []

    def write(data, name):
        try:
            converter.write(data, dst, force=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t1 = threading.Thread(target=write, args=(a, "a"), name="a")
    t2 = threading.Thread(target=write, args=(b, "b"), name="b")
    t1.start()
    assert first_inside.wait(10)
    t2.start()
    t1.join(30)
    t2.join(30)
    assert not errors
    writers = [who for who, _ in log]
    assert writers == sorted(writers), log  # all of a's renames, then all of b's
    assert len(log) == 6  # data shard, index and state file, twice
    assert _same(dst, b)


@pytest.mark.parametrize("fmt", ["tf", "safetensors", "npy-dir"])
def test_two_processes_writing_one_destination(tmp_path, fmt):
    name, flags = FORMATS[fmt]
    sources = []
    for seed in (1, 2):
        data = _data(seed, n=8, size=256 * 1024)  # 8 MiB each
        path = tmp_path / f"src{seed}.safetensors"
        converter.write(data, path)
        sources.append((path, data))
    dst = tmp_path / "out" / name
    read_as = "npy" if fmt == "npy-dir" else None
    for _ in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "converter", "convert", str(path),
                                   str(dst), "-q", "--force", *flags],
                                  stderr=subprocess.PIPE, text=True) for path, _ in sources]
        for proc in procs:
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
        assert any(_same(dst, data, read_as) for _, data in sources), "a mixed output"
        assert _leftovers(dst.parent) == []


# --- existing outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_existing_output_is_kept_unless_forced(tmp_path, fmt, capsys):
    name, flags = FORMATS[fmt]
    old_src, old = _source(tmp_path, fmt, seed=1)
    src, new = _source(tmp_path, fmt, seed=2)
    dst = tmp_path / "out" / name
    read_as = "npy" if fmt == "npy-dir" else None
    assert main(["convert", str(old_src), str(dst), "-q", *flags]) == 0
    before = {p: p.read_bytes() for p in sorted(dst.parent.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert main(["convert", str(src), str(dst), "-q", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--force" in err[0], err
    assert {p: p.read_bytes() for p in sorted(dst.parent.rglob("*")) if p.is_file()} == before
    assert main(["convert", str(src), str(dst), "-q", "--force", *flags]) == 0
    assert _same(dst, new, read_as) and not _same(dst, old, read_as)
    assert _leftovers(dst.parent) == []
