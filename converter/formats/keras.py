"""Keras 3 ``.keras`` archives, read without Keras, and the naming of Keras 3 weight files.

A ``.keras`` file is a zip of ``config.json`` (the architecture), ``metadata.json`` and
``model.weights.h5``, whose layout ``model.save_weights`` also writes to ``.weights.h5``:
each object that owns variables (layer, RNN cell, optimizer) is a group ``<path>/vars`` with
datasets ``0``, ``1``, ... in the order the object lists its variables, and ``<path>`` is
built the way ``keras/src/saving/saving_lib.py`` walks a model: a Sequential's or functional
model's layers under ``layers/``, each keyed by its class name in snake case, numbered from
``_1`` on when it repeats (``layers/dense``, ``layers/dense_1``), attributes by their names
(``layers/lstm/cell``). Recent Keras also stores each object's name as the group's ``name``
attribute.

Tensors of a ``.keras`` file are named like Keras 3 variable paths, from the config alone:
``<layer name>/.../<weight name>`` (``inner/dense/kernel``), with weight names from the layer
classes below and ``vars/<i>`` for classes not listed; the layers a ``Bidirectional`` or
``TimeDistributed`` wrapper holds are found in its config (``layer``, ``backward_layer``), so
their weights are named too (``bidirectional/forward_gru/gru_cell/kernel``). Every tensor keeps
its file key (``attrs["keras_key"]``) and ``attrs["keras_name"]`` (``inner/dense/vars/0``),
which the loaders match against the keys Keras 3 would give a model's variables. Optimizer variables
(``optimizer/vars/<i>``: the iteration counter first) are kinds ``counter`` and ``slot``.

``config.json`` and ``metadata.json`` may hold at most ``MAX_CONFIG`` bytes (and 1 MiB plus
twice the archive's size, see ``_common.read_capped``). The weights file is
read in place when stored (as Keras writes it) and inflated once into a temporary file when
deflated; the HDF5 guards (global heaps, variable-length lengths) check the inner file's bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatError
from ..tensor import Checkpoint, Source, Tensor
from ..tfnames import natural_key
from ._common import check_declared, first_line, map_file, read_capped, release

if TYPE_CHECKING:
    from .hdf5 import Window

CONFIG = "config.json"
META = "metadata.json"
WEIGHTS = "model.weights.h5"
MAX_CONFIG = 16 << 20  # the config of a model of thousands of layers is a few MB
# Own variables of common layers, in the order Keras 3 saves them, with the config flag that
# leaves each out (bias without use_bias, gamma without scale, beta without center).
OWN = {
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


def sniff(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, ValueError,
            struct.error, OverflowError):
        return False  # a damaged zip is not a .keras archive; its own reader says what is wrong
    return CONFIG in names and WEIGHTS in names


def read(path: Path) -> Checkpoint:
    """The weights of a ``.keras`` archive, named from its config (see the module docstring)."""
    from .hdf5 import _check_global_heaps, _h5py, _tensor

    h5py = _h5py()
    closers: list = []

    def close_all() -> None:
        for close in reversed(closers):
            close()

    try:
        archive = zipfile.ZipFile(path)
        closers.append(archive.close)
        config = json.loads(read_capped(archive, archive.getinfo(CONFIG), path, MAX_CONFIG))
        if not isinstance(config, dict):
            raise ValueError("config.json holds no model config")
        meta = json.loads(read_capped(archive, archive.getinfo(META), path, MAX_CONFIG)) \
            if META in archive.namelist() else {}
        source, window = _weights_file(archive, path, closers)
        f = h5py.File(source, "r")
        closers.append(f.close)
        _check_global_heaps(path, f, window)
        datasets: list[tuple[str, Any]] = []
        f.visititems(lambda p, o: datasets.append((p, o)) if isinstance(o, h5py.Dataset)
                     else None)
        layers = config_layers(config)
        datasets.sort(key=lambda x: _model_order(x[0], layers))
        described = describe([k for k, _ in datasets], saveable_names(f), layers)
        tensors: dict[str, Tensor] = {}
        for key, ds in datasets:
            name, attrs, kind = described[key]
            if name in tensors:
                name = key
            tensor = _tensor(path, ds, name, window=window)
            tensor.attrs.update(attrs)
            tensor.kind = kind
            tensors[name] = tensor
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError,
            RecursionError, EOFError, zlib.error, NotImplementedError,
            zipfile.BadZipFile) as exc:
        close_all()
        raise FormatError(f"{path}: not a readable .keras archive "
                          f"({first_line(exc)})") from None
    except BaseException:
        close_all()
        raise
    facts = {"model_class": str(config.get("class_name", "")),
             "model_name": str((config.get("config") or {}).get("name", ""))}
    if isinstance(meta, dict) and "keras_version" in meta:
        facts["keras_version"] = str(meta["keras_version"])
    return Checkpoint(tensors, source=Source("keras", str(path), "keras3", facts=facts),
                      closers=[close_all])


def _weights_file(archive: zipfile.ZipFile, path: Path, closers: list) -> tuple[Any, Window]:
    """What h5py opens for the archive's weights, and where that HDF5 file's bytes are.

    A stored member (as Keras writes it) is read in place, through a window on the archive
    (zipfile before Python 3.12 serves a backward seek by reading again from the member's
    start). A deflated one (an archive repacked
    by other tools) is inflated once into a temporary file: HDF5 reads by seeking, and zipfile
    serves each backward seek by inflating the member again from its start. The temporary file
    is at most the member's declared size, which may not exceed what deflate can produce from
    its compressed bytes."""
    from .npz import _stored_start

    info = archive.getinfo(WEIGHTS)
    buf = map_file(path)
    try:
        start = _stored_start(buf, info, path.stat().st_size)
    finally:
        release(buf)
    if start is not None:
        member = _Slice(path, start, info.file_size)  # read in place, nothing unpacked
        closers.append(member.close)
        return member, (str(path), start, info.file_size)
    check_declared(path, info, WEIGHTS)
    tmp = tempfile.NamedTemporaryFile(prefix="ckpt-", suffix=".weights.h5", delete=False)
    closers.append(lambda: os.unlink(tmp.name))
    with tmp, archive.open(info) as src:
        shutil.copyfileobj(src, tmp, 1 << 20)
    return tmp.name, (tmp.name, 0, os.path.getsize(tmp.name))


class _Slice(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a file as a read-only, seekable file."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        data = os.pread(self._fd, n, self._start + self._pos) if n else b""
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def write(ckpt: Checkpoint, path: Path, **opts: Any) -> None:
    raise FormatError(f"{path}: .keras archives are written by Keras (ckpt migrate ... OUT.keras "
                      "builds the model and saves it)")


def _model_order(key: str, layers: dict[str, tuple[str, str, dict]]) -> tuple:
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
             ) -> dict[str, tuple[str, dict[str, str], str]]:
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
    out = {}
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
