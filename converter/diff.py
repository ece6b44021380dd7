"""Comparing two checkpoints of any formats: names, shapes, dtypes and values.

Values are compared a block at a time, never as whole tensors, so comparing two checkpoints of
any size holds a few MiB per side. Two tensors of one dtype stored as local byte spans are read
a MiB at a time with pread, the first side a piece ahead on a thread of its own, the second
just before it is compared; each side's crc32c is checked, the second's taken from the first's
while their bytes are identical. Other spans are streamed through ``formats.stream.chunks``
(crc32c checked). Tensors without a span (transformed by rules, in memory, or in formats read
whole) are read once and walked the same way.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import CorruptionError, UsageError
from .tensor import Checkpoint, Tensor, as_checkpoint

# Values widened to float64 at a time when a tolerance or a difference needs arithmetic:
# 256 Ki elements make temporaries of 2 MiB (4 MiB complex).
BLOCK = 1 << 18


@dataclass
class TensorDiff:
    name: str
    equal: bool
    dtype: tuple[str, str] | None = None  # (a, b) when they differ
    shape: tuple[list[int], list[int]] | None = None
    max_abs: float | None = None
    max_rel: float | None = None


@dataclass
class DiffReport:
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    tensors: list[TensorDiff] = field(default_factory=list)
    # A TF2 object graph on one side only: a bundle's bookkeeping, which formats other than a
    # TF bundle do not hold, so not a difference between the weights (compared when both have one)
    left_out: list[str] = field(default_factory=list)

    @property
    def differing(self) -> list[TensorDiff]:
        return [t for t in self.tensors if not t.equal]

    @property
    def equal(self) -> bool:
        return not self.only_a and not self.only_b and not self.differing

    def to_dict(self) -> dict[str, Any]:
        return {"equal": self.equal, "only_a": self.only_a, "only_b": self.only_b,
                "left_out": self.left_out, "tensors": [asdict(t) for t in self.tensors]}


def diff(a: Checkpoint | dict, b: Checkpoint | dict, *, rtol: float = 0.0,
         atol: float = 0.0) -> DiffReport:
    """Compare two checkpoints name by name, in bounded memory.

    With ``rtol == atol == 0`` values must be identical bit for bit (NaN payloads, -0.0);
    otherwise ``|a - b| <= atol + rtol * |b|`` elementwise, NaN equal to NaN. A tensor with
    no elements equals one of the same shape and dtype.
    """
    for what, value in (("rtol", rtol), ("atol", atol)):
        try:
            ok = 0 <= float(value) < float("inf")  # NaN fails too
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UsageError(f"{what} must be a finite number >= 0, got {value!r}")
    a, b = as_checkpoint(a), as_checkpoint(b)
    one_side = [(n, t) for n, t in a.items() if n not in b] + \
        [(n, t) for n, t in b.items() if n not in a]
    graphs = {n for n, t in one_side if t.kind == "object_graph"}
    report = DiffReport(only_a=[n for n in a if n not in b and n not in graphs],
                        only_b=[n for n in b if n not in a and n not in graphs],
                        left_out=sorted(graphs))
    for name in a:
        if name in b:
            report.tensors.append(_compare(a[name], b[name], rtol, atol))
    return report


def _compare(ta: Tensor, tb: Tensor, rtol: float, atol: float) -> TensorDiff:
    from . import dtypes

    out = TensorDiff(ta.name, True)
    # Byte order is how a file stores values, not what they are: a big-endian npz member and
    # its little-endian conversion hold the same float32s (values are compared little-endian).
    if _little(ta.dtype) != _little(tb.dtype):
        out.dtype = (dtypes.name_of(ta.dtype), dtypes.name_of(tb.dtype))
        out.equal = False
    if ta.shape != tb.shape:
        out.shape = (list(ta.shape), list(tb.shape))
        out.equal = False
        return out
    if ta.size == 0:  # nothing to read: numpy cannot even hold some such shapes, (0, 2**61)
        return out
    if ta.dtype.hasobject or tb.dtype.hasobject:  # byte strings: short, compared whole
        x, y = ta.read(), tb.read()
        same = x.dtype.hasobject and y.dtype.hasobject and x.tolist() == y.tolist()
        out.equal = out.equal and same
        return out
    same_dtype = out.dtype is None
    exact = same_dtype and rtol == 0 and atol == 0
    stats = _Stats(rtol, atol)
    if same_dtype and _read_ahead(ta, tb, stats):
        pass
    else:
        # Of one dtype, runs identical bit for bit need no arithmetic, with or without
        # tolerances.
        step = _STEP // ta.dtype.itemsize if same_dtype else BLOCK
        for x, y in _pairs(ta, tb, step):
            if same_dtype and _same_bits(x, y):
                stats.same()
                continue
            for i in range(0, len(x), BLOCK):
                stats.add(x[i:i + BLOCK], y[i:i + BLOCK])
    if exact and not stats.computed:
        return out
    if not stats.numeric:
        out.equal = out.equal and stats.close
        return out
    out.max_abs, out.max_rel = float(stats.max_abs), float(stats.max_rel)
    if exact:
        out.equal = False
    elif rtol or atol:
        out.equal = out.equal and stats.close
    return out


def _read_ahead(ta: Tensor, tb: Tensor, stats: _Stats) -> bool:
    """Compare two tensors of one dtype stored as local spans, the first read and checked on
    a thread of its own (``stream.ReadAhead``) while the second is read and compared here. While the
    two sides are identical, the second side's crc32c is the first's, taken once: a diff of a
    checkpoint and its copy checks each byte once. False when the tensors are not both such
    spans (the caller walks them the general way)."""
    from .formats import stream

    if not (stream.local_span(ta) and stream.local_span(tb)) or not ta.dtype.itemsize or \
            stream.PIECE % ta.dtype.itemsize:
        return False
    import google_crc32c

    dtype = _little(ta.dtype)
    with stream.SpanReader() as files:
        b_pieces = files.pieces(tb)  # refuses a span past the end of its file
        # A is read a piece or two ahead on its thread; B's piece is read here, just before
        # it is compared, so it is still in this core's cache (reading both sides ahead
        # was slower: their pieces had left the cache by the time they were compared).
        a = stream.ReadAhead(ta, files, crc=ta.crc32c is not None or tb.crc32c is not None)
        try:
            check_b = tb.crc32c is not None
            a_before = b_value = 0
            for (x, a_after), (pos, n) in zip(a, b_pieces, strict=True):  # equal lengths
                y = files.read(tb, pos, n)
                if x == y and b_value == a_before:
                    b_value = a_after  # the same state, extended by the same bytes
                elif check_b:
                    b_value = google_crc32c.extend(b_value, y)
                if x == y:
                    stats.same()
                else:
                    xs, ys = np.frombuffer(x, dtype), np.frombuffer(y, dtype)
                    for i in range(0, len(xs), BLOCK):
                        stats.add(xs[i:i + BLOCK], ys[i:i + BLOCK])
                a_before = a_after
        finally:
            a.close()
    for t, value in ((ta, a_before), (tb, b_value)):
        if t.crc32c is not None and value != t.crc32c:
            raise CorruptionError(f"{t.span[0]}: tensor {t.name!r}: "  # type: ignore[index]
                                  "checksum mismatch (data corrupted)")
    return True


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two runs of one dtype hold the same bytes (compared eight at a time where the
    length allows it: twice as fast as byte by byte)."""
    xb, yb = x.view(np.uint8), y.view(np.uint8)
    if len(xb) % 8 == 0 and len(yb) == len(xb):
        return bool(np.array_equal(xb.view(np.uint64), yb.view(np.uint64)))
    return bool(np.array_equal(xb, yb))


class _Stats:
    """Largest absolute and relative difference seen so far, and whether every element was
    within tolerance. Differences are taken in float64 (complex128 for complex values); NaN
    against NaN and an infinity against the same infinity differ by 0."""

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        self.max_abs = self.max_rel = np.float64("nan")  # stays NaN only if every delta is
        self.close = True
        self.computed = False  # some block differed bit for bit (or needed arithmetic)
        self.numeric = True

    def same(self) -> None:
        """A run identical bit for bit: every difference in it is 0, within any tolerance."""
        self.max_abs, self.max_rel = np.fmax(self.max_abs, 0.0), np.fmax(self.max_rel, 0.0)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.computed = True
        wide = np.complex128 if x.dtype.kind == "c" or y.dtype.kind == "c" else np.float64
        try:
            xf, yf = x.astype(wide), y.astype(wide)
        except (TypeError, ValueError):  # not numbers (fixed-width text): bits decide
            self.numeric = False
            self.close = self.close and np.array_equal(x, y)
            return
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf - inf, x/0
            delta = np.abs(xf - yf)
            both_nan = np.isnan(xf) & np.isnan(yf)
            same_inf = np.isinf(xf) & (xf == yf)
            delta = np.where(both_nan | same_inf, 0.0, delta)
            rel = np.where(delta == 0, 0.0, delta / np.abs(yf))
            self.max_abs = np.fmax(self.max_abs, np.fmax.reduce(delta))
            self.max_rel = np.fmax(self.max_rel, np.fmax.reduce(rel))
            if self.rtol or self.atol:
                tol = self.atol + self.rtol * np.where(np.isfinite(yf), np.abs(yf), 0.0)
                self.close = self.close and bool(np.all(delta <= tol))


# Bytes compared bit for bit at a time: a piece of each tensor, crc-checked just before, is
# still in a core's cache when compared.
_STEP = 1 << 20


def _little(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def _elements(t: Tensor, step: int) -> Generator[np.ndarray, None, None]:
    """The tensor's values as 1-D little-endian pieces, each valid until the next is asked
    for: views of streamed chunks when the tensor has a span, else slices of its values."""
    from .formats import stream

    dtype = _little(t.dtype)
    if t.span is not None and dtype.itemsize and _STEP % dtype.itemsize == 0:
        for piece in stream.chunks(t, _STEP):
            if len(piece) % dtype.itemsize:
                raise CorruptionError(f"{t.span[0]}: tensor {t.name!r}: {t.span[2]} bytes "
                                      f"do not hold {dtype.itemsize}-byte values")
            yield np.frombuffer(piece, dtype=dtype)
        return
    values = t.read()
    flat = np.ascontiguousarray(values, dtype=_little(values.dtype)).reshape(-1)
    for start in range(0, flat.size, step):
        yield flat[start:start + step]


class _Cursor:
    """Walks one tensor's values, handing out up to ``n`` of them at a time."""

    def __init__(self, t: Tensor, step: int) -> None:
        self.tensor = t
        self.pieces = _elements(t, step)
        self.piece: np.ndarray | None = None
        self.pos = self.count = 0

    def take(self, n: int) -> np.ndarray | None:
        while self.piece is None or self.pos == len(self.piece):
            self.piece, self.pos = next(self.pieces, None), 0
            if self.piece is None:
                return None
        out = self.piece[self.pos:self.pos + n]
        self.pos += len(out)
        self.count += len(out)
        return out

    def give_back(self, n: int) -> None:
        """Return the last ``n`` values taken, to be taken again."""
        self.pos -= n
        self.count -= n

    def finish(self) -> None:
        """Refuse a tensor whose stored values are more or fewer than its shape holds."""
        more = self.take(1) is not None
        if more or self.count != self.tensor.size:
            t = self.tensor
            where = f"{t.span[0]}: " if t.span else ""
            raise CorruptionError(f"{where}tensor {t.name!r}: {'more' if more else self.count} "
                                  f"values stored, {t.size} expected for shape {list(t.shape)}")


def _pairs(ta: Tensor, tb: Tensor, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Equal-length runs of up to ``step`` values of both tensors, in order."""
    a, b = _Cursor(ta, step), _Cursor(tb, step)
    try:
        while (x := a.take(step)) is not None:
            y = b.take(len(x))
            if y is None:
                a.give_back(len(x))
                break
            if len(y) < len(x):
                a.give_back(len(x) - len(y))
                x = x[:len(y)]
            yield x, y
        a.finish()
        b.finish()
    finally:
        a.pieces.close()
        b.pieces.close()
