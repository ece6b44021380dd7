"""``merge_axes`` (EinsumDense kernels ``[hidden, heads, head_size]`` to ``[hidden, hidden]``
for any sizes) and ``renumber`` (a Keras functional model's ``layer_with_weights-N`` as block
``N - 4``): lazily, bit for bit, in the plan and in TOML."""

from __future__ import annotations

import numpy as np
import pytest

from converter.errors import RenameError
from converter.rules import Rules, toml
from tests.helpers import assert_same


def test_merge_axes_is_numpy_reshape_in_c_order_for_any_sizes():
    q = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    o = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    rules = Rules().merge_axes("*/q", [1, 2]).merge_axes("*/o", [0, 1]).merge_axes("*/b", [0, -1])
    out = rules.apply({"l/q": q, "l/o": o, "l/b": b})
    assert (out["l/q"].shape, out["l/o"].shape, out["l/b"].shape) == ((2, 12), (12, 5), (12,))
    assert_same(out["l/q"].read(), q.reshape(2, 12))
    assert_same(out["l/o"].read(), o.reshape(12, 5))
    assert_same(out["l/b"].read(), b.reshape(12))
    # The same rule fits a tensor of other sizes: nothing in it is fixed.
    big = np.ones((8, 2, 4), np.float32)
    assert Rules().merge_axes("*", [1, 2]).apply({"w": big})["w"].shape == (8, 8)


def test_renumber_shifts_the_captured_number_in_place():
    rules = Rules().renumber(r"re:^layer_with_weights-(\d+)/_", -4)
    out = rules.apply({"layer_with_weights-5/_x/kernel": np.zeros(1, np.float32),
                       "layer_with_weights-1/embeddings": np.zeros(1, np.float32)})
    assert sorted(out) == ["layer_with_weights-1/_x/kernel", "layer_with_weights-1/embeddings"]
    glob = Rules().renumber("block_*/w", 10).apply({"block_2/w": np.zeros(1, np.float32)})
    assert list(glob) == ["block_12/w"]


def test_plan_and_toml_round_trip():
    rules = Rules().merge_axes("re:kernel$", [1, 2]).renumber(r"re:^l(\d+)/", -1)
    plan = rules.plan({"l1/kernel": np.zeros((4, 2, 2), np.float32)})
    assert plan.rows[0].name == "l0/kernel" and plan.rows[0].shape == (4, 4)
    assert plan.rows[0].transform == "merge axes 1..2"
    again, _ = toml.loads(rules.to_toml())
    assert Rules(again) == rules


@pytest.mark.parametrize("build, tensor, message", [
    (lambda: Rules().merge_axes("w", [1, 3]), (2, 3), "axis 3 is out of range"),
    (lambda: Rules().merge_axes("w", [-1, 0]), (2, 3), "axes -1..0 are not in order"),
    (lambda: Rules().renumber(r"re:^l(\d+)/", -4), "l2/w", "gives -2, a negative number"),
    (lambda: Rules().renumber(r"re:^l(\w+)/", 1), "lx/w", "captured 'x', which is not a number"),
])
def test_what_does_not_fit_is_refused_naming_the_tensor(build, tensor, message):
    if isinstance(tensor, str):
        source = {tensor: np.zeros(1, np.float32)}
    else:
        source = {"w": np.zeros(tensor, np.float32)}
    with pytest.raises(RenameError, match=message):
        build().apply(source)


@pytest.mark.parametrize("table, message", [
    ({"merge_axes": "w", "axes": [1]}, "must be \\[first, last\\]"),
    ({"merge_axes": "w", "axes": [2, 1]}, "first must come before last"),
    ({"renumber": "w", "offset": 1}, "must capture the number"),
    ({"renumber": "re:(\\d+)", "offset": "1"}, "offset must be an integer"),
])
def test_bad_tables_are_refused_when_read(table, message):
    with pytest.raises(RenameError, match=message):
        toml.rule_from_table(table, "rules")
