"""Batch conversion of directories, training runs, globs and archives, in parallel, resumable."""

from .discover import Item, discover
from .run import MANIFEST, Result, batch, parse_shard

__all__ = ["MANIFEST", "Item", "Result", "batch", "discover", "parse_shard"]
