"""HDF5 (via h5py) with groups mirroring scopes: ``dense/kernel`` is group ``dense``, dataset
``kernel``; checkpoint metadata are string attributes of the root group.

Escapes: HDF5 forbids the link names ``.`` and empty, so a name part ``.`` is written ``%2E``, an
empty part ``%`` and a literal ``%`` as ``%25``. A name that is also a scope (``dense/kernel``
beside ``dense/kernel/Adam``, as in every TF1 Adam checkpoint) cannot be both a dataset and a
group, so its dataset takes TF's ``:0`` suffix (``dense/kernel:0``; ``:1``... if that is taken
too). A dataset whose path differs from its name carries the name in the attribute ``name``, and
every dataset we write its position in ``order``, so names and order round-trip whatever the
escaping; files from elsewhere are read by path, in natural order. Dtypes HDF5 lacks are stored
as raw bits in an unsigned integer with attribute ``dtype="bfloat16"`` (as Keras 3 does); byte
strings as variable-length uint8 sequences with ``dtype="string"`` (HDF5 strings stop at NUL).
Names HDF5 cannot hold (NUL, which ends link names and attributes; not valid Unicode) and ranks
above 32 are refused before anything is written.

Reading a file from elsewhere allocates no more than it stores: storage HDF5 never allocated (a
contiguous dataset never written, chunks never written) reads as the dataset's fill value only up
to ``MAX_UNBACKED`` bytes per dataset, and deflated chunks may not declare more than deflate can
produce from their stored bytes; beyond that the dataset is refused in one line. References
(object and region) are refused: they point into the file, they are not tensor data.
"""

from __future__ import annotations

import math
import mmap
import os
from pathlib import Path

import numpy as np

from .. import dtypes
from ..errors import CorruptionError, FormatError
from ..kinds import optimizer_weight_kind
from ..outputs import outputs, signals_held
from ..progress import tracked
from ..tensor import Checkpoint, Source, Tensor
from ..tfnames import natural_key
from ._common import MAX_RATIO, check_dtype, check_name, contiguous_le, first_line
from ._stream import copy_to

MAGIC = b"\x89HDF\r\n\x1a\n"



def sniff(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        # HDF5 allows a user block of 512, 1024, 2048 ... bytes before the superblock.
        for offset in (0, 512, 1024, 2048, 4096):
            f.seek(offset)
            if f.read(8) == MAGIC:
                return True
    return False


def _h5py():
    try:
        import h5py
    except ImportError:
        raise FormatError('HDF5 needs h5py: pip install h5py') from None
    return h5py


def _escape(part: str) -> str:
    if part == "":
        return "%"
    if part == ".":
        return "%2E"
    return part.replace("%", "%25")


def _unescape(part: str) -> str:
    if part == "%":
        return ""
    if part == "%2E":
        return "."
    return part.replace("%25", "%")


# What h5py raises on a damaged file besides OSError (HDF5's own errors): bad attribute types,
# dataspaces and dtypes surface as these.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError)


def read(path: Path, *, allow_external: bool = False) -> Checkpoint:
    """Open an HDF5 file. Data kept outside it (external links, external raw storage, virtual
    datasets mapping other files) is refused unless ``allow_external``: a file from a stranger
    must not make us read arbitrary files."""
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise FormatError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    found: list[tuple[float, int, str, Tensor]] = []

    def visit(hpath: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        attrs = obj.attrs
        name = attrs.get("name")
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(f"{path}: dataset {hpath!r}: its name attribute is not "
                                  "UTF-8") from None
        if not isinstance(name, str):
            name = "/".join(_unescape(p) for p in hpath.split("/"))
        order = attrs.get("order")
        try:
            position = float(order) if order is not None else float("inf")
        except (TypeError, ValueError):
            position = float("inf")
        found.append((position, len(found), name, _tensor(path, obj, name, allow_external)))

    metadata: dict[str, str] = {}
    layout = None
    try:
        _check_global_heaps(path, f)
        links = _external_links(f)
        if links and not allow_external:
            link = f.get(links[0], getlink=True)
            raise FormatError(f"{path}: {links[0]!r} is an external link to {link.filename}:"
                              f"{link.path}; refusing to follow it (allow_external=True for "
                              "files you trust)")
        legacy = _legacy_keras(path, f)
        if legacy is not None:
            layout = "keras2"
            found = [(float(i), i, name, t) for i, (name, t) in enumerate(legacy)]
        else:
            f.visititems(visit)
            for link in links:  # visititems does not follow them
                target = f[link]
                if isinstance(target, h5py.Dataset):
                    visit(link, target)
                else:
                    target.visititems(lambda p, o, base=link: visit(f"{base}/{p}", o))
            if "layers" in f and isinstance(f["layers"], h5py.Group) and "vars" in f:
                layout = "keras3"  # a .weights.h5: layers/<layer>/vars/<i>
    except H5_ERRORS as exc:
        f.close()
        raise FormatError(f"{path}: unreadable HDF5 structure ({first_line(exc)})") from None
    except BaseException:
        f.close()
        raise
    # Files from elsewhere carry no order: list them in natural order (vars/2 before vars/10).
    found.sort(key=lambda x: (x[0], natural_key(x[2]) if x[0] == float("inf") else (), x[1]))
    tensors: dict[str, Tensor] = {}
    for _, _, name, tensor in found:
        if name in tensors:
            f.close()
            raise FormatError(f"{path}: tensor {name!r} is stored twice")
        tensors[name] = tensor
    try:
        if layout == "keras3":
            _keras3_roles(f, tensors)
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                metadata[key] = value
    except H5_ERRORS as exc:
        f.close()
        raise FormatError(f"{path}: unreadable HDF5 attributes ({first_line(exc)})") from None
    return Checkpoint(tensors, metadata, source=Source("hdf5", str(path), layout),
                      closers=[f.close])


SCAN_WHOLE = 64 << 20  # below this, reading the whole file costs less than visiting it


# Where an HDF5 file's bytes are: ``(file, offset, size)``, for the checks that read raw bytes
# (an HDF5 file stored inside a zip starts at its member's offset).
Window = tuple[str, int, int]


def _window(path: Path) -> Window:
    return str(path), 0, os.path.getsize(path)


def _check_global_heaps(path: Path, f, raw: Window | None = None) -> None:
    """Validate the global heap collections (GCOL: where variable-length strings live) before
    HDF5 reads any: libhdf5 (1.14.6) loops forever on a collection holding an object of length
    zero, and Python cannot interrupt it. In a large file the scan skips the contiguous datasets'
    raw data, so it reads little more than the metadata."""
    h5py = _h5py()
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
        if end:
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
    vlen = _h5py().check_vlen_dtype(ds.dtype)
    total = sum(lengths.tolist()) * (1 if vlen in (str, bytes) else np.dtype(vlen).itemsize)
    if total > file_size:
        raise CorruptionError(f"{where}: its variable-length elements claim {total} bytes, more "
                              "than the file holds")


def _external_links(f) -> list[str]:
    """Paths of the file's external links (cheap: no object is opened)."""
    h5py = _h5py()
    found: list[str] = []

    def visit(name: bytes, info) -> None:
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            found.append(name.decode("utf-8", "surrogateescape"))

    f.id.links.visit(visit, info=True)
    return found


def _check_storage(path: Path, ds, allow_external: bool) -> None:
    """Refuse datasets whose data lives in other files, and contiguous datasets whose stored
    size does not match their shape (a damaged dataspace would make us allocate its size)."""
    h5py = _h5py()
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
    h5py = _h5py()
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


def _keras3_roles(f, tensors: dict[str, Tensor]) -> None:
    """Keras 3 ``.weights.h5``: optimizer variables are slots and the step counter, and each
    tensor learns its owner's name (``attrs["keras_name"]``, see ``formats/keras.py``)."""
    from .keras import describe, saveable_names

    for name, (_, attrs, kind) in describe(list(tensors), saveable_names(f)).items():
        tensors[name].attrs.update(attrs)
        tensors[name].kind = kind


def _strings(value) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value]


def _legacy_keras(path: Path, f) -> list[tuple[str, Tensor]] | None:
    """Keras 2 ``save_weights``/``save`` .h5 files: ``layer_names`` on the root (or on
    ``model_weights`` in full-model files) and ``weight_names`` on each layer group, in order.
    Tensors are named by their weight names without TF's ``:0`` (``dense/kernel``). A full-model
    file's ``optimizer_weights`` (``weight_names`` on the group) follow as kinds ``counter`` (the
    integer step) and ``slot`` (``Adam/m/dense/kernel``)."""
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
        return None
    out: list[tuple[str, Tensor]] = []
    seen: set[str] = set()
    h5py = _h5py()
    for layer in _strings(root.attrs["layer_names"]):
        group = root[layer]
        if not isinstance(group, h5py.Group):
            raise FormatError(f"{path}: layer {layer!r} is not a group")
        for weight in _strings(group.attrs.get("weight_names", [])):
            if not isinstance(group.get(weight), h5py.Dataset):
                what = "missing" if weight not in group else "not a dataset"
                raise FormatError(f"{path}: weight {weight!r} of layer {layer!r} is {what}")
            name = weight[:-2] if weight.endswith(":0") else weight
            if name in seen:  # two layers with one weight name: keep the layer to tell them apart
                name = f"{layer}/{name}"
            seen.add(name)
            out.append((name, _tensor(path, group[weight], name)))
    optimizer = f.get("optimizer_weights") if root is not f else None
    if isinstance(optimizer, h5py.Group):
        for weight in _strings(optimizer.attrs.get("weight_names", [])):
            if not isinstance(optimizer.get(weight), h5py.Dataset):
                what = "missing" if weight not in optimizer else "not a dataset"
                raise FormatError(f"{path}: optimizer weight {weight!r} is {what}")
            name = weight[:-2] if weight.endswith(":0") else weight
            if name in seen:
                name = f"optimizer_weights/{name}"
            seen.add(name)
            tensor = _tensor(path, optimizer[weight], name)
            # The step counter is an integer scalar (``iteration``, ``Adam/iterations``).
            counter = tensor.shape == () and tensor.dtype.kind in "iu"
            tensor.kind = "counter" if counter else optimizer_weight_kind(name)
            out.append((name, tensor))
    return out


def _tensor(path: Path, ds, name: str, allow_external: bool = False,
            window: Window | None = None) -> Tensor:
    """A lazy tensor over dataset ``ds``; ``window`` locates the HDF5 file's bytes when they are
    not the whole of ``path`` (see :data:`Window`)."""
    h5py = _h5py()
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


MAX_RANK = 32  # H5S_MAX_RANK


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False) -> None:
    h5py = _h5py()
    for tensor in ckpt.values():  # refuse before the output exists
        check_name(path, tensor.name, "HDF5", nul=False)  # link names and attributes end at NUL
        check_dtype(path, tensor, "HDF5")
        if len(tensor.shape) > MAX_RANK:
            raise FormatError(f"{path}: tensor {tensor.name!r} has rank {len(tensor.shape)}; "
                              f"HDF5 datasets have at most {MAX_RANK} dimensions")
    paths = {name: "/".join(_escape(p) for p in name.split("/")) for name in ckpt}
    scopes = {p.rsplit("/", i)[0] for p in paths.values() for i in range(1, p.count("/") + 1)}
    # Datasets are allocated contiguously up front; their bytes are then streamed straight into
    # the file at the offsets HDF5 gave them, so memory stays bounded whatever the tensor size.
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    pending: list[tuple[int, Tensor]] = []
    with outputs(force) as out:
        tmp = out.new(path)
        # Ctrl-C waits for the layout to be written: h5py converts values in callbacks from C,
        # where an interrupt would be printed and dropped instead of unwinding this writer.
        # The bytes are copied afterwards, interruptibly.
        with signals_held(), h5py.File(tmp, "w", track_order=True) as f:
            for key, value in ckpt.metadata.items():
                f.attrs[key] = value
            used: set[str] = set()
            groups: dict[str, object] = {"": f}
            for order, tensor in enumerate(ckpt.values()):
                hpath = paths[tensor.name]
                suffix = 0
                while hpath in scopes or hpath in used:
                    hpath = f"{paths[tensor.name]}:{suffix}"
                    suffix += 1
                used.add(hpath)
                attrs: dict[str, object] = {"order": order}
                if hpath != tensor.name:  # HDF5 attributes are slow: only where the path differs
                    attrs["name"] = tensor.name
                if tensor.dtype.hasobject:
                    _write_strings(f, hpath, tensor.read())
                    attrs["dtype"] = "string"
                    ds = f[hpath]
                else:
                    if not dtypes.is_native(tensor.dtype):
                        attrs["dtype"] = dtypes.name_of(tensor.dtype)
                    stored = dtypes.storage_dtype(tensor.dtype).newbyteorder("<")
                    # The parent group once per scope: h5py would look it up for every dataset.
                    parent, _, leaf = hpath.rpartition("/")
                    group = groups.get(parent)
                    if group is None:
                        group = groups[parent] = f.require_group(parent)
                    ds = group.create_dataset(leaf, shape=tensor.shape, dtype=stored, dcpl=dcpl,
                                              track_order=True)
                    offset = ds.id.get_offset() if tensor.nbytes else None
                    if offset is not None:
                        pending.append((offset, tensor))
                    elif tensor.nbytes:  # HDF5 keeps scalars out of line; they are tiny
                        ds[()] = contiguous_le(tensor)
                _set_attrs(h5py, ds, attrs)
        total = sum(t.nbytes for _, t in pending)
        stream = tracked([t for _, t in pending], total=total, enabled=progress)
        with open(tmp, "r+b") as raw:
            for (offset, _), tensor in zip(pending, stream, strict=True):
                raw.seek(offset)
                copy_to(raw, tensor)


def _set_attrs(h5py, ds, attrs: dict[str, object]) -> None:
    # Integer attributes (every dataset's `order`) through the low-level API: what the high-level
    # one stores for a Python int (a scalar int64), at a fraction of its per-call cost.
    for key, value in attrs.items():
        if type(value) is int:
            attr = h5py.h5a.create(ds.id, key.encode(), h5py.h5t.STD_I64LE,
                                   h5py.h5s.create(h5py.h5s.SCALAR))
            attr.write(np.array(value, dtype="<i8"))
        else:
            ds.attrs[key] = value


def _write_strings(f, hpath: str, array) -> None:
    h5py = _h5py()
    data = np.empty(array.shape, dtype=object)
    flat = data.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        flat[i] = np.frombuffer(bytes(item), dtype=np.uint8)
    ds = f.create_dataset(hpath, shape=array.shape, dtype=h5py.vlen_dtype(np.uint8),
                          track_order=True)
    if array.size:
        ds[...] = data
