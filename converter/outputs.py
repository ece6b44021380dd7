"""Writing outputs so that nothing is lost: temporary names in the destination directory, fsync,
then rename into place; existing outputs are kept unless the caller forces.

``force`` replaces the files a conversion writes, never a directory tree: a file output is never
written over a directory (nor a directory over a file), and a directory output (an npy
directory) replaces an existing directory only when every file in it belongs to an earlier output
of the same kind. An output that would overwrite or contain the checkpoint being converted is
refused before anything is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from . import _tempfiles
from .errors import UsageError, option
from .signals import signals_held

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


# --- the checkpoint being converted ----------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    roots: frozenset[Path]  # what the user named: a file, directory or TF prefix
    files: frozenset[Path]  # every file the tensors are read from
    mode: int | None  # permission bits every one of those files has
    holders: frozenset[Path] = frozenset()  # every directory above those
    pointers: frozenset[Path] = frozenset()  # TF state files beside a bundle's index

    def hit_by(self, dst: Path) -> Path | None:
        """The input that writing (or replacing) ``dst`` would overwrite or remove."""
        where = _where(dst)
        if where in self.roots or where in self.files:
            return where
        if where in self.holders:
            return min(p for p in self.roots | self.files if where in p.parents)
        return None


_SOURCE: ContextVar[_Source | None] = ContextVar("converter_output_source", default=None)


def _where(path: Path) -> Path:
    """The directory entry a rename onto ``path`` replaces (the link itself for a symlink)."""
    path = Path(os.path.abspath(path))
    return path.parent.resolve() / path.name


@contextmanager
def from_source(src: Path, files: Iterable[str], dst: Path) -> Iterator[None]:
    """Outputs written in this block come from ``src`` (the path the user named), read from
    ``files`` (every file it depends on, see :func:`converter.api.source_files`): they may not
    overwrite or contain it, and get its permission bits at most."""
    src = Path(src)
    real = frozenset(Path(f).resolve() for f in files)
    mode = None
    for p in real:
        try:
            bits = os.stat(p).st_mode & 0o777
        except OSError:
            continue
        mode = bits if mode is None else mode & bits
    roots = frozenset({src.resolve()})
    # A file named ``checkpoint`` is a state file only beside the bundle's index and when it is
    # not what the user named: an npz or HDF5 file of that name holds tensors.
    indexed = {p.parent for p in real if p.name.endswith(".index")} | roots
    pointers = frozenset(p for p in real - roots if p.name == "checkpoint" and p.parent in indexed)
    source = _Source(roots, real, mode, frozenset(d for p in roots | real for d in p.parents),
                     pointers)
    # Only the output's own name is known here (a TF output into a directory beside its source
    # is fine); new() checks each file an output is made of.
    if _where(Path(dst)) in source.roots | source.files:
        raise UsageError(f"{dst}: is the checkpoint being converted; choose another output")
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)


def _refuse_input(dst: Path, pointer: bool = False) -> None:
    source = _SOURCE.get()
    if source is None:
        return
    hit = source.hit_by(dst)
    if hit is not None and not (pointer and hit in source.pointers):
        what = "overwrite" if hit == _where(dst) else "remove"
        raise UsageError(f"{dst}: writing it would {what} the checkpoint being converted "
                         f"({hit}); choose another output")


# --- groups of outputs -----------------------------------------------------------------------


@dataclass
class _Entry:
    tmp: Path
    dst: Path
    force: bool
    lock: int | None
    mode: int  # the final permission bits
    directory: bool = False
    owned: Callable[[Path], set[str]] | None = None


@dataclass
class _Sweep:
    directory: Path
    pattern: re.Pattern[str]
    force: bool
    written: set[Path] = field(default_factory=set)


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _foreign(path: Path, owned: Callable[[Path], set[str]] | None) -> str | None:
    """A file in directory ``path`` that is not part of an earlier output (None if all are)."""
    mine = owned(path) if owned is not None else set()
    for p in sorted(path.rglob("*")):
        if not _is_dir(p) and p.relative_to(path).as_posix() not in mine:
            return p.relative_to(path).as_posix()
    return None


class Outputs:
    """A group of outputs committed together, in the order they were added.

    ``new(dst)`` creates a temporary beside ``dst`` (an empty 0600 file, or with
    ``directory=True`` an empty 0700 directory) for the writer to write or truncate. On
    ``commit()`` every temporary gets its final permission bits (the umask's, and at most the
    source's inside :func:`from_source`), is fsynced and renamed over its destination, in order
    (put the file that marks a checkpoint complete, such as a TF ``.index``, last); on failure
    every temporary, and every directory ``new`` created, is removed.
    """

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._pending: list[_Entry] = []
        self._sweeps: list[_Sweep] = []
        self._made: list[Path] = []  # directories new() created, parents first

    def new(self, dst: Path | str, keep_suffix: str = "", *, directory: bool = False,
            owned: Callable[[Path], set[str]] | None = None, pointer: bool = False) -> Path:
        """A temporary path for ``dst``; ``keep_suffix`` ends it for writers that insist on a
        suffix (Keras's ``.weights.h5``). For a ``directory`` output, ``owned(existing)`` names
        the files (relative paths) of an earlier output in ``existing``, which ``force`` may
        replace; a directory holding anything else is refused. A ``pointer`` is TensorFlow's
        ``checkpoint`` state file, which savers rewrite in place to name their newest prefix:
        it may replace the source directory's own (no other output may)."""
        dst = Path(dst)
        _refuse_input(dst, pointer)
        self._check(dst, self.force, directory, owned)
        self._mkdirs(dst.parent)
        _tempfiles.sweep(dst.parent)
        tmp = dst.with_name(f".{dst.name}.tmp-{os.urandom(4).hex()}{keep_suffix}")
        with signals_held():  # a temporary is removed on failure only once it is listed
            lock, default = _tempfiles.create(tmp, directory)
            self._pending.append(_Entry(tmp, dst, self.force, lock, _limit(default, directory),
                                        directory, owned))
        for sweep in self._sweeps:
            sweep.written.add(_where(dst))
        return tmp

    def sweep(self, directory: Path | str, pattern: str) -> None:
        """Files in ``directory`` whose names match ``pattern`` (in full) belong to earlier
        outputs of this one (the shards of a larger checkpoint): with ``force`` those this
        group does not write are removed after it commits, so an index never sits beside
        shards it does not name; without, any of them existing refuses the output."""
        seen = _sweeps_seen.get()
        if seen is not None:
            seen.append((Path(directory), pattern))
        entry = _Sweep(Path(directory), re.compile(pattern), self.force,
                       {_where(e.dst) for e in self._pending})
        source = _SOURCE.get()
        for path in self._stale(entry):
            if source is not None and source.hit_by(path) is not None:
                raise UsageError(f"{path}: rewriting this output would remove the checkpoint "
                                 "being converted; choose another output")
            if not entry.force:
                raise UsageError(f"{path}: already exists (use {option('force')} to overwrite)")
        self._sweeps.append(entry)

    @staticmethod
    def _stale(entry: _Sweep) -> list[Path]:
        try:
            names = sorted(e.name for e in os.scandir(entry.directory) if
                           entry.pattern.fullmatch(e.name) and not e.is_dir(follow_symlinks=False))
        except OSError:
            return []
        return [p for p in (entry.directory / n for n in names) if _where(p) not in entry.written]

    @staticmethod
    def _check(dst: Path, force: bool, directory: bool,
               owned: Callable[[Path], set[str]] | None) -> None:
        if not (dst.exists() or dst.is_symlink()):
            return
        if not directory and _is_dir(dst):
            raise UsageError(f"{dst}: is a directory; not replacing it with a file "
                             f"({option('force')} replaces files only)")
        if directory and not dst.is_dir():
            raise UsageError(f"{dst}: exists and is not a directory")
        if not force:
            raise UsageError(f"{dst}: already exists (use {option('force')} to overwrite)")
        if directory and _is_dir(dst):
            other = _foreign(dst, owned)
            if other is not None:
                raise UsageError(f"{dst}: not replacing a directory that holds files of "
                                 f"something else ({other}); remove them or choose another "
                                 "output")

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        d = directory
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        if d.exists() and not d.is_dir():  # named here, not by the temporary made inside it
            raise UsageError(f"{d}: is not a directory, and the output goes inside it")
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # made by a concurrent writer: theirs to keep
                continue
            self._made.append(d)

    def commit(self) -> None:
        for e in self._pending:
            _set_mode(e)
            _fsync_path(e.tmp)
        dirs = {e.dst.parent for e in self._pending} | {s.directory for s in self._sweeps}
        # The renames of a group (a TF bundle's shards, index and state file) happen as a unit:
        # Ctrl-C waits for them, and another process committing into the same directory waits
        # for the lock, so two writers of one destination never leave a mix of both. Whether a
        # destination is free is decided here, under the lock, not when writing began.
        with signals_held(), _locked(dirs):
            for e in self._pending:
                self._check(e.dst, e.force, e.directory, e.owned)
            stale = []
            for s in self._sweeps:
                found = self._stale(s)
                if found and not s.force:
                    raise UsageError(
                        f"{found[0]}: already exists (use {option('force')} to overwrite)")
                stale += found
            for e in self._pending:
                if e.directory and e.dst.exists():
                    # os.replace cannot replace a non-empty directory: move the old one aside.
                    old = e.dst.with_name(f".{e.dst.name}.old-{os.urandom(4).hex()}")
                    os.replace(e.dst, old)
                    os.replace(e.tmp, e.dst)
                    _remove(old)
                else:
                    os.replace(e.tmp, e.dst)
            for path in stale:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            for d in dirs:
                _fsync_file(d)
            for e in self._pending:
                _tempfiles.release(e.lock)
            note_committed([e.dst for e in self._pending])
            self._pending = []
            self._made = []

    def abort(self) -> None:
        # A second Ctrl-C (or SIGTERM) must not leave temporaries behind: signals are held while
        # removing, and one that lands before they are held restarts the cleanup; it is raised
        # once everything is removed.
        interrupted: BaseException | None = None
        while self._pending or self._made:
            try:
                with signals_held():
                    while self._pending:
                        e = self._pending[-1]
                        _remove(e.tmp)
                        _tempfiles.release(e.lock)
                        self._pending.pop()
                    while self._made:
                        try:
                            self._made[-1].rmdir()
                        except OSError:  # not empty: another writer's output is in it
                            pass
                        self._made.pop()
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    @property
    def current(self) -> Path | None:
        """The destination being written (the last one added)."""
        return self._pending[-1].dst if self._pending else None


def _limit(default: int, directory: bool) -> int:
    source = _SOURCE.get()
    if source is None or source.mode is None:
        return default
    allowed = source.mode
    if directory:  # a directory may be searched by whoever may read the files
        allowed |= (allowed & 0o444) >> 2
    return default & allowed


def _set_mode(e: _Entry) -> None:
    if not e.directory:
        os.chmod(e.tmp, e.mode)
        return
    files = e.mode & 0o666
    for root, dirs, names in os.walk(e.tmp):
        for name in names:
            os.chmod(os.path.join(root, name), files)
        for name in dirs:
            os.chmod(os.path.join(root, name), e.mode)
    os.chmod(e.tmp, e.mode)


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
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


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


_committed: ContextVar[list[Path | str] | None] = ContextVar("committed", default=None)


@contextmanager
def recording() -> Iterator[list[Path | str]]:
    """Collect the destinations committed (in this thread) inside the block, in commit order:
    what a command names as written, whatever files the format splits an output into (URLs,
    as strings, for objects uploaded to remote storage)."""
    paths: list[Path | str] = []
    token = _committed.set(paths)
    try:
        yield paths
    finally:
        _committed.reset(token)


_sweeps_seen: ContextVar[list[tuple[Path, str]] | None] = ContextVar("sweeps", default=None)


@contextmanager
def recording_sweeps() -> Iterator[list[tuple[Path, str]]]:
    """Collect the ``(directory, pattern)`` of every :meth:`Outputs.sweep` inside the block:
    an output made in scratch space and uploaded elsewhere has its earlier shards there."""
    seen: list[tuple[Path, str]] = []
    token = _sweeps_seen.set(seen)
    try:
        yield seen
    finally:
        _sweeps_seen.reset(token)


def note_committed(paths: Sequence[Path | str]) -> None:
    record = _committed.get()
    if record is not None:
        record.extend(paths)


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
