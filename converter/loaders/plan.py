"""Restore plans: which checkpoint tensors would go into which variables of a target, decided
before anything runs (``ckpt plan``, :func:`converter.plan`).

A target is a TF1 graph (a ``.meta``, or a SavedModel's MetaGraph), another checkpoint (its
names and shapes: "would this one stand in for that one?"), or a Keras model. Graph variables
are counted as ``Saver`` saves them: a partitioned variable (``w/part_0``, ``w/part_1`` in the
graph) once, under its full name and full shape, as the checkpoint holds it (the TF reader
assembles the parts); its parts may be cut differently from the checkpoint's, as
``Saver.restore`` allows.

Pairing, ``match``:

- ``"exact"`` (graphs and checkpoints; the default): as ``tf.compat.v1.train.Saver.restore``
  pairs: each variable takes the tensor of its exact name (after the rules), or of the
  ``full_name`` a TF2 checkpoint's object graph records for it, as Saver falls back to. A
  variable without one is ``missing`` (TF: "Key ... not found in checkpoint", NotFoundError), a
  tensor of another shape or dtype a ``shape_mismatch`` (TF: "Assign requires shapes of both
  tensors to match", InvalidArgumentError);
- ``"name"``, ``"order"``: as ``converter.tf1.restore`` and ``load_into`` pair (the stages of
  :mod:`.match`), e.g. auto-named ``Variable``/``Variable_1`` re-paired by shape.

Checkpoint tensors no variable takes are ``unexpected`` (optimizer state and counters:
``ignored``). ``Saver.restore`` itself leaves them alone; the plan still is not clean, since
part of the checkpoint would be dropped without a word (``--exclude`` them to say so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import dtypes, storage
from ..errors import FormatError, UsageError
from ..tensor import Checkpoint
from .match import Target, pair, unexpected_if_left
from .order import check_order_from
from .report import How, LoadReport, Misfit, Pairing
from .source import open_source, read_source

MATCHES = ("exact", "name", "order")
_TAKES = ("variable", "other", "slot", "counter")  # what a TF1 graph's variables restore


def graph_targets(graph: Any) -> list[Target]:
    """One target per checkpoint name of a :class:`~converter.graphs.MetaGraphVariables`, in
    creation order; a partitioned variable by its full name and full shape."""
    targets: dict[str, Target] = {}
    for v in graph.variables:
        name = v.checkpoint_name
        if name in targets:
            continue
        shape = v.partition.full_shape if v.partition else v.shape
        if shape is None or not v.dtype:
            raise FormatError(f"{graph.path}: variable {v.name!r} has no node with a dtype and "
                              "shape in the graph")
        if any(d < 0 for d in shape):
            raise FormatError(f"{graph.path}: variable {v.name!r} has shape {list(shape)} "
                              "(unknown dimensions), which no plan can check")
        try:
            dtype = dtypes.from_name(v.dtype)
        except Exception:  # a dtype numpy cannot hold (resource, variant, a quantized one)
            raise FormatError(f"{graph.path}: variable {v.name!r} has dtype {v.dtype}, which "
                              "no checkpoint tensor can fill") from None
        targets[name] = Target(name, [name], tuple(shape), dtype)
    return list(targets.values())


def checkpoint_targets(ckpt: Checkpoint) -> list[Target]:
    """One target per tensor of ``ckpt`` (object graphs aside), in its order."""
    return [Target(n, [n], tuple(t.shape), t.dtype) for n, t in ckpt.items()
            if t.kind != "object_graph"]


def exact(targets: list[Target], ckpt: Checkpoint) -> LoadReport:
    """Pair as ``Saver.restore`` does: by exact name, else by object-graph ``full_name``."""
    usable = [n for n, t in ckpt.items() if t.kind in _TAKES]
    by_full_name: dict[str, str] = {}
    for n in usable:
        full = ckpt[n].attrs.get("full_name")
        if full:
            by_full_name.setdefault(full, n)
    report = LoadReport(ignored=[n for n in ckpt if n not in set(usable)])
    taken: set[str] = set()
    for target in targets:
        how = How.NAME
        tensor_name: str | None = target.name if target.name in usable else None
        if tensor_name is None and target.name in by_full_name:
            tensor_name, how = by_full_name[target.name], How.OBJECT_GRAPH
        if tensor_name is None:
            report.missing.append(target.name)
            continue
        taken.add(tensor_name)
        tensor = ckpt[tensor_name]
        if tuple(tensor.shape) != tuple(target.shape) or tensor.dtype != target.dtype:
            report.shape_mismatch.append(Misfit(
                target.name, tensor_name, list(target.shape), list(tensor.shape),
                dtypes.name_of(target.dtype), dtypes.name_of(tensor.dtype)))
            continue
        report.matched.append(target.name)
        report.pairings.append(Pairing(target.name, tensor_name, how))
    for n in usable:
        if n not in taken:
            (report.unexpected if unexpected_if_left(ckpt[n]) else report.ignored).append(n)
    return report


def _is_path(target: Any) -> bool:
    return isinstance(target, str) or hasattr(target, "__fspath__")


def _factory_spec(text: str) -> bool:
    """``module:factory`` or ``file.py:factory`` (and not a path that exists)."""
    module, sep, attr = text.rpartition(":")
    return bool(sep and module and attr) and not os.path.lexists(text) and "/" not in attr


def resolve(target: Any, tags: str | list[str] | tuple[str, ...] | None = None
            ) -> tuple[str, Any]:
    """``(kind, what)``: ``("graph", MetaGraphVariables)``, ``("checkpoint", Checkpoint)`` or
    ``("keras", model)``."""
    from .. import graphs
    from ..graphs import metagraph

    if not _is_path(target):
        if hasattr(target, "weights") and not isinstance(target, Checkpoint):
            return "keras", target
        return "checkpoint", read_source(target)
    text = os.fspath(target)
    if storage.is_url(text):
        return _resolve_url(text, tags)
    path = Path(text)
    saved_model = path.is_dir() and (path / "saved_model.pb").is_file()
    if tags is not None and not saved_model:
        raise UsageError(f"{text}: tags choose a SavedModel's MetaGraph; this is not one")
    if path.name.endswith(".meta") and metagraph.looks_like(path):
        return "graph", graphs.meta_graph(path)
    if saved_model:
        graph = metagraph.saved_model_variables(path, tags)
        if graph.has_collection:
            return "graph", graph
        return "checkpoint", read_source(path)  # TF2: the variables/ bundle's names
    if _factory_spec(text):
        from ..migrate import load_factory

        return "keras", load_factory(text)()
    if not os.path.lexists(text) and not Path(text + ".index").exists():
        raise UsageError(f"{text}: no such file, directory or checkpoint (a target is a .meta, "
                         "a SavedModel, a checkpoint or MODULE:FACTORY)")
    return "checkpoint", read_source(path)


def plan(src: Any, target: Any, rules: Any = None, *, match: str | None = None,
         format: str | None = None, tags: str | list[str] | tuple[str, ...] | None = None,
         order_from: str | os.PathLike[str] | None = None) -> LoadReport:
    """What restoring ``src`` into ``target`` would do, decided without running it.

    Args:
        src: checkpoint path (any readable format), Checkpoint or dict of arrays.
        target: a TF1 ``.meta`` file, a SavedModel directory (its MetaGraph's variables; a TF2
            SavedModel's ``variables/`` names), another checkpoint (path, Checkpoint or dict),
            ``"module:factory"`` (or ``"file.py:factory"``) building a Keras model, or a Keras
            model.
        rules: :class:`converter.rules.Rules` applied to ``src``'s names first.
        match: ``"exact"`` (as ``Saver.restore`` pairs; the default for graphs and
            checkpoints), ``"name"`` or ``"order"`` (as ``converter.tf1.restore`` and
            ``load_into`` pair; ``"name"`` is the default for Keras models).
        format: ``src``'s format when it cannot be detected.
        tags: the MetaGraph of a SavedModel target with several.
        order_from: a ``.meta`` whose variables give ``src``'s creation order for
            ``match="order"`` (default: the ``.meta`` beside a TF1 checkpoint, if any).

    Returns:
        A :class:`LoadReport`; ``.ok`` says whether the restore is clean.

    Raises:
        FormatError: a source or target that cannot be read.
        UsageError: an unknown ``match``, or ``"exact"`` with a Keras model.

    Example:
        >>> report = converter.plan("model.ckpt-1000", "new_graph.meta")
        >>> report.missing, [m.variable for m in report.shape_mismatch]
        (['head/w'], [])
    """
    if match is not None and match not in MATCHES:
        raise UsageError(f"match must be one of {', '.join(MATCHES)}, not {match!r}")
    check_order_from(order_from, match)
    kind, what = resolve(target, tags)
    if kind == "keras":
        if match == "exact":
            raise UsageError("match 'exact' pairs as TF1's Saver does; a Keras model loads by "
                             "name (ckpt migrate, load_into): use match 'name' or 'order'")
        from .keras import pairing

        return pairing(what, src, rules=rules, match=match or "name", format=format,
                       order_from=order_from)[0]
    targets = graph_targets(what) if kind == "graph" else checkpoint_targets(what)
    ckpt, order, _ = open_source(src, rules, format, order_from)
    if match in (None, "exact"):
        return exact(targets, ckpt)
    return pair(targets, ckpt, match=match, state=True, order=order)


def _resolve_url(url: str, tags: str | list[str] | tuple[str, ...] | None
                 ) -> tuple[str, Any]:
    """:func:`resolve` for a target on remote storage: a ``.meta`` object, a SavedModel
    prefix (its ``saved_model.pb``, fetched whole, as a local one is read whole) or a
    checkpoint read by ranges."""
    import tempfile

    from .. import graphs
    from ..graphs import metagraph

    pb = storage.join(url, "saved_model.pb")
    saved_model = not url.endswith(".meta") and storage.exists(pb)
    if tags is not None and not saved_model:
        raise UsageError(f"{url}: tags choose a SavedModel's MetaGraph; this is not one")
    with tempfile.TemporaryDirectory(prefix="ckpt-plan-") as scratch:
        if url.endswith(".meta"):
            local = Path(storage.stage(url, scratch))
            if metagraph.looks_like(local):
                return "graph", graphs.meta_graph(local)
        elif saved_model:
            graph = metagraph.saved_model_variables(Path(storage.stage(pb, scratch)).parent,
                                                    tags)
            if graph.has_collection:
                return "graph", graph
    return "checkpoint", read_source(url)
