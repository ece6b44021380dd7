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


def _contiguous(a: Tensor, b: Tensor) -> bool:
    return (b.span is not None and a.span is not None and b.span[0] == a.span[0]
            and b.span[1] == a.span[1] + a.span[2] and not b.dtype.hasobject
            and b.dtype.byteorder != ">")


def copy_all(f, tensors: list[Tensor], *, want_crc: bool = False
             ) -> Iterator[tuple[Tensor, int, int]]:
    """Write the tensors' bytes to ``f`` back to back, yielding ``(tensor, bytes, crc32c)`` for
    each once it is written. Runs of tensors stored back to back in one source file are copied
    with large reads (20,000 small tensors cost a few system calls, not 40,000), each tensor's
    bytes still checked against its own crc32c."""
    i = 0
    while i < len(tensors):
        j = i + 1
        if tensors[i].span is not None and not tensors[i].dtype.hasobject \
                and tensors[i].dtype.byteorder != ">":
            while j < len(tensors) and _contiguous(tensors[j - 1], tensors[j]):
                j += 1
        if j - i == 1:
            written, value = copy_to(f, tensors[i], want_crc=want_crc)
            yield tensors[i], written, value
        else:
            yield from _copy_run(f, tensors[i:j], want_crc)
        i = j


def _copy_run(f, run: list[Tensor], want_crc: bool) -> Iterator[tuple[Tensor, int, int]]:
    path, start, _ = run[0].span
    end = run[-1].span[1] + run[-1].span[2]
    raw = bytearray(min(CHUNK, end - start))
    buf = memoryview(raw)
    as_array = np.frombuffer(raw, dtype=np.uint8)  # crc32c takes array slices without a copy
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
                t_start, t_size = run[k].span[1], run[k].span[2]
                lo, hi = max(pos, t_start), min(chunk_end, t_start + t_size)
                if hi > lo and (want_crc or run[k].crc32c is not None):
                    value = crc32c.extend(value, as_array[lo - pos:hi - pos])
                if t_start + t_size > chunk_end:
                    break
                expected = run[k].crc32c
                if expected is not None and value != expected:
                    raise CorruptionError(f"{path}: tensor {run[k].name!r}: checksum mismatch "
                                          "(data corrupted)")
                yield run[k], t_size, value
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
