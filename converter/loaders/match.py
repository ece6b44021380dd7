"""Pairing checkpoint tensors with model variables, the same way for every kind of model.

Stages, in order, each pairing reported with how it was made:

1. ``name`` — the exact variable path (also with TF's ``:0`` and TF2's
   ``/.ATTRIBUTES/VARIABLE_VALUE`` stripped), or where a Keras 3 weights file keeps it: by
   layer names (``inner/dense/vars/0``), then, for what is left, by position
   (``layers/sequential/layers/dense/vars/0``);
2. ``object graph`` — the ``full_name`` a TF2 checkpoint records for each variable;
3. ``scope suffix`` — layer name + weight name: the longest unambiguous ``/``-boundary suffix
   (``sequential/dense/kernel`` in a Keras model against ``dense/kernel`` in a TF1
   checkpoint). Auto-named TF1 variables (``Variable``, ``Variable_1``) whose names matched
   with swapped shapes are then re-paired by shape;
4. ``layer structure`` — when the names leave a variable unpaired or misfit and the source
   has a layer structure (a tf.keras model's TF2 object graph, ``structure.py``) that pairs
   every layer of the model, layer for layer and weight for weight, and fits at least as many
   variables as the names did, the structure decides every pairing (as tf.keras's own
   ``load_weights`` does; what does not fit is reported as a shape mismatch, never
   assigned); pairings the names agree with keep their label;
5. ``shape (names misfit)`` — when names paired a variable with a tensor of another shape
   (auto names shift when a model grows a layer): each variable left without a fitting tensor
   takes the one left-over tensor of its shape and dtype that fits no other such variable;
6. ``shape (only candidate)`` — when exactly one variable is left and exactly one unused
   checkpoint variable has its shape and dtype;
7. ``order+shape`` with ``match="order"``: what remains, variables in creation order, each
   with the first unused tensor of its shape and dtype in the tensors' creation order
   (:mod:`.order`: a ``.meta``, the source's own order, numbered names — never a bundle's
   sorted keys); several candidates that nothing orders are an error listing them.

A name that picks several tensors is an error listing them; tensors of a SavedModel's metrics
(``keras_api/...``) are ignored like optimizer state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from ..errors import LoadError, option
from ..tensor import Checkpoint, Tensor
from ..tfnames import ATTR_SUFFIX, OUTPUT_SUFFIX
from .order import first
from .report import LoadReport, Misfit, Pairing
from .structure import Leaf, align

AUTO_NAME = re.compile(r"(^|/)Variable(_\d+)?$")
STRUCTURE = "layer structure"
ONLY = "shape (only candidate)"
SHAPE = "shape (names misfit)"


@dataclass
class Target:
    """A model variable: its reported name, the names it may go by, shape and dtype.

    ``keys`` and ``file_keys`` count only as exact names, never as suffixes: where a Keras 3
    weights file keeps the variable, by layer names (``inner/dense/vars/0``) and by position
    (``layers/sequential/layers/dense/vars/0``). Positions shift when a model changes, so file
    keys are tried only after every other exact name.
    """

    name: str
    aliases: Sequence[str]
    shape: tuple[int, ...]
    dtype: np.dtype
    keys: Sequence[str] = field(default_factory=tuple)
    file_keys: Sequence[str] = field(default_factory=tuple)


def forms(name: str) -> list[str]:
    out = [name]
    for suffix in (ATTR_SUFFIX, OUTPUT_SUFFIX):
        if name.endswith(suffix):
            out.append(name[: -len(suffix)])
    return out


def _index(names: list[str], extra: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name in names:
        for form in forms(name) + (extra or {}).get(name, []):
            index.setdefault(form, [])
            if name not in index[form]:
                index[form].append(name)
    return index


def _suffixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def _is_metric(tensor: Tensor) -> bool:
    # tf.keras SavedModels carry the compiled metrics' state (total, count) under keras_api.
    path = tensor.attrs.get("object_path", "")
    return path.startswith("keras_api/") or "/keras_api/" in path


def pair(targets: list[Target], ckpt: Checkpoint, *, match: str = "name",
         layers: tuple[list[Leaf], list[Leaf]] | None = None, state: bool = False,
         order: dict[str, int] | None = None) -> LoadReport:
    """Decide which tensor goes to which variable; nothing is read or assigned here.

    ``targets`` come in creation order. ``layers`` is the checkpoint's and the model's layer
    structure (ids: tensor names and target names), for the ``layer structure`` stage.
    ``state``: the targets include optimizer state and counters (a TF1 graph's slots,
    ``beta1_power``, ``global_step``), so those tensors pair too; left over, they are still
    ``ignored``. ``order``: the tensors' creation order when known (:mod:`.order`).
    """
    if match not in ("name", "order"):
        raise LoadError(f"match must be 'name' or 'order', not {match!r}")
    report = LoadReport()
    kinds = ("variable", "other", "slot", "counter") if state else ("variable", "other")
    usable = [n for n, t in ckpt.items() if t.kind in kinds and not _is_metric(t)]
    usable_set = set(usable)
    report.ignored = [n for n in ckpt if n not in usable_set]
    free = dict.fromkeys(usable)  # ordered set of unassigned tensors
    chosen: dict[str, tuple[str, str]] = {}  # target -> (tensor, how)

    keras_keys = {n: [ckpt[n].attrs[k] for k in ("keras_key", "keras_name")
                      if ckpt[n].attrs.get(k)] for n in usable}
    by_name = _index(usable, keras_keys)
    by_full = _index([ckpt[n].attrs.get("full_name", "") for n in usable])
    full_to_key = {ckpt[n].attrs.get("full_name"): n for n in usable if ckpt[n].attrs.get(
        "full_name")}

    def take(target: Target, candidates: list[str], how: str) -> bool:
        candidates = [c for c in candidates if c in free]
        if not candidates:
            return False
        if len(candidates) > 1:
            raise LoadError(f"variable {target.name!r} matches several checkpoint tensors "
                            f"({how}): {', '.join(candidates)}; choose with a rename rule "
                            f"({option('rename')})")
        chosen[target.name] = (candidates[0], how)
        del free[candidates[0]]
        return True

    pending = list(targets)
    for stage in ("name", "file key", "object graph", "scope suffix"):
        rest = []
        for target in pending:
            found = False
            names = {"name": [*target.aliases, *target.keys],
                     "file key": target.file_keys}.get(stage, target.aliases)
            for alias in names:
                if stage in ("name", "file key"):
                    found = take(target, by_name.get(alias, []), "name")
                elif stage == "object graph":
                    found = take(target, [full_to_key[f] for f in by_full.get(alias, [])
                                          if f in full_to_key], "object graph")
                else:
                    found = _take_suffix(target, alias, free, take)
                if found:
                    break
            if not found:
                rest.append(target)
        pending = rest

    _repair_auto_names(targets, ckpt, chosen)

    def fitting(pairs: dict[str, str]) -> int:
        return sum(1 for t in targets if t.name in pairs and _fits(ckpt[pairs[t.name]], t))

    by_names = {t: c[0] for t, c in chosen.items()}
    structured = False
    if layers is not None and fitting(by_names) < len(targets):
        by_structure = _structure(targets, layers, usable)
        if by_structure is not None and fitting(by_structure) >= fitting(by_names):
            for target in targets:
                tensor = by_structure[target.name]
                same = chosen.get(target.name, ("", ""))[0] == tensor
                chosen[target.name] = (tensor, chosen[target.name][1] if same else STRUCTURE)
            free = {n: None for n in usable if n not in set(by_structure.values())}
            pending = []
            structured = True  # the structure's misfits are reported, never re-paired

    if not structured:
        pending = _repair_misfits(targets, pending, ckpt, chosen, free)

    variables = [n for n in free if ckpt[n].kind == "variable"]
    if len(pending) == 1:
        fits = [n for n in variables if _fits(ckpt[n], pending[0])]
        if len(fits) == 1:
            chosen[pending[0].name] = (fits[0], ONLY)
            del free[fits[0]]
            pending = []

    if match == "order":
        remaining = [n for n in free if ckpt[n].kind == "variable"]
        for target in list(pending):
            fits = [n for n in remaining if _fits(ckpt[n], target)]
            if not fits:
                continue
            n = fits[0] if len(fits) == 1 else first(
                fits, order, target.name, lambda c: f"{c} {list(ckpt[c].shape)}")
            chosen[target.name] = (n, "order+shape")
            del free[n]
            remaining.remove(n)
            pending.remove(target)

    for target in targets:
        if target.name not in chosen:
            report.missing.append(target.name)
            continue
        tensor_name, how = chosen[target.name]
        tensor = ckpt[tensor_name]
        if not _fits(tensor, target):
            report.shape_mismatch.append(Misfit(
                target.name, tensor_name, list(target.shape), list(tensor.shape),
                dtypes.name_of(target.dtype), dtypes.name_of(tensor.dtype)))
            continue
        report.matched.append(target.name)
        report.pairings.append(Pairing(target.name, tensor_name, how))
    # Optimizer state nothing took is not the model's business (an inference graph, a Keras
    # model): it stays ignored, as it is when state does not pair at all.
    report.unexpected = [n for n in free if ckpt[n].kind in ("variable", "other")]
    report.ignored += [n for n in free if ckpt[n].kind not in ("variable", "other")]
    return report


def _repair_misfits(targets: list[Target], pending: list[Target], ckpt: Checkpoint,
                    chosen: dict[str, tuple[str, str]], free: dict[str, None]) -> list[Target]:
    """Auto names shift when a model grows a layer (the old ``dense_2`` is the new
    ``dense_3``), so a name can pair a variable with a tensor of another shape while the
    tensor it wants sits elsewhere. Where the names misfit, pair each variable left without a
    fitting tensor with the one tensor of its shape among those left over, if that tensor fits
    no other such variable. Returns the variables still without a tensor."""
    misfit = [t for t in targets if t.name in chosen and not _fits(ckpt[chosen[t.name][0]], t)]
    if not misfit:
        return pending
    open_targets = misfit + pending
    pool = [n for n in free if ckpt[n].kind == "variable"] + [chosen[t.name][0] for t in misfit]
    wants = {t.name: [n for n in pool if _fits(ckpt[n], t)] for t in open_targets}
    taken: dict[str, str] = {}
    for t in open_targets:
        fits = wants[t.name]
        if len(fits) == 1 and sum(fits[0] in w for w in wants.values()) == 1:
            taken[t.name] = fits[0]
    if not taken:
        return pending
    moved = set(taken.values())
    for t in misfit:
        old = chosen[t.name][0]
        if old in moved and t.name not in taken:
            del chosen[t.name]  # its tensor went where it fits: this variable has none now
        elif old not in moved and t.name in taken:
            free[old] = None  # given up for a tensor that fits: nothing else took it
    for name, tensor in taken.items():
        chosen[name] = (tensor, SHAPE)
        free.pop(tensor, None)
    return [t for t in targets if t.name not in chosen]


def _structure(targets: list[Target], layers: tuple[list[Leaf], list[Leaf]],
               usable: list[str]) -> dict[str, str] | None:
    """The structural pairing of every target, or None when it does not cover them all."""
    pairing = align(layers[0], layers[1])
    if pairing is None or set(pairing) != {t.name for t in targets} or \
            not set(pairing.values()) <= set(usable) or \
            len(set(pairing.values())) != len(pairing):
        return None
    return pairing


def _fits(tensor: Tensor, target: Target) -> bool:
    return tuple(tensor.shape) == tuple(target.shape) and _dtype_fits(tensor, target)


def _dtype_fits(tensor: Tensor, target: Target) -> bool:
    return tensor.dtype == target.dtype


def _take_suffix(target: Target, alias: str, free: dict, take) -> bool:
    # The longest suffix of the variable's name that is a whole checkpoint name, or a
    # checkpoint name ending in the whole variable name.
    for suffix in _suffixes(alias):
        hits = [n for n in free if suffix in forms(n)]
        if hits:
            return take(target, hits, "scope suffix")
    hits = [n for n in free if any(f.endswith("/" + alias) for f in forms(n))]
    return take(target, hits, "scope suffix") if hits else False


def _repair_auto_names(targets: list[Target], ckpt: Checkpoint,
                       chosen: dict[str, tuple[str, str]]) -> None:
    """TF1 names unnamed variables by creation order; when the order changed, ``Variable`` and
    ``Variable_1`` match by name with each other's shapes. Re-pair those by shape when the
    shapes decide it uniquely."""
    scope_of = {t.name: t.name.rsplit("/", 1)[0] if "/" in t.name else "" for t in targets}
    by_scope: dict[str, list[Target]] = {}
    for t in targets:
        if AUTO_NAME.search(t.name) and t.name in chosen:
            by_scope.setdefault(scope_of[t.name], []).append(t)
    for group in by_scope.values():
        wrong = [t for t in group if tuple(ckpt[chosen[t.name][0]].shape) != tuple(t.shape)]
        if not wrong:
            continue
        pool = [chosen[t.name][0] for t in wrong]
        for t in wrong:
            fits = [n for n in pool if tuple(ckpt[n].shape) == tuple(t.shape)]
            if len(fits) == 1:
                chosen[t.name] = (fits[0], "shape (auto-named variables in another order)")
                pool.remove(fits[0])
