"""Temporary outputs and what a killed writer leaves behind.

Every temporary (``.NAME.tmp-XXXXXXXX``, a file or an npy directory) is created 0600 and stays
locked for as long as its writer lives: files with an open-file-description lock (``F_OFD_SETLK``,
which neither the writer's own open/close of the path nor HDF5's ``flock`` of it disturbs),
directories with ``flock``. The kernel drops a lock when its process dies, however it dies, so a
temporary that matches our names, can be locked by someone else and has not changed for
``STALE_AFTER`` seconds belongs to a writer that was killed (``kill -9``, a node that lost power)
and is removed by the next writer in that directory. The age covers the moment between creating
a temporary and locking it, and writers of older versions that took no lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no locks, so no temporary is ever judged stale
    fcntl = None  # type: ignore[assignment]

STALE_AFTER = 300.0  # seconds without a change before an unlocked temporary counts as stale
SWEEP_EVERY = 60.0  # a directory is searched for stale temporaries at most this often

# ``.NAME.tmp-`` + 8 hex digits (+ the suffix some writers insist on, ``.weights.h5``), and the
# ``.NAME.old-`` directories a commit moves aside before removing them.
STALE_NAME = re.compile(r"\..+\.(?P<kind>tmp|old)-[0-9a-f]{8}(?:\.[A-Za-z0-9.]+)?")

# struct flock of 64-bit Linux: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid.
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None) if (
    fcntl is not None and sys.platform.startswith("linux") and sys.maxsize > 2**32) else None

# The index file of an npy directory (``formats/npy.py`` writes it), the only kind of directory a
# writer makes: all a temporary or moved-aside directory of ours holds besides ``.npy`` files.
DIRECTORY_INDEX = "converter-index.json"

_swept: dict[Path, float] = {}


def _ofd_lock(fd: int, kind: int) -> bool:
    """Take an open-file-description lock of ``kind`` on the whole file without waiting;
    False when another description holds a conflicting one."""
    if _OFD_SETLK is None:  # callers check first
        raise OSError(errno.ENOTSUP, "open-file-description locks are not available here")
    try:
        fcntl.fcntl(fd, _OFD_SETLK, struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))
    except (BlockingIOError, PermissionError):
        return False
    return True


def create(path: Path, directory: bool) -> tuple[int | None, int]:
    """Create the temporary ``path`` 0600 (0700 for a directory) and lock it.

    Returns ``(fd holding the lock or None, the mode a new file or directory gets here)``: the
    latter is what the umask (and a default ACL) give, measured on the new entry itself rather
    than by changing the process's umask, which other threads share."""
    if directory:
        os.mkdir(path, 0o777)
        default = os.stat(path).st_mode & 0o777
        os.chmod(path, 0o700)
        fd: int | None = None
        if fcntl is not None:
            try:
                fd = os.open(path, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: the temporary is never swept
                pass
        return fd, default
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        default = os.fstat(fd).st_mode & 0o777
        os.chmod(path, 0o600)
        if _OFD_SETLK is not None:
            try:
                _ofd_lock(fd, fcntl.F_WRLCK)
            except OSError:
                pass
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, default


def release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _made_by_us(path: Path, kind: str, is_dir: bool) -> bool:
    """Whether ``path`` holds what our temporaries hold. Names alone do not tell (a dated
    backup ``.run.old-20240101`` fits the pattern): ``.old-`` entries are only ever earlier
    npy directories, and the only directories we write are npy directories, which hold
    ``.npy`` files and their index, nothing else."""
    if not is_dir:
        return kind == "tmp"
    for _, _, names in os.walk(path):
        if any(not n.endswith(".npy") and n != DIRECTORY_INDEX for n in names):
            return False
    return True


def _abandoned(path: Path, now: float, kind: str) -> bool:
    """True only when ``path`` is provably a dead writer's temporary: old, not locked, and
    holding what our temporaries hold."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if now - st.st_mtime < STALE_AFTER or os.path.islink(path):
        return False
    is_dir = os.path.isdir(path)
    if not _made_by_us(path, kind, is_dir):
        return False
    if fcntl is None or (not is_dir and _OFD_SETLK is None):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if is_dir:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            return True
        return _ofd_lock(fd, fcntl.F_RDLCK)
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep(directory: Path) -> None:
    """Remove the temporaries killed writers left in ``directory``; never fails a write."""
    now = time.time()
    if now - _swept.get(directory, 0.0) < SWEEP_EVERY:
        return
    _swept[directory] = now
    try:
        entries = [(e.name, m["kind"]) for e in os.scandir(directory)
                   if (m := STALE_NAME.fullmatch(e.name))]
    except OSError:
        return
    for name, kind in entries:
        path = directory / name
        if not _abandoned(path, now, kind):
            continue
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass


def discard(path: str | os.PathLike[str]) -> None:
    """Remove a scratch file or directory tree whole: an interrupt arriving meanwhile waits
    until it is gone (cut short, rmtree would leave part of it behind)."""
    from .signals import signals_held

    with signals_held():
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
