"""Writing outputs so that nothing is lost: temporary names in the destination directory, fsync,
then rename into place; existing outputs are kept unless the caller forces.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError


def check_free(paths: list[Path], force: bool) -> None:
    """Raise UsageError if any output exists and ``force`` is not set."""
    if force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path}: already exists (use --force to overwrite)")


def _fsync_path(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                _fsync_file(child)
    _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class Outputs:
    """A group of outputs committed together, in the order they were added.

    ``new(dst)`` returns a temporary path beside ``dst`` to write into. On ``commit()`` every
    temporary is fsynced and renamed over its destination, in order (put the file that marks a
    checkpoint complete, such as a TF ``.index``, last); on failure all temporaries are removed.
    """

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._pending: list[tuple[Path, Path]] = []

    def new(self, dst: Path | str, keep_suffix: str = "") -> Path:
        """A temporary path for ``dst``; ``keep_suffix`` ends it for writers that insist on a
        suffix (Keras's ``.weights.h5``)."""
        dst = Path(dst)
        check_free([dst], self.force)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp-{secrets.token_hex(4)}{keep_suffix}")
        self._pending.append((tmp, dst))
        return tmp

    def commit(self) -> None:
        for tmp, _ in self._pending:
            _fsync_path(tmp)
        for tmp, dst in self._pending:
            if tmp.is_dir() and dst.exists():
                # os.replace cannot replace a non-empty directory: move the old one aside first.
                old = dst.with_name(f".{dst.name}.old-{secrets.token_hex(4)}")
                os.replace(dst, old)
                os.replace(tmp, dst)
                _remove(old)
            else:
                if dst.is_dir() and not dst.is_symlink():
                    _remove(dst)
                os.replace(tmp, dst)
        dirs = {dst.parent for _, dst in self._pending}
        for d in dirs:
            _fsync_file(d)
        self._pending = []

    def abort(self) -> None:
        for tmp, _ in self._pending:
            _remove(tmp)
        self._pending = []


@contextmanager
def outputs(force: bool = False) -> Iterator[Outputs]:
    """Context manager around :class:`Outputs` that commits on success and cleans up on any error
    (including KeyboardInterrupt)."""
    group = Outputs(force)
    try:
        yield group
        group.commit()
    except BaseException:
        group.abort()
        raise
