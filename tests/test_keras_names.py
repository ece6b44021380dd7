"""Files written by Keras: .keras weights of wrapped layers are named as Keras 3 names them,
deflated archives read efficiently and through their inner HDF5 file, and a Keras 2 full-model
.h5 keeps its optimizer state."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import FormatError
from tests.helpers import assert_same

h5py = pytest.importorskip("h5py")


def _repack(src: Path, dst: Path, *, edit=None, deflate: bool = True) -> None:
    """``src`` rezipped with every member deflated (or stored as in ``src``), the weights file
    changed by ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "model.weights.h5" and edit is not None:
                data = edit(data)
            if deflate:
                zout.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
            else:
                zout.writestr(info, data)


def test_wrapped_layers_are_named_as_keras_names_them(keras_files):
    paths = json.loads((keras_files / "wrapped.json").read_text())
    assert "bidirectional/forward_gru/gru_cell/kernel" in paths  # the layers are wrapped
    values = np.load(keras_files / "wrapped.npz")
    with converter.read(keras_files / "wrapped.keras") as ckpt:
        variables = [n for n, t in ckpt.items() if t.kind == "variable"]
        assert variables == paths
        for p in paths:
            assert_same(ckpt[p], values[p], p)


def test_deflated_keras_reads_the_same(keras_files, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _repack(keras_files / "wrapped.keras", tmp_path / "d.keras")
    with zipfile.ZipFile(tmp_path / "d.keras") as z:
        assert z.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    with converter.read(keras_files / "wrapped.keras") as a, \
            converter.read(tmp_path / "d.keras") as b:
        assert list(a) == list(b)
        for name in a:
            assert_same(b[name], a[name], name)
        assert len(list(scratch.iterdir())) == 1  # the inflated weights, while open
    assert not list(scratch.iterdir())


def test_deflated_weights_are_inflated_once(keras_files, tmp_path, monkeypatch):
    # HDF5 seeks back and forth; each backward seek in a deflated member inflates it again.
    _repack(keras_files / "wrapped.keras", tmp_path / "d.keras")
    seeks = []
    real = zipfile.ZipExtFile.seek

    def counting(self, *args, **kwargs):
        seeks.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipExtFile, "seek", counting)
    with converter.read(tmp_path / "d.keras") as ckpt:
        for t in ckpt.values():
            t.read()
    assert seeks == []


def _add_strings(data: bytes) -> bytes:
    buf = io.BytesIO(data)
    with h5py.File(buf, "a") as f:
        f.create_dataset("layers/vocab/vars/0", data=[b"alpha", b"be", b"\xce\xb3"],
                         dtype=h5py.string_dtype("utf-8"))
    return buf.getvalue()


@pytest.mark.parametrize("deflate", [True, False])
def test_string_weights_in_keras(keras_files, tmp_path, deflate):
    out = tmp_path / "s.keras"
    _repack(keras_files / "wrapped.keras", out, edit=_add_strings, deflate=deflate)
    with converter.read(out) as ckpt:
        (name,) = [n for n in ckpt if n.startswith("vocab/")]
        assert list(ckpt[name].read()) == [b"alpha", b"be", "γ".encode()]


def _zero_length_heap_object(data: bytes) -> bytes:
    data = bytearray(_add_strings(data))
    pos = data.find(b"GCOL")
    assert pos >= 0
    data[pos + 16:pos + 18] = b"\0\0"
    data[pos + 24:pos + 32] = bytes(8)
    return bytes(data)


@pytest.mark.parametrize("deflate", [True, False])
def test_global_heap_guard_applies_to_keras(keras_files, tmp_path, deflate):
    out = tmp_path / "h.keras"
    _repack(keras_files / "wrapped.keras", out, edit=_zero_length_heap_object, deflate=deflate)
    # libhdf5 would loop forever on this heap: a child with a deadline, not this process.
    code = ("import sys, converter\n"
            "try:\n"
            "    c = converter.read(sys.argv[1])\n"
            "    [t.read() for t in c.values()]\n"
            "except converter.errors.FormatError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, timeout=60)
    assert "corrupt global heap" in done.stdout, done.stdout + done.stderr


def test_keras_config_is_capped(tmp_path):
    out = tmp_path / "c.keras"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("config.json", b"[" + b" " * (16 << 20) + b"]")  # MAX_CONFIG is 16 MiB
        z.writestr("model.weights.h5", b"")
    assert out.stat().st_size < 1 << 20
    with pytest.raises(FormatError, match="config.json declares"):
        converter.read(out)


def test_keras2_full_model_keeps_optimizer_weights(keras_files):
    values = np.load(keras_files / "adam.npz")
    with converter.read(keras_files / "adam.h5") as ckpt:
        assert ckpt["dense/kernel"].kind == "variable"
        optimizer = {n: t for n, t in ckpt.items() if t.kind in ("slot", "counter")}
        assert len(optimizer) == len(values.files)
        for name in values.files:
            short = name[:-2] if name.endswith(":0") else name
            assert short in optimizer, (short, list(optimizer))
            assert_same(optimizer[short], values[name], name)
        counters = [n for n, t in optimizer.items() if t.kind == "counter"]
        assert counters == ["iteration"]
