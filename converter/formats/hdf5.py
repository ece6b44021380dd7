"""HDF5 (via h5py) with groups mirroring scopes: ``dense/kernel`` is group ``dense``, dataset
``kernel``; checkpoint metadata are string attributes of the root group.

Escapes: HDF5 forbids the link names ``.`` and empty, so a name part ``.`` is written ``%2E``, an
empty part ``%`` and a literal ``%`` as ``%25``. A name that is also a scope (``dense/kernel``
beside ``dense/kernel/Adam``, as in every TF1 Adam checkpoint) cannot be both a dataset and a
group, so its dataset takes TF's ``:0`` suffix (``dense/kernel:0``; ``:1``... if that is taken
too). A dataset whose path differs from its name carries the name in the attribute ``name``, and
each dataset its position in ``order`` unless the names come in natural order (``vars/2``
before ``vars/10``), the order datasets without positions are read in: names and order
round-trip whatever the escaping. Files from elsewhere are read by path, in natural order.
Dtypes HDF5 lacks are stored as raw bits in an unsigned integer with attribute
``dtype="bfloat16"`` (as Keras 3 does); byte strings as variable-length uint8 sequences with
``dtype="string"`` (HDF5 strings stop at NUL). Names HDF5 cannot hold (NUL, which ends link
names and attributes; not valid Unicode) and ranks above 32 are refused before anything is
written. Keras weight files (Keras 3 ``.weights.h5``, Keras 2 ``layer_names``/``weight_names``)
are read in Keras's order and named as ``keras_names`` says.

Reading a file from elsewhere allocates no more than it stores (the guards live in
``_h5common``, shared with the ``keras`` reader): storage HDF5 never allocated (a
contiguous dataset never written, chunks never written) reads as the dataset's fill value only up
to ``MAX_UNBACKED`` bytes per dataset, and deflated chunks may not declare more than deflate can
produce from their stored bytes; beyond that the dataset is refused in one line. References
(object and region) are refused: they point into the file, they are not tensor data.

A file on remote storage (:func:`read_url`) is read by h5py through a file object over ranged
reads, with the same checks; contiguous datasets carry their span in the object, as local ones
in the file, so conversions copy their bytes by ranges.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes, storage
from ..errors import FormatError
from ..outputs import outputs, signals_held
from ..progress import tracked
from ..tensor import Checkpoint, Source, Tensor
from ..tfnames import natural_key, strictly_natural
from ._common import check_dtype, check_name, contiguous_le, first_line
from ._h5common import (
    H5_ERRORS,
    Window,
    check_global_heaps,
    dataset_tensor,
    local_window,
    remote_window,
    require_h5py,
)
from .keras_names import describe, is_legacy, legacy_optimizer_kind, legacy_weights, saveable_names
from .stream import copy_placed

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



def read(path: Path, *, allow_external: bool = False) -> Checkpoint:
    """Open an HDF5 file. Data kept outside it (external links, external raw storage, virtual
    datasets mapping other files) is refused unless ``allow_external``: a file from a stranger
    must not make us read arbitrary files."""
    return _read(path, path, local_window(path), allow_external, [])


# HDF5 reads its metadata in many small pieces: fetched ahead in ranges of 64 KiB, growing to
# 4 MiB while the reads walk through the file in order, 32 MiB of them kept.
_BLOCK, _AHEAD, _KEEP = 64 << 10, 4 << 20, 32 << 20


def read_url(url: str, *, allow_external: bool = False) -> Checkpoint:
    """An HDF5 object on remote storage (a Keras ``.weights.h5`` or ``.h5`` too), read by h5py
    through ranged reads with read-ahead (see :class:`storage.RangeReader`): listing it fetches
    its metadata, a contiguous dataset's bytes are fetched when asked for (or streamed by a
    conversion, from its span), a chunked one's through h5py. The checks are the local
    ones."""
    reader = storage.RangeReader(storage.open_file(url), _BLOCK, ahead=_AHEAD, keep=_KEEP)
    return _read(url, reader, remote_window(reader), allow_external, [reader.close])


def _read(path: Path | str, source: Path | storage.RangeReader, window: Window,
          allow_external: bool, closers: list[Callable[[], None]]) -> Checkpoint:
    """The checkpoint of the HDF5 file h5py opens at ``source`` (a path or a file object),
    named ``path`` in messages; ``closers`` release ``source`` after the file."""
    h5py = require_h5py()
    try:
        f = h5py.File(source, "r")
    except H5_ERRORS as exc:
        for close in closers:
            close()
        raise FormatError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    except BaseException:
        for close in closers:
            close()
        raise
    if not isinstance(source, Path):
        # An HDF5 file left open on a Python file object is closed by libhdf5 at exit, reading
        # through that object after Python has torn down what it needs (a crash): closed at
        # exit first, unless the checkpoint was closed before.
        closers.insert(0, weakref.finalize(source, f.close))
    else:
        closers.insert(0, f.close)

    def close_all() -> None:
        for close in closers:
            close()

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
        found.append((position, len(found), name,
                      dataset_tensor(path, obj, name, allow_external, window)))

    metadata: dict[str, str] = {}
    layout = None
    try:
        check_global_heaps(path, f, window)
        links = _external_links(f)
        if links and not allow_external:
            link = f.get(links[0], getlink=True)
            raise FormatError(f"{path}: {links[0]!r} is an external link to {link.filename}:"
                              f"{link.path}; refusing to follow it (allow_external=True for "
                              "files you trust)")
        if is_legacy(f):
            layout = "keras2"
            for name, ds, optimizer in legacy_weights(path, f):
                tensor = dataset_tensor(path, ds, name, window=window)
                if optimizer:
                    tensor.kind = legacy_optimizer_kind(name, tensor.shape, tensor.dtype)
                found.append((float(len(found)), len(found), name, tensor))
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
        close_all()
        raise FormatError(f"{path}: unreadable HDF5 structure ({first_line(exc)})") from None
    except BaseException:
        close_all()
        raise
    # Files from elsewhere carry no order: list them in natural order (vars/2 before vars/10).
    found.sort(key=lambda x: (x[0], natural_key(x[2]) if x[0] == float("inf") else (), x[1]))
    tensors: dict[str, Tensor] = {}
    for _, _, name, tensor in found:
        if name in tensors:
            close_all()
            raise FormatError(f"{path}: tensor {name!r} is stored twice")
        tensors[name] = tensor
    try:
        if layout == "keras3":
            # Optimizer variables are slots and the step counter, and each tensor learns its
            # owner's name (attrs["keras_name"]) for the loaders.
            for name, (_, attrs, kind) in describe(list(tensors), saveable_names(f)).items():
                tensors[name].attrs.update(attrs)
                tensors[name].kind = kind
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                metadata[key] = value
    except H5_ERRORS as exc:
        close_all()
        raise FormatError(f"{path}: unreadable HDF5 attributes ({first_line(exc)})") from None
    except BaseException:
        close_all()
        raise
    return Checkpoint(tensors, metadata, source=Source("hdf5", str(path), layout),
                      closers=[close_all])


def _external_links(f) -> list[str]:
    """Paths of the file's external links (cheap: no object is opened)."""
    h5py = require_h5py()
    found: list[str] = []

    def visit(name: bytes, info) -> None:
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            found.append(name.decode("utf-8", "surrogateescape"))

    f.id.links.visit(visit, info=True)
    return found


MAX_RANK = 32  # H5S_MAX_RANK


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False) -> None:
    h5py = require_h5py()
    tensors = list(ckpt.values())
    for tensor in tensors:  # refuse before the output exists
        check_name(path, tensor.name, "HDF5", nul=False)  # link names and attributes end at NUL
        check_dtype(path, tensor, "HDF5")
        if len(tensor.shape) > MAX_RANK:
            raise FormatError(f"{path}: tensor {tensor.name!r} has rank {len(tensor.shape)}; "
                              f"HDF5 datasets have at most {MAX_RANK} dimensions")
    paths = {t.name: _hdf5_path(t.name) for t in tensors}
    scopes: set[str] = set()
    for p in paths.values():
        parent = p.rpartition("/")[0]
        while parent and parent not in scopes:  # its own parents are in already
            scopes.add(parent)
            parent = parent.rpartition("/")[0]
    # Positions are written only where they are needed: a file without them is read in the
    # natural order of its names, which is often the checkpoint's own (HDF5 attributes are
    # what 20,000 small datasets spend most of their writing time on).
    ordered = not strictly_natural([t.name for t in tensors])
    # Datasets are allocated contiguously up front; their bytes are then streamed straight into
    # the file at the offsets HDF5 gave them, so memory stays bounded whatever the tensor size.
    # Created through h5py's low-level API: its high-level create_dataset costs more per
    # dataset than HDF5 itself.
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)
    scalar_dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)  # HDF5 keeps scalars out of line
    scalar_dcpl.set_obj_track_times(False)
    types: dict[np.dtype, Any] = {}
    spaces: dict[tuple[int, ...], Any] = {}
    pending: list[tuple[int, Tensor]] = []
    with outputs(force) as out:
        tmp = out.new(path)
        # Many datasets: their metadata (object headers, group heaps) gathered in blocks of
        # 64 KiB instead of HDF5's 2 KiB, so that their data lie back to back and are copied
        # in long runs; the last block's unused part is what that costs in file size.
        options = {"meta_block_size": 1 << 16} if len(tensors) >= 1000 else {}
        # Ctrl-C waits for the layout to be written: h5py converts values in callbacks from C,
        # where an interrupt would be printed and dropped instead of unwinding this writer.
        # The bytes are copied afterwards, interruptibly.
        with signals_held(), h5py.File(tmp, "w", track_order=True, **options) as f:
            for key, value in ckpt.metadata.items():
                f.attrs[key] = value
            used: set[str] = set()
            groups: dict[str, Any] = {"": f.id}
            create = h5py.h5d.create
            for order, tensor in enumerate(tensors):
                hpath = paths[tensor.name]
                suffix = 0
                while hpath in scopes or hpath in used:
                    hpath = f"{paths[tensor.name]}:{suffix}"
                    suffix += 1
                used.add(hpath)
                attrs: dict[str, object] = {"order": order} if ordered else {}
                if hpath != tensor.name:  # HDF5 attributes are slow: only where the path differs
                    attrs["name"] = tensor.name
                if tensor.dtype.hasobject:
                    _write_strings(f, hpath, tensor.read())
                    attrs["dtype"] = "string"
                    dsid = f[hpath].id
                else:
                    if not dtypes.is_native(tensor.dtype):
                        attrs["dtype"] = dtypes.name_of(tensor.dtype)
                    tid = types.get(tensor.dtype)
                    if tid is None:
                        stored = dtypes.storage_dtype(tensor.dtype).newbyteorder("<")
                        tid = types[tensor.dtype] = h5py.h5t.py_create(stored, logical=1)
                    shape = tensor.shape
                    space = spaces.get(shape)
                    if space is None:
                        space = spaces[shape] = h5py.h5s.create_simple(shape)
                    # The parent group once per scope: h5py would look it up for every dataset.
                    parent, _, leaf = hpath.rpartition("/")
                    group = groups.get(parent)
                    if group is None:
                        group = groups[parent] = f.require_group(parent).id
                    dsid = create(group, leaf.encode(), tid, space,  # UTF-8, as h5py encodes
                                  dcpl=dcpl if shape else scalar_dcpl)
                    offset = dsid.get_offset() if tensor.nbytes else None
                    if offset is not None:
                        pending.append((offset, tensor))
                    elif tensor.nbytes:
                        h5py.Dataset(dsid)[()] = contiguous_le(tensor)
                if attrs:
                    _set_attrs(h5py, dsid, attrs)
        total = sum(t.nbytes for _, t in pending)
        stream = tracked([t for _, t in pending], total=total, enabled=progress)
        with open(tmp, "r+b") as raw:
            for _ in copy_placed(raw, pending):
                next(stream)


def _hdf5_path(name: str) -> str:
    """The HDF5 path of tensor ``name`` (see :func:`_escape`)."""
    if "%" not in name and "." not in name and name and name[0] != "/" \
            and name[-1] != "/" and "//" not in name:
        return name  # nothing to escape, as in most checkpoints
    return "/".join(_escape(p) for p in name.split("/"))


def _set_attrs(h5py, dsid, attrs: dict[str, object]) -> None:
    # Integer attributes (`order`) through the low-level API: what the high-level one stores
    # for a Python int (a scalar int64), at a fraction of its per-call cost.
    for key, value in attrs.items():
        if type(value) is int:
            attr = h5py.h5a.create(dsid, key.encode(), h5py.h5t.STD_I64LE,
                                   h5py.h5s.create(h5py.h5s.SCALAR))
            attr.write(np.array(value, dtype="<i8"))
        else:
            h5py.Dataset(dsid).attrs[key] = value


def _write_strings(f, hpath: str, array) -> None:
    h5py = require_h5py()
    data = np.empty(array.shape, dtype=object)
    flat = data.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        flat[i] = np.frombuffer(bytes(item), dtype=np.uint8)
    ds = f.create_dataset(hpath, shape=array.shape, dtype=h5py.vlen_dtype(np.uint8),
                          track_order=True)
    if array.size:
        ds[...] = data
