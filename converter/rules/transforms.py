"""Transform rules: select tensors by pattern and apply a value transform from ``ops.py``
(``cast``, ``transpose``, ``reshape``, ``merge_axes``, ``squeeze``, ``unsqueeze``, ``split``,
``concat``, ``reorder_gates``, ``add_constant``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from ..errors import RenameError
from .core import (
    Entry,
    Pattern,
    Rule,
    check_int,
    check_ints,
    check_str,
    check_strs,
    each_entry,
    expand,
)
from .ops import (
    add_constant,
    cast,
    concat,
    gate_order,
    merge_axes,
    reorder,
    reshape,
    split,
    squeeze,
    to_dtype,
    transpose,
    unsqueeze,
)


def _each(pattern: Pattern, entries: list[Entry],
          fn: Callable[[Entry, re.Match[str]], Entry | list[Entry]]
          ) -> tuple[list[Entry], list[str]]:
    return each_entry(entries, lambda e: fn(e, m) if (m := pattern.match(e.name)) else None)


@dataclass(frozen=True)
class Cast(Rule):
    """Cast tensors of dtype ``FROM`` to ``TO`` (``cast = "float32:bfloat16"``), optionally only
    those whose name matches ``match``."""

    key = "cast"
    cast: str
    match: str = "*"
    pair: tuple[np.dtype, np.dtype] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        src, sep, dst = check_str(self.cast, "cast").partition(":")
        if not sep:
            raise RenameError(f"cast {self.cast!r}: expected FROM:TO, e.g. float32:bfloat16")
        object.__setattr__(self, "pair", (to_dtype(src), to_dtype(dst)))
        Pattern(self.match)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        src, dst = self.pair
        pattern = Pattern(self.match)

        def change(e: Entry) -> Entry | None:
            if not pattern.match(e.name) or not (e.dtype is None or e.dtype == src):
                return None
            return cast(e, dst, None if e.dtype is not None else f"cast {self.cast} (if "
                        f"{dtypes.name_of(src)})")

        return each_entry(entries, change, f"no {dtypes.name_of(src)} tensor matched")

    def __str__(self) -> str:
        return f"cast {self.cast}" + ("" if self.match == "*" else f" of {self.match!r}")


@dataclass(frozen=True)
class Transpose(Rule):
    """Permute the axes of matching tensors."""

    key = "transpose"
    pattern: str
    axes: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", check_ints(self.axes, "transpose axes"))
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: transpose(e, self.axes))

    def __str__(self) -> str:
        return f"transpose {self.pattern!r} axes {list(self.axes)}"


@dataclass(frozen=True)
class Reshape(Rule):
    """Reshape matching tensors (one dimension may be -1)."""

    key = "reshape"
    pattern: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", check_ints(self.shape, "reshape shape"))
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: reshape(e, self.shape))

    def __str__(self) -> str:
        return f"reshape {self.pattern!r} to {list(self.shape)}"


@dataclass(frozen=True)
class MergeAxes(Rule):
    """Merge consecutive axes ``axes = [first, last]`` (inclusive) of matching tensors into one:
    ``[hidden, heads, head_size]`` to ``[hidden, heads * head_size]`` for any sizes."""

    key = "merge_axes"
    pattern: str
    axes: tuple[int, ...]

    def __post_init__(self) -> None:
        axes = check_ints(self.axes, "merge_axes axes")
        if len(axes) != 2:
            raise RenameError(f"merge_axes axes must be [first, last], got {list(axes)}")
        if (axes[0] < 0) == (axes[1] < 0) and axes[0] >= axes[1]:
            raise RenameError(f"merge_axes axes {list(axes)}: first must come before last")
        object.__setattr__(self, "axes", axes)
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        first, last = self.axes
        return _each(Pattern(self.pattern), entries, lambda e, m: merge_axes(e, first, last))

    def __str__(self) -> str:
        return f"merge_axes {self.pattern!r} axes {self.axes[0]}..{self.axes[1]}"


@dataclass(frozen=True)
class Squeeze(Rule):
    """Drop an axis of length 1 from matching tensors (default: the first)."""

    key = "squeeze"
    pattern: str
    axis: int = 0

    def __post_init__(self) -> None:
        check_int(self.axis, "squeeze axis")
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: squeeze(e, self.axis))

    def __str__(self) -> str:
        return f"squeeze {self.pattern!r} axis {self.axis}"


@dataclass(frozen=True)
class Unsqueeze(Rule):
    """Insert an axis of length 1 into matching tensors (default: first); undoes ``squeeze``."""

    key = "unsqueeze"
    pattern: str
    axis: int = 0

    def __post_init__(self) -> None:
        check_int(self.axis, "unsqueeze axis")
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: unsqueeze(e, self.axis))

    def __str__(self) -> str:
        return f"unsqueeze {self.pattern!r} axis {self.axis}"


@dataclass(frozen=True)
class Split(Rule):
    """Split each matching tensor along ``axis`` into parts named by the ``into`` templates
    (``\\1`` is the first ``*`` of a glob, or the first group of a ``re:`` pattern)."""

    key = "split"
    pattern: str
    into: tuple[str, ...]
    axis: int = -1
    sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "into", check_strs(self.into, "split into"))
        check_int(self.axis, "split axis")
        if self.sizes is not None:
            object.__setattr__(self, "sizes", check_ints(self.sizes, "split sizes"))
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: split(
            e, self.axis, [expand(m, t) for t in self.into], self.sizes))

    def __str__(self) -> str:
        return f"split {self.pattern!r} into " + ", ".join(repr(t) for t in self.into)


@dataclass(frozen=True)
class Concat(Rule):
    """Join tensors along ``axis``: for each name that the ``into`` template gives, one match of
    every part pattern, in the order of ``parts``. Declared parts are not a collision."""

    key = "concat"
    parts: tuple[str, ...]
    into: str
    axis: int = -1

    def __post_init__(self) -> None:
        parts = check_strs(self.parts, "concat parts")
        if len(parts) < 2:
            raise RenameError("concat needs at least two part patterns")
        object.__setattr__(self, "parts", parts)
        check_str(self.into, "concat into")
        check_int(self.axis, "concat axis")
        for p in parts:
            Pattern(p)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        patterns = [Pattern(p) for p in self.parts]
        groups: dict[str, dict[int, Entry]] = {}
        first_of: dict[int, str] = {}  # id(entry) of a group's first part -> target
        for e in entries:
            for k, p in enumerate(patterns):
                m = p.match(e.name)
                if m is None:
                    continue
                target = expand(m, self.into)
                group = groups.setdefault(target, {})
                if k in group:
                    raise RenameError(f"{group[k].name!r} and {e.name!r} both match part "
                                      f"{self.parts[k]!r} of {target!r}")
                if not group:
                    first_of[id(e)] = target
                group[k] = e
                break
        for target, group in groups.items():
            missing = [self.parts[k] for k in range(len(patterns)) if k not in group]
            if missing:
                found = ", ".join(repr(e.name) for e in group.values())
                raise RenameError(f"{target!r}: no tensor for part(s) "
                                  f"{', '.join(map(repr, missing))} (found {found})")
        used = {id(e) for group in groups.values() for e in group.values()}
        out = []
        for e in entries:
            if id(e) in first_of:
                group = groups[first_of[id(e)]]
                out.append(concat([group[k] for k in range(len(patterns))], self.axis,
                                  first_of[id(e)]))
            elif id(e) not in used:
                out.append(e)
        return out, [] if groups else ["matched nothing"]

    def __str__(self) -> str:
        return "concat " + " + ".join(repr(p) for p in self.parts) + f" into {self.into!r}"


@dataclass(frozen=True)
class ReorderGates(Rule):
    """Reorder equal blocks (gates) along ``axis``: ``order = "ijfo->ifjo"``."""

    key = "reorder_gates"
    pattern: str
    order: str
    axis: int = -1

    def __post_init__(self) -> None:
        gate_order(check_str(self.order, "reorder_gates order"))
        check_int(self.axis, "reorder_gates axis")
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        perm, label = gate_order(self.order)
        return _each(Pattern(self.pattern), entries,
                     lambda e, m: reorder(e, self.axis, perm, f"{label} axis {self.axis}"))

    def __str__(self) -> str:
        return f"reorder_gates {self.pattern!r} {self.order}"


@dataclass(frozen=True)
class AddConstant(Rule):
    """Add ``value`` to matching tensors, or to block ``block`` of ``blocks`` along ``axis``."""

    key = "add_constant"
    pattern: str
    value: float
    axis: int = -1
    block: int | None = None
    blocks: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise RenameError(f"add_constant value must be a number, got {self.value!r}")
        check_int(self.axis, "add_constant axis")
        for name in ("block", "blocks"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), f"add_constant {name}")
        if self.block is not None and self.blocks is None:
            raise RenameError("add_constant: 'block' needs 'blocks' (how many equal blocks)")
        Pattern(self.pattern)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return _each(Pattern(self.pattern), entries, lambda e, m: add_constant(
            e, self.value, self.axis, self.block, self.blocks))

    def __str__(self) -> str:
        return f"add_constant {self.value} to {self.pattern!r}"
