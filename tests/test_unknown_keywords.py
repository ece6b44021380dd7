"""An unknown keyword argument is named as the caller typed it, whatever its letters."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.errors import spell


@pytest.mark.parametrize("name", ["shard2", "maxShardSize", "dtypé"])
def test_an_unknown_keyword_is_spelled_without_placeholder_bytes(tmp_path, name):
    with pytest.raises(converter.UsageError) as info:
        converter.write({"w": np.zeros(3)}, tmp_path / "x.npz", **{name: 1})
    message = str(info.value)
    assert "\x00" not in message and f"{name}=" in message, repr(message)
    assert "\x00" not in spell(info.value.args[0], cli=True)
