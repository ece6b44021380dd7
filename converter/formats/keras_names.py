"""How Keras names the weights it saves to HDF5, for the ``hdf5`` and ``keras`` readers.

Keras 3 (``.weights.h5``, and the weights inside a ``.keras`` archive): each object that owns
variables (layer, RNN cell, optimizer) is a group ``<path>/vars`` with datasets ``0``, ``1``, ...
in the order the object lists its variables, and ``<path>`` is built the way
``keras/src/saving/saving_lib.py`` walks a model: a Sequential's or functional model's layers
under ``layers/``, each keyed by its class name in snake case, numbered from ``_1`` on when it
repeats (``layers/dense``, ``layers/dense_1``), attributes by their names (``layers/lstm/cell``).
Recent Keras also stores each object's name as the group's ``name`` attribute.

With a model config, tensors are named like Keras 3 variable paths: ``<layer name>/.../<weight
name>`` (``inner/dense/kernel``), with weight names from the layer classes in ``OWN`` and
``vars/<i>`` for classes not listed; the layers a ``Bidirectional`` or ``TimeDistributed``
wrapper holds are found in its config (``layer``, ``backward_layer``), so their weights are named
too (``bidirectional/forward_gru/gru_cell/kernel``). Every tensor keeps its file key
(``attrs["keras_key"]``) and ``attrs["keras_name"]`` (``inner/dense/vars/0``), which the loaders
match against the keys Keras 3 would give a model's variables. Optimizer variables
(``optimizer/vars/<i>``: the iteration counter first) are kinds ``counter`` and ``slot``.

Keras 2 (``save_weights``/``save`` .h5): ``layer_names`` on the root (or on ``model_weights`` in
full-model files) and ``weight_names`` on each layer group, in order; a full-model file's
``optimizer_weights`` group lists its own ``weight_names``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from ..kinds import optimizer_weight_kind
from ..tensor import Kind
from ..tfnames import natural_key
from ._h5common import require_h5py

# Own variables of common layers, in the order Keras 3 saves them, with the config flag that
# leaves each out (bias without use_bias, gamma without scale, beta without center).
OWN: dict[str, list[tuple[str, str | None]]] = {
    "Dense": [("kernel", None), ("bias", "use_bias")],
    "EinsumDense": [("kernel", None), ("bias", "bias_axes")],
    "Embedding": [("embeddings", None)],
    "BatchNormalization": [("gamma", "scale"), ("beta", "center"), ("moving_mean", None),
                           ("moving_variance", None)],
    "LayerNormalization": [("gamma", "scale"), ("beta", "center")],
    "SeparableConv1D": [("depthwise_kernel", None), ("pointwise_kernel", None),
                        ("bias", "use_bias")],
    "SeparableConv2D": [("depthwise_kernel", None), ("pointwise_kernel", None),
                        ("bias", "use_bias")],
    **{c: [("kernel", None), ("recurrent_kernel", None), ("bias", "use_bias")]
       for c in ("LSTMCell", "GRUCell", "SimpleRNNCell")},
    **{c: [("kernel", None), ("bias", "use_bias")]
       for c in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                 "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D")},
}


# Layers that wrap others, with the config key and weights-file attribute of each wrapped
# layer (``bidirectional/forward_gru/gru_cell/kernel``, as Keras 3 names the variables).
WRAPPERS = {
    "Bidirectional": (("layer", "forward_layer"), ("backward_layer", "backward_layer")),
    "TimeDistributed": (("layer", "layer"),),
}


def model_order(key: str, layers: dict[str, tuple[str, str, dict]]) -> tuple:
    """Layers in the config's order (the model's), then what the config does not know (the
    optimizer); the file itself lists groups alphabetically."""
    rank = {path: i for i, path in enumerate(layers)}
    owner = key.rpartition("/vars/")[0]
    while owner and owner not in rank:
        owner = owner.rpartition("/")[0]
    return (rank.get(owner, len(rank)) if owner or key.startswith("vars/") else len(rank),
            natural_key(key))


def snake(name: str) -> str:
    """Keras's ``to_snake_case`` (``BatchNormalization`` -> ``batch_normalization``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def config_layers(config: dict) -> dict[str, tuple[str, str, dict]]:
    """``{group path: (layer name, class name, layer config)}`` for every layer of a model
    config, keyed the way Keras 3 keys them in the weights file."""
    out: dict[str, tuple[str, str, dict]] = {}

    def visit(entry: dict, path: str) -> None:
        cls = str(entry.get("class_name", ""))
        cfg = entry.get("config") or {}
        out[path] = (str(cfg.get("name", "")), cls, cfg)
        layers = cfg.get("layers")
        if isinstance(layers, list):
            used: dict[str, int] = {}
            for layer in layers:
                if isinstance(layer, dict):
                    key = snake(str(layer.get("class_name", "")))
                    if key in used:
                        used[key] += 1
                        key = f"{key}_{used[key]}"
                    else:
                        used[key] = 0
                    visit(layer, f"{path}/layers/{key}" if path else f"layers/{key}")
        for cfg_key, attr in WRAPPERS.get(cls, ()):
            inner = cfg.get(cfg_key)
            if cfg_key == "backward_layer" and not isinstance(inner, dict) and \
                    isinstance(cfg.get("layer"), dict):
                # Without its own config, the backward layer is a copy of the forward one.
                forward = cfg["layer"]
                name = str((forward.get("config") or {}).get("name", ""))
                inner = {**forward, "config": {**(forward.get("config") or {}),
                                               "name": "backward_" + name.removeprefix(
                                                   "forward_")}}
            if isinstance(inner, dict) and path:
                visit(inner, f"{path}/{attr}")

    if isinstance(config, dict):
        visit(config, "")
    return out


def saveable_names(f: Any) -> dict[str, str | None]:
    """``{group path: object name}`` of the groups that hold a ``vars`` group (the objects
    Keras saved), from their ``name`` attribute where Keras recorded one."""
    out: dict[str, str | None] = {}

    def visit(p: str, obj: Any) -> None:
        if p == "vars" or p.endswith("/vars"):
            name = obj.attrs.get("name")
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            out[p[: -len("vars")].rstrip("/")] = name if isinstance(name, str) else None

    if "vars" in f:
        visit("vars", f["vars"])
    f.visititems(visit)
    return out


def named_path(path: str, names: dict[str, str | None]) -> str:
    """A weights-file group path in object names: ``layers/sequential/layers/dense`` ->
    ``inner/dense`` when ``names`` holds the saved objects' names by path (containers such as
    ``layers`` are not objects and drop out; an object without a name keeps its key)."""
    parts = path.split("/")
    out = []
    for i, part in enumerate(parts):
        prefix = "/".join(parts[: i + 1])
        if prefix in names:
            out.append(names[prefix] or part)
    return "/".join(out)


def describe(keys: list[str], names: dict[str, str | None],
             layers: dict[str, tuple[str, str, dict]] | None = None
             ) -> dict[str, tuple[str, dict[str, str], Kind]]:
    """Weights-file dataset keys -> ``(readable name, attrs, kind)``. Without ``layers`` (a
    bare ``.weights.h5``) the readable name is the key itself."""
    owners: dict[str, list[str]] = {}
    for key in keys:
        owner, _, index = ("/" + key).rpartition("/vars/")
        owners.setdefault(owner.lstrip("/"), []).append(index)
    merged = dict(names)
    for path, (name, cls, _) in (layers or {}).items():
        if path and name:
            merged[path] = name
        if path and f"{path}/cell" in owners and not merged.get(f"{path}/cell"):
            merged[f"{path}/cell"] = snake(cls) + "_cell"  # as Keras 3 RNN layers name it
    out: dict[str, tuple[str, dict[str, str], Kind]] = {}
    for key in keys:
        owner, _, index = ("/" + key).rpartition("/vars/")
        owner = owner.lstrip("/")
        if owner.split("/", 1)[0] == "optimizer":
            out[key] = (key, {"keras_key": key}, "counter" if index == "0" else "slot")
            continue
        named = named_path(owner, merged) if owner else ""
        attrs = {"keras_key": key, "keras_name": f"{named}/vars/{index}" if named else key}
        name = key
        if layers is not None and named:
            own = _own_weights(owner, layers)
            weight = own[int(index)] if len(own) == len(owners[owner]) and index.isdigit() \
                and int(index) < len(own) else f"vars/{index}"
            name = f"{named}/{weight}"
        out[key] = (name, attrs, "variable")
    return out


def _own_weights(owner: str, layers: dict[str, tuple[str, str, dict]]) -> list[str]:
    """The weight names of the object at ``owner``, from its class and config flags."""
    if owner in layers:
        _, cls, cfg = layers[owner]
    elif owner.endswith("/cell") and owner[: -len("/cell")] in layers:
        _, parent, cfg = layers[owner[: -len("/cell")]]
        cls = parent + "Cell"  # an RNN layer's cell (LSTM -> LSTMCell) shares its flags
    else:
        return []
    return [w for w, flag in OWN.get(cls, []) if flag is None or cfg.get(flag, True)]

def _strings(value) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value]


def is_legacy(f: Any) -> bool:
    """Whether the open HDF5 file ``f`` is a Keras 2 weights or full-model file."""
    root = f["model_weights"] if "model_weights" in f else f
    return "layer_names" in root.attrs


def legacy_weights(path: Path | str, f: Any) -> Iterator[tuple[str, Any, bool]]:
    """``(name, dataset, is optimizer weight)`` of a Keras 2 file (see :func:`is_legacy`), in
    its order. Names are the weight names without TF's ``:0`` (``dense/kernel``); a name two
    layers share keeps its layer to tell them apart. A full-model file's ``optimizer_weights``
    follow the model's weights."""
    root = f["model_weights"] if "model_weights" in f else f
    seen: set[str] = set()
    h5py = require_h5py()
    for layer in _strings(root.attrs["layer_names"]):
        group = root[layer]
        if not isinstance(group, h5py.Group):
            raise FormatError(f"{path}: layer {layer!r} is not a group")
        for name, ds in _listed(path, group, "weight", f" of layer {layer!r}", layer, seen):
            yield name, ds, False
    optimizer = f.get("optimizer_weights") if root is not f else None
    if isinstance(optimizer, h5py.Group):
        for name, ds in _listed(path, optimizer, "optimizer weight", "", "optimizer_weights",
                                seen):
            yield name, ds, True


def _listed(path: Path | str, group: Any, what: str, of: str, scope: str, seen: set[str]
            ) -> Iterator[tuple[str, Any]]:
    """The datasets ``group`` lists in its ``weight_names``, named without TF's ``:0``; a name
    already ``seen`` (two layers with one weight name) keeps ``scope`` to tell them apart."""
    h5py = require_h5py()
    for weight in _strings(group.attrs.get("weight_names", [])):
        if not isinstance(group.get(weight), h5py.Dataset):
            state = "missing" if weight not in group else "not a dataset"
            raise FormatError(f"{path}: {what} {weight!r}{of} is {state}")
        name = weight.removesuffix(":0")
        if name in seen:
            name = f"{scope}/{name}"
        seen.add(name)
        yield name, group[weight]


def legacy_optimizer_kind(name: str, shape: tuple[int, ...], dtype: np.dtype) -> Kind:
    """The kind of a Keras 2 optimizer weight: ``counter`` for the step (an integer scalar:
    ``iteration``, ``Adam/iterations``), else a slot (``Adam/m/dense/kernel``) or what
    :func:`converter.kinds.optimizer_weight_kind` says."""
    if shape == () and dtype.kind in "iu":
        return "counter"
    return optimizer_weight_kind(name)
