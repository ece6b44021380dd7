"""The intermediate: Tensor, Checkpoint, and the registry's plumbing."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter import registry
from converter.errors import FormatError, UsageError


def test_tensor_is_lazy():
    calls = []

    def load():
        calls.append(1)
        return np.arange(6, dtype=np.int16).reshape(2, 3)

    t = converter.Tensor("w", np.int16, (2, 3), load)
    assert (t.name, t.shape, t.nbytes, t.kind) == ("w", (2, 3), 12, "variable")
    assert not calls
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert calls


def test_checkpoint_mapping_and_close():
    closed = []
    ckpt = converter.Checkpoint({"a": converter.Tensor.from_array("a", np.zeros(2))},
                                {"k": "v"}, closers=[lambda: closed.append(1)])
    assert list(ckpt) == ["a"] and len(ckpt) == 1 and ckpt.nbytes == 16
    with ckpt:
        pass
    assert closed == [1]


def test_as_checkpoint_rejects_non_mappings():
    with pytest.raises(TypeError):
        converter.as_checkpoint([np.zeros(2)])
    with pytest.raises(TypeError):
        converter.as_checkpoint({1: np.zeros(2)})


def test_register_a_format(tmp_path, monkeypatch):
    """A third-party format joins through the registry without touching converter."""
    import sys
    import types

    mod = types.ModuleType("fake_fmt")
    mod.sniff = lambda path: path.suffix == ".fake"
    mod.read = lambda path: converter.as_checkpoint({"x": np.load(path.with_suffix(".npy"))})

    def write(ckpt, path, force=False, progress=False):
        np.save(path.with_suffix(".npy"), ckpt["x"].read())
        path.write_text("fake")

    mod.write = write
    monkeypatch.setitem(sys.modules, "fake_fmt", mod)
    fmt = registry.Format("fake", (".fake",), "fake_fmt")
    registry.register(fmt)
    try:
        with pytest.raises(UsageError):
            registry.register(fmt)
        converter.write({"x": np.arange(3)}, tmp_path / "a.fake")
        assert converter.read(tmp_path / "a.fake").source.format == "fake"
    finally:
        registry.unregister("fake")


def test_unknown_options_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="compress"):
        converter.write({"x": np.zeros(1)}, tmp_path / "a.safetensors", compress=True)


def test_missing_module_gives_install_hint(monkeypatch):
    fmt = registry.Format("ghost", (".ghost",), "no_such_module_xyz", requires="ghost-pkg")
    with pytest.raises(FormatError, match='pip install "ghost-pkg"'):
        fmt.load()
