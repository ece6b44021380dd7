"""Looking inside a checkpoint: value statistics, the scope tree and readable TF2 names.

Statistics are computed streaming: tensors stored as byte spans are read a chunk at a time
through ``formats.stream.chunks`` (memory-mapped, pages dropped once used, crc32c checked), and
each chunk is widened to float64 a block at a time, so a tensor of any size costs a few MiB.
Per block the count, mean and sum of squared deviations from the block's own mean are taken in
float64 (two passes over the block, the second correcting the first's mean) and merged with
Chan, Golub and LeVeque's pairwise update, means kept relative to the first block's; the
variance stays accurate where a running sum of squares would cancel (values 1e8 ± 1).

min, max, mean and std are over the finite values (NaN and ±Inf are counted, not averaged);
std is the population standard deviation (``numpy.std``'s default, ``ddof=0``). Integer min
and max are exact Python ints; booleans count as 0 and 1. Byte strings have no statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dtypes, scopes
from .errors import CorruptionError
from .scopes import Node
from .tensor import Checkpoint, Tensor, as_checkpoint

# Values widened to float64 at a time: 64 Ki of them (512 KiB) stay in a core's cache.
BLOCK = 1 << 16


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


class _Accumulator:
    """Running count, mean and M2 (sum of squared deviations) of finite values, in float64,
    with min/max, zero, NaN and Inf counts."""

    def __init__(self, exact: bool) -> None:
        self.exact = exact  # integers: min and max kept as Python ints
        self.n = 0  # finite values seen
        self.shift = 0.0  # the first block's mean: means are kept relative to it
        self.mean = 0.0  # relative to shift
        self.m2 = 0.0
        self.lo: Any = None
        self.hi: Any = None
        self.zeros = self.nan = self.inf = 0
        self._wide = np.empty(BLOCK, np.float64)
        self._dev = np.empty(BLOCK, np.float64)

    def add_real(self, block: np.ndarray) -> None:
        """One 1-D block of at most BLOCK real values (integers, booleans as uint8, floats
        of any width)."""
        if block.size == 0:
            return
        # Reused buffers: fresh temporaries of this size cost a page fault per 4 KiB, which
        # takes longer than the arithmetic.
        x = self._wide[:block.size]
        lo: float | int
        hi: float | int
        if self.exact:
            lo, hi = int(block.min()), int(block.max())
            self.zeros += block.size - int(np.count_nonzero(block))
            np.copyto(x, block, casting="unsafe")
            total = float(x.sum())
        else:
            np.copyto(x, block, casting="unsafe")
            self.zeros += int(np.count_nonzero(x == 0))
            with np.errstate(over="ignore", invalid="ignore"):
                total = float(x.sum())
            if not math.isfinite(total):  # a NaN or Inf, or finite values summing past 1e308
                bad = ~np.isfinite(x)
                if bad.any():
                    nan = int(np.count_nonzero(np.isnan(x)))
                    self.nan += nan
                    self.inf += int(np.count_nonzero(bad)) - nan
                    x = x[~bad]
                    if x.size == 0:
                        return
                    with np.errstate(over="ignore"):
                        total = float(x.sum())
            lo, hi = float(x.min()), float(x.max())
        n = x.size
        mean = total / n
        if not math.isfinite(mean):  # finite values whose sum passes float64's range
            mean = float(np.sum(x / n))
        d = self._dev[:n]
        with np.errstate(over="ignore"):  # values near float64's limit: std is inf, as numpy's
            np.subtract(x, mean, out=d)
            m2 = float(np.einsum("i,i->", d, d))  # not BLAS: its threads cost more here
            # The corrected two-pass step: the rounding of sum/n, measured on the deviations,
            # comes off the block's mean, so merging blocks' means loses nothing to it.
            drift = float(d.sum())
        if self.n == 0:
            self.shift = mean
        # The block's mean relative to the shift: computed as (mean - shift) + drift / n, it
        # keeps digits that a running mean of magnitude 1e8 would round away at each merge.
        offset = mean - self.shift
        if math.isfinite(m2) and math.isfinite(drift * drift):
            offset += drift / n
            m2 = max(m2 - drift * drift / n, 0.0)
        self._merge(n, offset, m2)
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


def _blocks(tensor: Tensor) -> Iterator[np.ndarray]:
    """The tensor's values as 1-D little-endian pieces, each valid until the next."""
    from .formats import stream

    dtype = tensor.dtype.newbyteorder("<") if tensor.dtype.byteorder == ">" else tensor.dtype
    if tensor.span is not None and dtype.itemsize and stream.CHUNK % dtype.itemsize == 0:
        seen = 0
        for piece in stream.chunks(tensor):
            if len(piece) % dtype.itemsize:
                raise CorruptionError(f"{tensor.span[0]}: tensor {tensor.name!r}: "
                                      f"{tensor.span[2]} bytes do not hold "
                                      f"{dtype.itemsize}-byte values")
            values = np.frombuffer(piece, dtype=dtype)
            seen += values.size
            for start in range(0, values.size, BLOCK):
                yield values[start:start + BLOCK]
        if seen != tensor.size:
            raise CorruptionError(f"{tensor.span[0]}: tensor {tensor.name!r}: {seen} values "
                                  f"stored, {tensor.size} expected for shape "
                                  f"{list(tensor.shape)}")
        return
    values = tensor.read().reshape(-1)
    for start in range(0, values.size, BLOCK):
        yield values[start:start + BLOCK]


def _widen(block: np.ndarray, kind: str) -> np.ndarray:
    if kind == "b":
        return block.view(np.uint8)
    if kind in "iu" and block.dtype.kind not in "iu":  # int4, uint4
        return block.astype(np.int64)
    return block


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


def stats(tensor: Tensor | np.ndarray) -> Stats:
    """Statistics of a tensor's values, in bounded memory (see the module docstring).

    Example:
        >>> s = stats(converter.read("model.ckpt-1000")["dense/kernel"])
        >>> s.min, s.max, s.mean, s.std, s.nan
    """
    if not isinstance(tensor, Tensor):
        tensor = Tensor.from_array("array", tensor)
    kind = value_kind(tensor.dtype)
    if kind == "S":
        return Stats(tensor.size, note="strings have no statistics")
    if tensor.size == 0:
        return Stats(0)
    acc = _Accumulator(exact=kind in "biu")
    if kind == "c":  # counts only: complex numbers have no order, and a mean of little use
        for block in _blocks(tensor):
            wide = block.astype(np.complex128)
            acc.zeros += wide.size - int(np.count_nonzero(wide))
            acc.nan += int(np.count_nonzero(np.isnan(wide)))
            acc.inf += int(np.count_nonzero(np.isinf(wide) & ~np.isnan(wide)))
        return acc.result(tensor.size, "complex values: counts only")
    for block in _blocks(tensor):
        acc.add_real(_widen(block, kind))
    return acc.result(tensor.size)


def stats_all(checkpoint: Checkpoint | Mapping[str, Any],
              names: Iterable[str] | None = None) -> dict[str, Stats]:
    """:func:`stats` of each tensor (of ``names``, default all), in checkpoint order."""
    ckpt = as_checkpoint(checkpoint)
    return {n: stats(ckpt[n]) for n in (ckpt if names is None else names)}


# --------------------------------------------------------------------------- names and scopes


def readable_names(checkpoint: Checkpoint | Mapping[str, Any]) -> dict[str, str]:
    """``{key: readable name}`` for a TF2 object-based checkpoint: the names ``--preset
    tf2-names`` gives (the object graph's ``full_name``, slots as ``<variable>/<slot>``), only
    for keys that it renames; empty for a checkpoint that is not object-based."""
    return scopes.readable_names(as_checkpoint(checkpoint))


def tree(checkpoint: Checkpoint | Mapping[str, Any], depth: int | None = None, *,
         filter: str | None = None, readable: bool = True) -> Node:
    """The checkpoint's scopes as a tree, with counts per scope and optimizer slots folded
    into their variables (:class:`converter.scopes.Node`).

    Args:
        depth: keep scopes down to this depth (root 0); what lies deeper is counted in its
            ancestor at that depth. None: all.
        filter: a glob (or ``re:`` regex) as in the rules; only tensors whose key or readable
            name matches, with the slots of the variables that match.
        readable: for TF2 object-based checkpoints, place tensors by their readable names
            (:func:`readable_names`) rather than their object keys.

    Example:
        >>> root = tree(converter.read("model.ckpt-1000"), depth=2)
        >>> [(n.path, n.params) for _, n in root.walk()]
    """
    from .rules.core import Pattern

    keep = None
    if filter is not None:
        pattern = Pattern(filter)

        def keep(key: str, shown: str) -> bool:
            return bool(pattern.match(key) or pattern.match(shown))

    return scopes.build(as_checkpoint(checkpoint), depth, names=None if readable else {},
                        keep=keep)


def nonfinite(all_stats: Mapping[str, Stats]) -> list[str]:
    """Names of the tensors with a NaN or ±Inf, in order."""
    return [n for n, s in all_stats.items() if s.nonfinite]
