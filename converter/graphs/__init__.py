"""TensorFlow graphs read without TensorFlow: SavedModel signatures and frozen GraphDefs.

Protocol buffers are decoded with the project's own bounded wire reader (:mod:`converter.proto`),
not the ``protobuf`` package: the messages read here are a handful, their field numbers are
fixed by TensorFlow's ``.proto`` files (cited in each module), and walking fields in place lets
a 2 GiB frozen graph be listed without copying it, which generated messages cannot do. Every
length is checked against the message holding it (and so against the file); a file of 2 GiB or
more, which protobuf cannot parse as one message, is refused in one line.

- :mod:`.savedmodel`: ``saved_model.pb`` (``SavedModel``, ``MetaGraphDef``, ``SignatureDef``,
  ``TensorInfo``): tags and signatures, as ``saved_model_cli show --all`` lists them.
- :mod:`.metagraph`: a ``MetaGraphDef`` (a TF1 ``.meta``, or a MetaGraph of a SavedModel): its
  variables (name, dtype, shape, trainable, partition) in creation order.
- :mod:`.graphdef`: ``GraphDef``, ``NodeDef``, ``AttrValue``, ``FunctionDef``; the
  ``graphdef`` format (:mod:`converter.formats.graphdef`) reads a frozen graph's constants
  with it.
- :mod:`.tensorproto`: ``TensorProto`` values, from ``tensor_content`` or the typed fields.

Example:
    >>> from converter import graphs
    >>> model = graphs.saved_model("exported/")
    >>> [g.tags for g in model.meta_graphs]
    [('serve',)]
    >>> graphs.signatures("exported/")["serving_default"].inputs[0].shape
    (-1, 3)
"""

from __future__ import annotations

import os

from .metagraph import MetaGraphVariables, Partition, Variable, read_meta_graph
from .savedmodel import MetaGraph, SavedModel, Signature, TensorInfo, read_saved_model

__all__ = ["MetaGraph", "MetaGraphVariables", "Partition", "SavedModel", "Signature",
           "TensorInfo", "Variable", "describe", "describe_variables", "meta_graph",
           "saved_model", "signatures"]


def meta_graph(path: str | os.PathLike[str]) -> MetaGraphVariables:
    """The variables of a MetaGraphDef file (a TF1 ``PREFIX.meta``), in creation order.

    Args:
        path: the ``.meta`` file.

    Raises:
        FormatError: no such file, or one that is not a MetaGraphDef.

    Example:
        >>> [(v.name, v.shape) for v in graphs.meta_graph("model.ckpt-1000.meta").variables]
        [('dense/kernel', (3, 4)), ('dense/bias', (4,))]
    """
    return read_meta_graph(path)


def saved_model(path: str | os.PathLike[str]) -> SavedModel:
    """The MetaGraphs (tags, TensorFlow version, signatures) of a SavedModel.

    Args:
        path: the SavedModel directory, or its ``saved_model.pb``.

    Raises:
        FormatError: no ``saved_model.pb`` there, or one that is not a SavedModel.
    """
    return read_saved_model(path)


def signatures(path: str | os.PathLike[str], tags: str | list[str] | tuple[str, ...] | None = None
               ) -> dict[str, Signature]:
    """The signatures of a SavedModel's MetaGraph by name: the MetaGraph tagged ``tags``,
    or without ``tags`` the only one (else the one tagged ``serve``)."""
    graph = read_saved_model(path).meta_graph(tags)
    return {s.name: s for s in graph.signatures}


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def describe_variables(graph: MetaGraphVariables) -> list[str]:
    """Lines for ``ckpt inspect FILE.meta``: each variable's name, dtype, shape, whether it is
    trainable, and where a part of a partitioned variable sits."""
    rows = []
    for v in graph.variables:
        where = ""
        if v.partition:
            p = v.partition
            where = (f"part of {p.full_name} {_shape(p.full_shape)} at {_shape(p.offset)}, "
                     f"length {_shape(p.length)}")
        rows.append((v.name, v.dtype or "?", _shape(v.shape) if v.shape is not None else "?",
                     "trainable" if v.trainable else "", where))
    width = max([len(r[0]) for r in rows] + [4])
    lines = [f"{'name':<{width}}  {'dtype':<9} {'shape':<18} {'':<9}  partition"]
    lines += [f"{n:<{width}}  {d:<9} {s:<18} {t:<9}  {w}".rstrip() for n, d, s, t, w in rows]
    names = graph.checkpoint_names()
    lines.append(f"{len(rows)} variables ({len(names)} checkpoint names); a TensorFlow "
                 f"MetaGraph, which holds no weights"
                 + (f" (TensorFlow {graph.tensorflow_version})" if graph.tensorflow_version
                    else ""))
    if graph.tags:
        lines.append(f"MetaGraph tags: {', '.join(graph.tags)}")
    return lines


def describe(model: SavedModel) -> list[str]:
    """Lines for ``ckpt inspect``: each MetaGraph's tags, then its signatures with their
    method, inputs and outputs, in the order ``saved_model_cli show --all`` lists them
    (MetaGraphs by tag-set, signatures and their tensors by key). A sparse tensor is named by
    its values tensor, marked ``coo_sparse`` (saved_model_cli leaves its name blank)."""
    lines = []
    for graph in sorted(model.meta_graphs, key=lambda g: list(g.tags)):
        lines.append(f"MetaGraph tags: {', '.join(graph.tags) or '(none)'}"
                     + (f" (TensorFlow {graph.tensorflow_version})"
                        if graph.tensorflow_version else ""))
        for sig in graph.signatures:
            lines.append(f"  signature {sig.name!r}" + (f": {sig.method}" if sig.method else ""))
            for what, infos in (("input ", sig.inputs), ("output", sig.outputs)):
                for t in infos:
                    encoding = "" if t.encoding == "name" else f", {t.encoding}"
                    lines.append(f"    {what} {t.key}: {t.dtype} {_shape(t.shape)} "
                                 f"({t.name}{encoding})")
    return lines
