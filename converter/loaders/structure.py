"""Layer structure, for pairing layers whose names changed between two models.

tf.keras tracks the layers of a Sequential or functional model in its TF2 object graph as
``layer_with_weights-N`` children (nested models the same way below theirs), and its own
``load_weights`` restores a TF-format checkpoint by that structure, never by name. A SavedModel
written by tf.keras holds the same children, with each layer's weights listed in order under
``variables``.

Both sides are flattened into their weight-carrying leaf layers in model order: the
checkpoint's from the object graph, the model's by walking ``model.layers`` into nested models
(a shared layer counts once, where it first appears). Leaf ``i`` pairs leaf ``i``; inside a
pair, weights pair by their own names (``kernel``, ``moving_mean``) when those tell them apart,
else by position. The alignment counts only when it is complete: as many leaves on both sides,
the same number of weights in each; the loader then checks shapes and dtypes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..formats.tfbundle import objgraph
from ..tensor import Checkpoint
from ..tfnames import GRAPH_KEY

LAYER_CHILD = re.compile(r"^layer_with_weights-(\d+)$")
# Children of a tf.keras layer node that are not its weights, or that repeat them.
NOT_WEIGHTS = re.compile(r"^(layer-\d+|keras_api|signatures|_default_save_signature|__call__|"
                         r"call_and_return_\w+|trainable_variables|non_trainable_variables|"
                         r"regularization_losses|optimizer|_random_generator)$")


@dataclass
class Leaf:
    """A layer that owns weights: where it sits, and its weights as ``(own name, id)`` pairs
    (the id is a checkpoint tensor name or a model variable's name)."""

    path: str
    weights: list[tuple[str, str]] = field(default_factory=list)


def checkpoint_layers(ckpt: Checkpoint) -> list[Leaf] | None:
    """The leaf layers of a tf.keras model in a TF2 checkpoint or SavedModel, in model order;
    ``None`` when the checkpoint has no object graph or it holds no such model."""
    graph = ckpt.get(GRAPH_KEY)
    if graph is None or graph.kind != "object_graph":
        return None
    try:
        nodes = objgraph.parse(graph.read().reshape(-1)[0])
    except Exception:  # the reader already vouched for the graph; a stranger one just won't do
        return None
    root = _model_node(nodes)
    if root is None:
        return None
    leaves: list[Leaf] = []
    seen: set[int] = set()

    def visit(node_id: int, path: str) -> None:
        if node_id in seen or not 0 <= node_id < len(nodes):
            return
        seen.add(node_id)
        layers = _layer_children(nodes[node_id])
        if layers:
            for local, child in layers:
                visit(child, f"{path}/{local}" if path else local)
        else:
            weights = _weights(nodes, node_id)
            if weights:
                leaves.append(Leaf(path, weights))

    visit(root, "")
    return leaves or None


def _model_node(nodes: list[objgraph.Node]) -> int | None:
    """The root when it is the model (``save_weights``, SavedModel), else the one child that is
    (``tf.train.Checkpoint(model=...)``)."""
    if not nodes:
        return None
    if _layer_children(nodes[0]):
        return 0
    models = [child for _, child in nodes[0].children
              if 0 <= child < len(nodes) and _layer_children(nodes[child])]
    return models[0] if len(models) == 1 else None


def _layer_children(node: objgraph.Node) -> list[tuple[str, int]]:
    found = [(int(m.group(1)), local, child) for local, child in node.children
             if (m := LAYER_CHILD.match(local))]
    return [(local, child) for _, local, child in sorted(found)]


def _weights(nodes: list[objgraph.Node], node_id: int) -> list[tuple[str, str]]:
    """A layer's weights in order: the SavedModel's ``variables`` list when there is one, else
    the variables found depth-first below the layer (a recurrent layer's sit in its cell)."""
    node = nodes[node_id]
    listed = [child for local, child in node.children if local == "variables"]
    if listed:
        order = sorted(nodes[listed[0]].children, key=lambda c: _number(c[0]))
        return [_weight(nodes[child]) for _, child in order if nodes[child].attributes]
    out: list[tuple[str, str]] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i in seen or not 0 <= i < len(nodes):
            return
        seen.add(i)
        if nodes[i].attributes:
            out.append(_weight(nodes[i]))
            return
        for local, child in nodes[i].children:
            if not NOT_WEIGHTS.match(local) and not LAYER_CHILD.match(local):
                visit(child)

    for local, child in node.children:
        if not NOT_WEIGHTS.match(local):
            visit(child)
    return out


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 1 << 30


def _weight(node: objgraph.Node) -> tuple[str, str]:
    _, full_name, key = node.attributes[0]
    return full_name.rsplit("/", 1)[-1], key


def model_layers(model: Any, name_of: Callable[[Any], str | None]) -> list[Leaf]:
    """The leaf layers of a Keras 3 or tf.keras model in model order, each weight as
    ``(own name, name_of(variable))``; weights ``name_of`` maps to None are left out."""
    leaves: list[Leaf] = []
    seen: set[int] = set()

    def visit(layer: Any, path: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        sublayers = getattr(layer, "layers", None)
        if sublayers is not None and _is_model(layer):
            for sub in sublayers:
                visit(sub, f"{path}/{sub.name}" if path else sub.name)
            return
        weights = []
        for v in layer.weights:
            name = name_of(v)
            if name is not None:
                own = (getattr(v, "path", None) or v.name).rsplit("/", 1)[-1]
                weights.append((own.removesuffix(":0"), name))
        if weights:
            leaves.append(Leaf(path, weights))

    for layer in model.layers if _is_model(model) else [model]:
        visit(layer, layer.name)
    return leaves


def _is_model(layer: Any) -> bool:
    # Sequential and functional models (Keras 3 and tf.keras) list their layers; a layer that
    # merely holds sublayers (an RNN and its cell) is one leaf, as tf.keras saves it.
    return any(c.__name__ in ("Functional", "Sequential", "Model") for c in type(layer).__mro__)


def align(source: list[Leaf], target: list[Leaf]) -> dict[str, str] | None:
    """``{target id: source id}`` pairing leaf ``i`` with leaf ``i``, or None unless both sides
    have as many leaves and each pair as many weights (shapes are the caller's to check)."""
    if len(source) != len(target):
        return None
    out: dict[str, str] = {}
    for s, t in zip(source, target, strict=True):
        if len(s.weights) != len(t.weights):
            return None
        s_names = [n for n, _ in s.weights]
        t_names = [n for n, _ in t.weights]
        if len(set(s_names)) == len(s_names) and sorted(s_names) == sorted(t_names):
            by_name = dict(s.weights)
            out.update((tid, by_name[n]) for n, tid in t.weights)
        else:
            out.update((tid, sid) for (_, tid), (_, sid) in zip(t.weights, s.weights,
                                                                strict=True))
    return out
