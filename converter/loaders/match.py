"""Pairing checkpoint tensors with model variables, the same way for every kind of model.

Stages (:data:`STAGES`, in order), each pairing labelled with how it was made
(:class:`.report.How`):

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
6. ``shape (frozen graph)`` and ``layer name + shape (frozen graph)`` — for the constants of
   a TF2 frozen graph, which are named after the ops that read the variables
   (``sequential/dense/MatMul/ReadVariableOp/resource``, ``attrs["named_after"] ==
   "reader"``, :mod:`converter.formats.graphdef`): a shape and dtype that one variable left
   and one such constant have pair them; among several variables and as many constants of
   one shape and dtype, each constant whose name holds the layer of exactly one of the
   variables (``/dense/`` for ``dense/bias``) goes to it, when that pairs all of them one to
   one. Anything else about them is left unpaired: their names are not the variables' and
   their order is not the order the variables were created in;
7. ``shape (only candidate)`` — when exactly one variable is left and exactly one unused
   checkpoint variable has its shape and dtype;
8. ``order+shape`` with ``match="order"``: what remains, variables in creation order, each
   with the first unused tensor of its shape and dtype in the tensors' creation order
   (:mod:`.order`: a ``.meta``, the source's own order, numbered names — never a bundle's
   sorted keys); several candidates that nothing orders are an error listing them, and so are
   a frozen graph's constants named after their readers that the shapes do not decide.

A name that picks several tensors is an error listing them; tensors of a SavedModel's metrics
(``keras_api/...``) are ignored like optimizer state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from ..errors import LoadError, option
from ..tensor import Checkpoint, Tensor
from ..tfnames import ATTR_SUFFIX, OUTPUT_SUFFIX
from .order import first
from .report import How, LoadReport, Misfit, Pairing
from .structure import Leaf, align

AUTO_NAME = re.compile(r"(^|/)Variable(_\d+)?$")


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


def _index(names: Iterable[str], extra: dict[str, list[str]] | None = None
           ) -> dict[str, list[str]]:
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


def unexpected_if_left(tensor: Tensor) -> bool:
    """Whether a tensor no variable took is unexpected (else ignored): model weights are,
    optimizer state, object graphs and a frozen graph's constants that were never variables
    (an epsilon, a shape) are not."""
    return tensor.kind in ("variable", "other") and tensor.attrs.get("constant") != "graph"


def _reader_named(tensor: Tensor) -> bool:
    return tensor.attrs.get("named_after") == "reader"


def _fits(tensor: Tensor, target: Target) -> bool:
    return tuple(tensor.shape) == tuple(target.shape) and tensor.dtype == target.dtype


class _Pairing:
    """The pairing under way: what each stage reads and narrows down."""

    def __init__(self, targets: list[Target], ckpt: Checkpoint, *, match: str,
                 layers: tuple[list[Leaf], list[Leaf]] | None, state: bool,
                 order: dict[str, int] | None) -> None:
        self.targets, self.ckpt, self.match, self.layers, self.order = \
            targets, ckpt, match, layers, order
        kinds = ("variable", "other", "slot", "counter") if state else ("variable", "other")
        self.usable = [n for n, t in ckpt.items() if t.kind in kinds and not _is_metric(t)]
        usable = set(self.usable)
        self.ignored = [n for n in ckpt if n not in usable]
        self.free = dict.fromkeys(self.usable)  # ordered set of unassigned tensors
        self.chosen: dict[str, tuple[str, How]] = {}  # target -> (tensor, how)
        self.pending = list(targets)  # targets without a tensor yet
        self.structured = False  # the layer structure decided: its misfits stay misfits

    def take(self, target: Target, candidates: list[str], how: How) -> bool:
        """Pair ``target`` with the one free candidate; False when none is free."""
        candidates = [c for c in candidates if c in self.free]
        if not candidates:
            return False
        if len(candidates) > 1:
            raise LoadError(f"variable {target.name!r} matches several checkpoint tensors "
                            f"({how}): {', '.join(candidates)}; choose with a rename rule "
                            f"({option('rename')})")
        self.chosen[target.name] = (candidates[0], how)
        del self.free[candidates[0]]
        return True

    def by_alias(self, names: Callable[[Target], Sequence[str]],
                 find: Callable[[Target, str], bool]) -> None:
        """Each pending target, by the first of its ``names`` that ``find`` pairs."""
        self.pending = [t for t in self.pending if not any(find(t, a) for a in names(t))]

    def fits(self, target: Target, tensor: str) -> bool:
        return _fits(self.ckpt[tensor], target)

    def free_variables(self) -> list[str]:
        return [n for n in self.free if self.ckpt[n].kind == "variable"]

    def report(self) -> LoadReport:
        report = LoadReport(ignored=list(self.ignored))
        for target in self.targets:
            if target.name not in self.chosen:
                report.missing.append(target.name)
                continue
            tensor_name, how = self.chosen[target.name]
            tensor = self.ckpt[tensor_name]
            if not _fits(tensor, target):
                report.shape_mismatch.append(Misfit(
                    target.name, tensor_name, list(target.shape), list(tensor.shape),
                    dtypes.name_of(target.dtype), dtypes.name_of(tensor.dtype)))
                continue
            report.matched.append(target.name)
            report.pairings.append(Pairing(target.name, tensor_name, how))
        # Optimizer state nothing took is not the model's business (an inference graph, a
        # Keras model): it stays ignored, as it is when state does not pair at all; so do a
        # frozen graph's constants that were never variables.
        report.unexpected = [n for n in self.free if unexpected_if_left(self.ckpt[n])]
        taken = set(report.unexpected)
        report.ignored += [n for n in self.free if n not in taken]
        return report


# ----------------------------------------------------------------------------- the stages


def _by_name(p: _Pairing) -> None:
    ckpt = p.ckpt
    extra = {n: [ckpt[n].attrs[k] for k in ("keras_key", "keras_name") if ckpt[n].attrs.get(k)]
             for n in p.usable}
    index = _index(p.usable, extra)

    def find(target: Target, alias: str) -> bool:
        return p.take(target, index.get(alias, []), How.NAME)

    p.by_alias(lambda t: [*t.aliases, *t.keys], find)
    p.by_alias(lambda t: t.file_keys, find)  # positions shift: after every other exact name


def _by_object_graph(p: _Pairing) -> None:
    full_names = {n: p.ckpt[n].attrs.get("full_name", "") for n in p.usable}
    index = _index(full_names.values())
    key_of = {f: n for n, f in full_names.items() if f}
    p.by_alias(lambda t: t.aliases, lambda t, alias: p.take(
        t, [key_of[f] for f in index.get(alias, []) if f in key_of], How.OBJECT_GRAPH))


def _by_scope_suffix(p: _Pairing) -> None:
    def find(target: Target, alias: str) -> bool:
        # The longest suffix of the variable's name that is a whole checkpoint name, or a
        # checkpoint name ending in the whole variable name.
        for suffix in _suffixes(alias):
            hits = [n for n in p.free if suffix in forms(n)]
            if hits:
                return p.take(target, hits, How.SCOPE_SUFFIX)
        hits = [n for n in p.free if any(f.endswith("/" + alias) for f in forms(n))]
        return p.take(target, hits, How.SCOPE_SUFFIX)

    p.by_alias(lambda t: t.aliases, find)


def _auto_names(p: _Pairing) -> None:
    """TF1 names unnamed variables by creation order; when the order changed, ``Variable`` and
    ``Variable_1`` match by name with each other's shapes. Re-pair those by shape when the
    shapes decide it uniquely."""
    by_scope: dict[str, list[Target]] = {}
    for t in p.targets:
        if AUTO_NAME.search(t.name) and t.name in p.chosen:
            by_scope.setdefault(t.name.rpartition("/")[0], []).append(t)
    for group in by_scope.values():
        wrong = [t for t in group if tuple(p.ckpt[p.chosen[t.name][0]].shape) != tuple(t.shape)]
        pool = [p.chosen[t.name][0] for t in wrong]
        for t in wrong:
            fits = [n for n in pool if tuple(p.ckpt[n].shape) == tuple(t.shape)]
            if len(fits) == 1:
                p.chosen[t.name] = (fits[0], How.AUTO_NAMES)
                pool.remove(fits[0])


def _by_structure(p: _Pairing) -> None:
    """The layer structure decides every pairing when it covers every target and fits at least
    as many as the names did; pairings the names agree with keep their label."""
    def fitting(pairs: dict[str, str]) -> int:
        return sum(1 for t in p.targets if t.name in pairs and p.fits(t, pairs[t.name]))

    by_names = {t: c[0] for t, c in p.chosen.items()}
    if p.layers is None or fitting(by_names) == len(p.targets):
        return
    by_structure = _structure(p.targets, p.layers, p.usable)
    if by_structure is None or fitting(by_structure) < fitting(by_names):
        return
    for target in p.targets:
        tensor = by_structure[target.name]
        same = by_names.get(target.name) == tensor
        p.chosen[target.name] = (tensor, p.chosen[target.name][1] if same else How.STRUCTURE)
    taken = set(by_structure.values())
    p.free = {n: None for n in p.usable if n not in taken}
    p.pending = []
    p.structured = True


def _misfits(p: _Pairing) -> None:
    """Auto names shift when a model grows a layer (the old ``dense_2`` is the new
    ``dense_3``), so a name can pair a variable with a tensor of another shape while the
    tensor it wants sits elsewhere. Where the names misfit, pair each variable left without a
    fitting tensor with the one tensor of its shape among those left over, if that tensor fits
    no other such variable."""
    if p.structured:
        return
    misfit = [t for t in p.targets if t.name in p.chosen and not p.fits(t, p.chosen[t.name][0])]
    if not misfit:
        return
    open_targets = misfit + p.pending
    pool = p.free_variables() + [p.chosen[t.name][0] for t in misfit]
    wants = {t.name: [n for n in pool if p.fits(t, n)] for t in open_targets}
    taken: dict[str, str] = {}
    for t in open_targets:
        fits = wants[t.name]
        if len(fits) == 1 and sum(fits[0] in w for w in wants.values()) == 1:
            taken[t.name] = fits[0]
    if not taken:
        return
    moved = set(taken.values())
    for t in misfit:
        old = p.chosen[t.name][0]
        if old in moved and t.name not in taken:
            del p.chosen[t.name]  # its tensor went where it fits: this variable has none now
        elif old not in moved and t.name in taken:
            p.free[old] = None  # given up for a tensor that fits: nothing else took it
    for name, tensor in taken.items():
        p.chosen[name] = (tensor, How.MISFIT)
        p.free.pop(tensor, None)
    p.pending = [t for t in p.targets if t.name not in p.chosen]


def _only_candidate(p: _Pairing) -> None:
    """One variable left and one free checkpoint variable of its shape and dtype: a pair."""
    if len(p.pending) != 1:
        return
    target = p.pending[0]
    fits = [n for n in p.free_variables() if p.fits(target, n)]
    if len(fits) == 1:
        p.chosen[target.name] = (fits[0], How.ONLY)
        del p.free[fits[0]]
        p.pending = []


def _frozen_readers(p: _Pairing) -> None:
    """A TF2 frozen graph's constants carry the names of the ops that read the variables, never
    the variables' names, and come in no creation order: pair them where the shapes decide it,
    with the layer names only to tell apart those of one shape (see the module docstring)."""
    if not p.pending:
        return
    classes: dict[tuple[tuple[int, ...], np.dtype], list[Target]] = {}
    for target in p.pending:
        classes.setdefault((tuple(target.shape), target.dtype), []).append(target)
    free: dict[tuple[tuple[int, ...], np.dtype], list[str]] = {}
    for n in p.free_variables():
        free.setdefault((tuple(p.ckpt[n].shape), p.ckpt[n].dtype), []).append(n)
    for key, targets in classes.items():
        tensors = free.get(key, [])
        if not tensors or not all(_reader_named(p.ckpt[n]) for n in tensors):
            continue
        if len(targets) == len(tensors) == 1:
            pairs, how = {targets[0].name: tensors[0]}, How.FROZEN_SHAPE
        elif len(targets) == len(tensors):
            pairs, how = _by_layer(targets, tensors), How.FROZEN_LAYER
        else:
            continue
        for name, tensor in pairs.items():
            p.chosen[name] = (tensor, how)
            del p.free[tensor]
    p.pending = [t for t in p.pending if t.name not in p.chosen]


def _holds_layer(tensor: str, layer: str) -> bool:
    """Whether the scopes of ``tensor`` (its name without the reading op and the captured
    input: ``.../MatMul/ReadVariableOp/resource``) hold the whole ``/``-parts of ``layer``."""
    parts, want = tensor.split("/")[:-2], layer.split("/")
    return any(parts[i:i + len(want)] == want for i in range(len(parts) - len(want) + 1))


def _by_layer(targets: list[Target], tensors: list[str]) -> dict[str, str]:
    """``{target: tensor}`` when each target's layer is in exactly one tensor's scopes and that
    pairs them all one to one; else nothing. Keras 3 numbers its name scopes in a function
    apart from its layers' names (layer ``dense`` reads under ``dense_1``, layer ``dense_1``
    under ``dense_1_2``): such scopes leave some target without a tensor, so nothing pairs,
    rather than the layers pairing one off."""
    wanted = {}
    for target in targets:
        layers = {a.rpartition("/")[0] for a in target.aliases if "/" in a}
        hits = [n for n in tensors if any(_holds_layer(n, layer) for layer in layers)]
        if len(hits) != 1:
            return {}
        wanted[target.name] = hits[0]
    return wanted if len(set(wanted.values())) == len(tensors) else {}


def _by_order(p: _Pairing) -> None:
    """With ``match="order"``: the rest in creation order, each variable with the first free
    tensor of its shape and dtype (:func:`.order.first`)."""
    if p.match != "order":
        return
    remaining = p.free_variables()
    for target in list(p.pending):
        fits = [n for n in remaining if p.fits(target, n)]
        if not fits:
            continue
        if any(_reader_named(p.ckpt[n]) for n in fits):
            rivals = [t.name for t in p.pending if t is not target and p.fits(t, fits[0])]
            if len(fits) > 1 or rivals:
                _refuse_frozen(p, target, fits, rivals)
        n = fits[0] if len(fits) == 1 else first(
            fits, p.order, target.name, lambda c: f"{c} {list(p.ckpt[c].shape)}")
        p.chosen[target.name] = (n, How.ORDER)
        del p.free[n]
        remaining.remove(n)
        p.pending.remove(target)


def _refuse_frozen(p: _Pairing, target: Target, fits: list[str], rivals: list[str]) -> None:
    """Order pairs nothing among a frozen graph's reader-named constants: the graph keeps no
    creation order (its nodes are in an order to run them in, and ``Cast``, ``Cast_1`` number
    reads, not variables)."""
    shown = ", ".join(f"{c} {list(p.ckpt[c].shape)}" for c in fits[:8]) + (
        f" (+{len(fits) - 8} more)" if len(fits) > 8 else "")
    raise LoadError(
        f"{option('match-order')}: variable {target.name!r} fits {len(fits)} constant"
        f"{'s' if len(fits) > 1 else ''} of a frozen graph ({shown})"
        + (f", which {', '.join(repr(r) for r in rivals[:5])} fit too" if rivals else "")
        + "; freezing a TF2 function names its constants after the ops that read the "
          "variables and keeps no creation order, so nothing tells which is which: pair them "
          f"by name with rename rules ({option('rename')})")


STAGES: tuple[Callable[[_Pairing], None], ...] = (
    _by_name, _by_object_graph, _by_scope_suffix, _auto_names, _by_structure, _misfits,
    _frozen_readers, _only_candidate, _by_order)


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
    pairing = _Pairing(targets, ckpt, match=match, layers=layers, state=state, order=order)
    for stage in STAGES:
        stage(pairing)
    return pairing.report()


def _structure(targets: list[Target], layers: tuple[list[Leaf], list[Leaf]],
               usable: list[str]) -> dict[str, str] | None:
    """The structural pairing of every target, or None when it does not cover them all."""
    pairing = align(layers[0], layers[1])
    if pairing is None or set(pairing) != {t.name for t in targets} or \
            not set(pairing.values()) <= set(usable) or \
            len(set(pairing.values())) != len(pairing):
        return None
    return pairing
