"""Keras 3 ``.keras`` archives, read without Keras.

A ``.keras`` file is a zip of ``config.json`` (the architecture), ``metadata.json`` and
``model.weights.h5``, whose layout ``model.save_weights`` also writes to ``.weights.h5``
(``<path>/vars/<i>``, see ``keras_names``). Tensors are named like Keras 3 variable paths, from
the config alone (``inner/dense/kernel``), and keep their file key and Keras name in
``attrs["keras_key"]`` and ``attrs["keras_name"]`` for the loaders (``keras_names.describe``).

``config.json`` and ``metadata.json`` may hold at most ``MAX_CONFIG`` bytes (and 1 MiB plus
twice the archive's size, see ``_common.read_capped``). The weights file is
read in place when stored (as Keras writes it) and inflated once into a temporary file when
deflated; the HDF5 guards (global heaps, variable-length lengths) check the inner file's bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..tensor import Checkpoint, Source, Tensor, ZipMember
from ._common import check_declared, first_line, map_file, read_capped, release, stored_start
from ._h5common import Window, check_global_heaps, dataset_tensor, require_h5py
from .keras_names import config_layers, describe, model_order, saveable_names
from .stream import forget_member

CONFIG = "config.json"
META = "metadata.json"
WEIGHTS = "model.weights.h5"
MAX_CONFIG = 16 << 20  # the config of a model of thousands of layers is a few MB


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
    h5py = require_h5py()
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
        source, window, member = _weights_file(archive, path, closers)
        if member is not None:
            closers.append(lambda: forget_member(str(path), member))
        f = h5py.File(source, "r")
        closers.append(f.close)
        check_global_heaps(path, f, window)
        datasets: list[tuple[str, Any]] = []
        f.visititems(lambda p, o: datasets.append((p, o)) if isinstance(o, h5py.Dataset)
                     else None)
        layers = config_layers(config)
        datasets.sort(key=lambda x: model_order(x[0], layers))
        described = describe([k for k, _ in datasets], saveable_names(f), layers)
        tensors: dict[str, Tensor] = {}
        for key, ds in datasets:
            name, attrs, kind = described[key]
            if name in tensors:
                name = key
            tensor = dataset_tensor(path, ds, name, window=window, member=member)
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


def _weights_file(archive: zipfile.ZipFile, path: Path, closers: list
                  ) -> tuple[Any, Window, ZipMember | None]:
    """What h5py opens for the archive's weights, where that HDF5 file's bytes are, and the
    stored member they are read from in place, whose CRC-32 is checked before any value is
    read (Keras checks it too, as zipfile reads the member).

    A stored member (as Keras writes it) is read in place, through a window on the archive
    (zipfile before Python 3.12 serves a backward seek by reading again from the member's
    start). A deflated one (an archive repacked
    by other tools) is inflated once into a temporary file: HDF5 reads by seeking, and zipfile
    serves each backward seek by inflating the member again from its start. The temporary file
    is at most the member's declared size, which may not exceed what deflate can produce from
    its compressed bytes."""
    info = archive.getinfo(WEIGHTS)
    buf = map_file(path)
    try:
        start = stored_start(buf, info, path.stat().st_size)
    finally:
        release(buf)
    if start is not None:
        member = _Slice(path, start, info.file_size)  # read in place, nothing unpacked
        closers.append(member.close)
        return member, (str(path), start, info.file_size), \
            ZipMember(start, info.file_size, info.CRC, WEIGHTS)
    check_declared(path, info, WEIGHTS)
    tmp = tempfile.NamedTemporaryFile(prefix="ckpt-", suffix=".weights.h5", delete=False)
    closers.append(lambda: os.unlink(tmp.name))
    with tmp, archive.open(info) as src:
        shutil.copyfileobj(src, tmp, 1 << 20)
    return tmp.name, (tmp.name, 0, os.path.getsize(tmp.name)), None  # zipfile checked it


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
