"""Value statistics of tensors, streaming: min, max, mean, std, zeros, NaN and Inf counts.

A tensor stored as a byte span is read in pieces of ``stream.PIECE`` (1 MiB) with ``pread``
(``stream.SpanReader``), each freed before the next is read so that its memory, reused, stays
in the core's cache for everything done to the piece, and checked into the tensor's crc32c.
Threads do not pay here: the work is many numpy calls of tens of microseconds (the stacked
matmul below keeps the GIL), so handing the GIL between threads costs about what it saves.

Within a piece, values are taken a block of BLOCK at a time (sub-32-bit floats widened to
float32 first; min, max and the zero count in the block's own dtype). min and max are exact.
When both are finite the block holds no NaN or Inf, and when they have the same sign no zero,
so those counts cost nothing for most blocks. The mean and variance are accumulated in float64:
per block the sum and the sum of squares (dot products of ``_LANE`` values, which BLAS computes
on one thread), and the sum of squared deviations ``m2 = s2 - s1 * s1 / n`` when that loses at
most ``log2(_CANCEL)`` bits; otherwise (a large offset against a small spread: ``1e8 +- 1``)
the block is taken in two passes, deviations from its own mean, corrected by the rounding of
that mean. Blocks and pieces are merged with Chan, Golub and LeVeque's pairwise update, means
kept relative to the first block's.

Accuracy: against numpy's float64 ``mean``/``std`` of the same values, the mean agrees to
within 1e-12 of ``max(|mean|, std)`` and the std to within 1e-12 relative, on random and
adversarial values (``1e4 + 0.01 N(0, 1)`` in float32, ``1e8 + N(0, 1)``, blocks 1e6 apart,
every 8- and 16-bit float); measured, both differ by less than 1e-15. min, max and the counts
are exact.

min, max, mean and std are over the finite values (NaN and ±Inf are counted, not averaged);
std is the population standard deviation (``numpy.std``'s default, ``ddof=0``). Integer min
and max are exact Python ints; booleans count as 0 and 1. Byte strings have no statistics;
complex values get counts only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import crc32c, dtypes
from .errors import CorruptionError
from .formats import stream
from .tensor import Checkpoint, Tensor, as_checkpoint

# Values of a block: 64 Ki of them (512 KiB widened to float64) stay in a core's cache.
BLOCK = 1 << 16
# Dot products of this many values: BLAS computes ones this short on the calling thread.
_LANE = 4096
# A block's m2 from its sums is kept when s2 <= _CANCEL * m2 (mean^2 <= 15 variances): it then
# loses at most 4 bits to cancellation; other blocks take the two-pass route.
_CANCEL = 16.0


@dataclass(frozen=True)
class Stats:
    """Statistics of one tensor's values.

    Attributes:
        count: number of elements.
        min, max: of the finite values (exact ints for integer and boolean tensors); None
            when there is none.
        mean, std: of the finite values, accumulated in float64; std with ``ddof=0``.
        zeros: elements equal to zero (``-0.0`` included).
        nan, inf: NaN and ±Inf elements (complex: either part).
        note: why some statistics are missing (``strings have no statistics``), else None.
    """

    count: int
    min: float | int | None = None
    max: float | int | None = None
    mean: float | None = None
    std: float | None = None
    zeros: int = 0
    nan: int = 0
    inf: int = 0
    note: str | None = None

    @property
    def nonfinite(self) -> bool:
        """Some element is NaN or ±Inf."""
        return bool(self.nan or self.inf)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (floats stay finite: min/max/mean/std cover finite values only)."""
        out: dict[str, Any] = {"count": self.count, "min": self.min, "max": self.max,
                               "mean": self.mean, "std": self.std, "zeros": self.zeros,
                               "nan": self.nan, "inf": self.inf}
        if self.note:
            out["note"] = self.note
        return out


def value_kind(dtype: np.dtype) -> str:
    """``b``, ``i``/``u``, ``f``, ``c`` or ``S`` (no statistics); ml_dtypes' bfloat16 and
    float8 types count as ``f``, int4/uint4 as ``i``."""
    if dtype.kind in "biufc":
        return dtype.kind
    name = dtypes.name_of(dtype) if not dtype.hasobject else "string"
    if name.startswith(("bfloat", "float")):
        return "f"
    if name.startswith(("int", "uint")):
        return "i"
    return "S"


# --------------------------------------------------------------------------- one piece


class _Part:
    """Statistics of some values: count, mean and M2 (sum of squared deviations) of the finite
    ones in float64, min/max, zero, NaN and Inf counts. Parts merge in order."""

    __slots__ = ("n", "shift", "mean", "m2", "lo", "hi", "zeros", "nan", "inf")

    def __init__(self) -> None:
        self.n = 0  # finite values seen
        self.shift = 0.0  # the first block's mean: means are kept relative to it
        self.mean = 0.0  # relative to shift
        self.m2 = 0.0
        self.lo: Any = None
        self.hi: Any = None
        self.zeros = self.nan = self.inf = 0

    def add_block(self, n: int, mean: float, m2: float, drift: float, lo: Any, hi: Any
                  ) -> None:
        """A block's finite values: their mean, M2, and the sum of their deviations from that
        mean (the rounding of the mean, measured; 0.0 when not measured)."""
        if self.n == 0:
            self.shift = mean
        # The block's mean relative to the shift: computed as (mean - shift) + drift / n, it
        # keeps digits that a running mean of magnitude 1e8 would round away at each merge.
        offset = mean - self.shift
        if drift and math.isfinite(m2) and math.isfinite(drift * drift):
            offset += drift / n
            m2 = max(m2 - drift * drift / n, 0.0)
        self._merge(n, offset, m2)
        self._range(lo, hi)

    def add(self, other: _Part) -> None:
        """Another part's values, after this one's."""
        self.zeros += other.zeros
        self.nan += other.nan
        self.inf += other.inf
        if other.n == 0:
            return
        if self.n == 0:
            self.shift = other.shift
        self._merge(other.n, (other.shift - self.shift) + other.mean, other.m2)
        self._range(other.lo, other.hi)

    def _range(self, lo: Any, hi: Any) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def _merge(self, n: int, mean: float, m2: float) -> None:
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2 + delta * delta * (self.n * (n / total))
        self.n = total

    def result(self, count: int, note: str | None = None) -> Stats:
        if self.n == 0:
            return Stats(count, zeros=self.zeros, nan=self.nan, inf=self.inf, note=note)
        std = math.sqrt(max(self.m2, 0.0) / self.n)
        return Stats(count, self.lo, self.hi, self.shift + self.mean, std, self.zeros, self.nan,
                     self.inf, note)


class _Buffers(threading.local):
    """Each thread's reused buffers: fresh temporaries of a block's size cost a page fault per
    4 KiB, which takes longer than the arithmetic."""

    def get(self) -> _Buffers:
        if getattr(self, "size", None) != BLOCK:  # BLOCK is module state; tests change it
            self.size = BLOCK
            self.wide = np.empty(BLOCK, np.float64)
            self.narrow = np.empty(BLOCK, np.float32)
            self.flags = np.empty(BLOCK, np.bool_)
            self.ones = np.ones((_LANE, 1))
            self.dots = np.empty((max(BLOCK // _LANE, 1), 1, 1))
            # A whole block widened, and its lanes as rows and as columns for matmul.
            self.full = self.wide[:BLOCK]
            q = BLOCK - BLOCK % _LANE
            self.rows = self.wide[:q].reshape(-1, 1, _LANE)
            self.cols = self.wide[:q].reshape(-1, _LANE, 1)
        return self


_buffers = _Buffers()
# float8 values by their bits, as float32 (exact): a look-up is 5x faster than ml_dtypes' cast.
_BYTE_TABLES: dict[np.dtype, np.ndarray] = {}


def _sums(x: np.ndarray, b: _Buffers) -> tuple[float, float]:
    """Sum and sum of squares of a contiguous float64 block, as dot products of _LANE values
    (stacked, so one call does them all) and one shorter for the tail."""
    n = x.size
    q = n - n % _LANE
    s1 = s2 = 0.0
    if q:
        if x is b.full:
            rows, cols = b.rows, b.cols
        else:
            rows, cols = x[:q].reshape(-1, 1, _LANE), x[:q].reshape(-1, _LANE, 1)
        dots = b.dots[:rows.shape[0]]
        np.matmul(rows, b.ones, out=dots)
        s1 = float(dots.sum())
        np.matmul(rows, cols, out=dots)
        s2 = float(dots.sum())
    if q < n:
        tail = x[q:]
        s1 += float(np.add.reduce(tail))
        s2 += float(np.dot(tail, tail))
    return s1, s2


def _moments(part: _Part, x: np.ndarray, b: _Buffers, lo: Any, hi: Any) -> None:
    """Add a block of finite float64 values (contiguous) to ``part``. Overflow is for the
    caller to ignore: near float64's limit the std is inf, as numpy's."""
    n = x.size
    s1, s2 = _sums(x, b)
    mean = s1 / n
    m2 = s2 - s1 * mean
    if s2 <= _CANCEL * m2 and m2 < math.inf or s2 == 0.0:
        part.add_block(n, mean, m2, 0.0, lo, hi)
        return
    # Two passes: deviations from the block's mean.
    if not math.isfinite(mean):  # finite values whose sum passes float64's range
        mean = float(np.sum(x / n))
    d = b.wide[:n]  # x itself, or free: x is then the block or a copy of its finite values
    np.subtract(x, mean, out=d)
    drift, m2 = _sums(d, b)
    part.add_block(n, mean, m2, drift, lo, hi)


def _widened(block: np.ndarray, b: _Buffers) -> np.ndarray:
    """A block of float16, bfloat16 or float8 values as float32 or float64, exactly."""
    n = block.size
    if block.dtype == np.float16:  # numpy casts float16 to float64 faster than to float32
        np.copyto(b.wide[:n], block)
        return b.full if n == BLOCK else b.wide[:n]
    out = b.narrow[:n]
    if block.dtype.itemsize == 2:  # bfloat16: the top half of a float32
        np.left_shift(block.view(np.uint16), 16, out=out.view(np.uint32), dtype=np.uint32)
        return out
    table = _BYTE_TABLES.get(block.dtype)
    if table is None:
        table = _BYTE_TABLES[block.dtype] = \
            np.arange(256, dtype=np.uint8).view(block.dtype).astype(np.float32)
    np.take(table, block.view(np.uint8), out=out)
    return out


def _real_part(values: np.ndarray, kind: str) -> _Part:
    """Statistics of a piece of real values (1-D, native byte order)."""
    part = _Part()
    b = _buffers.get()
    exact = kind in "biu"
    narrow = kind == "f" and values.dtype.itemsize < 4  # float16, bfloat16, float8
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, values.size, BLOCK):
            block = values[start:start + BLOCK]
            n = block.size
            if narrow:
                block = _widened(block, b)
            elif kind == "b":
                block = block.view(np.uint8)
            elif exact and block.dtype.kind not in "iu":  # int4, uint4
                block = block.astype(np.int8)
            lo, hi = np.minimum.reduce(block), np.maximum.reduce(block)
            if exact:
                lo, hi = int(lo), int(hi)
                if lo <= 0 <= hi:
                    part.zeros += n - int(np.count_nonzero(block))
            else:
                lo, hi = float(lo), float(hi)
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    _nonfinite_block(part, block, b)
                    continue
                if lo <= 0.0 <= hi:
                    part.zeros += int(np.count_nonzero(np.equal(block, 0, out=b.flags[:n])))
            if block.dtype == np.float64:
                x = block
            else:
                x = b.full if n == BLOCK else b.wide[:n]
                np.copyto(x, block, casting="unsafe")
            _moments(part, x, b, lo, hi)
    return part


def _nonfinite_block(part: _Part, block: np.ndarray, b: _Buffers) -> None:
    """A float block with a NaN or an Inf: count them, then take the finite values."""
    part.zeros += int(np.count_nonzero(block == 0))
    finite = np.isfinite(block, out=b.flags[:block.size])
    nan = int(np.count_nonzero(np.isnan(block)))
    part.nan += nan
    part.inf += block.size - int(np.count_nonzero(finite)) - nan
    kept = block[finite]
    if kept.size:
        _moments(part, kept.astype(np.float64), b, float(kept.min()), float(kept.max()))


def _complex_part(values: np.ndarray) -> _Part:
    """Counts only: complex numbers have no order, and a mean of little use."""
    part = _Part()
    for start in range(0, values.size, BLOCK):
        wide = values[start:start + BLOCK].astype(np.complex128)
        part.zeros += wide.size - int(np.count_nonzero(wide))
        part.nan += int(np.count_nonzero(np.isnan(wide)))
        part.inf += int(np.count_nonzero(np.isinf(wide) & ~np.isnan(wide)))
    return part


def _part(values: np.ndarray, kind: str) -> _Part:
    return _complex_part(values) if kind == "c" else _real_part(values, kind)


# --------------------------------------------------------------------------- whole tensors


class _Tensor:
    """One tensor's statistics being gathered: its pieces' parts, merged in order, and the
    crc32c of their bytes."""

    def __init__(self, tensor: Tensor, kind: str) -> None:
        self.tensor, self.kind = tensor, kind
        self.check = tensor.span is not None and tensor.crc32c is not None
        self.part = _Part()
        self.crc = 0
        self.values = 0

    def add(self, values: np.ndarray, data: bytes | None = None) -> None:
        """The next piece of values (read as ``data``, checked when the tensor is)."""
        if self.check and data is not None:
            self.crc = crc32c.extend(self.crc, data)
        self.values += values.size
        self.part.add(_part(values, self.kind))

    def result(self) -> Stats:
        t = self.tensor
        if self.check and self.crc != t.crc32c and t.span is not None:
            raise CorruptionError(f"{t.span[0]}: tensor {t.name!r}: checksum mismatch "
                                  "(data corrupted)")
        if self.values != t.size:
            where = f"{t.span[0]}: " if t.span is not None else ""
            raise CorruptionError(f"{where}tensor {t.name!r}: {self.values} values stored, "
                                  f"{t.size} expected for shape {list(t.shape)}")
        return self.part.result(t.size, "complex values: counts only" if self.kind == "c"
                                else None)


def _one(tensor: Tensor, files: stream.SpanReader) -> Stats:
    kind = value_kind(tensor.dtype)
    if kind == "S":
        return Stats(tensor.size, note="strings have no statistics")
    if tensor.size == 0:
        return Stats(0)
    state = _Tensor(tensor, kind)
    dtype = tensor.dtype
    if stream.streamable(tensor) and dtype.itemsize:
        path, _, nbytes = tensor.span  # type: ignore[misc]  # streamable: it has one
        if nbytes % dtype.itemsize:
            raise CorruptionError(f"{path}: tensor {tensor.name!r}: {nbytes} bytes do not hold "
                                  f"{dtype.itemsize}-byte values")
        size = max(stream.PIECE // dtype.itemsize, 1) * dtype.itemsize
        for offset, n in files.pieces(tensor, size):
            data = files.read(tensor, offset, n)
            state.add(np.frombuffer(data, dtype=dtype), data)
            # Freed before the next read, which then reuses the same memory, still in the
            # core's cache, rather than faulting in a new buffer.
            del data
        return state.result()
    values = tensor.read().reshape(-1)  # no span to read in pieces: read whole
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("="))
    step = max(stream.PIECE // max(values.dtype.itemsize, 1), 1)
    for start in range(0, values.size, step):
        state.add(values[start:start + step])
    return state.result()


def stats_all(checkpoint: Checkpoint | Mapping[str, Any], names: Iterable[str] | None = None
              ) -> dict[str, Stats]:
    """:func:`stats` of each tensor (of ``names``, default all), in checkpoint order."""
    ckpt = as_checkpoint(checkpoint)
    with stream.SpanReader() as files:
        return {n: _one(ckpt[n], files) for n in (ckpt if names is None else names)}


def stats(tensor: Tensor | np.ndarray) -> Stats:
    """Statistics of a tensor's values, in bounded memory (see the module docstring).

    Example:
        >>> s = stats(converter.read("model.ckpt-1000")["dense/kernel"])
        >>> s.min, s.max, s.mean, s.std, s.nan
    """
    if not isinstance(tensor, Tensor):
        tensor = Tensor.from_array("array", tensor)
    with stream.SpanReader() as files:
        return _one(tensor, files)


def nonfinite(all_stats: Mapping[str, Stats]) -> list[str]:
    """Names of the tensors with a NaN or ±Inf, in order."""
    return [n for n, s in all_stats.items() if s.nonfinite]
