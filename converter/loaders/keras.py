"""Keras 3 and tf.keras models: variables by path, assigned in place."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..errors import LoadError
from ..formats.keras_names import named_path
from ..tensor import Checkpoint
from .match import Target, pair
from .order import check_order_from
from .report import LoadReport, check
from .source import open_source
from .structure import Leaf, checkpoint_layers, model_layers

RNN_CELL = re.compile(r"/(lstm|gru|simple_rnn)_cell(_\d+)?/(?=[^/]+$)")


def keras_targets(model: Any) -> tuple[list[Target], dict[str, Any]]:
    """Targets for every weight of ``model`` and the variables by target name."""
    targets, variables = [], {}
    model_name = getattr(model, "name", "")
    keys = keras3_keys(model)
    for v in model.weights:
        name = variable_name(v)
        aliases = [name]
        if model_name and name.startswith(model_name + "/"):
            aliases.append(name[len(model_name) + 1:])
        # Keras <= 2.2 kept a recurrent layer's weights on the layer (lstm_1/kernel:0); Keras 3
        # and tf.keras keep them on its cell (lstm_1/lstm_cell/kernel).
        aliases += [RNN_CELL.sub("/", a) for a in aliases if RNN_CELL.search(a)]
        if name in variables:
            continue  # a shared layer's weight appears once
        dtype = np.dtype(_dtype(v))
        named, by_position = keys.get(id(v), ((), ()))
        targets.append(Target(name, aliases, tuple(int(d) for d in v.shape), dtype,
                              named, by_position))
        variables[name] = v
    return targets, variables


def variable_name(v: Any) -> str:
    """Keras 3 variables have a path (``sequential/dense/kernel``); tf.keras names end in
    ``:0``, which is dropped."""
    path = getattr(v, "path", None) or v.name
    return path[:-2] if path.endswith(":0") else path


def _dtype(v: Any) -> str:
    dtype = v.dtype
    return getattr(dtype, "name", None) or str(dtype)


def keras3_keys(model: Any) -> dict[int, tuple[tuple[str], tuple[str]]]:
    """``{id(variable): ((named key,), (file key,))}``: where Keras 3's ``save_weights`` puts
    each variable, by the layers' names (``inner/dense/vars/0``) and as the file's path
    (``layers/sequential/layers/dense/vars/0``), found by letting Keras walk the model as it
    does when saving. Empty for tf.keras models, or when this Keras walks differently."""
    try:
        from keras.src.saving import saving_lib
    except ImportError:
        return {}

    class Recorder(saving_lib.H5IOStore):
        def __init__(self) -> None:  # no file: only remember what goes where
            self.made: list[tuple[str, str | None, dict]] = []

        def __bool__(self) -> bool:
            return True

        def make(self, path: str, metadata: dict | None = None) -> dict:
            store: dict = {}
            self.made.append((path, (metadata or {}).get("name"), store))
            return store

    recorder = Recorder()
    try:
        saving_lib._save_state(model, recorder, None, "", set())
    except Exception:  # a private walk: any surprise means "no keys", never a failed load
        return {}
    names = {path: name for path, name, _ in recorder.made}
    out: dict[int, tuple[tuple[str], tuple[str]]] = {}
    for path, _, store in recorder.made:
        if not path or path.startswith("optimizer"):
            continue
        named = named_path(path, names)
        for index, v in store.items():
            if hasattr(v, "shape") and not isinstance(v, np.ndarray):
                out.setdefault(id(v), ((f"{named}/vars/{index}",), (f"{path}/vars/{index}",)))
    return out


def check_built(model: Any) -> None:
    """A model without weights yet cannot take any: say so instead of loading nothing."""
    if not getattr(model, "weights", None) and getattr(model, "built", True) is False:
        raise LoadError(f"model {getattr(model, 'name', '')!r} is not built (it has no weights "
                        "yet): give it an Input or input_shape, or call it on a batch, first")


def prepare(source: Any, rules: Any = None, format: str | None = None,
            order_from: str | os.PathLike[str] | None = None
            ) -> tuple[Checkpoint, list[Leaf] | None, dict[str, int] | None]:
    """The checkpoint with rules applied, its layer structure in the new names and its
    tensors' creation order (both taken before the rules, which may drop the object graph)."""
    ckpt, rank, raw = open_source(source, rules, format, order_from)
    leaves = checkpoint_layers(raw)
    if leaves and rules is not None:
        new_of = {r.sources[0]: r.name for r in rules.plan(raw) if len(r.sources) == 1}
        leaves = [Leaf(leaf.path, [(own, new_of.get(key, "")) for own, key in leaf.weights])
                  for leaf in leaves]
    return ckpt, leaves, rank


def load_into(model: Any, source: Any, *, rules: Any = None, strict: bool = True,
              match: str = "name", format: str | None = None,
              order_from: str | os.PathLike[str] | None = None) -> LoadReport:
    """Assign checkpoint tensors to a Keras model's variables and report what happened.

    Sources include tf.keras TF-format ``save_weights`` checkpoints and SavedModel
    directories (paired through their object graph: ``full_name`` s, then the layer structure
    when layers were renamed), Keras 2 ``.h5`` files and Keras 3 ``.weights.h5``/``.keras``
    files. The pairing stages are described in :mod:`converter.loaders.match`.

    Args:
        model: a built Keras 3 or tf.keras model (or layer).
        source: checkpoint path (any format), Checkpoint or dict of arrays.
        rules: :class:`converter.rules.Rules` applied to the checkpoint's names first.
        strict: raise :class:`LoadError` (assigning nothing) if any variable is missing, any
            checkpoint variable is unexpected, or a shape differs; else assign what fits.
        match: ``"name"`` (name, object graph, layer + weight name, layer structure, shape
            where names misfit, a single candidate left by shape) or ``"order"`` to also pair
            the rest in creation order where shapes agree (see :mod:`.order`).
        format: source format when it cannot be detected.
        order_from: a ``.meta`` graph whose variables give the tensors' creation order for
            ``match="order"`` (default: the ``.meta`` beside a TF1 checkpoint, if any).

    Returns:
        A :class:`LoadReport`.

    Raises:
        LoadError: strict and the checkpoint does not fit (``.report`` holds the report, the
            message the option that would help); a name that matches several tensors, or
            same-shape tensors nothing orders (listing them); a model that is not built yet.
    """
    report, ckpt, variables = pairing(model, source, rules=rules, match=match, format=format,
                                      order_from=order_from)
    check(report, strict, f"loading {_named(source, ckpt)} into "
                          f"{getattr(model, 'name', 'model')}")
    for p in report.pairings:
        variables[p.variable].assign(np.asarray(ckpt[p.tensor].read()))
    return report


def _named(source: Any, ckpt: Checkpoint) -> str:
    """What a message calls the checkpoint loaded: its path, where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    where = getattr(ckpt.source, "path", None) if ckpt.source is not None else None
    return str(where) if where else "checkpoint"


def pairing(model: Any, source: Any, *, rules: Any = None, match: str = "name",
            format: str | None = None, order_from: str | os.PathLike[str] | None = None
            ) -> tuple[LoadReport, Checkpoint, dict[str, Any]]:
    """What :func:`load_into` would assign, assigning nothing: the report, the checkpoint with
    the rules applied and the model's variables by target name."""
    check_built(model)
    check_order_from(order_from, match)
    ckpt, leaves, rank = prepare(source, rules, format, order_from)
    targets, variables = keras_targets(model)
    layers = None
    if leaves:
        names = {id(v): n for n, v in variables.items()}
        layers = (leaves, model_layers(model, lambda v: names.get(id(v))))
    return pair(targets, ckpt, match=match, layers=layers, order=rank), ckpt, variables
