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
from typing import Any

GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
ATTR_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
SLOT_MARK = "/.OPTIMIZER_SLOT/"
OUTPUT_SUFFIX = ":0"  # a graph tensor's name: variable ``dense/kernel`` reads as ``dense/kernel:0``

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[Any, ...], ...]:
    """Sort key comparing each ``/``-part by its text and numbers: ``dense`` < ``dense_1`` <
    ``dense_10``, ``layers/dense_2/vars/0`` < ``layers/dense_10/vars/0``."""
    return tuple(tuple(int(c) if i % 2 else c for i, c in enumerate(_DIGITS.split(part)))
                 for part in name.split("/"))
