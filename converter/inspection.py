"""Looking inside a checkpoint: value statistics (computed in :mod:`converter.tensor_stats`),
the scope tree and readable TF2 names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import dtypes
from .tensor import Checkpoint, Tensor, as_checkpoint
from .tensor_stats import Stats, nonfinite, stats, stats_all, value_kind

__all__ = ["Node", "Stats", "dtype_summary", "nonfinite", "readable_names", "scope_separator",
           "stats", "stats_all", "tree", "value_kind"]

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


def dtype_summary(counts: Mapping[str, int]) -> str:
    """``float32`` or ``float32, int64`` (most elements first)."""
    return ", ".join(d for d, _ in Counter(counts).most_common()) or "-"
