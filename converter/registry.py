"""The format registry: one table of formats, held as data and imported on first use.

A format is one module and one :class:`Format` row naming it. Built-in rows are listed in
:data:`BUILTINS`; third-party packages add theirs through the ``converter.formats`` entry-point
group (each entry resolves to a :class:`Format`) or with :func:`register`. A row is plain data:
listing, suffix matching and ``ckpt formats`` never import a format's module, so a missing
optional dependency surfaces only when the format is used, as an install hint (``requires``).

The contract of a format module (:class:`FormatModule`; read-only formats,
``can_write=False``, provide :class:`FormatReader`, without ``write``):

``sniff(path) -> bool``
    Whether ``path`` (a file, a directory or, for TensorFlow, a checkpoint prefix that is not
    itself a file) is in this format, judged from its name and a few bytes. It may return False
    or raise :class:`~converter.errors.FormatError` or ``OSError`` for anything it cannot open:
    the registry reads all of these as "not mine".
``read(path, **opts) -> Checkpoint``
    Open the checkpoint lazily: read its index or header only, and hand out tensors whose
    ``read()`` loads their data (a memory map or a file ``span``), so that listing reads no
    data and converting holds a tensor or a chunk at a time. Options are keyword-only and
    declared by name (``verify: bool = True``); the registry refuses options a reader does not
    declare unless it takes ``**opts``. Set ``Checkpoint.source`` (what was read) and
    ``Checkpoint.metadata`` (the file's own strings, if it has a place for them).
``write(checkpoint, path, **opts) -> None``
    Write ``checkpoint`` (every writer takes ``force`` and ``progress``) through
    :mod:`converter.outputs`: temporary names in the destination directory, renamed into place
    when everything is written, existing outputs kept unless ``force``. Write only
    ``checkpoint.metadata``, never ``checkpoint.source``. A writer that maps the tensors into
    another model's layout (``hf``, ``roundtrip=False``) returns the Checkpoint it wrote.

Errors, from every function: a bad or unsupported file raises
:class:`~converter.errors.FormatError`, and damaged data (checksum, bounds, truncation)
:class:`~converter.errors.CorruptionError`, with a one-line message that starts with the file's
path and says what is wrong (``m.npz: tensor 'w': checksum mismatch``). A tensor a format cannot
hold is refused by name before anything is written. Never ``assert``, print or exit.

What a format can hold beyond that is declared in its row, each with one default that a plugin
gets by saying nothing: :attr:`Format.dtypes`, :attr:`Format.metadata`,
:attr:`Format.integrity`. ``docs/formats.md`` walks through adding a format.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from . import dtypes as _dtypes
from . import storage
from .errors import FormatError, UsageError

if TYPE_CHECKING:
    from .tensor import Checkpoint

ENTRY_POINT_GROUP = "converter.formats"


@runtime_checkable
class FormatReader(Protocol):
    """What the module of a read-only format provides (see the module docstring)."""

    def sniff(self, path: Path) -> bool: ...

    def read(self, path: Path, **opts: Any) -> Checkpoint: ...


@runtime_checkable
class FormatModule(FormatReader, Protocol):
    """What the module of a format that writes provides (see the module docstring)."""

    def write(self, checkpoint: Checkpoint, path: Path, **opts: Any) -> Checkpoint | None: ...


@dataclass(frozen=True)
class Format:
    """One row of the registry.

    Attributes:
        name: short name used by ``--to``/``format=`` (``safetensors``).
        suffixes: file suffixes that select the format, longest match wins (``.safetensors``).
        module: import path of the module holding ``sniff``, ``read`` and ``write``.
        description: one line for ``ckpt formats`` and error messages.
        requires: distribution that must be installed, for the install hint.
        can_write: False for read-only formats (their module has no ``write``).
        dtypes: canonical dtype names (:mod:`converter.dtypes`) the format stores and reads
            back bit-exact; ``None`` (the default) means every dtype in
            ``converter.dtypes.ALL``. Where ``"string"`` is missing, a TF2 object graph is left
            out of what is written (with a warning) rather than refused.
        metadata: whether ``Checkpoint.metadata`` (free-form strings) is written and read
            back; default True.
        integrity: name of a function of the module, ``fn(path) -> {tensor: problem}``, that
            checks the file's own checksums beyond what reading checks (``ckpt verify`` calls
            it); default None, no such check.
        roundtrip: whether the writer takes any checkpoint and the reader gives it back, names
            and values; default True. False for a writer that maps a checkpoint into another
            model's layout (``hf``: a known model family into transformers' names).
        marks: names of files whose presence makes a directory one checkpoint of this format
            as a whole (``saved_model.pb``), which ``ckpt batch`` converts as one item instead
            of searching inside it; default (), no such directory.
    """

    name: str
    suffixes: tuple[str, ...]
    module: str
    description: str = ""
    requires: str | None = None
    can_write: bool = True
    dtypes: frozenset[str] | None = None
    metadata: bool = True
    integrity: str | None = None
    roundtrip: bool = True
    marks: tuple[str, ...] = ()

    def load(self) -> ModuleType:
        """The format's module (a :class:`FormatModule`), imported on first use;
        FormatError with the install hint if it cannot be imported."""
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            hint = f' (pip install "{self.requires}")' if self.requires else ""
            raise FormatError(f"format {self.name!r} is not available: {exc}{hint}") from exc

    def sniff(self, path: Path) -> bool:
        try:
            return bool(self.load().sniff(path))
        except (OSError, FormatError):
            return False

    @property
    def stored_dtypes(self) -> frozenset[str]:
        """:attr:`dtypes` with its default resolved: the dtype names the format stores."""
        return _dtypes.ALL if self.dtypes is None else self.dtypes

    def check_integrity(self, path: Path) -> dict[str, str]:
        """``{tensor: problem}`` from the format's :attr:`integrity` function, ``{}`` if it
        declares none."""
        if self.integrity is None:
            return {}
        check: Callable[[Path], dict[str, str]] = getattr(self.load(), self.integrity)
        return check(path)


# Dtype sets are written out, not computed, so that listing formats imports no format module;
# tests/test_format_contract.py checks each against what its module handles.
_TF_DTYPES = frozenset({
    "float32", "float64", "int32", "uint8", "int16", "int8", "string", "complex64", "int64",
    "bool", "bfloat16", "uint16", "complex128", "float16", "uint32", "uint64", "float8_e5m2",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz", "float8_e5m2fnuz",
})
_SAFETENSORS_DTYPES = frozenset({
    "bool", "uint8", "int8", "int16", "uint16", "float16", "bfloat16", "int32", "uint32",
    "float32", "float64", "int64", "uint64", "float8_e5m2", "float8_e4m3fn", "complex64",
})

BUILTINS: tuple[Format, ...] = (
    Format("tf", (".index", ".ckpt"), "converter.formats.tfbundle",
           "TensorFlow checkpoint (tensor bundle: PREFIX.index + PREFIX.data-*)",
           dtypes=_TF_DTYPES, metadata=False,  # a bundle has no place for free-form strings
           marks=("saved_model.pb",)),
    Format("safetensors", (".safetensors", ".safetensors.index.json"),
           "converter.formats.safetensors", "safetensors (one file, or shards + index.json)",
           dtypes=_SAFETENSORS_DTYPES),
    # npy, npz and HDF5 keep bfloat16/float8 as raw bits with their name, strings as bytes.
    Format("npz", (".npz",), "converter.formats.npz", "numpy .npz archive",
           integrity="integrity"),
    Format("npy", (".npy",), "converter.formats.npy",
           "numpy .npy file (one tensor) or directory of .npy files",
           marks=("converter-index.json",)),  # the index of a directory we wrote
    Format("hdf5", (".h5", ".hdf5", ".he5"), "converter.formats.hdf5",
           "HDF5 file, groups mirror scopes", requires="h5py"),
    # A directory for transformers' from_pretrained, from an original release's checkpoint;
    # picked by name (--to hf), never by suffix.
    Format("hf", (), "converter.hf.writer",
           "Hugging Face model directory (model.safetensors, config.json, tokenizer files) "
           "from a known model family", dtypes=_SAFETENSORS_DTYPES, roundtrip=False),
    Format("keras", (".keras",), "converter.formats.keras",
           "Keras 3 .keras archive (weights named from its config; read only)",
           requires="h5py", can_write=False),
    Format("graphdef", (".pb",), "converter.formats.graphdef",
           "TensorFlow frozen graph (GraphDef .pb): its Const nodes as tensors; read only",
           dtypes=_TF_DTYPES, metadata=False, can_write=False),
)

_table: dict[str, Format] | None = None
_plugin_names: set[str] = set()  # the rows that came from entry points
_plugins_loaded = False
_plugins_lock = threading.Lock()


def _known(plugins: bool) -> dict[str, Format]:
    """The registry with plugins (``plugins=True``) or without them. Finding plugins means
    reading every installed distribution's metadata (a tenth of a second with a few hundred
    installed), so the built-in and code-registered rows answer first, and plugins are looked
    up only when those do not settle the question; the answer never depends on whether
    plugins happen to be loaded already."""
    global _table, _plugins_loaded
    if _table is None:
        _table = {f.name: f for f in BUILTINS}
    if not plugins:
        return {n: f for n, f in _table.items() if n not in _plugin_names}
    if not _plugins_loaded:
        with _plugins_lock:
            if not _plugins_loaded:
                found = _entry_point_formats()
                for f in found:
                    if f.name not in _table:
                        _table[f.name] = f
                        _plugin_names.add(f.name)
                _plugins_loaded = True
    return _table


def formats() -> Mapping[str, Format]:
    """The registry: built-ins, then installed third-party formats, by name. A read-only view:
    change it with :func:`register` and :func:`unregister`."""
    return MappingProxyType(_known(plugins=True))


def register(fmt: Format, *, replace: bool = False) -> None:
    """Add a format to the registry (for plugins that register from code, and tests); it
    answers with the built-in formats, before entry-point plugins."""
    table = _known(plugins=True)
    if fmt.name in table and not replace:
        raise UsageError(f"format {fmt.name!r} is already registered")
    table[fmt.name] = fmt
    _plugin_names.discard(fmt.name)


def unregister(name: str) -> None:
    _known(plugins=True).pop(name, None)
    _plugin_names.discard(name)


def _entry_point_formats() -> list[Format]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            fmt = ep.load()
        except Exception:  # a broken plugin must not break the built-in formats
            continue
        if isinstance(fmt, Format):
            found.append(fmt)
    return found


def get(name: str) -> Format:
    """The format called ``name``; UsageError listing the known names otherwise."""
    fmt = _known(plugins=False).get(name) or formats().get(name)
    if fmt is None:
        known = ", ".join(formats())
        raise UsageError(f"unknown format {name!r} (known: {known})")
    return fmt


def by_suffix(path: Path, *, plugins: bool = True) -> Format | None:
    """The format whose suffix ends the file name, longest suffix first. Suffixes of the
    built-in (and code-registered) formats come before those of entry-point plugins: a plugin
    claiming ``.weights.h5`` is picked by name (``--to``), since ``.h5`` is built in.
    ``plugins=False`` never looks plugins up (that scans every installed distribution)."""
    found = _by_suffix(path, _known(plugins=False))
    return found or (_by_suffix(path, formats()) if plugins else None)


def _by_suffix(path: Path, table: Mapping[str, Format]) -> Format | None:
    name = path.name.lower()
    best: tuple[int, Format] | None = None
    for fmt in list(table.values()):
        for suffix in fmt.suffixes:
            if name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), fmt)
    return best[1] if best else None


def detect(path: Path) -> Format:
    """The format of an existing file or directory (or TensorFlow prefix): by content, trying
    the suffix's format first, then the known formats, then plugins; a file that none of them
    takes is read in its suffix's format when it is empty or begins as that format's files
    do (a cut-short archive), so its reader says what is wrong. A prefix, which is not a
    file, is named by the ``PREFIX.index`` beside it: its suffix is ``.index``, a built-in
    one, so plugins are not looked up to read it."""
    if path.exists():
        first = by_suffix(path)
    elif _is_tf_prefix(path):
        first = by_suffix(path.with_name(path.name + ".index"))
    else:
        if path.name.endswith(".safetensors") and \
                path.with_name(path.name + ".index.json").is_file():
            return get("safetensors")  # written sharded under this name: read by its index
        raise FormatError(f"{path}: no such file or directory")
    tried: set[str] = set()
    for plugins in (False, True):
        for fmt in [first, *_known(plugins).values()]:
            if fmt is None or fmt.name in tried:
                continue
            tried.add(fmt.name)
            if fmt.sniff(path):
                return fmt
    if first is not None and path.is_file() and _looks_like(path, first):
        # A file named for a format that its content fails (cut short, damaged): read in that
        # format, whose reader says what is wrong with it, as verify reports it.
        return first
    kind = "directory" if path.is_dir() else "file"
    raise FormatError(
        f"{path}: not a checkpoint of any known format ({kind}; known: {', '.join(formats())})"
    )


# The formats whose damaged files are told by their first bytes (or by being empty): a file
# that only bears another format's suffix (a PyTorch ``last.ckpt``) is not taken for one.
_FAMILY = {"npz": b"PK\x03\x04", "keras": b"PK\x03\x04", "npy": b"\x93NUMPY",
           "hdf5": b"\x89HDF\r\n\x1a\n"}


def _looks_like(path: Path, fmt: Format) -> bool:
    magic = _FAMILY.get(fmt.name)
    if magic is None:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(len(magic))
    except OSError:
        return False
    return head == b"" or head == magic


def for_input(path: Path | str, name: str | None = None) -> Format:
    """The format to read ``path`` (a path, or a URL on remote storage) in: the one called
    ``name`` if given (``--from``, ``format=``), else the one detected from its content."""
    if name:
        return get(name)
    if storage.is_url(path):
        return detect_url(str(path))
    return detect(Path(storage.local(path)))


# Magic bytes of the formats a single remote object may be in, for an object whose name has
# no suffix the registry knows.
_MAGIC = ((b"\x93NUMPY", "npy"), (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"PK\x03\x04", "npz"))


def detect_url(url: str) -> Format:
    """The format of what ``url`` names on remote storage, from its name, the objects beside
    or under it, or its first bytes; a few small requests, never a download."""
    from .formats.tfbundle.layout import DATA_RE

    storage.filesystem(url)  # the URL's checks, and the protocol's package, before anything
    leaf = storage.name(url)
    named = by_suffix(Path(leaf)) if leaf and not url.endswith("/") else None
    if named is not None:
        return _by_magic(url, named)
    if DATA_RE.match(leaf) or (not url.endswith("/") and storage.exists(url + ".index")):
        return get("tf")
    under = storage.listing(url)
    if under:
        if "checkpoint" in under or "saved_model.pb" in under or \
                any(n.endswith(".index") for n in under):
            return get("tf")
        if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in under):
            return get("safetensors")
        if "converter-index.json" in under or any(n.endswith(".npy") for n in under):
            return get("npy")
        raise FormatError(f"{url}: no checkpoint of a known format under this prefix")
    found = _magic(storage.open_file(url))
    if found is not None:
        return get(found)
    raise FormatError(f"{url}: not a checkpoint of any known format (known: "
                      f"{', '.join(formats())})")


def _magic(obj: storage.RemoteFile) -> str | None:
    """The single-file format whose magic bytes ``obj`` starts with."""
    head = obj.pread(0, min(obj.size, 16))
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return "safetensors" if len(head) >= 9 and head[8:9] == b"{" else None


def _by_magic(url: str, named: Format) -> Format:
    """``named`` (the format of the object's suffix), or the single-file format its first
    bytes say it is in where they say another, as :func:`detect` finds for a local file."""
    if named.name not in {fmt for _, fmt in _MAGIC} | {"safetensors"} or \
            url.endswith(".index.json"):
        return named
    try:
        obj = storage.open_file(url)
    except storage.NoSuchObject:  # not one object (a sharded output's name): the reader says
        return named
    found = _magic(obj)
    return get(found) if found is not None and found != named.name else named


def detect_or_none(path: Path) -> Format | None:
    try:
        return detect(path)
    except FormatError:
        return None


def for_output(path: Path | str, to: str | None) -> Format:
    """The format to write ``path`` (a path or a URL) in: ``to`` if given, else from the
    suffix."""
    fmt: Format | None
    if to:
        fmt = get(to)
    else:
        fmt = by_suffix(Path(storage.name(str(path))) if storage.is_url(path) else Path(path))
        if fmt is None:
            raise UsageError(
                f"{path}: cannot tell the output format from the name; pass --to FORMAT "
                f"(one of: {', '.join(n for n, f in formats().items() if f.can_write)})"
            )
    if not fmt.can_write:
        hint = _WRITTEN_ELSEWHERE.get(fmt.name, "")
        raise UsageError(f"{path}: format {fmt.name!r} can be read but not written{hint}")
    return fmt


# How to get what a read-only format holds, for the error refusing to write it.
_WRITTEN_ELSEWHERE = {"keras": " (ckpt migrate SRC --model MODULE:FUNCTION OUT.keras builds the "
                               "model and saves it)"}


def directory_marks() -> frozenset[str]:
    """Every format's :attr:`Format.marks`: file names that make a directory one checkpoint."""
    return frozenset(m for f in formats().values() for m in f.marks)


def _is_tf_prefix(path: Path) -> bool:
    # A TF checkpoint is named by a prefix that is not itself a file.
    return path.with_name(path.name + ".index").exists()
