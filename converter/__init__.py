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

__version__ = "0.1.0"

from .api import convert, read, write
from .batch import batch
from .diff import DiffReport, diff
from .errors import (
    ConverterError,
    CorruptionError,
    FormatError,
    LoadError,
    RenameError,
    UsageError,
)
from .migrate import migrate
from .registry import Format, formats, register
from .tensor import Checkpoint, Source, Tensor, as_checkpoint
from .verify import VerifyReport, verify


def __getattr__(name: str):
    # Loaded on first use: a conversion needs none of these, and start-up is much of what a
    # small conversion costs.
    import importlib

    if name == "rules":
        return importlib.import_module(".rules", __name__)
    if name == "tf1":  # the TF1 graph loader, beside the other loaders
        return importlib.import_module(".loaders.tf1", __name__)
    if name == "plan":  # restore plans (converter.loaders.plan)
        return importlib.import_module(".loaders.plan", __name__).plan
    if name in ("LoadReport", "load_into"):
        return getattr(importlib.import_module(".loaders", __name__), name)
    raise AttributeError(f"module 'converter' has no attribute {name!r}")


__all__ = [
    "Checkpoint", "ConverterError", "CorruptionError", "DiffReport", "Format", "FormatError",
    "LoadError", "LoadReport", "RenameError", "Source", "Tensor", "UsageError", "VerifyReport",
    "as_checkpoint", "batch", "convert", "diff", "formats", "load_into", "migrate", "plan", "read",
    "register", "rules", "tf1", "verify", "write",
]
