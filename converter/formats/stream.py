"""A stored tensor's bytes, a chunk at a time in bounded memory: the streaming the writers
share, for code outside the formats that walks tensors (``verify``, ``diff``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..tensor import Tensor
from . import _stream


def chunks(tensor: Tensor) -> Iterator[memoryview | bytes | np.ndarray]:
    """The tensor's little-endian C-order bytes in pieces of :func:`chunk_size` bytes (the last
    may be shorter), checked against its crc32c when the reader recorded one. Each piece is
    valid only until the next one is asked for."""
    return _stream.chunks(tensor)


def chunk_size() -> int:
    """The length of every piece :func:`chunks` yields but a tensor's last."""
    return _stream.CHUNK
