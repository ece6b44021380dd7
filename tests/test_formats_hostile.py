"""Hostile or unusual files: every declared structure is bounded by what the file stores, and
what cannot be read or written is one FormatError line (CLI exit 2), never a crash."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import converter
from converter.errors import FormatError

h5py = pytest.importorskip("h5py")


def _cli_one_line(capsys, argv: list[str]) -> str:
    from converter.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# --- npz -------------------------------------------------------------------------------------

def test_npz_side_member_is_capped(tmp_path):
    from converter.formats import npz

    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("a.npy", "w") as f:
            np.lib.format.write_array(f, np.ones(2))
        zf.writestr(npz.SIDE, b"[" + b" " * (npz.MAX_SIDE + 10) + b"]")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(FormatError, match="__converter__.json declares"):
        converter.read(path)


def test_npz_side_member_is_bounded_by_the_archive(tmp_path):
    from converter.formats import npz

    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("a.npy", "w") as f:
            np.lib.format.write_array(f, np.ones(2))
        zf.writestr(npz.SIDE, b"[" + b"[]," * (2 << 20) + b"[]]")  # ~300 MB parsed
    assert path.stat().st_size < 100 << 10
    with pytest.raises(FormatError, match="more than the .* allowed"):
        converter.read(path)


def test_npz_member_declaring_more_than_deflate_can_make(tmp_path, capsys):
    path = tmp_path / "big.npz"
    head = {"descr": "<f8", "fortran_order": False, "shape": (2**37,)}  # 1 TiB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, head)
            f.write(b"\0" * 4096)
        # The directory says the member inflates to its header plus 1 TiB of data.
        info = zf.filelist[0]
        info.file_size = 128 + 8 * 2**37  # zipfile writes the directory on close
    with pytest.raises(FormatError, match="more than deflate can produce"):
        converter.read(path)
    assert "deflate" in _cli_one_line(capsys, ["inspect", str(path)])


# --- dtypes no format can name ---------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.array([b"ab", b"c"]), np.array(["ab", "c"]), np.zeros(2, "V3"),
    np.zeros(2, np.longdouble), np.zeros(2, np.clongdouble)], ids=lambda a: a.dtype.str)
@pytest.mark.parametrize("suffix", [".npz", ".h5", ".safetensors", "_dir"])
def test_numpy_only_dtypes_are_refused_by_writers(tmp_path, capsys, array, suffix):
    if array.dtype == np.float64 or array.dtype == np.complex128:
        pytest.skip("long double is double on this platform")
    src = tmp_path / "x.npy"
    np.save(src, array)
    out = tmp_path / f"out{suffix}"
    args = ["convert", str(src), str(out)] + (["--to", "npy"] if suffix == "_dir" else [])
    err = _cli_one_line(capsys, args)
    assert "tensor 'x'" in err and "cannot store" in err
    assert not out.exists()


# --- safetensors index -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [["a.safetensors"], {"f": 1}, "a\0.safetensors", 3, ""])
def test_safetensors_index_with_bad_weight_map(tmp_path, capsys, value):
    converter.write({"w": np.ones(2, np.float32)}, tmp_path / "a.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": value}}))
    with pytest.raises(FormatError, match="weight_map"):
        converter.read(index)
    assert "weight_map" in _cli_one_line(capsys, ["inspect", str(index)])


# --- HDF5 ------------------------------------------------------------------------------------

def test_hdf5_writer_refuses_rank_above_32(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1,) * 64, np.float32))
    err = _cli_one_line(capsys, ["convert", str(tmp_path / "x.npy"), str(tmp_path / "x.h5")])
    assert "rank 64" in err
    assert not (tmp_path / "x.h5").exists()


def test_keras2_weight_that_is_a_group(tmp_path, capsys):
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g.create_group("dense/kernel:0")
    with pytest.raises(FormatError, match="not a dataset"):
        converter.read(path)
    assert "not a dataset" in _cli_one_line(capsys, ["inspect", str(path)])


@pytest.mark.parametrize("kind", ["object", "region"])
def test_hdf5_references_are_refused(tmp_path, capsys, kind):
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        target = f.create_dataset("t", data=np.arange(4))
        if kind == "object":
            f.create_dataset("ref", data=np.array([target.ref]), dtype=h5py.ref_dtype)
        else:
            f.create_dataset("ref", data=np.array([target.regionref[1:3]]),
                             dtype=h5py.regionref_dtype)
    err = _cli_one_line(capsys, ["convert", str(path), str(tmp_path / "o.npz")])
    assert "'ref'" in err and "Reference" in err


@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
def test_hdf5_unallocated_storage_is_not_allocated(tmp_path, capsys, layout):
    path = tmp_path / "fill.h5"
    with h5py.File(path, "w") as f:
        if layout == "chunked":
            f.create_dataset("x", shape=(2**30,), dtype="<f4", chunks=(2**20,), fillvalue=1.5)
        else:
            f.create_dataset("x", shape=(2**30,), dtype="<f4")
        f.create_dataset("small", shape=(4,), dtype="<f4", chunks=(2,), fillvalue=2.0)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(FormatError, match="not stored in the file"):
        converter.read(path)
    assert "fill value" in _cli_one_line(capsys, ["inspect", str(path)])


def test_hdf5_small_fill_value_still_reads(tmp_path):
    path = tmp_path / "fill.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("small", shape=(4,), dtype="<f4", chunks=(2,), fillvalue=2.0)
    with converter.read(path) as ckpt:
        assert ckpt["small"].read().tolist() == [2.0] * 4
