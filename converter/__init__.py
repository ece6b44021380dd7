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

from . import rules, tf1
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
from .loaders import LoadReport, load_into
from .migrate import migrate
from .registry import Format, formats, register
from .tensor import Checkpoint, Tensor, as_checkpoint
from .verify import VerifyReport, verify

__all__ = [
    "Checkpoint", "ConverterError", "CorruptionError", "DiffReport", "Format", "FormatError",
    "LoadError", "LoadReport", "RenameError", "Tensor", "UsageError", "VerifyReport",
    "as_checkpoint", "batch", "convert", "diff", "formats", "load_into", "migrate", "read",
    "register", "rules", "tf1", "verify", "write",
]
