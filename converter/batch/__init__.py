"""Batch conversion of directories, training runs, globs and archives, in parallel, resumable."""

from .discover import discover
from .items import Item
from .manifest import MANIFEST, Result
from .run import batch, parse_shard

__all__ = ["MANIFEST", "Item", "Result", "batch", "discover", "parse_shard"]
