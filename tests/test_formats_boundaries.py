"""Format modules' boundaries: messages that name a file once, a safetensors index whose
weight_map is not an object, the GC pause as a decorator, and which modules may import which."""

from __future__ import annotations

import ast
import gc
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import FormatError
from converter.formats._common import gc_paused

ROOT = Path(__file__).resolve().parent.parent


def _npy_bytes(shape_text: str, descr: str = "<f4", data: bytes = b"") -> bytes:
    """An .npy (version 1.0) whose header says ``shape_text``, as no numpy would write it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + data


def test_npz_member_with_a_negative_dimension_names_file_and_tensor_once(tmp_path):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", _npy_bytes("(-1,)"))
    with pytest.raises(FormatError) as info:
        converter.read(path)
    assert str(info.value) == f"{path}: tensor 'a' has an invalid shape [-1]"


def test_lone_npy_with_a_negative_dimension_names_the_file_once(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(_npy_bytes("(2, -3)"))
    with pytest.raises(FormatError) as info:
        converter.read(path)
    assert str(info.value) == f"{path} has an invalid shape [2, -3]"


def test_npz_string_side_entry_with_a_bad_shape_names_file_and_tensor_once(tmp_path):
    path = tmp_path / "s.npz"
    side = {"version": 1, "metadata": {}, "tensors": {"s": {"dtype": "string", "shape": "x"}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("s.npy", _npy_bytes("(8,)", "|u1", bytes(8)))
        zf.writestr("__converter__.json", json.dumps(side))
    with pytest.raises(FormatError) as info:
        converter.read(path)
    assert str(info.value) == f"{path}: tensor 's' has an invalid shape 'x'"


def test_safetensors_bad_shape_message_is_unchanged(tmp_path):
    path = tmp_path / "m.safetensors"
    header = json.dumps({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(FormatError) as info:
        converter.read(path)
    assert str(info.value) == f"{path}: tensor 'a' has an invalid shape [-1]"


@pytest.mark.parametrize("weight_map", [["a.safetensors"], "a.safetensors", 3, None])
def test_safetensors_index_whose_weight_map_is_not_an_object(tmp_path, weight_map):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(FormatError) as info:
        converter.read(index)
    assert str(info.value) == (f"{index}: weight_map must be an object mapping tensor names to "
                               f"shard files, found {type(weight_map).__name__}")


def test_safetensors_weight_map_refused_under_python_O(tmp_path):
    # The refusal must not be an assert: ``python -O`` strips those.
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": ["a.safetensors"]}))
    code = ("import sys, converter\n"
            "from converter.errors import FormatError\n"
            "try:\n"
            f"    converter.read({str(index)!r})\n"
            "except FormatError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(0)\n"
            "sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{index}: weight_map must be an object mapping tensor "
                                   "names to shard files, found list")


def test_gc_paused_decorates_a_function_and_restores_the_collector():
    seen = []

    @gc_paused()
    def body() -> None:
        seen.append(gc.isenabled())

    assert gc.isenabled()
    body()
    body()  # a fresh pause each call
    assert seen == [False, False] and gc.isenabled()


def _imports(relpath: str) -> set[str]:
    """Modules ``converter/<relpath>`` imports anywhere (functions included), absolute."""
    parts = ["converter", *relpath[:-3].split("/")]
    tree = ast.parse((ROOT / "converter" / relpath).read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_hdf5_and_keras_readers_do_not_import_each_other():
    assert "converter.formats.keras" not in _imports("formats/hdf5.py")
    assert "converter.formats.hdf5" not in _imports("formats/keras.py")
    assert "converter.formats.npz" not in _imports("formats/keras.py")


@pytest.mark.parametrize("module", ["outputs.py", "_tempfiles.py"])
def test_outputs_do_not_import_a_format(module):
    assert not any(m.startswith("converter.formats") for m in _imports(module))


def test_no_format_module_imports_another_modules_underscore_names():
    found = []
    for file in sorted((ROOT / "converter" / "formats").glob("*.py")):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:  # not `from . import _npyfmt`
                found += [f"{file.name}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_hdf5_reads_legacy_keras_optimizer_kinds(tmp_path):
    # The Keras 2 naming moved out of the reader: names, order and kinds stay as they were.
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "full.h5"
    with h5py.File(path, "w") as f:
        model = f.create_group("model_weights")
        model.attrs["layer_names"] = [b"dense"]
        dense = model.create_group("dense")
        dense.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        dense["dense/kernel:0"] = np.arange(6, dtype="<f4").reshape(2, 3)
        dense["dense/bias:0"] = np.zeros(3, dtype="<f4")
        opt = f.create_group("optimizer_weights")
        opt.attrs["weight_names"] = [b"Adam/iterations:0", b"Adam/m/dense/kernel:0"]
        opt["Adam/iterations:0"] = np.int64(7)
        opt["Adam/m/dense/kernel:0"] = np.ones((2, 3), dtype="<f4")
    with converter.read(path) as ckpt:
        assert list(ckpt) == ["dense/kernel", "dense/bias", "Adam/iterations",
                              "Adam/m/dense/kernel"]
        assert [t.kind for t in ckpt.values()] == ["variable", "variable", "counter", "slot"]
        assert ckpt.source.layout == "keras2"


@pytest.mark.parametrize("group, message", [
    ("model_weights/dense", "weight 'dense/gone:0' of layer 'dense' is missing"),
    ("optimizer_weights", "optimizer weight 'dense/gone:0' is missing"),
])
def test_hdf5_legacy_keras_missing_weight_names_it(tmp_path, group, message):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "full.h5"
    with h5py.File(path, "w") as f:
        f.create_group("model_weights").attrs["layer_names"] = [b"dense"]
        f.create_group("model_weights/dense").attrs["weight_names"] = []
        f.create_group("optimizer_weights").attrs["weight_names"] = []
        f[group].attrs["weight_names"] = [b"dense/gone:0"]
    with pytest.raises(FormatError) as info:
        converter.read(path)
    assert str(info.value) == f"{path}: {message}"
