"""TensorFlow's naming conventions, shared by the readers, the rename rules and the loaders.

TF2 object-based checkpoints (``tf.train.Checkpoint``, tf.keras ``save_weights``) key each
saved value by its object path plus an attribute suffix, list optimizer slots under a marker,
and keep the object graph under one reserved key
(``tensorflow/python/checkpoint/checkpoint.py``, ``trackable/base.py``). TF and Keras make
names unique by appending numbers (``dense``, ``dense_1``, ``dense_10``), which sort by value,
not by text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
ATTR_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
SLOT_MARK = "/.OPTIMIZER_SLOT/"
OUTPUT_SUFFIX = ":0"  # a graph tensor's name: variable ``dense/kernel`` reads as ``dense/kernel:0``
# Object names in keys are escaped so that ``/`` only separates them: ``.`` is written ``..``
# and ``/`` is written ``.S`` (``trackable_utils.escape_local_name``).
_ESCAPED = re.compile(r"\.([.S])")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[Any, ...], ...]:
    """Sort key comparing each ``/``-part by its text and numbers: ``dense`` < ``dense_1`` <
    ``dense_10``, ``layers/dense_2/vars/0`` < ``layers/dense_10/vars/0``."""
    return tuple(tuple(int(c) if i % 2 else c for i, c in enumerate(_DIGITS.split(part)))
                 for part in name.split("/"))


def strictly_natural(names: Iterable[str]) -> bool:
    """Whether ``names`` come in strictly increasing :func:`natural_key` order (no two with the
    same key), so that sorting them by it gives them back as they are."""
    split = _DIGITS.split
    parts: dict[str, tuple[Any, ...]] = {}  # scopes repeat
    last = None
    for name in names:
        key = []
        for part in name.split("/"):
            k = parts.get(part)
            if k is None:  # as natural_key has it, without a generator per part
                pieces: list[Any] = split(part)
                pieces[1::2] = map(int, pieces[1::2])
                k = parts[part] = tuple(pieces)
            key.append(k)
        current = tuple(key)
        if last is not None and not last < current:
            return False
        last = current
    return True


def escape_local_name(name: str) -> str:
    """An object's name as a part of a TF2 key: ``layer0/kernel`` → ``layer0.Skernel``."""
    return name.replace(".", "..").replace("/", ".S")


def unescape_local_name(part: str) -> str:
    """The object's name a part of a TF2 key stands for: ``layer0.Skernel`` → ``layer0/kernel``."""
    return _ESCAPED.sub(lambda m: "." if m.group(1) == "." else "/", part)


def plain_key(key: str, unescape: bool = False) -> str:
    """``a/b/.ATTRIBUTES/VARIABLE_VALUE`` → ``a/b``; a slot key → ``<variable path>/<slot>``.
    With ``unescape``, each part becomes the object name it stands for, as TF prints them."""
    path = key[:-len(ATTR_SUFFIX)] if key.endswith(ATTR_SUFFIX) else key
    if SLOT_MARK in path:
        var_path, _, rest = path.partition(SLOT_MARK)
        path = f"{var_path}/{rest.rsplit('/', 1)[-1]}"
    if unescape:
        path = "/".join(unescape_local_name(part) for part in path.split("/"))
    return path


def readable_names(entries: Sequence[tuple[str, str, Mapping[str, str]]]) -> list[str | None]:
    """The readable name of each ``(source key, current name, attrs)`` of a TF2 checkpoint's
    values (the object graph left out), or None where it keeps its name: the variable's
    ``full_name`` when the reader found one and it is unique, else the key without
    ``/.ATTRIBUTES/VARIABLE_VALUE``; slots become ``<variable>/<slot name>``. Object names
    are unescaped (``layer0.Skernel`` → ``layer0/kernel``, as TF names them) unless two
    names would then be the same."""
    counts = Counter(attrs.get("full_name") for _, _, attrs in entries)
    readable: dict[str, str] = {}
    escaped: dict[str, str] = {}
    for source, name, attrs in entries:
        full = attrs.get("full_name")
        if full and counts[full] == 1:
            readable[source] = full
        elif name.endswith(ATTR_SUFFIX) or full:
            readable[source] = plain_key(name, unescape=True)
            escaped[source] = plain_key(name)
    out: list[str | None] = []
    for source, _, attrs in entries:
        slot_of, slot = attrs.get("slot_of"), attrs.get("slot_name")
        if slot_of and slot:
            base = readable.get(slot_of, plain_key(slot_of, unescape=True))
            out.append(f"{base}/{slot}")
        else:
            out.append(readable.get(source))
    taken = Counter(out)
    # Unescaped, ``a.Sb`` and ``a/b`` read the same: such names keep TF's escaped form.
    for i, (source, _, _) in enumerate(entries):
        current = out[i]
        if current is not None and taken[current] > 1 and source in escaped:
            out[i] = escaped[source]
    return out
