"""The ``_CHECKPOINTABLE_OBJECT_GRAPH`` of TF2 object-based checkpoints
(``tensorflow/core/protobuf/trackable_object_graph.proto``).

Decoding gives each saved tensor its object path, the variable's own name (``full_name``) and
its role: model variable, optimizer slot (``slot_variables`` of an optimizer node, or a variable
only an optimizer tracks, as in Keras 3) or counter. Encoding builds a graph from checkpoint keys
when tensors with TF2 keys are written without a matching graph.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .proto import decode, encode, first_bytes, first_int

GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
ATTR_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
SLOT_MARK = "/.OPTIMIZER_SLOT/"
COUNTER_NAMES = {"save_counter", "iter", "iterations", "_iterations", "global_step"}


@dataclass
class Node:
    children: list[tuple[str, int]] = field(default_factory=list)
    attributes: list[tuple[str, str, str]] = field(default_factory=list)  # name, full_name, key
    slots: list[tuple[int, str, int]] = field(default_factory=list)  # original, slot name, slot


def parse(raw: bytes) -> list[Node]:
    """The graph's nodes; ProtoError for malformed bytes (including fields of the wrong wire
    type, which a bit flip in a key produces)."""
    nodes = []
    for n in decode(raw).get(1, []):
        f = decode(n)
        node = Node()
        for c in f.get(1, []):
            cf = decode(c)
            node.children.append((_text(cf, 2), first_int(cf, 1)))
        for a in f.get(2, []):
            af = decode(a)
            node.attributes.append((_text(af, 1), _text(af, 2), _text(af, 3)))
        for s in f.get(3, []):
            sf = decode(s)
            node.slots.append((first_int(sf, 1), _text(sf, 2), first_int(sf, 3)))
        nodes.append(node)
    return nodes


def _text(fields: dict[int, list], number: int) -> str:
    return first_bytes(fields, number).decode("utf-8", "replace")


def _is_optimizer(node: Node) -> bool:
    # TF2 optimizers keep slot_variables (OptimizerV2) or a variable list and an iteration
    # counter of their own (Keras 3 and the newer tf-keras optimizer).
    names = {name for name, _ in node.children}
    return bool(node.slots) or bool(names & {"_iterations", "iter"}) and bool(
        names & {"_variables", "_trainable_variables", "iter"})


def classify(nodes: list[Node]) -> dict[str, dict[str, str]]:
    """``{checkpoint_key: attrs}`` with ``kind``, ``object_path``, ``full_name`` and, for slots,
    ``slot_of`` (the original variable's key) and ``slot_name``."""
    n = len(nodes)
    optimizer = [_is_optimizer(node) for node in nodes]
    paths: dict[int, str] = {}
    model_path: dict[int, str] = {}  # shortest path avoiding optimizer nodes
    queue: deque[tuple[int, str, bool]] = deque([(0, "", False)])
    seen: set[tuple[int, bool]] = set()
    while queue:
        node_id, path, via_opt = queue.popleft()
        if not 0 <= node_id < n or (node_id, via_opt) in seen:
            continue
        seen.add((node_id, via_opt))
        paths.setdefault(node_id, path)
        if not via_opt:
            model_path.setdefault(node_id, path)
        child_via = via_opt or optimizer[node_id]
        for local, child in nodes[node_id].children:
            queue.append((child, f"{path}/{local}" if path else local, child_via))
    slot_of: dict[int, tuple[int, str]] = {}
    for node in nodes:
        for original, slot_name, slot_node in node.slots:
            slot_of[slot_node] = (original, slot_name)
    key_of = {i: node.attributes[0][2] for i, node in enumerate(nodes) if node.attributes}
    out: dict[str, dict[str, str]] = {}
    for i, node in enumerate(nodes):
        for name, full_name, key in node.attributes:
            attrs = {"object_path": model_path.get(i, paths.get(i, "")), "full_name": full_name,
                     "attribute": name}
            leaf = attrs["object_path"].rsplit("/", 1)[-1]
            if i in slot_of:
                original, slot_name = slot_of[i]
                attrs.update(kind="slot", slot_name=slot_name, slot_of=key_of.get(original, ""))
            elif leaf in COUNTER_NAMES or full_name.rsplit("/", 1)[-1] in COUNTER_NAMES:
                attrs["kind"] = "counter"
            elif i not in model_path:
                attrs["kind"] = "slot"  # tracked only by an optimizer (Keras 3 optimizer state)
            else:
                attrs["kind"] = "variable"
            out[key] = attrs
    return out


def build(keys: list[str], full_names: dict[str, str]) -> bytes:
    """A graph for TF2 checkpoint keys: one node per path component, a ``VARIABLE_VALUE``
    attribute on each variable, optimizer slots referenced from their optimizer node."""
    nodes: list[Node] = [Node()]
    index: dict[str, int] = {"": 0}

    def node_for(path: str) -> int:
        if path in index:
            return index[path]
        parent, _, local = path.rpartition("/")
        parent_id = node_for(parent)
        index[path] = len(nodes)
        nodes.append(Node())
        nodes[parent_id].children.append((local, index[path]))
        return index[path]

    for key in keys:
        if not key.endswith(ATTR_SUFFIX):
            continue
        path = key[: -len(ATTR_SUFFIX)]
        if SLOT_MARK in path:
            var_path, _, rest = path.partition(SLOT_MARK)
            opt_path, _, slot_name = rest.rpartition("/")
            slot_id = len(nodes)
            nodes.append(Node())
            nodes[slot_id].attributes.append(("VARIABLE_VALUE", full_names.get(key, ""), key))
            nodes[node_for(opt_path)].slots.append((node_for(var_path), slot_name, slot_id))
        else:
            nodes[node_for(path)].attributes.append(
                ("VARIABLE_VALUE", full_names.get(key, path), key))
    return encode(
        (1, encode(
            [(1, encode([(1, child), (2, local)])) for local, child in node.children]
            + [(2, encode([(1, a), (2, b), (3, c)])) for a, b, c in node.attributes]
            + [(3, encode([(1, o), (2, s), (3, v)])) for o, s, v in node.slots]
        ))
        for node in nodes
    )


def keys_of(nodes: list[Node]) -> set[str]:
    return {key for node in nodes for _, _, key in node.attributes}
