"""Pairing checkpoint tensors with model variables, the same way for every kind of model.

Stages, in order, each pairing reported with how it was made: the exact name (also with TF's
``:0`` and TF2's ``/.ATTRIBUTES/VARIABLE_VALUE`` stripped); the object graph's ``full_name`` of
a TF2 checkpoint; the longest unambiguous ``/``-boundary suffix (``sequential/dense/kernel`` in
a Keras model against ``dense/kernel`` in a TF1 checkpoint); auto-named TF1 variables
(``Variable``, ``Variable_1``) whose names matched with swapped shapes are re-paired by shape;
and with ``match="order"``, what remains is paired in order where shapes agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..errors import LoadError
from ..tensor import Checkpoint, Tensor
from .report import LoadReport, Misfit, Pairing

ATTR = "/.ATTRIBUTES/VARIABLE_VALUE"
AUTO_NAME = re.compile(r"(^|/)Variable(_\d+)?$")


@dataclass
class Target:
    """A model variable: its reported name, the names it may go by, shape and dtype."""

    name: str
    aliases: Sequence[str]
    shape: tuple[int, ...]
    dtype: np.dtype


def forms(name: str) -> list[str]:
    out = [name]
    for suffix in (ATTR, ":0"):
        if name.endswith(suffix):
            out.append(name[: -len(suffix)])
    return out


def _index(names: list[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name in names:
        for form in forms(name):
            index.setdefault(form, [])
            if name not in index[form]:
                index[form].append(name)
    return index


def _suffixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def pair(targets: list[Target], ckpt: Checkpoint, *, match: str = "name") -> LoadReport:
    """Decide which tensor goes to which variable; nothing is read or assigned here."""
    if match not in ("name", "order"):
        raise LoadError(f"match must be 'name' or 'order', not {match!r}")
    report = LoadReport()
    usable = [n for n, t in ckpt.items() if t.kind in ("variable", "other")]
    report.ignored = [n for n, t in ckpt.items() if t.kind not in ("variable", "other")]
    free = dict.fromkeys(usable)  # ordered set of unassigned tensors
    chosen: dict[str, tuple[str, str]] = {}  # target -> (tensor, how)

    by_name = _index(usable)
    by_full = _index([ckpt[n].attrs.get("full_name", "") for n in usable])
    full_to_key = {ckpt[n].attrs.get("full_name"): n for n in usable if ckpt[n].attrs.get(
        "full_name")}

    def take(target: Target, candidates: list[str], how: str) -> bool:
        candidates = [c for c in candidates if c in free]
        if not candidates:
            return False
        if len(candidates) > 1:
            raise LoadError(f"variable {target.name!r} matches several checkpoint tensors "
                            f"({how}): {', '.join(candidates)}; add a rename rule to choose")
        chosen[target.name] = (candidates[0], how)
        del free[candidates[0]]
        return True

    pending = list(targets)
    for stage in ("name", "object graph", "scope suffix"):
        rest = []
        for target in pending:
            found = False
            for alias in target.aliases:
                if stage == "name":
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

    if match == "order":
        remaining = [n for n in free if ckpt[n].kind == "variable"]
        for target in list(pending):
            for n in remaining:
                if tuple(ckpt[n].shape) == tuple(target.shape):
                    chosen[target.name] = (n, "order+shape")
                    del free[n]
                    remaining.remove(n)
                    pending.remove(target)
                    break

    for target in targets:
        if target.name not in chosen:
            report.missing.append(target.name)
            continue
        tensor_name, how = chosen[target.name]
        tensor = ckpt[tensor_name]
        if tuple(tensor.shape) != tuple(target.shape) or not _dtype_fits(tensor, target):
            report.shape_mismatch.append(Misfit(
                target.name, tensor_name, list(target.shape), list(tensor.shape),
                dtypes.name_of(target.dtype), dtypes.name_of(tensor.dtype)))
            continue
        report.matched.append(target.name)
        report.pairings.append(Pairing(target.name, tensor_name, how))
    report.unexpected = list(free)
    return report


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
