"""Opening what a loader is given: a path (any readable format), a Checkpoint or a dict of
arrays, with rename rules applied and the tensors' creation order kept (:mod:`.order`)."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from ..tensor import Checkpoint, as_checkpoint
from .order import creation_rank, given_order, renamed_rank


class Opened(NamedTuple):
    """A loader's source: ``ckpt`` with the rules applied, the tensors' creation ``order`` in
    its names (None when unknown), and the ``raw`` checkpoint the rules were applied to (its
    object graph and slot names, which rules may drop)."""

    ckpt: Checkpoint
    order: dict[str, int] | None
    raw: Checkpoint


def read_source(source: Any, format: str | None = None) -> Checkpoint:
    """A path (any readable format), Checkpoint or dict of arrays, as a Checkpoint."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        from .. import api

        return api.read(source, format=format)
    return as_checkpoint(source)


def open_source(source: Any, rules: Any = None, format: str | None = None,
                order_from: str | os.PathLike[str] | None = None) -> Opened:
    """:func:`read_source` with ``rules`` applied; the creation order (from the ``.meta`` in
    ``order_from`` when given) is taken before the rules, which may drop what tells it, and
    given in the new names."""
    # The .meta first: a bad one fails before the source is opened (and left open).
    given = None if order_from is None else given_order(order_from)
    raw = read_source(source, format)
    rank = creation_rank(raw) if given is None else {n: i for i, n in enumerate(given)}
    if rules is None:
        return Opened(raw, rank, raw)
    return Opened(rules.apply(raw), renamed_rank(rank, raw, rules), raw)
