"""Looking inside a checkpoint: value statistics (computed in :mod:`converter.tensor_stats`),
the scope tree and readable TF2 names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import scopes
from .scopes import Node
from .tensor import Checkpoint, as_checkpoint

if TYPE_CHECKING:
    from .tensor_stats import Stats, nonfinite, stats, stats_all, value_kind

__all__ = ["Node", "Stats", "nonfinite", "readable_names", "stats", "stats_all", "tree",
           "value_kind"]

_STATS = frozenset(("Stats", "nonfinite", "stats", "stats_all", "value_kind"))


def __getattr__(name: str) -> Any:
    # The statistics are loaded on first use: listing a checkpoint needs none of them.
    if name in _STATS:
        from . import tensor_stats

        return getattr(tensor_stats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- names and scopes


def readable_names(checkpoint: Checkpoint | Mapping[str, Any]) -> dict[str, str]:
    """``{key: readable name}`` for a TF2 object-based checkpoint: the names ``--preset
    tf2-names`` gives (the object graph's ``full_name``, slots as ``<variable>/<slot>``), only
    for keys that it renames; empty for a checkpoint that is not object-based."""
    return scopes.readable_names(as_checkpoint(checkpoint))


def tree(checkpoint: Checkpoint | Mapping[str, Any], depth: int | None = None, *,
         filter: str | None = None, readable: bool = True) -> Node:
    """The checkpoint's scopes as a tree, with counts per scope and optimizer slots folded
    into their variables (:class:`converter.scopes.Node`).

    Args:
        depth: keep scopes down to this depth (root 0); what lies deeper is counted in its
            ancestor at that depth. None: all.
        filter: a glob (or ``re:`` regex) as in the rules; only tensors whose key or readable
            name matches, with the slots of the variables that match.
        readable: for TF2 object-based checkpoints, place tensors by their readable names
            (:func:`readable_names`) rather than their object keys.

    Example:
        >>> root = tree(converter.read("model.ckpt-1000"), depth=2)
        >>> [(n.path, n.params) for _, n in root.walk()]
    """
    from .rules.core import Pattern

    keep = None
    if filter is not None:
        pattern = Pattern(filter)

        def keep(key: str, shown: str) -> bool:
            return bool(pattern.match(key) or pattern.match(shown))

    return scopes.build(as_checkpoint(checkpoint), depth, names=None if readable else {},
                        keep=keep)
