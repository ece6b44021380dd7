"""The scope tree of a checkpoint: tensors placed by their names' scopes, with counts per scope
and optimizer slots folded into their variables.

This module knows tensors only by what the index says of them (:class:`TensorLike`: kind,
attrs, dtype name, shape, size, bytes), reads no values and imports nothing that knows
:class:`converter.tensor.Checkpoint`, so the checkpoint itself can show its tree
(:mod:`converter.display`). :func:`converter.inspection.tree` adds the name filter.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import tfnames


class TensorLike(Protocol):
    """What the tree needs of a tensor (:class:`converter.tensor.Tensor` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def attrs(self) -> Mapping[str, str]: ...
    @property
    def dtype_name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...


def readable_names(tensors: Mapping[str, TensorLike]) -> dict[str, str]:
    """``{key: readable name}`` for a TF2 object-based checkpoint (see
    :func:`converter.inspection.readable_names`); empty for one that is not object-based."""
    if not any(t.kind == "object_graph" or "full_name" in t.attrs for t in tensors.values()):
        return {}
    keys = [k for k, t in tensors.items() if t.kind != "object_graph"]
    names = tfnames.readable_names([(k, k, tensors[k].attrs) for k in keys])
    return {k: n for k, n in zip(keys, names, strict=True) if n is not None and n != k}


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

    def __init__(self, ckpt: Mapping[str, TensorLike]) -> None:
        self.keys = {k for k, t in ckpt.items() if t.kind != "slot"}
        full = Counter(ckpt[k].attrs.get("full_name", "") for k in self.keys)
        self.by_full = {f: k for k in self.keys
                        if (f := ckpt[k].attrs.get("full_name", "")) and full[f] == 1}
        flat = Counter(f.replace("/", "_") for f in self.by_full)
        self.by_flat = {f.replace("/", "_"): k for f, k in self.by_full.items()
                        if flat[f.replace("/", "_")] == 1}


def _slot_owner(name: str, tensor: TensorLike, variables: _Variables
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



def build(tensors: Mapping[str, TensorLike], depth: int | None = None, *,
          names: Mapping[str, str] | None = None,
          keep: Callable[[str, str], bool] | None = None, fold_slots: bool = True,
          rows: int | None = None) -> Node:
    """The scope tree of ``tensors``.

    Args:
        depth: keep scopes down to this depth (root 0); what lies deeper is counted in its
            ancestor at that depth. None: all.
        names: where each key is placed (a key not in it: under its own name); default the
            readable names of a TF2 object-based checkpoint (:func:`readable_names`).
        keep: ``keep(key, placed name)`` says which tensors count; the slots of a variable
            kept are kept too. None: all.
        fold_slots: count optimizer slots in their variable (:attr:`Node.slots`) rather than
            placing them as tensors of their own.
        rows: only as deep as a view of this many scopes, breadth first, can reach: down to
            the first depth at which the scopes above it number at least ``rows`` (a view of
            20 000 tensors then builds a few hundred nodes, not 40 000).
    """
    placed = readable_names(tensors) if names is None else names
    shown = {k: placed.get(k, k) for k in tensors}
    owners: dict[str, tuple[str, str, str | None]] = {}
    if fold_slots:
        variables = _Variables(tensors)
        owners = {k: o for k, t in tensors.items()
                  if (o := _slot_owner(k, t, variables)) is not None}
    kept: set[str] | None = None
    if keep is not None:
        kept = {k for k in tensors if keep(k, shown[k])}
        kept |= {k for k, (var, _, _) in owners.items() if var in kept}
    sep = scope_separator(shown.values())
    if rows is not None:
        depth = _reach([shown[k] for k in tensors if k not in owners
                        and (kept is None or k in kept)], sep, rows, depth)
    root = Node("", "")

    def place(path: str) -> list[Node]:
        chain = [root]
        for part in path.split(sep)[:depth]:
            chain.append(chain[-1].child(part, sep))
        return chain

    for key, t in tensors.items():
        if key in owners or (kept is not None and key not in kept):
            continue
        chain = place(shown[key])
        dt = t.dtype_name
        for node in chain:
            node.tensors += 1
            node.params += t.size
            node.nbytes += t.nbytes
            node.dtypes[dt] = node.dtypes.get(dt, 0) + t.size
        if depth is None or len(shown[key].split(sep)) <= depth:
            chain[-1].tensor = key
    for key, (var, slot, optimizer) in owners.items():
        if kept is not None and key not in kept:
            continue
        t = tensors[key]
        chain = place(shown[var])
        for node in chain:
            node.slot_params += t.size
            node.slot_nbytes += t.nbytes
        if chain[-1].tensor == var:
            chain[-1].slots.append(slot)
            chain[-1].optimizers.append(optimizer)
    return root


def _reach(paths: list[str], sep: str, rows: int, depth: int | None) -> int | None:
    """The depth at which the scopes of ``paths`` down to it first number ``rows`` (capped
    at ``depth``), or ``depth`` when they never do."""
    parts = [p.split(sep) for p in paths]
    seen = 0
    level = 1
    while depth is None or level < depth:
        deep = [p for p in parts if len(p) >= level]
        if not deep:
            return depth
        seen += len({tuple(p[:level]) for p in deep})
        if seen >= rows:
            return level
        parts = deep
        level += 1
    return depth


def dtype_summary(counts: Mapping[str, int]) -> str:
    """``float32`` or ``float32, int64`` (most elements first)."""
    return ", ".join(d for d, _ in Counter(counts).most_common()) or "-"
