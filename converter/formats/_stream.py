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
    if nbytes == 0:
        return
    check = tensor.crc32c is not None
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
