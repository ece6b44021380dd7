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


_LENGTHS_PER_STEP = 1 << 20  # a bounded temporary, whatever the element count


def lengths_crc(lengths) -> int:
    """crc32c over string-tensor element lengths (a list or an unsigned array) as TF sums them:
    each length as a little-endian uint32 when it fits (what older checkpoints used), as a
    uint64 otherwise."""
    lengths = np.asarray(lengths, dtype=np.uint64)
    if len(lengths) and int(lengths.max()) > 0xFFFFFFFF:  # rare: elements of 4 GiB or more
        return crc(b"".join(int(n).to_bytes(4 if n <= 0xFFFFFFFF else 8, "little")
                            for n in lengths))
    value = 0
    for i in range(0, len(lengths), _LENGTHS_PER_STEP):
        value = extend(value, lengths[i:i + _LENGTHS_PER_STEP].astype("<u4").view(np.uint8))
    return value


# crc32c(A + B) from crc32c(A), crc32c(B) and len(B), as zlib's crc32_combine does for its
# polynomial: pieces of one tensor checked in parallel still give the tensor's crc. Reflected
# bit order: x^0 is the top bit, and multiplying by x is a right shift.
_POLY = 0x82F63B78
_X0 = 1 << 31


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the crc32c polynomial."""
    product = 0
    m = _X0
    while a:
        if a & m:
            product ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _x_power_8n(n: int) -> int:
    """x^(8n) modulo the polynomial: what a crc is multiplied by when n bytes follow."""
    power = _X0
    k = 3  # n bytes are 8n = n * 2^3 bits
    while n:
        if n & 1:
            power = _multmodp(_X_2K[k], power)
        n >>= 1
        k += 1
    return power


def _powers() -> list[int]:
    """x^(2^k) for k < 64 (2^k bits: any length in bytes fits)."""
    out = [_X0 >> 1]  # x^1
    for _ in range(63):
        out.append(_multmodp(out[-1], out[-1]))
    return out


_X_2K = _powers()


class _Shift:
    """Multiplication by one fixed x^(8n) as four byte tables (it is linear over GF(2)), so a
    combine costs four look-ups, not 32 polynomial steps in Python."""

    def __init__(self, n: int) -> None:
        op = _x_power_8n(n)
        self.tables = [[_multmodp(op, byte << shift) for byte in range(256)]
                       for shift in (0, 8, 16, 24)]

    def __call__(self, crc: int) -> int:
        t0, t1, t2, t3 = self.tables
        return t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24]


def combine(crc1: int, crc2: int, len2: int) -> int:
    """crc32c of ``A + B`` given ``crc1`` of ``A``, ``crc2`` of ``B`` and ``len2 = len(B)``.

    Lengths seen more than once (the pieces a tensor is read in) get tables, built once."""
    if len2 <= 0:
        return crc1
    shift = _shifts.get(len2)
    if shift is None:
        if len2 not in _seen:  # a tensor's last piece: its length is seldom seen again
            _seen.add(len2)
            return _multmodp(_x_power_8n(len2), crc1) ^ crc2
        if len(_shifts) >= 16:
            _shifts.clear()
        shift = _shifts[len2] = _Shift(len2)
    return shift(crc1) ^ crc2


_seen: set[int] = set()
_shifts: dict[int, _Shift] = {}
