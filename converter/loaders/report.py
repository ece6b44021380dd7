"""The answer of every loader: what matched (and how), what is missing, unexpected or misfit."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import LoadError, option
from ..kinds import tf1_kind
from ..rules.presets import SLIM_NAMES as SLIM


class How(str, enum.Enum):
    """How a pairing was made (the stages of :mod:`.match`). A ``str``: it compares equal to,
    prints as and serializes to its value (``"object graph"``)."""

    NAME = "name"
    OBJECT_GRAPH = "object graph"
    SCOPE_SUFFIX = "scope suffix"
    AUTO_NAMES = "shape (auto-named variables in another order)"
    STRUCTURE = "layer structure"
    MISFIT = "shape (names misfit)"
    ONLY = "shape (only candidate)"
    FROZEN_SHAPE = "shape (frozen graph)"
    FROZEN_LAYER = "layer name + shape (frozen graph)"
    ORDER = "order+shape"

    # The value, never "How.NAME", on every Python version.
    __str__ = str.__str__

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


@dataclass
class Pairing:
    """One model variable and the checkpoint tensor assigned to it, and how."""

    variable: str
    tensor: str
    how: How


@dataclass
class Misfit:
    variable: str
    tensor: str
    variable_shape: list[int]
    tensor_shape: list[int]
    variable_dtype: str = ""
    tensor_dtype: str = ""


@dataclass
class LoadReport:
    """Like PyTorch's ``load_state_dict(strict=False)`` result, with how each match was made.

    ``ignored`` holds optimizer slots, counters and object graphs that no variable took (a
    Keras model never takes them; a TF1 graph takes those it has), and the constants of a
    frozen graph that are not variables (an epsilon, a shape); they never make a load fail.
    ``optimizer`` says what optimizer state was carried over (``--with-optimizer``), else None.
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[Misfit] = field(default_factory=list)
    pairings: list[Pairing] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    optimizer: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for pairing in out["pairings"]:
            pairing["how"] = str(pairing["how"])  # plain data, whatever reads it
        out["ok"] = self.ok
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        lines = []
        if self.pairings:
            width = max(len(p.variable) for p in self.pairings)
            lines.append(f"{'variable':<{width}}  <-  tensor  (how)")
            lines += [f"{p.variable:<{width}}  <-  {p.tensor}  ({p.how})" for p in self.pairings]
        for name in self.missing:
            lines.append(f"missing (not in the checkpoint): {name}")
        for name in self.unexpected:
            lines.append(f"unexpected (not in the model): {name}")
        for m in self.shape_mismatch:
            lines.append(f"shape mismatch: {m.variable} {m.variable_shape} {m.variable_dtype} "
                         f"<- {m.tensor} {m.tensor_shape} {m.tensor_dtype}")
        if self.optimizer:
            o = self.optimizer
            lines.append(f"optimizer: {o['source']} -> {o['target']}, {o['slots']} slots, "
                         f"iterations {o['iterations']}")
        lines.append(f"{len(self.matched)} matched, {len(self.missing)} missing, "
                     f"{len(self.unexpected)} unexpected, {len(self.shape_mismatch)} shape "
                     f"mismatch, {len(self.ignored)} ignored (optimizer state, counters, "
                     "graph constants)")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for error messages."""
        parts = []
        misfits = [f"{m.variable} {m.variable_shape} <- {m.tensor} {m.tensor_shape}"
                   + (f" {m.tensor_dtype}" if m.tensor_dtype != m.variable_dtype else "")
                   for m in self.shape_mismatch]
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", misfits)):
            if names:
                shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5
                                                 else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts)


def check(report: LoadReport, strict: bool, what: str, *, narrowed: bool = False) -> None:
    """Raise LoadError (carrying ``report``) when a strict load does not fit. ``narrowed``: the
    caller chose the variables (``var_list``), so tensors none of them takes are only
    reported."""
    if not strict:
        return
    failed = report.missing or report.shape_mismatch or (report.unexpected and not narrowed)
    if failed:
        raise LoadError(f"{what}: {report.summary()} ({hint(report)})", report=report)


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(":0")


def hint(report: LoadReport) -> str:
    """What would make this load work, in the caller's spelling."""
    slim = {_leaf(n) for n in report.unexpected} & set(SLIM)
    wanted = {_leaf(n) for n in report.missing}
    tips = []
    if report.missing and all(tf1_kind(n) != "variable" for n in report.missing):
        tips.append("the checkpoint holds no optimizer state for these: leave them out of "
                    "var_list to restore the model alone")
    elif slim and wanted & {SLIM[s] for s in slim}:
        tips.append(f"{option('keras-names')} renames TF1/slim weights/biases to kernel/bias")
    elif report.missing and report.unexpected:
        tips.append(f"rename rules ({option('rename')}) or {option('match-order')} pair the "
                    "rest")
    tips.append(f"{option('no-strict')} loads what matches")
    return "; ".join(tips)
