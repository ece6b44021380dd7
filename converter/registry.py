"""The format registry: one table of formats, held as data and imported on first use.

Each entry names a module that provides ``sniff(path) -> bool``, ``read(path, **opts)`` and
``write(checkpoint, path, **opts)``. Built-in formats are listed below; third-party packages add
theirs through the ``converter.formats`` entry-point group, whose entries resolve to a
:class:`Format`.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .errors import FormatError, UsageError

ENTRY_POINT_GROUP = "converter.formats"


@dataclass(frozen=True)
class Format:
    """One row of the registry.

    Attributes:
        name: short name used by ``--to``/``format=`` (``safetensors``).
        suffixes: file suffixes that select the format, longest match wins (``.safetensors``).
        module: import path of the module holding ``sniff``, ``read`` and ``write``.
        description: one line for ``ckpt formats`` and error messages.
        requires: distribution that must be installed, for the install hint.
        can_write: False for read-only formats.
    """

    name: str
    suffixes: tuple[str, ...]
    module: str
    description: str = ""
    requires: str | None = None
    can_write: bool = True
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def load(self) -> ModuleType:
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


BUILTINS: tuple[Format, ...] = (
    Format("tf", (".index", ".ckpt"), "converter.formats.tfbundle",
           "TensorFlow checkpoint (tensor bundle: PREFIX.index + PREFIX.data-*)"),
    Format("safetensors", (".safetensors", ".safetensors.index.json"),
           "converter.formats.safetensors", "safetensors (one file, or shards + index.json)"),
    Format("npz", (".npz",), "converter.formats.npz", "numpy .npz archive"),
    Format("npy", (".npy",), "converter.formats.npy",
           "numpy .npy file (one tensor) or directory of .npy files"),
    Format("hdf5", (".h5", ".hdf5", ".he5"), "converter.formats.hdf5",
           "HDF5 file, groups mirror scopes", requires="h5py"),
    Format("keras", (".keras",), "converter.formats.keras",
           "Keras 3 .keras archive (weights named from its config; read only)",
           requires="h5py", can_write=False),
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


def formats() -> dict[str, Format]:
    """The registry: built-ins, then installed third-party formats, by name."""
    return _known(plugins=True)


def register(fmt: Format, *, replace: bool = False) -> None:
    """Add a format to the registry (for plugins that register from code, and tests); it
    answers with the built-in formats, before entry-point plugins."""
    table = formats()
    if fmt.name in table and not replace:
        raise UsageError(f"format {fmt.name!r} is already registered")
    table[fmt.name] = fmt
    _plugin_names.discard(fmt.name)


def unregister(name: str) -> None:
    formats().pop(name, None)
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


def _by_suffix(path: Path, table: dict[str, Format]) -> Format | None:
    name = path.name.lower()
    best: tuple[int, Format] | None = None
    for fmt in list(table.values()):
        for suffix in fmt.suffixes:
            if name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), fmt)
    return best[1] if best else None


def detect(path: Path) -> Format:
    """The format of an existing file or directory: by content, trying the suffix's format
    first, then the known formats, then plugins."""
    if not path.exists() and not _is_tf_prefix(path):
        raise FormatError(f"{path}: no such file or directory")
    first = by_suffix(path)
    tried: set[str] = set()
    for plugins in (False, True):
        for fmt in [first, *_known(plugins).values()]:
            if fmt is None or fmt.name in tried:
                continue
            tried.add(fmt.name)
            if fmt.sniff(path):
                return fmt
    kind = "directory" if path.is_dir() else "file"
    raise FormatError(
        f"{path}: not a checkpoint of any known format ({kind}; known: {', '.join(formats())})"
    )


def detect_or_none(path: Path) -> Format | None:
    try:
        return detect(path)
    except FormatError:
        return None


def for_output(path: Path, to: str | None) -> Format:
    """The format to write ``path`` in: ``to`` if given, else from the suffix."""
    if to:
        fmt = get(to)
    else:
        fmt = by_suffix(path)
        if fmt is None:
            raise UsageError(
                f"{path}: cannot tell the output format from the name; pass --to FORMAT "
                f"(one of: {', '.join(n for n, f in formats().items() if f.can_write)})"
            )
    if not fmt.can_write:
        raise UsageError(f"format {fmt.name!r} can be read but not written")
    return fmt


def _is_tf_prefix(path: Path) -> bool:
    # A TF checkpoint is named by a prefix that is not itself a file.
    return path.with_name(path.name + ".index").exists()
