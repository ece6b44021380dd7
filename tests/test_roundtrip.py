"""Every writer × every reader of the registry round-trips bit-exact; what a format cannot
hold is refused with an error naming the tensor. A format joins by registering itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import converter
from converter import dtypes, registry
from converter.errors import FormatError
from converter.formats._common import name_to_path
from tests.helpers import assert_same, assert_same_checkpoint
from tests.samples import sample

# Writers that take any checkpoint and read it back (not hf's model mappings).
WRITABLE = [f for f in registry.formats().values() if f.can_write and f.roundtrip]


def supported(fmt: registry.Format) -> frozenset[str]:
    return fmt.stored_dtypes


def out_path(tmp: Path, fmt: registry.Format, tag: str) -> Path:
    if fmt.name == "npy":
        return tmp / f"{tag}_npy"  # a directory: one .npy per tensor
    return tmp / f"{tag}{fmt.suffixes[0]}"


@pytest.mark.parametrize("fmt", WRITABLE, ids=lambda f: f.name)
def test_write_then_read(tmp_path, fmt):
    data = sample(supported(fmt))
    before = {k: v.copy() for k, v in data.items()}
    ckpt = converter.as_checkpoint(data)
    ckpt.metadata.update({"source": "unit test", "note": "ünïcode"})
    path = out_path(tmp_path, fmt, "a")
    converter.write(ckpt, path, format=fmt.name)
    back = converter.read(path)  # format detected from the content
    assert back.source.format == fmt.name
    assert_same_checkpoint(back, data)
    if fmt.metadata:
        assert back.metadata["source"] == "unit test" and back.metadata["note"] == "ünïcode"
    for name, value in before.items():  # the writer did not touch its input
        assert_same(data[name], value, name)
    back.close()


@pytest.mark.parametrize("src", WRITABLE, ids=lambda f: f.name)
@pytest.mark.parametrize("dst", WRITABLE, ids=lambda f: f.name)
def test_convert_matrix(tmp_path, src, dst):
    data = sample(supported(src) & supported(dst))
    a = out_path(tmp_path, src, "src")
    b = out_path(tmp_path, dst, "dst")
    converter.write(data, a, format=src.name)
    converter.convert(a, b, to=dst.name).close()
    with converter.read(b, format=dst.name) as back:
        assert_same_checkpoint(back, data)


@pytest.mark.parametrize("fmt", WRITABLE, ids=lambda f: f.name)
def test_unsupported_dtypes_are_refused(tmp_path, fmt):
    missing = sorted(dtypes.ALL - supported(fmt))
    if not missing:
        pytest.skip(f"{fmt.name} stores every dtype")
    for name in missing:
        data = {"fine": np.zeros(2, np.float32), f"bad_{name}": sample({name})[f"dtypes/{name}"]}
        path = out_path(tmp_path, fmt, name)
        with pytest.raises(FormatError, match=f"bad_{name}"):
            converter.write(data, path, format=fmt.name)
        assert not list(tmp_path.iterdir()), "a refused write left files behind"


def test_single_npy_file(tmp_path):
    x = np.arange(12, dtype=">i4").reshape(3, 4)
    converter.write({"x": x}, tmp_path / "x.npy")
    assert_same(np.load(tmp_path / "x.npy"), x.astype("<i4"))
    with converter.read(tmp_path / "x.npy") as back:
        assert list(back) == ["x"]
        assert_same(back["x"].read(), x.astype("<i4"))
    with pytest.raises(converter.UsageError, match="one tensor"):
        converter.write({"a": x, "b": x}, tmp_path / "two.npy")


def test_safetensors_library_reads_our_files(tmp_path):
    from safetensors.numpy import load_file

    # The library's numpy backend has no float8 arrays; every other code is checked.
    codes = {d for d in supported(registry.get("safetensors")) if not d.startswith("float8")}
    data = sample(codes)
    converter.write(data, tmp_path / "x.safetensors")
    theirs = load_file(tmp_path / "x.safetensors")
    assert sorted(theirs) == sorted(data)
    for name, value in data.items():
        assert_same(theirs[name], value, name)


def test_numpy_reads_our_npz(tmp_path):
    data = sample({"float32", "int64", "bool", "complex128"})
    converter.write(data, tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz") as theirs:
        for name, value in data.items():
            # Names a path cannot hold as they are reach numpy escaped (see formats/npz.py).
            member = name_to_path(name, portable=False)[:-len(".npy")]
            assert_same(theirs[member], value, name)


def test_compressed_npz(tmp_path):
    data = sample(dtypes.ALL)
    converter.write(data, tmp_path / "c.npz", compress=True)
    converter.write(data, tmp_path / "u.npz")
    assert (tmp_path / "c.npz").stat().st_size < (tmp_path / "u.npz").stat().st_size
    with converter.read(tmp_path / "c.npz") as back:
        assert_same_checkpoint(back, data)


def test_hdf5_layout_mirrors_scopes(tmp_path):
    import h5py

    converter.write({"dense/kernel": np.ones((2, 2), np.float32),
                     "dense/kernel/Adam": np.zeros((2, 2), np.float32)}, tmp_path / "x.h5")
    with h5py.File(tmp_path / "x.h5") as f:
        assert isinstance(f["dense"], h5py.Group)
        assert isinstance(f["dense/kernel/Adam"], h5py.Dataset)
        assert f["dense/kernel:0"].attrs["name"] == "dense/kernel"


@pytest.mark.parametrize("names, positions", [
    (["layer_2/w", "layer_10/w", "layer_10/w/Adam", "z"], False),  # natural order: none needed
    (["b", "a"], True),
    (["layer_10/w", "layer_2/w"], True),  # sorted as text, not as numbers
    (["a1", "a01"], True),  # the same natural key: natural order cannot tell them apart
])
def test_hdf5_positions_only_where_natural_order_differs(tmp_path, names, positions):
    import h5py

    data = {n: np.full(2, i, np.float32) for i, n in enumerate(names)}
    converter.write(data, tmp_path / "x.h5")
    with h5py.File(tmp_path / "x.h5") as f:
        found = []
        f.visititems(lambda _, obj: found.append("order" in obj.attrs)
                     if isinstance(obj, h5py.Dataset) else None)
        assert found == [positions] * len(names)
    with converter.read(tmp_path / "x.h5") as back:
        assert_same_checkpoint(back, data)


def test_strictly_natural_is_natural_keys_increasing():
    # The HDF5 writer leaves positions out by strictly_natural, the reader sorts by natural_key:
    # the two must agree on every list of names.
    import random

    from converter.tfnames import natural_key, strictly_natural

    rng = random.Random(0)
    pieces = ["a", "b", "1", "2", "10", "01", "_", "/", "x9", "é", ""]
    for _ in range(20000):
        names = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
                 for _ in range(rng.randint(1, 5))]
        keys = [natural_key(n) for n in names]
        increasing = all(a < b for a, b in zip(keys, keys[1:], strict=False))
        assert strictly_natural(names) == increasing, names


def test_hdf5_of_many_tensors_round_trips(tmp_path):
    # Enough datasets for the writer's large metadata blocks: data back to back in long runs,
    # between them in-memory tensors, scalars (stored in the object header) and strings.
    src = {f"scope_{i // 100}/var_{i}": np.full((3, 5), i, np.float32) for i in range(1200)}
    converter.write(src, tmp_path / "m.ckpt")
    with converter.read(tmp_path / "m.ckpt") as bundle:
        mixed: dict[str, object] = dict(bundle)
        mixed["scope_3/var_350a"] = np.arange(7, dtype=np.int16)
        mixed["scope_5/scalar"] = np.float64(2.5) * np.ones(())
        mixed["scope_9/strings"] = np.array([b"a", b"\x00b"], dtype=object)
        mixed["scope_9/empty"] = np.zeros((0, 4), np.float32)
        converter.write(mixed, tmp_path / "m.h5")
        with converter.read(tmp_path / "m.h5") as back:
            assert_same_checkpoint(back, mixed)


def test_hdf5_written_by_others(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("block/conv/w", data=np.arange(6, dtype=np.float16).reshape(2, 3))
        f.attrs["origin"] = "elsewhere"
    with converter.read(tmp_path / "x.h5") as back:
        assert list(back) == ["block/conv/w"]
        assert back.metadata["origin"] == "elsewhere"
        assert_same(back["block/conv/w"].read(), np.arange(6, dtype=np.float16).reshape(2, 3))


def test_npy_directory_written_by_others(tmp_path):
    (tmp_path / "d" / "dense").mkdir(parents=True)
    np.save(tmp_path / "d" / "dense" / "kernel.npy", np.eye(3, dtype=np.float32))
    np.save(tmp_path / "d" / "step.npy", np.int64(7))
    with converter.read(tmp_path / "d") as back:
        assert sorted(back) == ["dense/kernel", "step"]
        assert_same(back["dense/kernel"].read(), np.eye(3, dtype=np.float32))


def test_plain_dict_and_tensor_objects(tmp_path):
    t = converter.Tensor.from_array("renamed-away", np.arange(3))
    converter.write({"a": t, "b": [1.0, 2.0]}, tmp_path / "x.safetensors")
    with converter.read(tmp_path / "x.safetensors") as back:
        assert list(back) == ["a", "b"]
        assert_same(back["a"].read(), np.arange(3))
        assert_same(np.asarray(back["b"]), np.array([1.0, 2.0]))
