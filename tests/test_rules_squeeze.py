"""``squeeze`` and ``unsqueeze``: GPT-2's conv1d weights ``[1, in, out]`` to ``[in, out]`` and
back, lazily and bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from converter.errors import RenameError
from converter.rules import Rules, toml
from tests.helpers import assert_same


def test_squeeze_then_unsqueeze_gives_the_tensor_back():
    w = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    there = Rules().squeeze("*/w").apply({"h0/w": w, "h0/b": np.ones(6, np.float32)})
    assert there["h0/w"].shape == (4, 6) and there["h0/b"].shape == (6,)
    assert_same(there["h0/w"].read(), w[0])
    back = Rules().unsqueeze("*/w").apply(there)
    assert back["h0/w"].shape == (1, 4, 6)
    assert_same(back["h0/w"].read(), w)


def test_the_plan_shows_the_transform_and_toml_round_trips():
    rules = Rules().squeeze("*/w").unsqueeze("*/w", axis=-1)
    plan = rules.plan({"a/w": np.zeros((1, 2, 3), np.float32)})
    assert plan.rows[0].shape == (2, 3, 1)
    assert plan.rows[0].transform == "squeeze axis 0; unsqueeze axis -1"
    again, _ = toml.loads(rules.to_toml())
    assert Rules(again) == rules


@pytest.mark.parametrize("rules, message", [
    (Rules().squeeze("w"), "axis 0 is not of length 1"),
    (Rules().squeeze("w", axis=5), "axis 5 is not of length 1"),
    (Rules().unsqueeze("w", axis=4), "cannot insert axis 4 into 2 axes"),
])
def test_an_axis_that_does_not_fit_is_refused_naming_the_tensor(rules, message):
    with pytest.raises(RenameError, match=message):
        rules.apply({"w": np.zeros((2, 3), np.float32)})
