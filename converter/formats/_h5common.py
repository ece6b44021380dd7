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

from .. import dtypes, storage
from ..errors import CorruptionError, FormatError
from ..tensor import Span, Tensor, ZipMember
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
# and for the spans of contiguous datasets. ``file`` is a local path (an HDF5 file stored inside
# a zip starts at its member's offset) or the reader a remote object is read through.
Window = tuple["str | storage.RangeReader", int, int]


def local_window(path: Path | str) -> Window:
    return str(path), 0, os.path.getsize(path)


def remote_window(reader: storage.RangeReader) -> Window:
    return reader, 0, reader.obj.size


def _read_raw(file: str | storage.RangeReader, offset: int, n: int) -> bytes:
    if isinstance(file, str):
        with open(file, "rb") as fh:
            fh.seek(offset)
            return fh.read(n)
    return file.read_at(offset, n, ahead=False)


def _extents(f, base: int) -> list[tuple[int, int]]:
    """Where the datasets' raw data lie (contiguous data and chunks), sorted: the bytes a scan
    for metadata may skip."""
    h5py = require_h5py()
    extents: list[tuple[int, int]] = []

    def chunk(info) -> None:
        if info.byte_offset is not None and info.size:
            extents.append((base + info.byte_offset, base + info.byte_offset + info.size))

    def visit(name: bytes) -> None:
        obj = h5py.h5o.open(f.id, name)
        if isinstance(obj, h5py.h5d.DatasetID):
            offset, nbytes = obj.get_offset(), obj.get_storage_size()
            if offset is not None and nbytes:
                extents.append((base + offset, base + offset + nbytes))
            elif nbytes and obj.get_create_plist().get_layout() == h5py.h5d.CHUNKED:
                obj.chunk_iter(chunk)

    h5py.h5o.visit(f.id, visit)
    return sorted(extents)


def check_global_heaps(path: Path | str, f, raw: Window | None = None) -> None:
    """Validate the global heap collections (GCOL: where variable-length strings live) before
    HDF5 reads any: libhdf5 (1.14.6) loops forever on a collection holding an object of length
    zero, and Python cannot interrupt it. In a large file, and in any remote one, the scan
    skips the datasets' raw data, so it reads little more than the metadata."""
    file, base, size = raw or local_window(path)
    buf: mmap.mmap | bytes | _RemoteBytes
    if isinstance(file, str):
        extents = _extents(f, base) if size > SCAN_WHOLE else []
        with open(file, "rb") as fh:
            end = min(os.fstat(fh.fileno()).st_size, base + size)
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if end else b""
    else:
        extents = _extents(f, base)
        end = min(file.obj.size, base + size)
        buf = _RemoteBytes(file)
    try:
        pos = base
        for start, stop in extents + [(end, end)]:
            at = buf.find(b"GCOL", pos, max(pos, start) + 3)
            while at >= 0:
                _check_collection(path, buf, at, end)
                at = buf.find(b"GCOL", at + 4, max(pos, start) + 3)
            pos = max(pos, stop)
    finally:
        if isinstance(buf, mmap.mmap):  # an empty file maps nothing (b"")
            buf.close()


class _RemoteBytes:
    """A remote object as the heap scan reads a memory map (``find``, ``buf[i]``,
    ``buf[a:b]``), fetched in pieces of at most ``storage.PIECE`` bytes and never further than
    asked: past the end of a gap lie the data the scan skips."""

    def __init__(self, reader: storage.RangeReader) -> None:
        self.reader = reader
        self._found = (0, b"")  # the piece ``find`` searched last
        self._sliced = (0, b"")  # and the one slices came from

    def find(self, sub: bytes, start: int, stop: int) -> int:
        stop = min(stop, self.reader.obj.size)
        while stop - start >= len(sub):
            piece = min(stop, start + storage.PIECE)
            at = self._load("_found", start, piece, piece - start).find(sub)
            if at >= 0:
                return start + at
            start = piece - len(sub) + 1
        return -1

    def __getitem__(self, key: int | slice) -> bytes | int:
        if isinstance(key, int):
            return self._load("_sliced", key, key + 1, 1 << 16)[0]
        size = self.reader.obj.size
        start, stop = min(key.start, size), min(key.stop, size)
        return self._load("_sliced", start, stop, 1 << 16)

    def _load(self, slot: str, start: int, stop: int, least: int) -> bytes:
        at, data = getattr(self, slot)
        if not (at <= start and stop <= at + len(data)):
            at, data = start, self.reader.read_at(start, max(stop - start, least), ahead=False)
            setattr(self, slot, (at, data))
        return data[start - at:stop - at]


def _check_collection(path: Path | str, buf, at: int, end: int) -> None:
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


def _check_vlen_lengths(path: Path | str, ds, where: str, raw: Window | None = None) -> None:
    """HDF5 allocates each variable-length element at the length stored beside its heap
    reference, before it reads the heap: check the lengths of a contiguous dataset against the
    file size first (a damaged length would ask for gigabytes)."""
    file, base, file_size = raw or local_window(path)
    offset, size = ds.id.get_offset(), ds.id.get_storage_size()
    count = math.prod(ds.shape or ())
    if offset is None or not size or size != 16 * count:
        return  # compact or chunked storage, or other address sizes: left to HDF5
    if offset + size > file_size:
        raise CorruptionError(f"{where}: data at {offset}+{size} runs past the end of the file")
    data = _read_raw(file, base + offset, size)
    if len(data) < size:
        raise CorruptionError(f"{where}: data at {offset}+{size} runs past the end of the file")
    lengths = np.frombuffer(data, dtype=[("n", "<u4"), ("ref", "V12")], count=count)["n"]
    vlen = require_h5py().check_vlen_dtype(ds.dtype)
    total = sum(lengths.tolist()) * (1 if vlen in (str, bytes) else np.dtype(vlen).itemsize)
    if total > file_size:
        raise CorruptionError(f"{where}: its variable-length elements claim {total} bytes, more "
                              "than the file holds")


def _check_storage(path: Path | str, ds, allow_external: bool) -> None:
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


def dataset_tensor(path: Path | str, ds, name: str, allow_external: bool = False,
                   window: Window | None = None, member: ZipMember | None = None) -> Tensor:
    """A lazy tensor over dataset ``ds``; ``window`` locates the HDF5 file's bytes when they are
    not the whole of ``path`` (see :data:`Window`). A contiguous dataset stored as numpy lays
    out its dtype carries its span there, so conversions copy its bytes by ranges. ``member``
    is the stored zip member of the local file ``path`` that holds the HDF5 file: reading the
    tensor, or streaming its span, checks the member's CRC-32 first."""
    tensor = _dataset_tensor(path, ds, name, allow_external, window)
    if member is None:
        return tensor
    from . import stream

    def checked(load=tensor._load) -> np.ndarray:
        stream.check_member(str(path), name, member)
        return load()

    return Tensor._trusted(name, tensor._dtype, tensor.shape, tensor.size, checked,
                           tensor._kind, tensor.span, tensor.crc32c, tensor.attrs, member)


def _dataset_tensor(path: Path | str, ds, name: str, allow_external: bool,
                    window: Window | None) -> Tensor:
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

    return Tensor(name, dtype, shape, load, span=_span(ds, stored, window or local_window(path)))


def _span(ds, stored: np.dtype, window: Window) -> Span | None:
    """Where a contiguous dataset's bytes lie, if they are what numpy holds: allocated, of the
    size its shape says, in the file type h5py itself makes of ``stored`` in little-endian
    order (HDF5 converts other types as it reads: other float layouts, enums, compounds)."""
    h5py = require_h5py()
    offset = ds.id.get_offset()  # None for chunked, compact, external or virtual storage
    nbytes = math.prod(ds.shape) * stored.itemsize
    if offset is None or not nbytes or ds.id.get_storage_size() != nbytes or \
            stored.byteorder == ">" or ds.id.get_type() != h5py.h5t.py_create(stored):
        return None
    file, base, _ = window
    return (file if isinstance(file, str) else file.obj.url, base + offset, nbytes)


def _read_all(ds, where: str, shape: tuple[int, ...]):
    try:
        return ds[()]
    except MemoryError:
        raise FormatError(f"{where}: shape {list(shape)} is too large to read") from None
    except H5_ERRORS as exc:
        raise FormatError(f"{where}: unreadable data ({first_line(exc)})") from None
