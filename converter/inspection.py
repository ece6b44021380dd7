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
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes
from .errors import CorruptionError
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


# --------------------------------------------------------------------------- readable names


def readable_names(checkpoint: Checkpoint | Mapping[str, Any]) -> dict[str, str]:
    """``{key: readable name}`` for a TF2 object-based checkpoint: the names ``--preset
    tf2-names`` gives (the object graph's ``full_name``, slots as ``<variable>/<slot>``), only
    for keys that it renames; empty for a checkpoint that is not object-based."""
    from .rules.core import Entry
    from .rules.presets import Tf2Names

    ckpt = as_checkpoint(checkpoint)
    if not any(t.kind == "object_graph" or "full_name" in t.attrs for t in ckpt.values()):
        return {}
    entries, _ = Tf2Names().run([Entry.of_tensor(n, t) for n, t in ckpt.items()])
    return {e.sources[0]: e.name for e in entries if e.name != e.sources[0]}


# --------------------------------------------------------------------------- the scope tree


@dataclass
class Node:
    """One scope (or variable) of the tree.

    Attributes:
        name: the last part of the path (``kernel``); ``""`` for the root.
        path: the scope's full name (``dense/kernel``).
        tensors: tensors under it, folded optimizer slots not included.
        params: elements of those tensors.
        nbytes: their bytes.
        dtypes: ``{dtype name: elements}`` of those tensors.
        slots: names of the optimizer slots folded into this variable (a leaf), e.g.
            ``["Adam", "Adam_1"]`` or ``["m", "v"]``.
        optimizers: for each slot, the optimizer's name where the checkpoint tells it
            (``Adam``), else None.
        slot_params, slot_nbytes: elements and bytes of optimizer slots folded in anywhere
            under this node.
        tensor: the raw key of the tensor this node is, if it is one (a name may be both a
            tensor and a scope: TF1 ``dense/kernel`` under ``dense/kernel/Adam``).
        children: sub-scopes by name, in first-seen order.
    """

    name: str
    path: str
    tensors: int = 0
    params: int = 0
    nbytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    slots: list[str] = field(default_factory=list)
    optimizers: list[str | None] = field(default_factory=list)
    slot_params: int = 0
    slot_nbytes: int = 0
    tensor: str | None = None
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str, sep: str) -> Node:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Node(name, f"{self.path}{sep}{name}" if self.path
                                              else name)
        return node

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """``(depth, node)`` for this node and every node under it, parents first."""
        yield depth, self
        for c in self.children.values():
            yield from c.walk(depth + 1)

    def slot_label(self) -> str:
        """``+2 Adam slots`` (TF1 ``Adam``, ``Adam_1``), ``+2 Adam slots (m, v)``, ``+2 slots
        (m, v)``, or ``""`` without slots."""
        if not self.slots:
            return ""
        n = len(self.slots)
        opts = set(self.optimizers)
        opt = opts.pop() if len(opts) == 1 else None
        names = "" if opt is not None and all(s.startswith(opt) for s in self.slots) \
            else f" ({', '.join(self.slots)})"
        return f"+{n} {opt + ' ' if opt else ''}slot{'s' if n > 1 else ''}{names}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": self.path, "tensors": self.tensors,
                               "params": self.params, "nbytes": self.nbytes,
                               "dtypes": dict(self.dtypes)}
        if self.tensor is not None:
            out["tensor"] = self.tensor
        if self.slots:
            out["slots"] = list(self.slots)
        if self.slot_params or self.slot_nbytes:
            out.update(slot_params=self.slot_params, slot_nbytes=self.slot_nbytes)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children.values()]
        return out


def scope_separator(names: Iterable[str]) -> str:
    """``/`` when some name has one (TF, Keras), else ``.`` (PyTorch / Hugging Face names)."""
    return "/" if any("/" in n for n in names) else "."


class _Variables:
    """The checkpoint's non-slot tensors, looked up the ways optimizers name them."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.keys = {k for k, t in ckpt.items() if t.kind != "slot"}
        full = Counter(ckpt[k].attrs.get("full_name", "") for k in self.keys)
        self.by_full = {f: k for k in self.keys
                        if (f := ckpt[k].attrs.get("full_name", "")) and full[f] == 1}
        flat = Counter(f.replace("/", "_") for f in self.by_full)
        self.by_flat = {f.replace("/", "_"): k for f, k in self.by_full.items()
                        if flat[f.replace("/", "_")] == 1}


def _slot_owner(name: str, tensor: Tensor, variables: _Variables
                ) -> tuple[str, str, str | None] | None:
    """``(variable key, slot name, optimizer name or None)`` of an optimizer slot whose
    variable is in the checkpoint, else None.

    - TF2 ``.OPTIMIZER_SLOT`` entries name their variable (``attrs["slot_of"]``).
    - tf-keras optimizers (2.11+) keep slots as ``optimizer/_variables/N`` whose ``full_name``
      is ``Adam/m/dense/kernel``: optimizer, slot, the variable's ``full_name``.
    - Keras 3 writes ``adam/sequential_dense_kernel_momentum``: the variable's path with ``_``
      for ``/``, then the slot name.
    - A TF1 slot is its variable's name plus a suffix (``dense/kernel/Adam_1``): the longest
      such prefix that is a variable; the optimizer is the suffix without ``_N``.
    """
    if tensor.kind != "slot":
        return None
    of = tensor.attrs.get("slot_of")
    if of:
        slot = tensor.attrs.get("slot_name") or name.rsplit("/", 1)[-1]
        return (of, slot, None) if of in variables.keys else None
    full = tensor.attrs.get("full_name")
    if full:
        opt, _, rest = full.partition("/")
        slot, _, var = rest.partition("/")
        if var in variables.by_full:
            return variables.by_full[var], slot, opt
        cut = rest.rfind("_")
        while cut > 0:
            if rest[:cut] in variables.by_flat:
                return variables.by_flat[rest[:cut]], rest[cut + 1:], opt
            cut = rest.rfind("_", 0, cut)
        return None
    head = name
    while "/" in head:
        head, _, _ = head.rpartition("/")
        if head in variables.keys:
            slot = name[len(head) + 1:]
            return head, slot, re.sub(r"_\d+$", "", slot)
    return None


def tree(checkpoint: Checkpoint | Mapping[str, Any], depth: int | None = None, *,
         filter: str | None = None, readable: bool = True) -> Node:
    """The checkpoint's scopes as a tree, with counts per scope and optimizer slots folded
    into their variables.

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

    ckpt = as_checkpoint(checkpoint)
    names = readable_names(ckpt) if readable else {}
    shown = {k: names.get(k, k) for k in ckpt}
    variables = _Variables(ckpt)
    owners = {k: o for k, t in ckpt.items() if (o := _slot_owner(k, t, variables)) is not None}
    keep: set[str] | None = None
    if filter is not None:
        pattern = Pattern(filter)
        keep = {k for k in ckpt if pattern.match(k) or pattern.match(shown[k])}
        keep |= {k for k, (var, _, _) in owners.items() if var in keep}
    sep = scope_separator(shown.values())
    root = Node("", "")

    def place(path: str) -> list[Node]:
        chain = [root]
        for part in path.split(sep)[:depth]:
            chain.append(chain[-1].child(part, sep))
        return chain

    for key, t in ckpt.items():
        if key in owners or (keep is not None and key not in keep):
            continue
        chain = place(shown[key])
        dt = dtypes.name_of(t.dtype)
        for node in chain:
            node.tensors += 1
            node.params += t.size
            node.nbytes += t.nbytes
            node.dtypes[dt] = node.dtypes.get(dt, 0) + t.size
        if depth is None or len(shown[key].split(sep)) <= depth:
            chain[-1].tensor = key
    for key, (var, slot, optimizer) in owners.items():
        if keep is not None and key not in keep:
            continue
        t = ckpt[key]
        chain = place(shown[var])
        for node in chain:
            node.slot_params += t.size
            node.slot_nbytes += t.nbytes
        if chain[-1].tensor == var:
            chain[-1].slots.append(slot)
            chain[-1].optimizers.append(optimizer)
    return root


def nonfinite(all_stats: Mapping[str, Stats]) -> list[str]:
    """Names of the tensors with a NaN or ±Inf, in order."""
    return [n for n, s in all_stats.items() if s.nonfinite]


def dtype_summary(counts: Mapping[str, int]) -> str:
    """``float32`` or ``float32, int64`` (most elements first)."""
    return ", ".join(d for d, _ in Counter(counts).most_common()) or "-"
