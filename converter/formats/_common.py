"""Helpers shared by the format modules."""

from __future__ import annotations

import gc
import math
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, unquote

from .. import dtypes
from ..errors import FormatError, keyword
from ..sizes import parse_size
from ..tensor import Tensor

if TYPE_CHECKING:  # only the zip readers need zipfile: a bundle is read without it
    import zipfile

    import numpy as np


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a reader builds tens of thousands of small
    objects that form no cycles: otherwise collections triggered by the allocations rescan
    everything alive and cost about a third of opening a 20,000-tensor index. A decorator too
    (``@gc_paused()``), for a reader whose whole body builds them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Tensor names as relative paths (npy directories, npz members). Each ``/``-separated part is
# percent-escaped (``%XX`` of its UTF-8 bytes): in files on disk (``portable``) every character
# but ``A-Za-z0-9_.-~``, as ``urllib.parse.quote`` with no safe characters does, so names are
# valid file names everywhere; in zip members only ``%``, ``\\``, control characters (NUL
# included) and the characters Windows forbids in file names, so numpy users see
# ``dense/kernel`` and ``é`` as they are. The parts ``.``, ``..`` and the empty part are written
# ``%2E``, ``%2E%2E`` and ``%``; a scope part ending in ``.npy`` gets its last dot escaped so it
# cannot clash with a tensor file; parts longer than 200 bytes are shortened and suffixed with a
# hash (those names round-trip only through the index the writer keeps). The result is never
# absolute, never holds a ``..`` part and so never leaves its directory.
MAX_PART = 200
_ZIP_ESCAPED = frozenset('%\\:*?"<>|') | {chr(c) for c in range(32)} | {"\x7f"}


def _quote_zip(part: str) -> str:
    if not any(c in _ZIP_ESCAPED for c in part):
        return part
    return "".join(quote(c, safe="") if c in _ZIP_ESCAPED else c for c in part)


def _escape_part(part: str, *, scope: bool, portable: bool) -> str:
    if part in ("", ".", ".."):
        return {"": "%", ".": "%2E", "..": "%2E%2E"}[part]
    out = quote(part, safe="") if portable else _quote_zip(part)
    if scope and out.lower().endswith(".npy"):
        out = out[:-4] + "%2E" + out[-3:]  # the case kept: the name reads back without an index
    if len(out.encode()) > MAX_PART:
        import hashlib  # rarely needed: loaded here, off every command's start-up

        out = out[:180] + "~" + hashlib.sha1(part.encode()).hexdigest()[:16]
    return out


def _plain_member(name: str) -> bool:
    # Most names need no escaping in a zip; checked on the whole name at once, since
    # checkpoints hold tens of thousands of them.
    if len(name.encode()) > MAX_PART or not _ZIP_ESCAPED.isdisjoint(name) or not name or \
            name[0] == "/" or name[-1] == "/" or "//" in name:
        return False
    if "." not in name:
        return True
    parts = name.split("/")
    return not any(p in (".", "..") for p in parts) and not any(
        p[-4:].lower() == ".npy" for p in parts[:-1])


def name_to_path(name: str, suffix: str = ".npy", *, portable: bool = True) -> str:
    """The relative path that stores tensor ``name`` (the one way names become paths)."""
    if not portable and _plain_member(name):
        return name + suffix
    parts = name.split("/")
    escaped = [_escape_part(p, scope=True, portable=portable) for p in parts[:-1]]
    escaped.append(_escape_part(parts[-1], scope=False, portable=portable) + suffix)
    return "/".join(escaped)


def path_to_name(rel: str, suffix: str = ".npy") -> str:
    """The tensor name of a relative path written by :func:`name_to_path` (the inverse, for
    parts that were not shortened)."""
    parts = rel[:-len(suffix)].split("/") if suffix else rel.split("/")
    return "/".join("" if p == "%" else unquote(p, errors="surrogateescape") for p in parts)


def check_name(path: Path, name: str, fmt: str, *, nul: bool = True) -> None:
    """Refuse, in one line, a tensor name the format cannot store: names that are not valid
    Unicode (lone surrogates: bytes read from a TF bundle that are not UTF-8) anywhere, and NUL
    where the format ends names at it (``nul=False``)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{path}: tensor {name!r}: the name is not valid UTF-8, which {fmt} "
                          "cannot store; rename it (--rename)") from None
    if not nul and "\0" in name:
        raise FormatError(f"{path}: tensor {name!r}: the name holds a NUL character, which {fmt} "
                          "cannot store; rename it (--rename)")


def check_dtype(path: Path, tensor: Tensor, fmt: str) -> None:
    """Refuse, in one line, a dtype converter has no name for (numpy ``S``/``U``/``V`` arrays,
    float128 ...): no writer can record it so that it reads back."""
    try:
        dtypes.name_of(tensor.dtype)
    except FormatError:
        raise FormatError(f"{path}: tensor {tensor.name!r} has dtype {tensor.dtype.str} "
                          f"({tensor.dtype}), which {fmt} cannot store") from None


def first_line(exc: BaseException) -> str:
    """What a library's exception says, as one line for our own message: its first non-blank
    line (TensorFlow's and HDF5's run on over many), cut to 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


MAX_RATIO = 1032  # deflate's largest expansion (258 bytes from 2 bits, plus block overhead)


def check_declared(path: Path | str, info: zipfile.ZipInfo, what: str,
                   size: int | None = None) -> None:
    """Refuse a compressed member whose declared size its compressed bytes cannot produce
    (or that the archive, of ``size`` bytes when it is not a local file, cannot hold): it
    would be allocated before a byte is inflated."""
    import zipfile

    archive = Path(path).stat().st_size if size is None else size
    if info.compress_type == zipfile.ZIP_STORED:
        limit = archive
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        limit = max(info.compress_size, 0) * MAX_RATIO + 4096
    else:  # bzip2, lzma: no numpy writes them; their bound is left to zipfile
        return
    if info.file_size > limit or info.compress_size > archive:
        raise FormatError(f"{path}: {what} declares {info.file_size} bytes from "
                          f"{info.compress_size} compressed, more than deflate can produce "
                          "(corrupt or hostile archive)")


def stored_start(buf, info: zipfile.ZipInfo, size: int) -> int | None:
    """Where an uncompressed, unencrypted member's bytes start in the zip archive ``buf`` (a
    memory map of the file, ``size`` bytes), when its local header is whole and names the member
    as the directory does (zipfile's own check); None otherwise, and zipfile reads the member
    (and reports what is wrong)."""
    import zipfile

    # Not encrypted (0x1, 0x40), not patched data (0x20), and sizes that agree, as zipfile checks.
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x61 \
            or info.compress_size != info.file_size:
        return None
    off = info.header_offset
    head = bytes(buf[off:off + 30])
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        named = bytes(buf[off + 30:off + 30 + name_len]).decode(encoding)
    except UnicodeDecodeError:
        return None
    start = off + 30 + name_len + extra_len
    if named != info.orig_filename or start + info.file_size > size:
        return None
    return start


def read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path | str, cap: int,
                size: int | None = None) -> bytes:
    """A small zip member (a JSON side file, a config) whole, refused in one line when it
    declares or inflates to more than ``cap`` bytes or more than 1 MiB plus twice the archive's
    size: parsed JSON takes up to ~25 times its text in memory, so its text must stay a small
    multiple of the file that holds it. zipfile's own errors propagate."""
    archive = Path(path).stat().st_size if size is None else size
    limit = min(cap, (1 << 20) + 2 * archive)
    if info.file_size > limit:
        raise FormatError(f"{path}: {info.filename} declares {info.file_size} bytes, more than "
                          f"the {limit} allowed")
    check_declared(path, info, info.filename, archive)
    with zf.open(info) as f:
        raw = f.read(limit + 1)  # its declared size may lie; zipfile stops there anyway
    if len(raw) > limit:
        raise FormatError(f"{path}: {info.filename} holds more than {limit} bytes")
    return raw


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
    import numpy as np

    count = math.prod(shape)  # Python ints: np.prod would wrap around in int64
    if count == 0:
        return np.empty(shape, dtype=dtype)
    array = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
    array.flags.writeable = False
    return array


def check_shape(where: str, shape: object) -> tuple[int, ...]:
    """Validate a shape read from a file: a list of non-negative ints of sane rank. ``where``
    names what holds it (``FILE: tensor 'NAME'``, or the file alone)."""
    if not isinstance(shape, (list, tuple)) or len(shape) > 64 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**62 for d in shape):
        raise FormatError(f"{where} has an invalid shape {shape!r}")
    return tuple(shape)


def split_by_size(tensors: list[Tensor], max_size: int | str | None) -> list[list[Tensor]]:
    """Tensors in order, cut into groups of at most ``max_size`` bytes (an int, or a size such
    as ``"5GB"``; a bigger tensor gets a group of its own); one group when ``max_size`` is
    None."""
    if max_size is None:
        return [list(tensors)]
    max_size = parse_size(max_size, keyword("max_shard_size"))
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
