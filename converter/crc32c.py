"""crc32c as TensorFlow and LevelDB store it (masked so that a crc of data holding crcs is safe)."""

from __future__ import annotations

import google_crc32c
import numpy as np

_MASK_DELTA = 0xA282EAD8


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _buffer(data):
    # The C extension takes bytes and numpy arrays but refuses memoryviews and mmaps.
    return data if isinstance(data, (bytes, np.ndarray)) else np.frombuffer(data, np.uint8)


def crc(data) -> int:
    return google_crc32c.value(_buffer(data)) if len(data) else 0


def extend(value: int, data) -> int:
    return google_crc32c.extend(value, _buffer(data)) if len(data) else value


def masked_crc(data) -> int:
    return mask(crc(data))


def lengths_crc(lengths: list[int]) -> int:
    """crc32c over string-tensor element lengths as TF sums them: each length as a little-endian
    uint32 when it fits (what older checkpoints used), as a uint64 otherwise."""
    if all(n <= 0xFFFFFFFF for n in lengths):
        return crc(np.array(lengths, dtype="<u4").view(np.uint8))
    raw = b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths)
    return crc(raw)
