"""numpy .npy: one file is one tensor; a directory of .npy files is a checkpoint.

Directory layout: tensor ``dense/kernel`` is ``DIR/dense/kernel.npy``. Each ``/``-separated part
of a name is percent-escaped by ``_common.name_to_path`` (``urllib.parse.quote`` with no safe
characters, so ``%``, ``:``, ``\\``, NUL and non-ASCII become ``%XX``); the parts ``.``, ``..``
and the empty part are written ``%2E``, ``%2E%2E`` and ``%``, so no file lands outside ``DIR``;
a scope part ending in ``.npy`` gets its last dot escaped so it cannot clash with a tensor file;
parts longer than 200 bytes are shortened and suffixed with a hash. Names that are not valid
Unicode (bytes from a TF bundle that are not UTF-8) are refused. The file
``DIR/converter-index.json`` records each tensor's real name, file, order, non-numpy dtype
(bfloat16 raw bits, byte strings as a length-prefixed uint8 buffer; see ``_npyfmt``) and the
checkpoint metadata, so names round-trip exactly; a directory without it (written by someone else)
is read by walking ``**/*.npy`` and un-escaping the paths. Either way, a file or symbolic link
that resolves outside the directory is refused.

Pickled ``.npy`` files (``allow_pickle=True``, trusted files only; Python 2 pickles are decoded
as latin-1, as ``numpy.load`` advises) are unpickled when opened: a dict, nested or not
(``np.save("det1.npy", {"conv1": {"weights": w}})``), becomes one tensor per array leaf
(``conv1/weights``; in a directory, ``det1/conv1/weights``), an object array of byte or text
strings a string tensor; anything else is refused, naming the key.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .. import dtypes
from .._tempfiles import DIRECTORY_INDEX as INDEX
from ..errors import FormatError, UsageError
from ..outputs import outputs
from ..progress import tracked
from ..tensor import Checkpoint, Source, Tensor
from . import _npyfmt
from ._common import (
    check_dtype,
    check_name,
    first_line,
    frombuffer,
    map_file,
    name_to_path,
    path_to_name,
)


def sniff(path: Path) -> bool:
    if path.is_dir():
        return (path / INDEX).is_file() or any(path.glob("*.npy")) or any(path.glob("*/**/*.npy"))
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(6) == _npyfmt.MAGIC


def _open_npy(file: Path, name: str, side: dict | None, allow_pickle: bool,
              prefix: str | None = None) -> list[Tensor]:
    """The tensors of one .npy file: one, or for a pickled dict one per array in it, named
    under ``prefix`` (None: a lone file, whose dict keys are the names themselves)."""
    where = f"{file}" if side is None and name == file.stem else f"{file}: tensor {name!r}"
    size = file.stat().st_size
    with open(file, "rb") as f:
        dtype, shape, fortran, hlen = _npyfmt.read_header(f, where)
    if dtype.hasobject:
        if not allow_pickle:
            raise FormatError(f"{where}: holds pickled objects; pass allow_pickle=True "
                              "(--allow-pickle) only for files you trust")
        def load_pickle() -> object:
            # latin-1 maps a Python 2 ``str`` (array data) byte for byte; numpy's default fails.
            return np.load(file, allow_pickle=True, encoding="latin1")

        return _npyfmt.unpickled(str(file), load_pickle, name, prefix)
    nbytes = math.prod(shape) * dtype.itemsize
    if size != hlen + nbytes:
        # Extra bytes mean the header lies as surely as missing ones: a header length one short
        # would shift the data by a byte, a smaller dtype would read a prefix.
        what = "truncated" if size < hlen + nbytes else "wrong size"
        raise FormatError(f"{where}: {what} ({size - hlen} data bytes, {nbytes} expected for "
                          f"shape {list(shape)} {dtype})")
    real_dtype, real_shape = _npyfmt.stored_shape_dtype(dtype, shape, side, where)
    cache: list = []

    def load() -> np.ndarray:
        if not cache:
            cache.append(map_file(file))
        buf = cache[0]
        if fortran:
            raw = frombuffer(buf, dtype, shape[::-1], hlen).T
        else:
            raw = frombuffer(buf, dtype, shape, hlen)
        return _npyfmt.restore(raw, side, where)

    plain = not fortran and (not side or side.get("dtype") != "string")
    return [Tensor(name, real_dtype, real_shape, load,
                   span=(str(file), hlen, nbytes) if plain else None)]


def read(path: Path, *, allow_pickle: bool = False) -> Checkpoint:
    if path.is_file():
        found = _open_npy(path, path.stem, None, allow_pickle)
        return Checkpoint({t.name: t for t in found}, source=Source("npy", str(path)))
    if not path.is_dir():
        raise FormatError(f"{path}: no such file or directory")
    index_file = path / INDEX
    tensors: dict[str, Tensor] = {}
    metadata: dict[str, str] = {}
    root = path.resolve()
    if index_file.is_file():
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
            entries = index["tensors"]
            metadata = {str(k): str(v) for k, v in index.get("metadata", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise FormatError(f"{index_file}: malformed index "
                              f"({first_line(exc)})") from None
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                    or not isinstance(entry.get("file"), str):
                raise FormatError(f"{index_file}: malformed entry {entry!r}")
            name, rel = entry["name"], entry["file"]
            file = (path / rel).resolve()
            if root not in file.parents:
                raise FormatError(f"{index_file}: tensor {name!r} points outside the directory")
            if name in tensors:
                raise FormatError(f"{index_file}: tensor {name!r} is listed twice")
            if not file.is_file():
                raise FormatError(f"{index_file}: tensor {name!r}: missing file {rel}")
            side = {k: v for k, v in entry.items() if k in ("dtype", "shape")} or None
            for t in _open_npy(file, name, side, allow_pickle, prefix=name):
                tensors[t.name] = t
    else:
        for file in sorted(path.rglob("*.npy")):
            rel = file.relative_to(path).as_posix()
            if root not in file.resolve().parents:
                # As with an index: a link out of the directory must not make us read other files.
                raise FormatError(f"{path}: {rel} resolves outside the directory "
                                  f"({file.resolve()}); refusing to follow it")
            if not file.is_file():
                continue
            name = path_to_name(rel)
            for t in _open_npy(file, name, None, allow_pickle, prefix=name):
                if t.name in tensors:
                    raise FormatError(f"{path}: tensor {t.name!r} is stored twice")
                tensors[t.name] = t
        if not tensors:
            raise FormatError(f"{path}: directory holds no .npy files")
    return Checkpoint(tensors, metadata, source=Source("npy", str(path)))


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False) -> None:
    if path.suffix.lower() == ".npy":
        _write_single(ckpt, path, force)
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory")
    entries = []
    used: set[str] = set()
    with outputs(force) as out:
        # --force replaces an earlier npy output, never a directory holding anything else.
        tmp = out.new(path, directory=True, owned=_files_of)
        for tensor in tracked(ckpt.values(), total=ckpt.nbytes, enabled=progress):
            check_name(path, tensor.name, "an npy directory")
            check_dtype(path, tensor, "npy")
            rel = name_to_path(tensor.name)
            if rel.lower() in used:  # case-insensitive file systems, hash-shortened names
                rel = rel[:-4] + "~" + hashlib.sha1(tensor.name.encode()).hexdigest()[:12] + ".npy"
            used.add(rel.lower())
            encoded = _npyfmt.encode(tensor)
            side = encoded[2]
            file = tmp / rel
            file.parent.mkdir(parents=True, exist_ok=True)
            with open(file, "wb") as f:
                _npyfmt.write(f, tensor, encoded)
            entries.append({"name": tensor.name, "file": rel, **(side or {})})
        index = {"version": 1, "metadata": ckpt.metadata, "tensors": entries}
        (tmp / INDEX).write_text(json.dumps(index, ensure_ascii=False, indent=1), encoding="utf-8")


def _files_of(path: Path) -> set[str]:
    """The files an npy directory written by us is made of (nothing when it has no index)."""
    try:
        entries = json.loads((path / INDEX).read_text(encoding="utf-8"))["tensors"]
        return {INDEX} | {e["file"] for e in entries if isinstance(e.get("file"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return set()


def _write_single(ckpt: Checkpoint, path: Path, force: bool) -> None:
    if len(ckpt) != 1:
        raise UsageError(
            f"{path}: a .npy file holds one tensor, the checkpoint has {len(ckpt)}; "
            "write to a directory (--to npy) or an .npz instead"
        )
    (tensor,) = ckpt.values()
    check_dtype(path, tensor, "npy")
    if tensor.dtype.hasobject or not dtypes.is_native(tensor.dtype):
        raise FormatError(
            f"{path}: tensor {tensor.name!r} has dtype {dtypes.name_of(tensor.dtype)}, which a "
            "lone .npy cannot record; write an npy directory or an .npz instead"
        )
    with outputs(force) as out:
        tmp = out.new(path)
        with open(tmp, "wb") as f:
            _npyfmt.write(f, tensor, _npyfmt.encode(tensor))
