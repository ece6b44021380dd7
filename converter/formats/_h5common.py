"""HDF5 reading that the ``hdf5`` and ``keras`` formats share: the h5py import, the guards that
keep a damaged or hostile file from hanging libhdf5 or making us allocate what it does not
store, and datasets as lazy tensors.

Guards, all checked before HDF5 reads the data they protect: global heap collections (where
variable-length strings live) are validated first, since libhdf5 loops forever on some damaged
ones; variable-length lengths of contiguous datasets are checked against the file size; storage
HDF5 never allocated reads as the fill value only up to ``MAX_UNBACKED`` bytes per dataset, and
deflated chunks may not declare more than deflate can produce from their stored bytes; data kept
in other files (external storage, virtual datasets) is refused unless the caller allows it;
references (object and region) are refused: they point into the file, they are not tensor data.
"""

from __future__ import annotations

import math
import mmap
import os
from pathlib import Path

import numpy as np

from .. import dtypes
from ..errors import CorruptionError, FormatError
from ..tensor import Tensor
from ._common import MAX_RATIO, first_line


def require_h5py():
    """The h5py module, or a one-line FormatError saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise FormatError('HDF5 needs h5py: pip install h5py') from None
    return h5py


# What h5py raises on a damaged file besides OSError (HDF5's own errors): bad attribute types,
# dataspaces and dtypes surface as these.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError)

SCAN_WHOLE = 64 << 20  # below this, reading the whole file costs less than visiting it


# Where an HDF5 file's bytes are: ``(file, offset, size)``, for the checks that read raw bytes
# (an HDF5 file stored inside a zip starts at its member's offset).
Window = tuple[str, int, int]


def _window(path: Path) -> Window:
    return str(path), 0, os.path.getsize(path)


def check_global_heaps(path: Path, f, raw: Window | None = None) -> None:
    """Validate the global heap collections (GCOL: where variable-length strings live) before
    HDF5 reads any: libhdf5 (1.14.6) loops forever on a collection holding an object of length
    zero, and Python cannot interrupt it. In a large file the scan skips the contiguous datasets'
    raw data, so it reads little more than the metadata."""
    h5py = require_h5py()
    file, base, size = raw or _window(path)
    extents: list[tuple[int, int]] = []

    def visit(name: bytes) -> None:
        obj = h5py.h5o.open(f.id, name)
        if isinstance(obj, h5py.h5d.DatasetID):
            offset, nbytes = obj.get_offset(), obj.get_storage_size()
            if offset is not None and nbytes:
                extents.append((base + offset, base + offset + nbytes))

    if size > SCAN_WHOLE:
        h5py.h5o.visit(f.id, visit)
    with open(file, "rb") as fh:
        end = min(os.fstat(fh.fileno()).st_size, base + size)
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if end else b""
    try:
        pos = base
        for start, stop in sorted(extents) + [(end, end)]:
            at = buf.find(b"GCOL", pos, max(pos, start) + 3)
            while at >= 0:
                _check_collection(path, buf, at, end)
                at = buf.find(b"GCOL", at + 4, max(pos, start) + 3)
            pos = max(pos, stop)
    finally:
        if isinstance(buf, mmap.mmap):  # an empty file maps nothing (b"")
            buf.close()


def _check_collection(path: Path, buf, at: int, end: int) -> None:
    if at + 16 > end or buf[at + 4] != 1:
        return  # the bytes "GCOL" outside a heap (a heap has version 1)
    size = int.from_bytes(buf[at + 8:at + 16], "little")
    if size < 4096 or at + size > end:
        raise CorruptionError(f"{path}: corrupt global heap at offset {at} (size {size})")
    p, stop = at + 16, at + size
    while p + 16 <= stop:
        index = int.from_bytes(buf[p:p + 2], "little")
        length = int.from_bytes(buf[p + 8:p + 16], "little")
        need = length if index == 0 else 16 + (length + 7) // 8 * 8
        if need < 16 or p + need > stop:
            raise CorruptionError(f"{path}: corrupt global heap at offset {at} (object "
                                  f"{index} of length {length} at {p})")
        p += need


def _check_vlen_lengths(path: Path, ds, where: str, raw: Window | None = None) -> None:
    """HDF5 allocates each variable-length element at the length stored beside its heap
    reference, before it reads the heap: check the lengths of a contiguous dataset against the
    file size first (a damaged length would ask for gigabytes)."""
    file, base, file_size = raw or _window(path)
    offset, size = ds.id.get_offset(), ds.id.get_storage_size()
    count = math.prod(ds.shape or ())
    if offset is None or not size or size != 16 * count:
        return  # compact or chunked storage, or other address sizes: left to HDF5
    if offset + size > file_size:
        raise CorruptionError(f"{where}: data at {offset}+{size} runs past the end of the file")
    with open(file, "rb") as fh:
        fh.seek(base + offset)
        data = fh.read(size)
    if len(data) < size:
        raise CorruptionError(f"{where}: data at {offset}+{size} runs past the end of the file")
    lengths = np.frombuffer(data, dtype=[("n", "<u4"), ("ref", "V12")], count=count)["n"]
    vlen = require_h5py().check_vlen_dtype(ds.dtype)
    total = sum(lengths.tolist()) * (1 if vlen in (str, bytes) else np.dtype(vlen).itemsize)
    if total > file_size:
        raise CorruptionError(f"{where}: its variable-length elements claim {total} bytes, more "
                              "than the file holds")


def _check_storage(path: Path, ds, allow_external: bool) -> None:
    """Refuse datasets whose data lives in other files, and contiguous datasets whose stored
    size does not match their shape (a damaged dataspace would make us allocate its size)."""
    h5py = require_h5py()
    where = f"{path}: dataset {ds.name!r}"
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if not allow_external:
        if plist.get_external_count():
            files = ", ".join(plist.get_external(i)[0].decode("utf-8", "replace")
                              for i in range(plist.get_external_count()))
            raise FormatError(f"{where}: its data is stored in external file(s) {files}; "
                              "refusing to read them (allow_external=True for files you trust)")
        if layout == h5py.h5d.VIRTUAL:
            outside = sorted({m.file_name for m in ds.virtual_sources() if m.file_name != "."})
            if outside:
                raise FormatError(f"{where}: a virtual dataset mapping {', '.join(outside)}; "
                                  "refusing to read other files (allow_external=True for files "
                                  "you trust)")
    _check_backed(ds, plist, layout, where)
    if layout == h5py.h5d.CONTIGUOUS and not plist.get_external_count() and \
            not ds.dtype.hasobject:
        stored = ds.id.get_storage_size()
        nbytes = math.prod(ds.shape or ()) * ds.dtype.itemsize
        if stored and stored != nbytes:
            raise FormatError(f"{where}: {stored} bytes stored, {nbytes} expected for shape "
                              f"{list(ds.shape or ())} {ds.dtype}")


MAX_UNBACKED = 16 << 20
_PLAIN_FILTERS = {1, 2, 3}  # deflate, shuffle, fletcher32: at most deflate's expansion


def _check_backed(ds, plist, layout: int, where: str) -> None:
    """Refuse a dataset that would make us allocate far more than the file stores. Storage
    HDF5 never allocated (a contiguous dataset without data, chunks never written) reads as the
    fill value: up to MAX_UNBACKED bytes of it are read, more is refused, since a file of a few
    bytes can declare terabytes that way. Chunks stored with deflate (and shuffle, fletcher32)
    cannot hold more than MAX_RATIO times their stored size."""
    h5py = require_h5py()
    nbytes = math.prod(ds.shape or ()) * ds.dtype.itemsize
    if not nbytes or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED) or \
            plist.get_external_count():
        return
    stored = ds.id.get_storage_size()
    if layout == h5py.h5d.CONTIGUOUS:
        backed = nbytes if stored else 0
    else:
        chunk = math.prod(ds.chunks) * ds.dtype.itemsize
        backed = min(nbytes, ds.id.get_num_chunks() * chunk)
        filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        if filters <= _PLAIN_FILTERS and backed > stored * MAX_RATIO + (1 << 20):
            raise FormatError(f"{where}: its {ds.id.get_num_chunks()} chunks store {stored} "
                              f"bytes, which cannot hold the {backed} they declare (corrupt "
                              "file)")
    if nbytes - backed > MAX_UNBACKED:
        raise FormatError(f"{where}: {nbytes - backed} of its {nbytes} bytes are not stored in "
                          "the file (they would read as the fill value); refusing to allocate "
                          f"more than {MAX_UNBACKED} bytes of fill")


def dataset_tensor(path: Path, ds, name: str, allow_external: bool = False,
                   window: Window | None = None) -> Tensor:
    """A lazy tensor over dataset ``ds``; ``window`` locates the HDF5 file's bytes when they are
    not the whole of ``path`` (see :data:`Window`)."""
    h5py = require_h5py()
    where = f"{path}: tensor {name!r}"
    _check_storage(path, ds, allow_external)
    declared = ds.attrs.get("dtype")
    if isinstance(declared, bytes):
        declared = declared.decode()
    if h5py.check_ref_dtype(ds.dtype) is not None:
        raise FormatError(f"{where}: holds HDF5 {h5py.check_ref_dtype(ds.dtype).__name__}s "
                          "(pointers into the file), not tensor data")
    vlen = h5py.check_vlen_dtype(ds.dtype)
    if ds.shape is None:  # h5py.Empty: a null dataspace has no array to give, not even 0-d
        raise FormatError(f"{where}: has a null dataspace (no values, no shape)")
    shape = tuple(ds.shape)
    if vlen is not None or ds.dtype.kind in "SO" or declared == "string":
        def load_strings() -> np.ndarray:
            if vlen is not None:
                _check_vlen_lengths(path, ds, where, window)
            raw = _read_all(ds, where, shape)
            # A scalar dataset reads as its one element (itself an array for vlen uint8).
            items = [raw] if shape == () else np.asarray(raw, dtype=object).reshape(-1)
            out = np.empty(len(items), dtype=object)
            for i, item in enumerate(items):
                out[i] = item.tobytes() if isinstance(item, np.ndarray) else (
                    item.encode() if isinstance(item, str) else bytes(item))
            return out.reshape(shape)

        return Tensor(name, dtypes.STRING, shape, load_strings)
    stored = ds.dtype
    if isinstance(declared, str) and declared:
        try:
            dtype = dtypes.from_name(declared)
        except FormatError:
            raise FormatError(f"{where}: unknown dtype attribute {declared!r}") from None
        if dtype.itemsize != stored.itemsize:
            raise FormatError(f"{where}: stored dtype {stored} cannot hold {declared}")
    else:
        dtype = stored
        if dtype.kind not in "biufc":
            raise FormatError(f"{where}: unsupported HDF5 type {stored}")

    def load() -> np.ndarray:
        raw = np.asarray(_read_all(ds, where, shape))
        return raw.view(dtype) if raw.dtype != dtype else raw

    return Tensor(name, dtype, shape, load)


def _read_all(ds, where: str, shape: tuple[int, ...]):
    try:
        return ds[()]
    except MemoryError:
        raise FormatError(f"{where}: shape {list(shape)} is too large to read") from None
    except H5_ERRORS as exc:
        raise FormatError(f"{where}: unreadable data ({first_line(exc)})") from None
