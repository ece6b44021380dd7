"""crc32c as TensorFlow and LevelDB store it (masked so that a crc of data holding crcs is safe)."""

from __future__ import annotations

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _buffer(data):
    # The C extension takes bytes and numpy arrays but refuses memoryviews and mmaps (numpy
    # is imported only for those: an index is checked as bytes).
    if type(data) is bytes:
        return data
    import numpy as np

    return data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)


def crc(data) -> int:
    return google_crc32c.value(_buffer(data)) if len(data) else 0


def extend(value: int, data) -> int:
    return google_crc32c.extend(value, _buffer(data)) if len(data) else value


def masked_crc(data) -> int:
    return mask(crc(data))


_LENGTHS_PER_STEP = 1 << 20  # a bounded temporary, whatever the element count


def lengths_crc(lengths) -> int:
    """crc32c over string-tensor element lengths (a list or an unsigned array) as TF sums them:
    each length as a little-endian uint32 when it fits (what older checkpoints used), as a
    uint64 otherwise."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.uint64)
    if len(lengths) and int(lengths.max()) > 0xFFFFFFFF:  # rare: elements of 4 GiB or more
        return crc(b"".join(int(n).to_bytes(4 if n <= 0xFFFFFFFF else 8, "little")
                            for n in lengths))
    value = 0
    for i in range(0, len(lengths), _LENGTHS_PER_STEP):
        value = extend(value, lengths[i:i + _LENGTHS_PER_STEP].astype("<u4").view(np.uint8))
    return value
