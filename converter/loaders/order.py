"""Creation order of checkpoint tensors, for ``match="order"``.

Model variables come in creation order; a checkpoint's tensors must be put in theirs before
the two can be paired one after the other. A tensor bundle sorts its keys (``layer10`` before
``layer2``), and so does safetensors, so their key order says nothing. The order comes from,
best first:

1. a ``.meta`` graph: the one given as ``order_from`` (``--order-from``), for a source of any
   format, else the ``PREFIX.meta`` beside a TF1 checkpoint (``tf.compat.v1.train.Saver``
   writes one); the MetaGraphDef's ``variables`` collection lists the graph's variables as
   they were created (``tensorflow/core/protobuf/meta_graph.proto``, ``variable.proto``);
2. the source's own order where the format keeps it: a dict of arrays, npz members (unless
   they are sorted by name, as an npz converted from a bundle is), a Keras 2 ``.h5`` file's
   layer list (a frozen graph's node order is not one: see :func:`creation_rank`);
3. numbered names, compared in natural order: ``layer2`` < ``layer10``, ``dense`` <
   ``dense_1`` < ``dense_2`` < ``dense_10``. Names that differ in more than their numbers
   (``gamma`` and ``beta``, ``encoder`` and ``decoder``) give no order.

When several unused tensors fit a variable and none of these orders them, pairing stops with
a :class:`LoadError` listing the candidates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import FormatError, LoadError, UsageError, keyword, option
from ..tensor import Checkpoint
from ..tfnames import natural_key

# The number TF and Keras append to a repeated name: "dense_3", "layer10".
_NUMBER = re.compile(r"_?\d+")
# Formats whose readers list tensors sorted by name (HDF5 too, but for a Keras 2 layer list).
SORTED_FORMATS = ("tf", "safetensors", "npy")


def skeleton(name: str) -> str:
    """The name without its numbers: names that share one are ordered by their numbers."""
    return _NUMBER.sub("", name)


def _facts(ckpt: Checkpoint) -> tuple[str | None, str | None, str | None]:
    """``(format, layout, TF prefix)`` as the reader recorded them; all None for a checkpoint
    made in memory."""
    source = ckpt.source
    if source is None:
        return None, None, None
    return source.format, source.layout, source.path


def check_order_from(order_from: str | os.PathLike[str] | None, match: str | None) -> None:
    """A ``.meta`` given for the creation order orders nothing but ``match="order"``'s last
    stage: refuse it with any other match rather than ignore it."""
    if order_from is not None and match != "order":
        raise UsageError(f"{keyword('order_from')} gives the creation order for "
                         f"{option('match-order')}; match is {match or 'exact'!r}")


def given_order(path: str | os.PathLike[str]) -> list[str]:
    """The checkpoint names of the variables of the ``.meta`` in ``path``, in creation order;
    FormatError when it is missing, not a MetaGraphDef or lists no variables."""
    from ..graphs.metagraph import read_meta_graph

    graph = read_meta_graph(path)
    if not graph.has_collection or not graph.variables:
        raise FormatError(f"{path}: the MetaGraphDef lists no variables to take their creation "
                          f"order from ({keyword('order_from')})")
    return graph.checkpoint_names()


def creation_rank(raw: Checkpoint) -> dict[str, int] | None:
    """``{tensor name: position}`` in creation order, from a ``.meta`` beside the checkpoint or
    the source's own order; None when neither is known (names decide, see :func:`first`).
    A ``.meta`` given as ``order_from`` comes before both (:func:`given_order`)."""
    fmt, layout, prefix = _facts(raw)
    if fmt == "tf" and prefix:
        names = meta_variables(Path(prefix + ".meta"))
        if names is not None:
            return {n: i for i, n in enumerate(names)}
    if fmt in SORTED_FORMATS or fmt == "graphdef" or fmt == "hdf5" and layout != "keras2":
        # A frozen graph's nodes are in an order to run them in (TF2 freezing, graph
        # transforms), not the order its variables were created in.
        return None
    names = list(raw)
    if fmt == "npz" and len(names) > 1 and names == sorted(names):
        # Members listed by name (an npz converted from a bundle or safetensors) are in the
        # sorted order of their source, not the order they were created in.
        return None
    return {n: i for i, n in enumerate(names)}


def renamed_rank(rank: dict[str, int] | None, raw: Checkpoint, rules: Any
                 ) -> dict[str, int] | None:
    """``rank`` in the names ``rules`` give the tensors."""
    if rank is None or rules is None:
        return rank
    out = {}
    for row in rules.plan(raw):
        if len(row.sources) == 1 and row.sources[0] in rank:
            out[row.name] = rank[row.sources[0]]
    return out


def meta_variables(path: Path) -> list[str] | None:
    """The checkpoint names of the graph's variables in creation order, from a MetaGraphDef
    file; None when there is no such file. Partitioned variables count once, by full name."""
    if not os.path.lexists(path):
        return None
    from ..graphs.metagraph import read_meta_graph

    return read_meta_graph(path).checkpoint_names()


def first(candidates: list[str], rank: dict[str, int] | None, variable: str,
          describe: Callable[[str], str]) -> str:
    """The candidate created first; LoadError listing them when nothing orders them."""
    if rank is not None and all(c in rank for c in candidates):
        return min(candidates, key=rank.__getitem__)
    if len({skeleton(c) for c in candidates}) == 1:
        keys = [natural_key(c) for c in candidates]
        if len(set(keys)) == len(keys):
            return candidates[keys.index(min(keys))]
    shown = ", ".join(describe(c) for c in candidates[:8]) + (
        f" (+{len(candidates) - 8} more)" if len(candidates) > 8 else "")
    raise LoadError(f"{option('match-order')}: {len(candidates)} checkpoint tensors fit "
                    f"variable {variable!r} and nothing tells which was created first: {shown}; "
                    f"pair them by name with rename rules ({option('rename')})")
