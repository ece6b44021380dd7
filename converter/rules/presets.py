"""Presets: named rules for common migrations (``preset = "NAME"`` plus options in TOML,
``--preset NAME[:OPTION=VALUE,...]`` on the command line).

- ``drop-optimizer``: drop optimizer state and counters, judged by ``Tensor.kind`` (never by a
  key prefix: Keras 3 keeps model weights under ``optimizer/_trainable_variables/N``).
- ``use-ema``: take ``v/ExponentialMovingAverage`` as ``v`` (``variables_to_restore()``).
- ``tf2-names``: TF2 object keys to readable variable names.
- ``keras-names``: TF1 names (``dense/kernel:0``, slim ``weights``/``biases``) to Keras paths.
- ``tf1-lstm-to-keras``: TF1 ``LSTMCell``/``BasicLSTMCell`` weights to a Keras ``LSTM``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import RenameError
from ..kinds import SLOT_SUFFIX
from ..tensor import Kind
from ..tfnames import ATTR_SUFFIX, readable_names
from .core import Entry, Pattern, Rule, check_str, each_entry
from .ops import add_constant, gate_order, reorder, split


@dataclass(frozen=True)
class Preset(Rule):
    """A named rule; its dataclass fields are its options."""

    key = "preset"
    name: ClassVar[str]

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.init and getattr(self, f.name) != f.default}

    def table(self) -> dict[str, Any]:
        return {"preset": self.name, **self.options()}

    def __str__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"preset {self.name}" + (f" ({options})" if options else "")


@dataclass(frozen=True)
class DropOptimizer(Preset):
    """Drop tensors whose kind is ``slot`` or ``counter``, and the TF2 object graph (stale once
    entries are gone; the TF writer rebuilds one for the tensors it writes)."""

    name = "drop-optimizer"
    DROPPED: ClassVar[frozenset[Kind]] = frozenset({"slot", "counter", "object_graph"})

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        out = [e for e in entries if e.kind not in self.DROPPED]
        return out, [] if len(out) < len(entries) else ["found no optimizer state"]


@dataclass(frozen=True)
class UseEma(Preset):
    """Restore moving averages: ``v/<suffix>`` becomes ``v`` and the original ``v`` is dropped,
    as ``tf.train.ExponentialMovingAverage.variables_to_restore()`` maps them. Variables
    without a shadow stay as they are."""

    name = "use-ema"
    suffix: str = "ExponentialMovingAverage"

    def __post_init__(self) -> None:
        check_str(self.suffix, "use-ema suffix")

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        tail = "/" + self.suffix
        shadow_of = {e.name[:-len(tail)]: e for e in entries
                     if e.name.endswith(tail) and len(e.name) > len(tail)}
        names = {e.name for e in entries}
        out = []
        for e in entries:
            base = e.name[:-len(tail)] if e.name.endswith(tail) else None
            if e.name in shadow_of:
                out.append(shadow_of[e.name].renamed(e.name))  # in the original's place
            elif base is not None and shadow_of.get(base) is e:
                if base not in names:
                    out.append(e.renamed(base))
            else:
                out.append(e)
        return out, [] if shadow_of else [f"found no '*{tail}' shadow"]


@dataclass(frozen=True)
class Tf2Names(Preset):
    """TF2 object keys to readable names: the variable's ``full_name`` when the reader found
    one and it is unique, else the key without ``/.ATTRIBUTES/VARIABLE_VALUE``; slots become
    ``<variable>/<slot name>``. The object graph is dropped (it describes the old keys)."""

    name = "tf2-names"

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        kept = [e for e in entries if e.kind != "object_graph"]
        names = readable_names([(e.sources[0], e.name, e.attrs) for e in kept])
        out = [e if n is None else e.renamed(n) for e, n in zip(kept, names, strict=True)]
        found = any(e.attrs.get("full_name") or e.name.endswith(ATTR_SUFFIX) for e in kept)
        return out, [] if found or len(kept) < len(entries) else ["found no TF2 object key"]


_OUTPUT_INDEX = re.compile(r":\d+$")
# slim / tf.contrib.layers / early tf.nn.rnn_cell names for what Keras calls kernel and bias.
SLIM_NAMES = {"weights": "kernel", "biases": "bias", "depthwise_weights": "depthwise_kernel",
         "pointwise_weights": "pointwise_kernel"}


@dataclass(frozen=True)
class KerasNames(Preset):
    """TF1 variable names to Keras variable paths: drop the ``:0`` output suffix and, with
    ``slim`` (default), call slim's ``weights``/``biases`` ``kernel``/``bias`` (also inside
    the names of their optimizer slots)."""

    name = "keras-names"
    slim: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.slim, bool):
            raise RenameError(f"keras-names slim must be true or false, got {self.slim!r}")

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return each_entry(entries, self._rename, "changed no name")

    def _rename(self, e: Entry) -> Entry | None:
        name = _OUTPUT_INDEX.sub("", e.name)
        if self.slim:
            slot = SLOT_SUFFIX.search(name)  # judged after ':0' is gone
            base, tail = (name[:slot.start()], name[slot.start():]) if slot else (name, "")
            scope, sep, leaf = base.rpartition("/")
            name = scope + sep + SLIM_NAMES.get(leaf, leaf) + tail
        return e.renamed(name) if name != e.name else None


DEFAULT_CELL = r"re:(^|/)(basic_)?lstm_cell$"
# TF1 computes gates i, j, f, o; Keras i, f, c, o, where Keras's c is TF1's j.
_GATES, _ = gate_order("ijfo->ifjo")
_GATES_LABEL = "gates i,j,f,o->i,f,c,o"


@dataclass(frozen=True)
class Tf1LstmToKeras(Preset):
    """TF1 ``LSTMCell``/``BasicLSTMCell`` weights to a Keras ``LSTM``.

    Under each scope matching ``cell``, ``kernel`` [in+units, 4*units] (``weights`` in older
    TF) becomes ``kernel`` [in, 4*units] and ``recurrent_kernel`` [units, 4*units], and
    ``bias`` (``biases``) [4*units] stays ``bias``; gates are reordered from TF1's i,j,f,o to
    Keras's i,f,c,o, and ``forget_bias`` (which TF1 adds to the forget gate at run time,
    default 1.0) is added into the bias's forget block. Peepholes and projections have no
    Keras counterpart and are refused.
    """

    name = "tf1-lstm-to-keras"
    forget_bias: float = 1.0
    cell: str = DEFAULT_CELL

    def __post_init__(self) -> None:
        if not isinstance(self.forget_bias, (int, float)) or isinstance(self.forget_bias, bool):
            raise RenameError(f"forget_bias must be a number, got {self.forget_bias!r}")
        Pattern(self.cell)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        pattern = Pattern(self.cell)
        by_name = {e.name: e for e in entries}
        replaced: dict[str, list[Entry]] = {}
        for e in entries:
            scope, _, leaf = e.name.rpartition("/")
            if leaf not in ("kernel", "weights") or not scope or not pattern.match(scope):
                continue
            bias = by_name.get(f"{scope}/bias") or by_name.get(f"{scope}/biases")
            if bias is None:
                raise RenameError(f"LSTM cell {scope!r}: {e.name!r} has no bias beside it")
            for extra, what in (("w_f_diag", "peepholes"), ("projection/kernel", "a projection")):
                if f"{scope}/{extra}" in by_name:
                    raise RenameError(f"LSTM cell {scope!r} has {what} ({scope}/{extra}), "
                                      "which Keras LSTM does not support")
            units = _units(scope, e, bias)
            parts = split(e, 0, [f"{scope}/kernel", f"{scope}/recurrent_kernel"],
                          None if units is None else [-1, units])
            replaced[e.name] = [reorder(p, 1, _GATES, f"{_GATES_LABEL} axis 1") for p in parts]
            b = reorder(bias, 0, _GATES, f"{_GATES_LABEL} axis 0").renamed(f"{scope}/bias")
            if self.forget_bias:
                b = add_constant(b, self.forget_bias, 0, block=1, blocks=4)
            replaced[bias.name] = [b]
        out = [x for e in entries for x in replaced.get(e.name, [e])]
        return out, [] if replaced else [f"found no LSTM kernel under a scope matching "
                                         f"{self.cell!r}"]


def _units(scope: str, kernel: Entry, bias: Entry) -> int | None:
    if kernel.shape is None or bias.shape is None:
        return None
    units = bias.shape[0] // 4 if len(bias.shape) == 1 else 0
    if not units or bias.shape[0] % 4 or len(kernel.shape) != 2 or kernel.shape[1] != 4 * units \
            or kernel.shape[0] <= units:
        raise RenameError(f"LSTM cell {scope!r}: kernel {list(kernel.shape)} and bias "
                          f"{list(bias.shape)} are not [in+units, 4*units] and [4*units]")
    return units


PRESETS: dict[str, type[Preset]] = {
    cls.name: cls for cls in (DropOptimizer, UseEma, Tf2Names, KerasNames, Tf1LstmToKeras)
}


def preset(name: str, **options: Any) -> Preset:
    """The preset called ``name`` with ``options`` (see :data:`PRESETS`)."""
    cls = PRESETS.get(name)
    if cls is None:
        raise RenameError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise RenameError(f"preset {name}: unknown option(s) {', '.join(unknown)} "
                          f"(known: {', '.join(known) or 'none'})")
    return cls(**options)


def preset_from_table(table: Mapping[str, Any]) -> Preset:
    options = dict(table)
    return preset(check_str(options.pop("preset"), "preset"), **options)
