"""Helpers shared by the format modules."""

from __future__ import annotations

import gc
import math
import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .. import dtypes
from ..errors import FormatError
from ..tensor import Tensor


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a reader builds tens of thousands of small
    objects that form no cycles: otherwise collections triggered by the allocations rescan
    everything alive and cost about a third of opening a 20,000-tensor index."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def contiguous_le(tensor: Tensor, array: np.ndarray | None = None) -> np.ndarray:
    """The tensor's values as a C-contiguous little-endian array in its storage dtype."""
    if array is None:
        array = tensor.read()
    if tuple(array.shape) != tensor.shape:
        raise FormatError(
            f"tensor {tensor.name!r}: read shape {array.shape}, expected {tensor.shape}")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return dtypes.to_storage(dtypes.c_order(array))


_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading, refused (FormatError) unless it is a regular file: reading a
    FIFO or a character device would block forever or never end. Opened non-blocking, so a FIFO
    with no writer does not hang the open itself."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "special file")
            raise FormatError(f"{path}: not a regular file (a {kind})")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], max_size: int | None = None) -> bytes:
    """The bytes of regular file ``path`` (see :func:`open_regular`); FormatError when it holds
    more than ``max_size`` bytes."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if max_size is not None and size > max_size:
            raise FormatError(f"{path}: {size} bytes, too big for what it should be "
                              f"(at most {max_size})")
        return f.read()


def map_file(path: Path) -> mmap.mmap | bytes:
    """A read-only memory map of ``path`` (empty bytes for an empty file, which mmap refuses)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def frombuffer(
    buf: mmap.mmap | bytes, dtype: np.dtype, shape: tuple[int, ...], offset: int
) -> np.ndarray:
    """A read-only array view of ``buf`` at ``offset`` (bounds were checked by the caller)."""
    count = math.prod(shape)  # Python ints: np.prod would wrap around in int64
    if count == 0:
        return np.empty(shape, dtype=dtype)
    array = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
    array.flags.writeable = False
    return array


def check_shape(path: Path, name: str, shape: object) -> tuple[int, ...]:
    """Validate a shape read from a file: a list of non-negative ints of sane rank."""
    if not isinstance(shape, (list, tuple)) or len(shape) > 64:
        raise FormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0 or d >= 2**62:
            raise FormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    return tuple(shape)


def split_by_size(tensors: list[Tensor], max_size: int | None) -> list[list[Tensor]]:
    """Tensors in order, cut into groups of at most ``max_size`` bytes (a bigger tensor gets a
    group of its own); one group when ``max_size`` is None."""
    if not max_size:
        return [list(tensors)]
    groups: list[list[Tensor]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.nbytes > max_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    return groups


def release(buf: object) -> None:
    """Close a memory map unless arrays handed out still view it (then the last of them
    releases it when it is garbage-collected)."""
    close = getattr(buf, "close", None)
    if close is not None:
        try:
            close()
        except BufferError:
            pass
