"""Streaming a tensor's bytes to a writer in bounded memory.

Tensors stored back to back in one file are copied as one run, a chunk at a time: the bytes go
to a plain output file with ``os.copy_file_range`` (inside the kernel, never through Python),
and the crc32c of each tensor is computed on pieces of a MiB read with ``pread`` into memory
that is reused from piece to piece (faster than faulting in a map's pages, and without numpy),
so converting a checkpoint of any size holds a few MiB. Bytes no checksum needs are copied
without being read at all. Outputs that are not plain files (zip members) get ordinary
writes. A crc32c mismatch raises after the tensor's last byte, and the writer's temporary output
is discarded. Tensors without a span (transformed, assembled from parts, in-memory) are read and
sliced.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

import google_crc32c

from .. import crc32c, storage
from ..errors import CorruptionError
from ..tensor import Span, Tensor, ZipMember
from ._common import contiguous_le

CHUNK = 8 << 20
SMALL = 1 << 20  # a remote object's runs up to this size are fetched with their neighbours
# Pieces SpanReader reads: one stays in a core's cache for whatever is done to it next.
PIECE = 1 << 20
DIRECT_MIN = 64 << 10  # runs from this size are copied with copy_file_range, even when read
EARLY_WRITEBACK = 4 * CHUNK  # runs from this size send each copied chunk to disk at once
# copy_file_range refusing this pair of files (another file system on older kernels, a file
# system without it, an append-mode output): the bytes read are written instead.
_NO_DIRECT_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}
# libc's, looked up on first use; False where there is none.
_sync_file_range: Callable[..., Any] | bool | None = None
if TYPE_CHECKING:  # imported where views are sliced: copying a bundle runs without numpy
    import numpy as np

Piece: TypeAlias = "bytes | memoryview | np.ndarray"  # a stretch of a tensor's bytes


def start_writeback(fd: int, offset: int, n: int) -> None:
    """Start writing ``n`` bytes at ``offset`` of the output to disk, without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; elsewhere nothing). A hint: errors are ignored,
    and the fsync before the rename still makes the file durable."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        try:
            import ctypes

            call = ctypes.CDLL(None, use_errno=True).sync_file_range
            call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = call
        except (OSError, AttributeError):
            pass
    if callable(_sync_file_range):
        _sync_file_range(fd, offset, n, 2)  # SYNC_FILE_RANGE_WRITE


def _direct_fd(f) -> int | None:
    """The descriptor behind ``f`` when bytes may be copied straight into it: a plain file that
    ``open()`` returned. Its buffer is flushed first, which also puts the descriptor at the
    file object's position; later writes and ``tell()`` go through the descriptor's position."""
    if not hasattr(os, "copy_file_range") or \
            not isinstance(f, (io.BufferedWriter, io.BufferedRandom, io.FileIO)):
        return None
    try:
        fd = f.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


def _copy_range(src: int, dst: int, pos: int, n: int, path: str, name: str) -> int:
    """Copy ``n`` bytes at ``pos`` of ``src`` to ``dst``'s position; returns how many were
    copied before copy_file_range refused (``n`` when it did not)."""
    done = 0
    while done < n:
        try:
            got = os.copy_file_range(src, dst, n - done, pos + done)
        except OSError as exc:
            if exc.errno in _NO_DIRECT_COPY:
                return done
            raise
        if got == 0:
            raise CorruptionError(f"{path}: tensor {name!r}: data ends at byte {pos + done}; "
                                  "the file is truncated")
        done += got
    return done


class _Copy:
    """One copy's open source files (by path, with their sizes) and its direct target: the
    output's descriptor while copy_file_range works for it, else None."""

    def __init__(self, f) -> None:
        self.f = f
        self.direct = _direct_fd(f) if f is not None else None
        self._files: dict[str, tuple[int, int]] = {}
        # (url, offset, bytes) fetched for several small runs of a remote object at once
        self.window: tuple[str, int, bytes] | None = None

    def source(self, path: str) -> tuple[int, int]:
        """``(descriptor, size)`` of a source file, opened once per copy."""
        found = self._files.get(path)
        if found is None and storage.is_url(path):  # no descriptor: read by ranges
            return -1, storage.open_file(path).size
        if found is None:
            fd = os.open(path, os.O_RDONLY)
            found = self._files[path] = (fd, os.fstat(fd).st_size)
        return found

    def close(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files = {}


def _pieces(copy: _Copy, path: str, start: int, end: int, name: str, *, read: bool = True
            ) -> Iterator[tuple[int, bytes]]:
    """Bytes ``[start, end)`` of the file at ``path`` (``end > start``), PIECE at a time, as
    ``(file offset, bytes)``. With an output (``copy.f``), each piece is appended to it first.
    Without ``read``, nothing is yielded, and bytes the kernel copied are not read at all."""
    window = copy.window
    if window is not None and _inside(window, path, start, end):
        data = window[2][start - window[1]:end - window[1]]
        if copy.f is not None:
            copy.f.write(data)
        if read:
            yield start, data
        else:
            yield end, b""
        return
    fd, size = copy.source(path)
    if fd < 0:
        yield from _remote_pieces(copy, path, start, end, name)
        return
    if size < end:
        raise CorruptionError(f"{path}: tensor {name!r}: data ends at byte {size}, before "
                              f"byte {end}; the file is truncated")
    f = copy.f
    # Runs from DIRECT_MIN bytes are copied inside the kernel, CHUNK at a time, where the
    # output allows it: steadier and faster than writing the bytes back from Python. Smaller
    # runs are left to the file's buffer, which gathers them into larger writes. The bytes are
    # read for their checksums PIECE at a time with pread, into memory that is reused from
    # piece to piece: faster than faulting in a map's pages, and no numpy is needed.
    kernel = end - start >= DIRECT_MIN
    if copy.direct is not None and kernel:
        f.flush()
    # Big outputs: each copied chunk is sent to disk at once, so the disk writes while we
    # copy and the fsync before the rename waits for the tail, not the whole file.
    early = end - start >= EARLY_WRITEBACK
    pos = start
    while pos < end:
        n = min(CHUNK, end - pos)
        copied = pos  # the output holds the bytes before this one
        direct = copy.direct if kernel else None
        if direct is not None:
            at = os.lseek(direct, 0, os.SEEK_CUR) if early else 0
            done = _copy_range(fd, direct, pos, n, path, name)
            if early:
                start_writeback(direct, at, done)
            copied += done
            if done < n:
                copy.direct = None
        for at in range(pos, pos + n, PIECE):
            m = min(PIECE, pos + n - at)
            if not read and at + m <= copied:
                continue  # in the output already, and wanted for nothing else
            data = os.pread(fd, m, at)
            if len(data) < m:  # the file shrank since we looked
                raise CorruptionError(f"{path}: tensor {name!r}: data ends at byte "
                                      f"{at + len(data)}; the file is truncated")
            if f is not None and at + m > copied:
                f.write(data[copied - at:] if copied > at else data)
            if read:
                yield at, data
        if not read:
            yield pos + n, b""  # a mark: the output holds the bytes up to here
        pos += n


def _remote_pieces(copy: _Copy, url: str, start: int, end: int, name: str
                   ) -> Iterator[tuple[int, bytes]]:
    """:func:`_pieces` for an object on remote storage: large ranged reads, a few in flight."""
    direct = copy.direct if end - start >= EARLY_WRITEBACK else None
    if direct is not None:
        copy.f.flush()
    for pos, data in storage.open_file(url).pieces(start, end, f"tensor {name!r}: "):
        if direct is not None:  # as local copies do: the disk writes while we fetch
            at = os.lseek(direct, 0, os.SEEK_CUR)
            view = memoryview(data)
            while view:
                view = view[os.write(direct, view):]
            start_writeback(direct, at, len(data))
        elif copy.f is not None:
            copy.f.write(data)
        yield pos, data


class SpanReader:
    """Reads tensors' bytes with ``pread`` a piece at a time, each file opened once. A piece is
    ``bytes`` of its own, valid as long as it is referenced; dropped before the next read, its
    memory is reused while still in the cache (a map's pages would be faulted in one by one)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SpanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self, path: str) -> tuple[int, int]:
        if storage.is_url(path):  # read by ranges: no descriptor
            return -1, storage.open_file(path).size
        with self._lock:
            found = self._files.get(path)
            if found is None:
                fd = os.open(path, os.O_RDONLY)
                found = self._files[path] = (fd, os.fstat(fd).st_size)
            return found

    def pieces(self, tensor: Tensor, size: int = PIECE) -> list[tuple[int, int]]:
        """``(file offset, length)`` of the pieces of at most ``size`` bytes a tensor with a
        span is read in; refuses a span that runs past the end of its file."""
        path, offset, nbytes = _span(tensor)
        end = offset + nbytes
        _, file_size = self._file(path)
        if file_size < end:
            raise CorruptionError(f"{path}: tensor {tensor.name!r}: data ends at byte "
                                  f"{file_size}, before byte {end}; the file is truncated")
        return [(pos, min(size, end - pos)) for pos in range(offset, end, size)]

    def read(self, tensor: Tensor, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` of the tensor's file."""
        return self.read_at(_span(tensor, check=False)[0], tensor.name, offset, n)

    def read_at(self, path: str, name: str, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` of ``path``, read for tensor ``name`` (named in errors)."""
        fd, _ = self._file(path)
        if fd < 0:
            return storage.open_file(path).pread(offset, n, f"tensor {name!r}: ")
        data = os.pread(fd, n, offset)
        if len(data) < n:  # the file shrank since pieces() looked, or a member runs past it
            raise CorruptionError(f"{path}: tensor {name!r}: data ends at byte "
                                  f"{offset + len(data)}; the file is truncated")
        return data

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._files.values():
                os.close(fd)
            self._files = {}


def chunks(tensor: Tensor, size: int = CHUNK) -> Iterator[memoryview | bytes | np.ndarray]:
    """The tensor's little-endian C-order bytes in pieces of at most ``size`` bytes (at most
    CHUNK), checked against ``tensor.crc32c`` when the reader recorded one (it does not when
    told not to verify). Each piece's crc is taken just before it is handed out, so a small
    ``size`` leaves it in a core's cache for what the caller does next.

    Each piece is only valid until the next one is requested.
    """
    size = min(size, CHUNK)
    if tensor.span is None or tensor.dtype.hasobject or tensor.dtype.byteorder == ">":
        array = contiguous_le(tensor)
        if array.size == 0:
            return
        flat = array.reshape(-1).data.cast("B")
        for start in range(0, len(flat), size):
            yield flat[start:start + size]
        return
    path, offset, nbytes = _span(tensor)
    check = tensor.crc32c is not None
    value = 0
    if nbytes:
        copy = _Copy(None)
        try:
            for _, chunk in _pieces(copy, path, offset, offset + nbytes, tensor.name):
                for start in range(0, len(chunk), size):
                    piece = chunk[start:start + size]
                    if check:
                        value = google_crc32c.extend(value, piece)
                    yield piece
        finally:
            copy.close()
    if check and value != tensor.crc32c:  # read() checks an empty tensor's crc too
        raise CorruptionError(f"{path}: tensor {tensor.name!r}: checksum mismatch (data corrupted)")


def copy_to(f, tensor: Tensor, *, want_crc: bool = False) -> tuple[int, int]:
    """Write the tensor's bytes to file object ``f``; returns ``(bytes written, crc32c)`` (the
    crc only when ``want_crc``)."""
    if streamable(tensor):
        copy = _Copy(f)
        try:
            for _, written, value in _copy_run(copy, [tensor], want_crc):
                return written, value
        finally:
            copy.close()
    written = value = 0
    for piece in chunks(tensor):
        f.write(piece)
        if want_crc:
            value = crc32c.extend(value, piece)
        written += len(piece)
    if written != tensor.nbytes:
        raise CorruptionError(f"tensor {tensor.name!r}: {written} bytes, {tensor.nbytes} expected")
    return written, value


def streamable(t: Tensor) -> bool:
    """Whether the tensor's bytes can be read from its span as they are: it has one, and its
    values are fixed-size and little-endian."""
    if t.span is None:
        return False
    if t.holds_strings:
        return False
    # A reader's dtype name (see Tensor) is of fixed-size little-endian values.
    return type(t._dtype) is str or t.dtype.byteorder != ">"


def _span(t: Tensor, window: tuple[str, int, bytes] | None = None, *, check: bool = True
          ) -> Span:
    """The span of a tensor :func:`streamable` accepted; with ``check``, its zip member's
    CRC-32 checked first (from ``window`` where the member lies in it)."""
    if t.span is None:
        raise ValueError(f"tensor {t.name!r} has no span to stream from")
    if check and t.member_crc is not None:
        check_member(t.span[0], t.name, t.member_crc, window)
    return t.span


# What the check of a shared member (one that names itself, see ZipMember) found, by file
# and member: "" when it matched. The tensors of a .keras archive all lie in one member,
# which is read once for all of them, and once when it is damaged, not once per tensor; the
# reader forgets it when it is closed (forget_member), so a new read checks again.
_CHECKED: dict[tuple, str] = {}
_CHECKED_MAX = 1024


def check_member(path: str, name: str, member: ZipMember,
                 window: tuple[str, int, bytes] | None = None) -> None:
    """Raise CorruptionError unless the zip member of ``path`` that tensor ``name`` lies in
    matches its CRC-32: a stored member's only checksum, which numpy.load and Keras check
    too."""
    key = _member_key(path, member)
    problem = _CHECKED.get(key) if key is not None else None
    if problem is None:
        problem = "" if _member_crc(path, name, member, window) == member.crc else \
            f"{path}: {member.name or f'tensor {name!r}'}: CRC-32 mismatch (data corrupted)"
        if key is not None:
            if len(_CHECKED) >= _CHECKED_MAX:
                _CHECKED.clear()
            _CHECKED[key] = problem
    if problem:
        raise CorruptionError(problem)


def forget_member(path: str, member: ZipMember) -> None:
    """Let the next check of this member read it again: a reader calls it when it is closed,
    so what a check found lasts as long as the checkpoint it was made for."""
    key = _member_key(path, member)
    if key is not None:
        _CHECKED.pop(key, None)


def _member_key(path: str, member: ZipMember) -> tuple | None:
    # A rewritten file is checked again: its identity and times are part of the key.
    if not member.name or storage.is_url(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # reading it says what is wrong
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, *member)


def _member_crc(path: str, name: str, member: ZipMember,
                window: tuple[str, int, bytes] | None) -> int:
    """The CRC-32 of the member's bytes, read a piece at a time; a large local member in two
    halves at once, on two cores (zlib lets go of the GIL, so does pread)."""
    offset, end = member.offset, member.offset + member.size
    if window is not None and _inside(window, path, offset, end):
        return zlib.crc32(memoryview(window[2])[offset - window[1]:end - window[1]])
    with SpanReader() as files:
        if storage.is_url(path):  # by ranged requests: fewer, larger ones
            return _zlib_crc_of(files, path, name, offset, end, CHUNK)
        if member.size < SPLIT_CRC or _cores() < 2:
            return _zlib_crc_of(files, path, name, offset, end)
        middle = offset + member.size // 2
        first, second = _both(lambda: _zlib_crc_of(files, path, name, offset, middle),
                              lambda: _zlib_crc_of(files, path, name, middle, end))
        return crc_combine(first, second, end - middle, ZLIB_POLY)


SPLIT_CRC = 4 * CHUNK  # members from this size have their CRC-32 taken in two halves at once


def _zlib_crc_of(files: SpanReader, path: str, name: str, start: int, end: int,
                 piece: int = PIECE) -> int:
    value = 0
    # Locally in pieces of PIECE bytes: each piece's memory is reused for the next, while
    # larger reads each fault in fresh pages (8 MiB pieces took half as long again).
    for pos in range(start, end, piece):
        value = zlib.crc32(files.read_at(path, name, pos, min(piece, end - pos)), value)
    return value


def check_span(tensor: Tensor, files: SpanReader) -> None:
    """Read the tensor's bytes once and check them against its crc32c, as :func:`chunks`
    does, keeping nothing. A local span is read with pread (no map, no numpy); a large one in
    two halves at once, on two cores: pread and google_crc32c (on bytes of a MiB or more) let
    go of the GIL, so the check runs faster than ``cat`` reads the file from the page cache."""
    if not local_span(tensor):
        for _ in chunks(tensor):
            pass
        return
    pieces = files.pieces(tensor)  # refuses a span past the end of its file

    def crc_of(part: list[tuple[int, int]]) -> int:
        value = 0
        for pos, n in part:
            value = google_crc32c.extend(value, files.read(tensor, pos, n))
        return value

    if tensor.nbytes < SPLIT_SPAN or _cores() < 2:
        value = crc_of(pieces)
    else:
        half = len(pieces) // 2
        first, second = _both(lambda: crc_of(pieces[:half]), lambda: crc_of(pieces[half:]))
        value = crc_combine(first, second, sum(n for _, n in pieces[half:]), CASTAGNOLI_POLY)
    if tensor.crc32c is not None and value != tensor.crc32c:
        raise CorruptionError(f"{tensor.span[0]}: tensor {tensor.name!r}: "  # type: ignore[index]
                              "checksum mismatch (data corrupted)")


SPLIT_SPAN = 2 * PIECE  # each half a PIECE or more, which google_crc32c checks without the GIL


def local_span(tensor: Tensor) -> bool:
    """Whether the tensor's bytes are a local span of fixed-size little-endian values, whole,
    with no zip member to check first: what :func:`check_span`'s pread path and
    :class:`ReadAhead` read."""
    if not streamable(tensor) or tensor.member_crc is not None:
        return False
    path, _, nbytes = tensor.span  # type: ignore[misc]  # streamable: it has one
    return nbytes == tensor.nbytes and not storage.is_url(path)


class ReadAhead:
    """A local span's bytes in pieces of PIECE bytes, each with the running crc32c after it
    (with ``crc``; else 0), read on a thread of its own a piece or two ahead of the caller:
    pread and google_crc32c let go of the GIL, so reading and checking one side of a diff
    overlap with reading the other side and comparing them. The caller checks the crc; :meth:`close`
    stops the thread (also when the caller stops early)."""

    def __init__(self, tensor: Tensor, files: SpanReader, *, crc: bool) -> None:
        self.tensor, self._files, self._crc = tensor, files, crc
        import queue  # only a diff needs it

        self._pieces = files.pieces(tensor)  # refuses a span past its file's end
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._full = queue.Full
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ckpt-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        item: Any = None
        try:
            value = 0
            for pos, n in self._pieces:
                if self._stop.is_set():
                    return
                data = self._files.read(self.tensor, pos, n)
                if self._crc:
                    value = google_crc32c.extend(value, data)
                self._put((data, value))
        except BaseException as exc:  # raised on the caller's thread
            item = exc
        self._put(item)  # None: the end

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except self._full:
                pass

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def _both(first: Callable[[], int], second: Callable[[], int]) -> tuple[int, int]:
    """``first()`` here and ``second()`` on a thread of its own, at once; an exception from
    either is raised here (the first's, when both raise)."""
    done: list[int | BaseException] = []

    def run() -> None:
        try:
            done.append(second())
        except BaseException as exc:  # raised on the caller's thread
            done.append(exc)

    worker = threading.Thread(target=run, name="ckpt-crc")
    worker.start()
    try:
        mine = first()
    finally:
        worker.join()
    if isinstance(done[0], BaseException):
        raise done[0]
    return mine, done[0]


# The CRC of two pieces joined, from theirs, for zlib's CRC-32 and TensorFlow's CRC-32C (zlib's
# crc32_combine, which neither zlib's Python module nor google_crc32c offers): polynomials over
# GF(2) in reflected bit order (x⁰ is the top bit), modulo the CRC's polynomial.
ZLIB_POLY, CASTAGNOLI_POLY = 0xEDB88320, 0x82F63B78


def _multmodp(a: int, b: int, poly: int) -> int:
    m, p = 1 << 31, 0
    while m:
        if a & m:
            p ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return p


@functools.cache
def _x2n(poly: int) -> tuple[int, ...]:
    """x^(2^k) modulo ``poly``, for k = 0..31: x¹, x², x⁴, ..."""
    table = [1 << 30]
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1], poly))
    return tuple(table)


def crc_combine(crc1: int, crc2: int, len2: int, poly: int) -> int:
    """The CRC of ``A + B`` from the CRCs of ``A`` and ``B`` and ``len(B)``."""
    table = _x2n(poly)
    p, k, n = 1 << 31, 3, len2  # x⁰; x^(8·len2) = product of x^(2^k) over the bits of 8·len2
    while n:
        if n & 1:
            p = _multmodp(table[k & 31], p, poly)
        n >>= 1
        k += 1
    return _multmodp(p, crc1, poly) ^ crc2


def copy_all(f, tensors: list[Tensor], *, want_crc: bool = False
             ) -> Iterator[tuple[Tensor, int, int]]:
    """Write the tensors' bytes to ``f`` back to back, yielding ``(tensor, bytes, crc32c)`` for
    each once it is written. Runs of tensors stored back to back in one source file are copied
    in large pieces (20,000 small tensors cost a few system calls, not 40,000), each tensor's
    bytes still checked against its own crc32c."""
    copy = _Copy(f)
    try:
        yield from _copy_all(copy, tensors, want_crc)
    finally:
        copy.close()


def copy_placed(f, placed: list[tuple[int, Tensor]]) -> Iterator[Tensor]:
    """Write each ``(offset, tensor)``'s bytes at that offset of the seekable file ``f``,
    yielding each tensor once written. Tensors placed back to back go as one
    :func:`copy_all`, after one seek, with the source files opened once for all."""
    copy = _Copy(f)
    try:
        i, n = 0, len(placed)
        while i < n:
            start = placed[i][0]
            end = start + placed[i][1].nbytes
            j = i + 1
            while j < n and placed[j][0] == end:
                end += placed[j][1].nbytes
                j += 1
            f.seek(start)
            for tensor, _, _ in _copy_all(copy, [t for _, t in placed[i:j]], False):
                yield tensor
            i = j
    finally:
        copy.close()


def pieces(tensors: list[Tensor]) -> Iterator[tuple[Tensor, Piece | None]]:
    """The tensors' little-endian C-order bytes, tensor after tensor: ``(tensor, piece)`` for
    each piece of its bytes, then ``(tensor, None)`` once they have all been given and checked
    against its crc32c. Runs of tensors stored back to back are read as in :func:`copy_all`
    (one ``pread`` for a run of small tensors, not one per tensor), each piece a view of what
    was read, valid until the next one is requested; for a writer that puts something of its
    own between the tensors (an archive's member headers)."""
    copy = _Copy(None)
    try:
        for run in _windowed(copy, tensors):
            if len(run) > 1 or streamable(run[0]):
                yield from _run_pieces(copy, run)
                continue
            written = 0
            for piece in chunks(run[0]):
                written += len(piece)
                yield run[0], piece
            if written != run[0].nbytes:
                raise CorruptionError(f"tensor {run[0].name!r}: {written} bytes, "
                                      f"{run[0].nbytes} expected")
            yield run[0], None
    finally:
        copy.close()


WINDOW = 4 << 20  # the most read at once for small runs (see _windowed)
WINDOW_GAP = 64 << 10  # bytes between two runs (an HDF5 object header, a zip member's) read over


def _windowed(copy: _Copy, tensors: list[Tensor]) -> Iterator[list[Tensor]]:
    """:func:`_runs`, where small runs of one remote object that lie close together in it
    (an HDF5 file's datasets, an npz file's members) are fetched with one ranged read for
    all of them, kept in ``copy.window`` while they are given: a request per run costs a round
    trip each, thousands for a file of many small tensors. So are a local npz file's small
    members, whose CRC-32 is checked from the same bytes that are copied. Only what lies
    between the runs is read over, at most WINDOW_GAP bytes each time."""
    runs = list(_runs(tensors))
    bounds = [_bounds(run) for run in runs]
    i = 0
    for k, run in enumerate(runs):
        here = bounds[k]
        if k >= i and here is not None:
            url, start, end = here
            j = k + 1
            while j < len(runs):
                there = bounds[j]
                if there is None or there[0] != url or not end <= there[1] <= end + WINDOW_GAP \
                        or there[2] - start > WINDOW:
                    break
                end, j = there[2], j + 1
            i = j
            if j > k + 1 and not _inside(copy.window, url, start, end):
                copy.window = (url, start, _read_window(copy, url, start, end, run[0]))
        yield run
    copy.window = None


def _read_window(copy: _Copy, path: str, start: int, end: int, first: Tensor) -> bytes:
    """Bytes ``[start, end)`` of ``path``, for a window; a local file's may come short (it was
    cut), and then the runs are read one by one, which says where it ends."""
    if storage.is_url(path):
        return storage.open_file(path).pread(start, end - start, f"tensor {first.name!r}: ")
    fd, _ = copy.source(path)
    return os.pread(fd, end - start, start)


def _inside(window: tuple[str, int, bytes] | None, url: str, start: int, end: int) -> bool:
    """Whether bytes ``[start, end)`` of ``url`` are in the fetched ``window``."""
    return window is not None and window[0] == url and window[1] <= start \
        and end <= window[1] + len(window[2])


def _bounds(run: list[Tensor]) -> tuple[str, int, int] | None:
    """``(path, start, end)`` of a small run of tensors; None otherwise. Local files are read
    through windows only where a zip member's CRC-32 is checked as well as copied (an npz of
    many small members: one read for both, instead of one each per member)."""
    first, last = run[0].span, run[-1].span
    if first is None or last is None or not (len(run) > 1 or streamable(run[0])):
        return None
    start, end = first[1], last[1] + last[2]
    member = run[0].member_crc
    if member is not None:  # the member's own header too, which its CRC-32 covers
        start = min(start, member.offset)
    if not 0 < end - start <= SMALL or not (storage.is_url(first[0]) or member is not None):
        return None
    return first[0], start, end


def _runs(tensors: list[Tensor]) -> Iterator[list[Tensor]]:
    """The tensors in order, as runs of streamable tensors stored back to back in one file,
    each other tensor alone."""
    i, n = 0, len(tensors)
    while i < n:
        first = tensors[i]
        j = i + 1
        span = first.span
        if span is not None and streamable(first):
            path, end = span[0], span[1] + span[2]
            while j < n:
                span = tensors[j].span
                if span is None or span[1] != end or span[0] != path \
                        or not streamable(tensors[j]):
                    break
                end += span[2]
                j += 1
        yield tensors[i:j]
        i = j


def _run_pieces(copy: _Copy, run: list[Tensor]
                ) -> Iterator[tuple[Tensor, Piece | None]]:
    """:func:`pieces` of a run of tensors stored back to back in one file."""
    import numpy as np

    spans = [_span(t, copy.window) for t in run]
    path, start, _ = spans[0]
    end = spans[-1][1] + spans[-1][2]
    _check_run_size(copy, run, spans)
    extend = google_crc32c.extend
    k = 0  # the tensor whose bytes come next
    value = 0
    for pos, data in _pieces(copy, path, start, end, run[0].name) if end > start else ():
        piece = np.frombuffer(data, dtype=np.uint8)  # slices of an array are views, not copies
        piece_end = pos + len(piece)
        while k < len(run):
            tensor = run[k]
            _, t_start, t_size = spans[k]
            t_end = t_start + t_size
            lo = t_start if t_start > pos else pos
            hi = t_end if t_end < piece_end else piece_end
            if hi > lo:
                part = piece[lo - pos:hi - pos] if lo > pos or hi < piece_end else piece
                if tensor.crc32c is not None:
                    value = extend(value, part)
                yield tensor, part
            if t_end > piece_end:
                break
            _check_tensor(path, tensor, t_size, value)
            yield tensor, None
            value = 0
            k += 1
    while k < len(run):  # trailing empty tensors
        _check_tensor(path, run[k], 0, 0)
        yield run[k], None
        k += 1


def _check_run_size(copy: _Copy, run: list[Tensor], spans: list[Span]) -> None:
    path, _, _ = spans[0]
    end = spans[-1][1] + spans[-1][2]
    _, size = copy.source(path)
    if size < end:
        short = next(i for i, (_, s_start, s_size) in enumerate(spans) if s_start + s_size > size)
        raise CorruptionError(f"{path}: tensor {run[short].name!r}: data ends at byte {size}, "
                              f"before byte {spans[short][1] + spans[short][2]}; the file is "
                              "truncated")


def _check_tensor(path: str, tensor: Tensor, size: int, value: int) -> None:
    """A tensor's bytes, all read (``size`` of them, crc32c ``value``): refused if they are
    not what its reader recorded (the checksum) or what its shape needs."""
    expected = tensor.crc32c
    if expected is not None and value != expected:
        raise CorruptionError(f"{path}: tensor {tensor.name!r}: checksum mismatch "
                              "(data corrupted)")
    if size != tensor.nbytes:  # a span that does not hold the shape: refuse it
        raise CorruptionError(f"{path}: tensor {tensor.name!r}: {size} bytes, "
                              f"{tensor.nbytes} expected")


def _copy_all(copy: _Copy, tensors: list[Tensor], want_crc: bool
              ) -> Iterator[tuple[Tensor, int, int]]:
    for run in _windowed(copy, tensors):
        if len(run) > 1 or streamable(run[0]):
            yield from _copy_run(copy, run, want_crc)
        else:
            written, value = copy_to(copy.f, run[0], want_crc=want_crc)
            yield run[0], written, value


def _copy_run(copy: _Copy, run: list[Tensor], want_crc: bool
              ) -> Iterator[tuple[Tensor, int, int]]:
    spans = [_span(t, copy.window) for t in run]
    path, start, _ = spans[0]
    end = spans[-1][1] + spans[-1][2]
    _check_run_size(copy, run, spans)
    if not want_crc and all(t.crc32c is None for t in run):  # no checksum to take: copy only
        k = 0
        # Marks as each chunk is in the output (a remote object's pieces, as they come):
        # each tensor is handed on once its last byte is written, as with checksums.
        for pos, data in _pieces(copy, path, start, end, run[0].name, read=False) \
                if end > start else ():
            done = pos + len(data)
            while k < len(run) and spans[k][1] + spans[k][2] <= done:
                _check_tensor(path, run[k], spans[k][2], 0)
                yield run[k], spans[k][2], 0
                k += 1
        for (_, _, t_size), tensor in zip(spans[k:], run[k:], strict=True):  # empty ones
            _check_tensor(path, tensor, t_size, 0)
            yield tensor, t_size, 0
        return
    extend = google_crc32c.extend
    k = 0  # the tensor whose bytes come next
    value = 0
    for pos, piece in _pieces(copy, path, start, end, run[0].name) if end > start else ():
        piece_end = pos + len(piece)
        while k < len(run):
            tensor = run[k]
            _, t_start, t_size = spans[k]
            t_end = t_start + t_size
            expected = tensor.crc32c
            if (want_crc or expected is not None) and t_size:
                lo = t_start if t_start > pos else pos
                hi = t_end if t_end < piece_end else piece_end
                if hi > lo:
                    value = extend(value, piece[lo - pos:hi - pos] if lo > pos or hi < piece_end
                                   else piece)
            if t_end > piece_end:
                break
            _check_tensor(path, tensor, t_size, value)
            yield tensor, t_size, value
            value = 0
            k += 1
    while k < len(run):  # trailing empty tensors
        _check_tensor(path, run[k], 0, 0)
        yield run[k], 0, 0
        k += 1
