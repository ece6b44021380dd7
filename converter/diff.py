"""Comparing two checkpoints of any formats: names, shapes, dtypes and values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .tensor import Checkpoint, Tensor, as_checkpoint


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

    @property
    def differing(self) -> list[TensorDiff]:
        return [t for t in self.tensors if not t.equal]

    @property
    def equal(self) -> bool:
        return not self.only_a and not self.only_b and not self.differing

    def to_dict(self) -> dict[str, Any]:
        return {"equal": self.equal, "only_a": self.only_a, "only_b": self.only_b,
                "tensors": [asdict(t) for t in self.tensors]}


def diff(a: Checkpoint | dict, b: Checkpoint | dict, *, rtol: float = 0.0,
         atol: float = 0.0) -> DiffReport:
    """Compare two checkpoints name by name.

    With ``rtol == atol == 0`` values must be identical bit for bit (NaN payloads, -0.0);
    otherwise ``|a - b| <= atol + rtol * |b|`` elementwise, NaN equal to NaN.
    """
    a, b = as_checkpoint(a), as_checkpoint(b)
    report = DiffReport(only_a=[n for n in a if n not in b], only_b=[n for n in b if n not in a])
    for name in a:
        if name in b:
            report.tensors.append(_compare(a[name], b[name], rtol, atol))
    return report


def _compare(ta: Tensor, tb: Tensor, rtol: float, atol: float) -> TensorDiff:
    from . import dtypes

    out = TensorDiff(ta.name, True)
    if ta.dtype != tb.dtype:
        out.dtype = (dtypes.name_of(ta.dtype), dtypes.name_of(tb.dtype))
        out.equal = False
    if ta.shape != tb.shape:
        out.shape = (list(ta.shape), list(tb.shape))
        out.equal = False
        return out
    x, y = ta.read(), tb.read()
    if x.dtype.hasobject or y.dtype.hasobject:
        same = x.dtype.hasobject and y.dtype.hasobject and x.tolist() == y.tolist()
        out.equal = out.equal and same
        return out
    if out.dtype is None and rtol == 0 and atol == 0:
        if np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes():
            return out
        out.equal = False
    xf = x.astype(np.complex128 if x.dtype.kind == "c" or y.dtype.kind == "c" else np.float64)
    yf = y.astype(xf.dtype)
    if x.size:
        with np.errstate(divide="ignore", invalid="ignore"):  # inf - inf, x / 0
            delta = np.abs(xf - yf)
            both_nan = np.isnan(xf) & np.isnan(yf)
            same_inf = np.isinf(xf) & (xf == yf)
            delta = np.where(both_nan | same_inf, 0.0, delta)
            rel = np.where(delta == 0, 0.0, delta / np.abs(yf))
        out.max_abs = float(np.nanmax(delta)) if delta.size else 0.0
        out.max_rel = float(np.nanmax(rel)) if rel.size else 0.0
        if rtol or atol:
            with np.errstate(invalid="ignore"):
                tol = atol + rtol * np.where(np.isfinite(yf), np.abs(yf), 0.0)
                close = bool(np.all(delta <= tol))
            out.equal = out.equal and close
    return out
