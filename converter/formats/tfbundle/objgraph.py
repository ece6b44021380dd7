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

from ...proto import ProtoError, decode, encode, last_bytes, last_int
from ...tfnames import ATTR_SUFFIX, SLOT_MARK, escape_local_name, unescape_local_name

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
            node.children.append((_text(cf, 2), last_int(cf, 1)))
        for a in f.get(2, []):
            af = decode(a)
            node.attributes.append((_text(af, 1), _text(af, 2), _text(af, 3)))
        for s in f.get(3, []):
            sf = decode(s)
            node.slots.append((last_int(sf, 1), _text(sf, 2), last_int(sf, 3)))
        nodes.append(node)
    return nodes


def _text(fields: dict[int, list], number: int) -> str:
    return last_bytes(fields, number).decode("utf-8", "replace")


def is_optimizer(node: Node) -> bool:
    # TF2 optimizers keep slot_variables (OptimizerV2) or a variable list and an iteration
    # counter of their own (Keras 3 and the newer tf-keras optimizer).
    names = {name for name, _ in node.children}
    return bool(node.slots) or bool(names & {"_iterations", "iter"}) and bool(
        names & {"_variables", "_trainable_variables", "iter"})


State = tuple[int, bool]  # a node, and whether the path to it went through an optimizer


def classify(nodes: list[Node], budget: int | None = None) -> dict[str, dict[str, str]]:
    """``{checkpoint_key: attrs}`` with ``kind``, ``object_path``, ``full_name`` and, for slots,
    ``slot_of`` (the original variable's key) and ``slot_name``. Object paths are spelled as
    keys spell them, each name escaped (``layer0/kernel`` → ``layer0.Skernel``). ``budget``
    bounds the bytes (and steps) spent spelling out object paths: a graph of shared children
    can make them quadratically long in its size, so a graph over budget is refused
    (ProtoError)."""
    n = len(nodes)
    optimizer = [is_optimizer(node) for node in nodes]
    # Breadth first, each state reached once: its shortest path is kept as a parent link and
    # a length, and spelled out only for the nodes that hold tensors.
    parent: dict[State, tuple[State | None, str]] = {}
    length: dict[State, int] = {}
    first: dict[int, State] = {}  # the first state reached of each node
    model: dict[int, State] = {}  # the first reached without passing an optimizer
    queue: deque[State] = deque()
    if n:
        parent[(0, False)] = (None, "")
        length[(0, False)] = 0
        queue.append((0, False))
    while queue:
        state = queue.popleft()
        node_id, via_opt = state
        first.setdefault(node_id, state)
        if not via_opt:
            model.setdefault(node_id, state)
        child_via = via_opt or optimizer[node_id]
        base = length[state]
        for local, child in nodes[node_id].children:
            reached = (child, child_via)
            if 0 <= child < n and reached not in parent:
                parent[reached] = (state, local)
                length[reached] = base + 1 + len(local) if base else len(local)
                queue.append(reached)
    depth: dict[State, int] = {}

    def steps(state: State) -> int:
        # Iterative, as a chain of nodes may be deeper than Python's recursion limit.
        chain = []
        while state not in depth:
            up = parent[state][0]
            if up is None:
                break
            chain.append(state)
            state = up
        d = depth.setdefault(state, 0)
        for s in reversed(chain):
            d += 1
            depth[s] = d
        return d

    holders = [i for i, node in enumerate(nodes) if node.attributes]
    wanted = {first[i] for i in holders if i in first} | {model[i] for i in holders if i in model}
    cost = sum(length[s] + steps(s) for s in wanted)
    if budget is not None and cost > budget:
        raise ProtoError(f"object paths would take {cost} bytes, more than {budget} for a "
                         "graph of this size (shared children nested too deep)")

    def spelled(state: State | None) -> str:
        if state is None:
            return ""
        parts = []
        while True:
            up, local = parent[state]
            if up is None:
                break
            parts.append(escape_local_name(local))
            state = up
        parts.reverse()
        lead = next((k for k, part in enumerate(parts) if part), len(parts))
        return "/".join(parts[lead:])  # a path never starts with "/" (see length above)

    paths = {i: spelled(first.get(i)) for i in holders}
    model_path = {i: spelled(model[i]) for i in holders if i in model}
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


def build(keys: list[str], full_names: dict[str, str],
          paths: dict[str, str] | None = None) -> bytes:
    """A graph for TF2 checkpoint keys: one node per path component, a ``VARIABLE_VALUE``
    attribute on each variable, optimizer slots referenced from their optimizer node.
    ``paths`` gives a variable's object path where it differs from its key's (Keras 3 keys a
    model's weights under its optimizer): the variable is reachable there too, as TF restores
    a ``Checkpoint(model=...)`` through the model's own path."""
    nodes: list[Node] = [Node()]
    index: dict[str, int] = {"": 0}

    def link(path: str, node_id: int) -> None:
        parent, _, local = path.rpartition("/")
        # Keys spell object names escaped; the graph holds the names themselves.
        nodes[node_for(parent)].children.append((unescape_local_name(local), node_id))
        index[path] = node_id

    def node_for(path: str) -> int:
        if path not in index:
            nodes.append(Node())
            link(path, len(nodes) - 1)
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
            nodes[node_for(opt_path)].slots.append(
                (node_for(var_path), unescape_local_name(slot_name), slot_id))
        else:
            nodes[node_for(path)].attributes.append(
                ("VARIABLE_VALUE", full_names.get(key, path), key))
    for key, other in (paths or {}).items():
        path = key[: -len(ATTR_SUFFIX)]
        if (key.endswith(ATTR_SUFFIX) and path in index and other and other not in index
                and not any(p in index and index[p] != 0 and nodes[index[p]].attributes
                            for p in _prefixes(other))):
            link(other, index[path])
    return encode(
        (1, encode(
            [(1, encode([(1, child), (2, local)])) for local, child in node.children]
            + [(2, encode([(1, a), (2, b), (3, c)])) for a, b, c in node.attributes]
            + [(3, encode([(1, o), (2, s), (3, v)])) for o, s, v in node.slots]
        ))
        for node in nodes
    )


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def keys_of(nodes: list[Node]) -> set[str]:
    return {key for node in nodes for _, _, key in node.attributes}
