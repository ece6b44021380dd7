"""converter: move model weights between checkpoint formats.

Readers hand out a lazy :class:`Checkpoint` (an ordered mapping of names to :class:`Tensor`);
writers take one tensor at a time. ``import converter`` never imports TensorFlow.

Example:
    >>> import converter
    >>> ckpt = converter.read("model.ckpt-1000")
    >>> converter.write(ckpt, "model.safetensors")
    >>> converter.convert("model.ckpt-1000", "weights.npz")
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .api import convert, read, write
from .errors import (
    ConverterError,
    CorruptionError,
    FormatError,
    LoadError,
    RenameError,
    StorageError,
    UsageError,
)
from .registry import Format, formats, register
from .tensor import Checkpoint, Source, Tensor, as_checkpoint

if TYPE_CHECKING:
    from .batch import batch
    from .diff import DiffReport, diff
    from .migrate import migrate
    from .verify import VerifyReport, verify

# Loaded on first use (module, attribute): a conversion needs none of these, and start-up is
# much of what a small conversion costs.
_LAZY = {
    "batch": (".batch", "batch"), "diff": (".diff", "diff"), "DiffReport": (".diff", "DiffReport"),
    "migrate": (".migrate", "migrate"), "verify": (".verify", "verify"),
    "VerifyReport": (".verify", "VerifyReport"), "tf1": (".loaders.tf1", None),
    "rules": (".rules", None), "plan": (".loaders.plan", "plan"),
    "LoadReport": (".loaders", "LoadReport"), "load_into": (".loaders", "load_into"),
}


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'converter' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    found = importlib.import_module(module, __name__)
    value = found if attribute is None else getattr(found, attribute)
    globals()[name] = value  # later lookups find it without calling here
    return value


class _Package(types.ModuleType):
    """The package, whose functions ``batch``, ``diff``, ``migrate`` and ``verify`` share their
    names with submodules: importing a submodule binds it on its package, which would hide the
    function once ``converter.diff`` (say) was first imported after ``converter``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable through sys.modules
        super().__setattr__(name, value)


_SHADOWED = frozenset(("batch", "diff", "migrate", "verify"))
sys.modules[__name__].__class__ = _Package


__all__ = [
    "Checkpoint", "ConverterError", "CorruptionError", "DiffReport", "Format", "FormatError",
    "LoadError", "LoadReport", "RenameError", "Source", "StorageError", "Tensor", "UsageError",
    "VerifyReport",
    "as_checkpoint", "batch", "convert", "diff", "formats", "load_into", "migrate", "plan", "read",
    "register", "rules", "tf1", "verify", "write",
]
