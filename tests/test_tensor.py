"""The intermediate: Tensor, Checkpoint, and the registry's plumbing."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter import dtypes, registry
from converter.errors import FormatError, UsageError
from converter.tensor import Tensor


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


@pytest.mark.parametrize("name", sorted(dtypes.ALL))
def test_item_sizes_by_name_are_numpys(name):
    # A reader that knows dtypes by name gives sizes from this table without importing numpy.
    dtype = dtypes.from_name(name)
    assert dtypes.ITEMSIZE[name] == (0 if dtype.hasobject else dtype.itemsize)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "int4", "string", "complex128"])
def test_a_tensor_known_by_dtype_name_is_the_tensor_of_its_numpy_dtype(name):
    by_name = Tensor._trusted("t", name, (2, 3), 6, lambda: None, None, ("f", 0, 48), None, {})
    by_dtype = Tensor("t", dtypes.from_name(name), (2, 3), lambda: None, span=("f", 0, 48))
    assert by_name.dtype_name == by_dtype.dtype_name == name
    assert by_name.nbytes == by_dtype.nbytes
    assert by_name.dtype == by_dtype.dtype and type(by_name.dtype) is type(by_dtype.dtype)
    assert by_name.renamed("u").dtype == by_dtype.dtype
