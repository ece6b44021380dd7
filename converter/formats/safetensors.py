"""safetensors: https://github.com/huggingface/safetensors (format described in its README).

Layout: 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
padded with spaces to a multiple of 8), then the data buffer. We read and write the format
directly so that reading maps the file and writing streams one tensor at a time.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from functools import partial
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import TYPE_CHECKING

from .. import dtypes, storage
from ..errors import FormatError
from ..outputs import Outputs, outputs
from ..progress import tracked
from ..tensor import Checkpoint, Source, Tensor

if TYPE_CHECKING:  # the writer runs without numpy when it only copies bytes
    import numpy as np

from ._common import (
    check_dtype,
    check_name,
    check_shape,
    first_line,
    frombuffer,
    gc_paused,
    map_file,
    release,
    split_by_size,
)
from .stream import copy_all

# safetensors dtype code <-> canonical dtype name
CODES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "F64": "float64", "I64": "int64", "U64": "uint64", "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn", "C64": "complex64",
}
NAMES = {v: k for k, v in CODES.items()}
MAX_HEADER = 100 * 2**20
INDEX_SUFFIX = ".safetensors.index.json"


def sniff(path: Path) -> bool:
    if path.is_dir():
        return any(path.glob("*" + INDEX_SUFFIX)) or any(path.glob("*.safetensors"))
    if path.name.endswith(INDEX_SUFFIX):
        return path.is_file()
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    # A file named for the format whose header runs past its end is a truncated one: claimed,
    # so that the reader says so, rather than "not a checkpoint of any known format".
    return head[8:9] == b"{" and (n <= path.stat().st_size - 8
                                  or path.name.endswith(".safetensors"))


def read(path: Path) -> Checkpoint:
    """Open a ``.safetensors`` file, or a sharded checkpoint by its ``*.safetensors.index.json``
    or the directory holding it (the Hugging Face layout)."""
    if path.is_dir() or path.name.endswith(INDEX_SUFFIX):
        return _read_sharded(path)
    index = path.with_name(path.name + ".index.json")
    if not path.exists() and path.name.endswith(".safetensors") and index.is_file():
        return _read_sharded(index)  # the name a sharded output was written under
    return _read_file(path)


@gc_paused()  # a header of many tensors builds tens of thousands of small objects
def _read_file(path: Path) -> Checkpoint:
    size = path.stat().st_size
    with open(path, "rb") as f:
        def pread(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        header, metadata, start = _header(str(path), size, pread)
    buf = map_file(path)
    tensors = _tensors(str(path), header, start, size,
                       lambda dtype, shape, at: partial(frombuffer, buf, dtype, shape, at))
    return Checkpoint(tensors, metadata, source=Source("safetensors", str(path)),
                      closers=[lambda: release(buf)])


@gc_paused()
def read_url(url: str) -> Checkpoint:
    """A ``.safetensors`` object on remote storage (or a sharded checkpoint by its
    ``*.safetensors.index.json``): its header by two ranged reads, each tensor's bytes by a
    ranged read of its own when asked for."""
    if url.endswith(INDEX_SUFFIX):
        return _read_sharded_url(url)
    if url.endswith("/") or not url.endswith(".safetensors") and storage.is_prefix_dir(url):
        return read_url(_index_under(url))
    try:
        obj = storage.open_file(url)
    except FormatError:
        index = url + ".index.json"
        if url.endswith(".safetensors") and storage.exists(index):
            return _read_sharded_url(index)  # the name a sharded output was written under
        raise
    header, metadata, start = _header(url, obj.size, obj.pread)

    def load(dtype: np.dtype, shape: tuple[int, ...], at: int) -> Callable[[], np.ndarray]:
        n = math.prod(shape) * dtype.itemsize
        return lambda: frombuffer(obj.pread(at, n), dtype, shape, 0)

    tensors = _tensors(url, header, start, obj.size, load)
    return Checkpoint(tensors, metadata, source=Source("safetensors", url))


def _header(path: str, size: int, pread: Callable[[int, int], bytes]
            ) -> tuple[dict, dict[str, str], int]:
    """The header's tensor entries, its ``__metadata__`` and where the data starts."""
    head = pread(0, 8) if size >= 8 else b""
    if len(head) < 8:
        raise FormatError(f"{path}: truncated safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > min(size - 8, MAX_HEADER):
        raise FormatError(f"{path}: header length {n} exceeds the file size {size}")
    raw = pread(8, n)
    try:
        header = json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise FormatError(f"{path}: tensor {exc.args[0]!r} appears twice in the header") from None
    except RecursionError:
        raise FormatError(f"{path}: safetensors header is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise FormatError(f"{path}: safetensors header is not valid JSON "
                          f"({first_line(exc)})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(f"{path}: __metadata__ must map strings to strings")
    return header, metadata, 8 + n


def _tensors(path: str, header: dict, start: int, size: int,
             load: Callable[[np.dtype, tuple[int, ...], int], Callable[[], np.ndarray]]
             ) -> dict[str, Tensor]:
    """The header's tensors, checked against the data's ``size - start`` bytes; ``load``
    makes the function that reads one (dtype, shape, file offset)."""
    data_size = size - start
    tensors: dict[str, Tensor] = {}
    ranges = []
    for name, info in header.items():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError(f"{path}: tensor name {name!r} is not valid UTF-8") from None
        if not isinstance(info, dict):
            raise FormatError(f"{path}: tensor {name!r}: header entry is not an object")
        code = info.get("dtype")
        if not isinstance(code, str) or code not in CODES:
            raise FormatError(f"{path}: tensor {name!r}: unsupported dtype {code!r}")
        dtype = dtypes.from_name(CODES[code])
        shape = check_shape(f"{path}: tensor {name!r}", info.get("shape"))
        offsets = info.get("data_offsets")
        if (
            not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise FormatError(f"{path}: tensor {name!r}: data_offsets {offsets!r} outside the data")
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise FormatError(
                f"{path}: tensor {name!r}: {offsets[1] - offsets[0]} bytes stored, "
                f"{nbytes} expected for shape {list(shape)} {CODES[code]}"
            )
        ranges.append((offsets[0], offsets[1], name))
        tensors[name] = Tensor(name, dtype, shape, load(dtype, shape, start + offsets[0]),
                               span=(path, start + offsets[0], nbytes))
    ranges.sort()
    for (_, e0, n0), (b1, _, n1) in zip(ranges, ranges[1:], strict=False):
        if b1 < e0:
            raise FormatError(f"{path}: tensors {n0!r} and {n1!r} overlap")
    # As the reference implementation requires, the tensors tile the data exactly: a gap or
    # trailing bytes mean the header length or the offsets are wrong (a header one byte short
    # would otherwise shift every tensor by a byte).
    end = 0
    for b, e, name in ranges:
        if b != end:
            raise FormatError(f"{path}: tensor {name!r} starts at data offset {b}, expected "
                              f"{end} (the header length or offsets are wrong)")
        end = e
    if end != data_size:
        raise FormatError(f"{path}: the tensors end at data offset {end} but the file holds "
                          f"{data_size} bytes of data (truncated header or extra bytes)")
    return tensors


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _index_of(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = sorted(path.glob("*" + INDEX_SUFFIX))
    if len(found) == 1:
        return found[0]
    files = sorted(path.glob("*.safetensors"))
    if not found and len(files) == 1:
        return files[0]
    raise FormatError(f"{path}: expected one *{INDEX_SUFFIX} (or one .safetensors file), found "
                      f"{len(found)} index files and {len(files)} .safetensors files")


def _read_sharded(path: Path) -> Checkpoint:
    index = _index_of(path)
    if not index.name.endswith(INDEX_SUFFIX):
        return _read_file(index)
    weight_map = _weight_map(str(index), index.read_bytes())
    root = index.parent.resolve()

    def part(name: str) -> Checkpoint:
        shard = (index.parent / name).resolve()
        if root not in shard.parents:
            raise FormatError(f"{index}: shard {name!r} lies outside the directory")
        if not shard.is_file():
            raise FormatError(f"{index}: shard {name!r} is missing")
        return _read_file(shard)

    return _assemble(str(index), index.name, weight_map, part)


def _index_under(url: str) -> str:
    """The one ``*.safetensors.index.json`` (or lone ``.safetensors``) under a prefix, as
    :func:`_index_of` finds it in a directory."""
    names = storage.listing(url)
    found = sorted(n for n in names if n.endswith(INDEX_SUFFIX))
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if len(found) == 1:
        return storage.join(url, found[0])
    if not found and len(files) == 1:
        return storage.join(url, files[0])
    raise FormatError(f"{url}: expected one *{INDEX_SUFFIX} (or one .safetensors file), found "
                      f"{len(found)} index files and {len(files)} .safetensors files")


def _read_sharded_url(url: str) -> Checkpoint:
    weight_map = _weight_map(url, storage.open_file(url).read_all(MAX_HEADER))
    base = storage.parent(url)

    def part(name: str) -> Checkpoint:
        shard = storage.join(base, name)
        if storage.key_problem(base, shard) is not None or "/" in name:
            raise FormatError(f"{url}: shard {name!r} lies outside the directory")
        if not storage.exists(shard):
            raise FormatError(f"{url}: shard {name!r} is missing")
        return read_url(shard)

    return _assemble(url, storage.name(url), weight_map, part)


def _weight_map(index: str, raw: bytes) -> dict[str, str]:
    try:
        doc = json.loads(raw.decode("utf-8"))
        weight_map = doc["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise FormatError(f"{index}: not a safetensors index "
                          f"({first_line(exc)})") from None
    if not isinstance(weight_map, dict):
        raise FormatError(f"{index}: weight_map must be an object mapping tensor names to shard "
                          f"files, found {type(weight_map).__name__}")
    for key, value in weight_map.items():
        if not isinstance(value, str) or not value or "\0" in value:
            raise FormatError(f"{index}: weight_map[{key!r:.80}] must name a shard file, found "
                              f"{value!r:.80}")
    return weight_map


def _assemble(index: str, index_name: str, weight_map: dict[str, str],
              part: Callable[[str], Checkpoint]) -> Checkpoint:
    """The shards ``weight_map`` names, opened by ``part``, as one checkpoint; every tensor
    must be in the shard the index says."""
    files = list(dict.fromkeys(weight_map.values()))
    tensors: dict[str, Tensor] = {}
    metadata: dict[str, str] = {}
    closers = []
    for name in files:
        shard = part(name)
        closers.append(shard.close)
        metadata.update(shard.metadata)
        where = shard.source.path if shard.source is not None else name
        for key, tensor in shard.items():
            if weight_map.get(key) != name:
                raise FormatError(f"{where}: tensor {key!r} is not listed for this shard "
                                  f"in {index_name}")
            tensors[key] = tensor
    missing = set(weight_map) - set(tensors)
    if missing:
        raise FormatError(f"{index}: tensor {sorted(missing)[0]!r} is not in its shard")
    return Checkpoint(tensors, metadata, closers=closers,
                      source=Source("safetensors", index, shards=len(files)))


def shard_names(path: Path, n: int) -> list[Path]:
    """``model.safetensors`` → ``model-00001-of-00003.safetensors`` ... (Hugging Face names)."""
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return [path.with_name(f"{stem}-{i:05d}-of-{n:05d}.safetensors") for i in range(1, n + 1)]


def header_for(tensors: list[Tensor], metadata: dict[str, str], path: Path) -> bytes:
    """The padded header bytes for ``tensors`` (written in that order).

    The JSON text is what ``json.dumps(header, separators=(",", ":"), ensure_ascii=False)`` gives,
    built from pieces: with tens of thousands of tensors, a dict per tensor for ``json`` to walk
    costs more than the rest of the header."""
    parts = []
    if metadata:
        parts.append('"__metadata__":' + json.dumps(
            {str(k): str(v) for k, v in metadata.items()}, separators=(",", ":"),
            ensure_ascii=False))
    # By the tensor's dtype as its reader gave it: a name (no numpy needed) or a numpy dtype.
    codes: dict[object, tuple[str, int]] = {}
    shapes: dict[tuple[int, ...], str] = {}
    offset = 0
    for tensor in tensors:
        name = tensor.name
        check_name(path, name, "safetensors")
        if name == "__metadata__":
            raise FormatError(f"{path}: tensor {name!r}: the name is reserved in safetensors")
        found = codes.get(tensor._dtype)
        if found is None:
            if type(tensor._dtype) is not str:
                check_dtype(path, tensor, "safetensors")
            dtype_name = tensor.dtype_name
            if dtype_name not in NAMES:
                raise FormatError(f"{path}: tensor {name!r} has dtype {dtype_name}, which "
                                  "safetensors cannot store")
            found = codes[tensor._dtype] = (f'{{"dtype":"{NAMES[dtype_name]}","shape":[',
                                            dtypes.ITEMSIZE[dtype_name])
        code, itemsize = found
        shape = shapes.get(tensor.shape)
        if shape is None:
            shape = shapes[tensor.shape] = ",".join(map(str, tensor.shape))
        end = offset + tensor.size * itemsize
        parts.append(f'{_json_string(name)}:{code}{shape}],"data_offsets":[{offset},{end}]}}')
        offset = end
    raw = ("{" + ",".join(parts) + "}").encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False,
          max_shard_size: int | str | None = None) -> None:
    """Write one ``.safetensors`` file, or with ``max_shard_size`` (bytes) and more data than
    that, ``NAME-0000i-of-0000N.safetensors`` shards plus ``NAME.safetensors.index.json``."""
    with outputs(force) as out:
        write_into(out, ckpt, path, max_shard_size=max_shard_size, progress=progress)


def write_into(out: Outputs, ckpt: Checkpoint, path: Path, *,
               max_shard_size: int | str | None = None, progress: bool = False) -> list[Path]:
    """:func:`write` as part of a larger output ``out`` (a Hugging Face directory); returns the
    files it adds. Every header is built, and so every tensor judged, before a byte is written."""
    groups = split_by_size(list(ckpt.values()), max_shard_size)
    heads = [header_for(group, ckpt.metadata, path) for group in groups]  # refuse before writing
    files = [path] if len(groups) == 1 else shard_names(path, len(groups))
    stream = tracked(list(ckpt.values()), total=ckpt.nbytes, enabled=progress)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    # An earlier output of this name, sharded differently, is replaced as a whole.
    out.sweep(path.parent, rf"{re.escape(stem)}-\d{{5}}-of-\d{{5}}\.safetensors"
                           rf"|{re.escape(path.name)}(?:\.index\.json)?")
    for file, head, group in zip(files, heads, groups, strict=True):
        with open(out.new(file), "wb") as f:
            f.write(head)
            for _ in copy_all(f, group):
                next(stream)
    if len(groups) > 1:
        index = {"metadata": {"total_size": ckpt.nbytes},
                 "weight_map": {t.name: file.name
                                for file, group in zip(files, groups, strict=True)
                                for t in group}}
        files.append(path.with_name(path.name + ".index.json"))
        out.new(files[-1]).write_text(json.dumps(index, indent=2, ensure_ascii=False),
                                      encoding="utf-8")
    return files
