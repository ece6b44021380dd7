"""Scratch space for a batch run: one directory in the temporary directory, named
``ckpt-batch-*``, holding a lock the run keeps while it lives. Unpacked archives, downloads and
uploads staged by the workers go inside it.

A run killed with SIGKILL leaves its directory behind; the next run removes every such
directory whose lock nobody holds (the workers of a live run share its lock, so a directory in
use is never taken).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .._tempfiles import discard

PREFIX = "ckpt-batch-"
LOCK = ".lock"
UNLOCKED_GRACE = 3600.0  # seconds: a directory without an owner record, left this long, is stale

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so nothing is ever taken as stale
    fcntl = None  # type: ignore[assignment]


class Scratch:
    """The run's scratch directory (``path``); ``close()`` removes it."""

    def __init__(self, base: str | os.PathLike[str] | None = None) -> None:
        base = Path(base or tempfile.gettempdir())
        remove_stale(base)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        self._lock = open(self.path / LOCK, "w")  # noqa: SIM115 -- held for the run
        if fcntl is not None:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Written only once the lock is held: a cleaner seeing an empty record leaves the
        # directory alone (it may be this moment, between mkdtemp and flock).
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()

    def close(self) -> None:
        discard(self.path)
        self._lock.close()


def remove_stale(base: Path) -> list[Path]:
    """Remove the scratch directories under ``base`` that no live run holds; returns them."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    try:
        candidates = sorted(base.glob(PREFIX + "*"))
    except OSError:
        return removed
    for directory in candidates:
        if not directory.is_dir() or directory.is_symlink():
            continue
        try:
            with open(directory / LOCK, "r+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # held: a live run
                if not lock.read().strip() and not _old(directory):
                    continue  # a run being set up
                discard(directory)
        except FileNotFoundError:
            if not _old(directory):
                continue  # just created, or made by a worker on its own
            discard(directory)
        except OSError:
            continue
        removed.append(directory)
    return removed


def _old(directory: Path) -> bool:
    try:
        return time.time() - directory.stat().st_mtime > UNLOCKED_GRACE
    except OSError:
        return False
