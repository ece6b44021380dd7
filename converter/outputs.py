"""Writing outputs so that nothing is lost: temporary names in the destination directory, fsync,
then rename into place; existing outputs are kept unless the caller forces.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError, option

try:
    import fcntl
except ImportError:  # Windows: no flock; os.replace is still atomic per file
    fcntl = None  # type: ignore[assignment]


def check_free(paths: list[Path], force: bool) -> None:
    """Raise UsageError if any output exists and ``force`` is not set."""
    if force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path}: already exists (use {option('force')} to overwrite)")


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
        tmp = dst.with_name(f".{dst.name}.tmp-{os.urandom(4).hex()}{keep_suffix}")
        self._pending.append((tmp, dst))
        return tmp

    def commit(self) -> None:
        for tmp, _ in self._pending:
            _fsync_path(tmp)
        dirs = {dst.parent for _, dst in self._pending}
        # The renames of a group (a TF bundle's shards, index and state file) happen as a unit:
        # Ctrl-C waits for them, and another process committing into the same directory waits
        # for the lock, so two writers of one destination never leave a mix of both.
        with signals_held(), _locked(dirs):
            for tmp, dst in self._pending:
                if tmp.is_dir() and dst.exists():
                    # os.replace cannot replace a non-empty directory: move the old one aside.
                    old = dst.with_name(f".{dst.name}.old-{os.urandom(4).hex()}")
                    os.replace(dst, old)
                    os.replace(tmp, dst)
                    _remove(old)
                else:
                    if dst.is_dir() and not dst.is_symlink():
                        _remove(dst)
                    os.replace(tmp, dst)
            for d in dirs:
                _fsync_file(d)
            self._pending = []

    def abort(self) -> None:
        # A second Ctrl-C (or SIGTERM) must not leave temporaries behind: signals are held while
        # removing, and one that lands before they are held restarts the cleanup; it is raised
        # once everything is removed.
        interrupted: BaseException | None = None
        while self._pending:
            try:
                with signals_held():
                    while self._pending:
                        _remove(self._pending[-1][0])
                        self._pending.pop()
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    @property
    def current(self) -> Path | None:
        """The destination being written (the last one added)."""
        return self._pending[-1][1] if self._pending else None


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver them. Python runs signal
    handlers in the main thread only, so elsewhere (and where signals cannot be set) this does
    nothing. Also for writers whose library runs Python callbacks from C, where an interrupt
    raised inside would be printed and lost instead of unwinding the writer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is None:  # installed outside Python: cannot be restored
                continue
            previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    except (ValueError, OSError):  # e.g. an embedded interpreter without signal support
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


@contextmanager
def _locked(dirs: set[Path]) -> Iterator[None]:
    """An exclusive advisory lock (flock) on each directory, taken in a fixed order."""
    fds = []
    try:
        for d in sorted(dirs):
            try:
                fd = os.open(d, os.O_RDONLY)
            except OSError:
                continue
            fds.append(fd)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:  # a file system without locks: renames stay atomic one by one
                    pass
        yield
    finally:
        for fd in fds:
            os.close(fd)


@contextmanager
def outputs(force: bool = False) -> Iterator[Outputs]:
    """Context manager around :class:`Outputs` that commits on success and cleans up on any error
    (including KeyboardInterrupt)."""
    group = Outputs(force)
    try:
        yield group
        group.commit()
    except OSError as exc:
        dst = group.current
        group.abort()
        message = exc.strerror or str(exc)
        if "\n" in message:  # HDF5 reports write errors over several lines
            message = os.strerror(exc.errno) if isinstance(exc.errno, int) else " ".join(
                message.split())
        if exc.filename is None and dst is not None or message != exc.strerror:
            # A failed write (disk full) names no file; say which output it was.
            raise OSError(exc.errno, message, exc.filename or str(dst)) from exc
        raise
    except BaseException:
        group.abort()
        raise
