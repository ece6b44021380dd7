"""Streaming a tensor's bytes to a writer in bounded memory.

A tensor with a file span is copied through one reusable buffer with ``os.preadv``: the page
cache serves the reads and nothing is mapped into our address space, so converting a checkpoint
of any size holds a few MiB. The crc32c the source file recorded is checked on the way; a
mismatch raises after the last chunk, and the writer's temporary output is discarded. Tensors
without a span (transformed, assembled from parts, in-memory) are read and sliced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import google_crc32c
import numpy as np

from .. import crc32c
from ..errors import CorruptionError
from ..tensor import Tensor
from ._common import contiguous_le

CHUNK = 8 << 20


def chunks(tensor: Tensor) -> Iterator[memoryview]:
    """The tensor's little-endian C-order bytes in pieces of at most CHUNK bytes, checked
    against ``tensor.crc32c`` when the reader recorded one (it does not when told not to verify).

    Each piece is only valid until the next one is requested (the buffer is reused).
    """
    if tensor.span is None or tensor.dtype.hasobject or tensor.dtype.byteorder == ">":
        array = contiguous_le(tensor)
        if array.size == 0:
            return
        flat = memoryview(array.reshape(-1)).cast("B")
        for start in range(0, len(flat), CHUNK):
            yield flat[start:start + CHUNK]
        return
    path, offset, nbytes = tensor.span
    check = tensor.crc32c is not None
    if nbytes == 0:
        if check and tensor.crc32c != 0:  # read() checks an empty tensor's crc too
            raise CorruptionError(f"{path}: tensor {tensor.name!r}: checksum mismatch "
                                  "(data corrupted)")
        return
    value = 0
    buf = memoryview(bytearray(min(CHUNK, nbytes)))
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < nbytes:
            want = min(len(buf), nbytes - done)
            got = os.preadv(fd, [buf[:want]], offset + done)
            if got <= 0:
                raise CorruptionError(f"{path}: tensor {tensor.name!r}: data ends at byte "
                                      f"{offset + done}, before its {nbytes} bytes; the file is "
                                      "truncated")
            piece = buf[:got]
            if check:
                value = crc32c.extend(value, piece)
            yield piece
            done += got
    finally:
        os.close(fd)
    if check and value != tensor.crc32c:
        raise CorruptionError(f"{path}: tensor {tensor.name!r}: checksum mismatch (data corrupted)")


def copy_to(f, tensor: Tensor, *, want_crc: bool = False) -> tuple[int, int]:
    """Write the tensor's bytes to file object ``f``; returns ``(bytes written, crc32c)`` (the
    crc only when ``want_crc``)."""
    written = value = 0
    for piece in chunks(tensor):
        f.write(piece)
        if want_crc:
            value = crc32c.extend(value, piece)
        written += len(piece)
    if written != tensor.nbytes:
        raise CorruptionError(f"tensor {tensor.name!r}: {written} bytes, {tensor.nbytes} expected")
    return written, value


def _streamable(t: Tensor) -> bool:
    return t.span is not None and not t.dtype.hasobject and t.dtype.byteorder != ">"


def copy_all(f, tensors: list[Tensor], *, want_crc: bool = False
             ) -> Iterator[tuple[Tensor, int, int]]:
    """Write the tensors' bytes to ``f`` back to back, yielding ``(tensor, bytes, crc32c)`` for
    each once it is written. Runs of tensors stored back to back in one source file are copied
    with large reads (20,000 small tensors cost a few system calls, not 40,000), each tensor's
    bytes still checked against its own crc32c."""
    i, n = 0, len(tensors)
    while i < n:
        first = tensors[i]
        j = i + 1
        if _streamable(first):
            path, end = first.span[0], first.span[1] + first.span[2]
            while j < n:
                span = tensors[j].span
                if span is None or span[1] != end or span[0] != path \
                        or not _streamable(tensors[j]):
                    break
                end += span[2]
                j += 1
        if j - i == 1:
            written, value = copy_to(f, first, want_crc=want_crc)
            yield first, written, value
        else:
            yield from _copy_run(f, tensors[i:j], want_crc)
        i = j


def _copy_run(f, run: list[Tensor], want_crc: bool) -> Iterator[tuple[Tensor, int, int]]:
    path, start, _ = run[0].span
    end = run[-1].span[1] + run[-1].span[2]
    raw = bytearray(min(CHUNK, end - start))
    buf = memoryview(raw)
    as_array = np.frombuffer(raw, dtype=np.uint8)  # crc32c takes array slices without a copy
    extend = google_crc32c.extend
    k = 0  # the tensor whose bytes come next
    pos = start
    value = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while pos < end:
            got = os.preadv(fd, [buf[:min(len(buf), end - pos)]], pos)
            if got <= 0:
                raise CorruptionError(f"{path}: tensor {run[k].name!r}: data ends at byte {pos}; "
                                      "the file is truncated")
            f.write(buf[:got])
            chunk_end = pos + got
            while k < len(run):
                tensor = run[k]
                _, t_start, t_size = tensor.span
                t_end = t_start + t_size
                expected = tensor.crc32c
                if (want_crc or expected is not None) and t_size:
                    lo = t_start if t_start > pos else pos
                    hi = t_end if t_end < chunk_end else chunk_end
                    if hi > lo:
                        value = extend(value, as_array[lo - pos:hi - pos])
                if t_end > chunk_end:
                    break
                if expected is not None and value != expected:
                    raise CorruptionError(f"{path}: tensor {tensor.name!r}: checksum mismatch "
                                          "(data corrupted)")
                yield tensor, t_size, value
                value = 0
                k += 1
            pos = chunk_end
    finally:
        os.close(fd)
    while k < len(run):  # trailing empty tensors
        if run[k].crc32c not in (None, 0):
            raise CorruptionError(f"{path}: tensor {run[k].name!r}: checksum mismatch "
                                  "(data corrupted)")
        yield run[k], 0, 0
        k += 1
