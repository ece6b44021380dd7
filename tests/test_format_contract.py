"""The format contract: what a format module provides, what a registry row declares about it,
and the defaults a plugin gets by declaring nothing."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import dtypes, registry
from converter.cli import main
from converter.errors import ConverterWarning
from converter.registry import BUILTINS, Format, FormatModule, FormatReader


def test_import_converter_leaves_the_bundle_reader_writer_and_heavy_packages_alone():
    code = """
import sys, converter
heavy = ("converter.formats.tfbundle.reader", "converter.formats.tfbundle.writer",
         "h5py", "tensorflow")
print(" ".join(m for m in heavy if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == []


@pytest.mark.parametrize("fmt", BUILTINS, ids=lambda f: f.name)
def test_every_built_in_module_provides_the_contract(fmt):
    module = fmt.load()
    assert isinstance(module, FormatModule if fmt.can_write else FormatReader)
    functions = ["sniff", "read"] + (["write"] if fmt.can_write else [])
    for name in functions:
        assert callable(getattr(module, name)), name
    assert list(inspect.signature(module.sniff).parameters) == ["path"]
    assert list(inspect.signature(module.read).parameters)[0] == "path"
    if fmt.can_write:
        assert list(inspect.signature(module.write).parameters)[1] == "path"
        assert {"force", "progress"} <= set(inspect.signature(module.write).parameters)
    if fmt.integrity is not None:
        assert callable(getattr(module, fmt.integrity))


def test_the_table_is_read_only():
    table = registry.formats()
    with pytest.raises(TypeError):
        table["npz2"] = Format("npz2", (".npz2",), "converter.formats.npz")  # type: ignore[index]
    with pytest.raises(TypeError):
        del table["npz"]  # type: ignore[attr-defined]
    assert "npz2" not in registry.formats() and "npz" in registry.formats()


def test_format_rows_have_no_extra_field():
    assert "extra" not in {f.name for f in dataclasses.fields(Format)}


def test_tf_row_lists_the_dtypes_the_bundle_reader_knows():
    from converter.formats.tfbundle.reader import DT_NAMES

    assert registry.get("tf").dtypes == frozenset(DT_NAMES.values())


def test_safetensors_row_lists_the_dtypes_the_module_has_codes_for():
    from converter.formats.safetensors import NAMES

    assert registry.get("safetensors").dtypes == frozenset(NAMES)


@pytest.mark.parametrize("name", ["npz", "npy", "hdf5"])
def test_numpy_formats_store_every_dtype(name):
    assert registry.get(name).dtypes is None
    assert registry.get(name).stored_dtypes == dtypes.ALL


def test_tf_and_keras_rows_say_what_they_lack():
    assert registry.get("tf").metadata is False
    assert registry.get("keras").can_write is False
    assert registry.get("npz").integrity == "integrity"
    assert {f.name for f in BUILTINS if f.integrity} == {"npz"}


# --- a plugin that declares nothing gets the documented defaults -----------------------------


def _graph_checkpoint() -> converter.Checkpoint:
    graph = np.array(b"serialized object graph", dtype=object)
    return converter.Checkpoint({
        "w": converter.Tensor.from_array("w", np.arange(3, dtype=np.float32)),
        "_CHECKPOINTABLE_OBJECT_GRAPH": converter.Tensor.from_array(
            "_CHECKPOINTABLE_OBJECT_GRAPH", graph, kind="object_graph"),
    })


@pytest.fixture
def plugin(monkeypatch):
    """A format module ``plug_fmt`` recording what its writer is given; the test registers
    rows naming it and they are removed afterwards."""
    written: list[list[str]] = []
    checked: list[str] = []
    mod = types.ModuleType("plug_fmt")
    mod.sniff = lambda path: path.suffix == ".plug"
    mod.read = lambda path: converter.as_checkpoint({"w": np.arange(3, dtype=np.float32)})

    def write(ckpt, path, force=False, progress=False):
        written.append(list(ckpt))
        path.write_text("plug")

    def check(path):
        checked.append(str(path))
        return {"w": f"{path}: tensor 'w': bad checksum"}

    mod.write, mod.check = write, check
    monkeypatch.setitem(sys.modules, "plug_fmt", mod)
    names: list[str] = []

    def add(fmt: Format) -> Format:
        registry.register(fmt)
        names.append(fmt.name)
        return fmt

    yield types.SimpleNamespace(add=add, written=written, checked=checked)
    for name in names:
        registry.unregister(name)


def test_a_plugin_with_defaults_stores_every_dtype_metadata_and_no_integrity_check(
        tmp_path, plugin):
    fmt = plugin.add(Format("plug", (".plug",), "plug_fmt"))
    assert (fmt.dtypes, fmt.metadata, fmt.integrity) == (None, True, None)
    assert fmt.stored_dtypes == dtypes.ALL
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConverterWarning)
        converter.write(_graph_checkpoint(), tmp_path / "a.plug")
    # Every dtype includes strings: the object graph is written, not left out.
    assert plugin.written == [["w", "_CHECKPOINTABLE_OBJECT_GRAPH"]]
    assert fmt.check_integrity(tmp_path / "a.plug") == {}
    assert converter.verify(tmp_path / "a.plug").ok


def test_a_plugin_without_strings_leaves_the_object_graph_out(tmp_path, plugin):
    plugin.add(Format("plug", (".plug",), "plug_fmt", dtypes=frozenset({"float32"})))
    with pytest.warns(ConverterWarning, match="cannot hold the TF2 object graph"):
        converter.write(_graph_checkpoint(), tmp_path / "a.plug")
    assert plugin.written == [["w"]]


def test_verify_runs_the_integrity_check_a_row_names(tmp_path, plugin):
    plugin.add(Format("plug", (".plug",), "plug_fmt", integrity="check"))
    (tmp_path / "a.plug").write_text("plug")
    report = converter.verify(tmp_path / "a.plug")
    assert plugin.checked == [str(tmp_path / "a.plug")]
    assert not report.ok
    assert report.bad[0].error == f"{tmp_path / 'a.plug'}: tensor 'w': bad checksum"


# --- one place picks the source format and the reader options ----------------------------------


def test_for_input_takes_the_name_given_else_detects(tmp_path):
    np.savez(tmp_path / "m.npz", w=np.zeros(2))
    assert registry.for_input(tmp_path / "m.npz").name == "npz"
    assert registry.for_input(tmp_path / "m.npz", None).name == "npz"
    assert registry.for_input(tmp_path / "m.npz", "npy").name == "npy"


def test_reader_options_keep_what_the_reader_declares():
    wanted = {"verify": False, "allow_pickle": True}
    assert converter.api.reader_options("tf", wanted) == {"verify": False}
    assert converter.api.reader_options("npz", wanted) == {"allow_pickle": True}
    assert converter.api.reader_options("safetensors", wanted) == {}


def test_verify_from_an_unknown_format_is_a_usage_error_with_or_without_reader_flags(
        tmp_path, capsys):
    np.savez(tmp_path / "m.npz", w=np.zeros(2))
    assert main(["verify", str(tmp_path / "m.npz"), "--from", "nosuch"]) == 2
    assert main(["verify", str(tmp_path / "m.npz"), "--from", "nosuch", "--no-verify"]) == 2
    assert "unknown format 'nosuch'" in capsys.readouterr().err


def test_the_streaming_module_is_public():
    from converter.formats import stream

    t = converter.Tensor.from_array("w", np.arange(10, dtype=np.int32))
    assert b"".join(bytes(p) for p in stream.chunks(t)) == np.arange(10, dtype=np.int32).tobytes()


def test_directory_marks_come_from_the_rows_and_name_what_the_modules_write():
    from converter._tempfiles import DIRECTORY_INDEX

    assert registry.get("npy").marks == (DIRECTORY_INDEX,)
    assert registry.get("tf").marks == ("saved_model.pb",)
    assert registry.directory_marks() >= {DIRECTORY_INDEX, "saved_model.pb"}


def test_batch_takes_a_plugins_marked_directory_whole(tmp_path, monkeypatch):
    from converter.batch.discover import discover

    marked = tmp_path / "runs" / "export"
    marked.mkdir(parents=True)
    (marked / "weights.bin").write_bytes(b"x")
    (marked / "MARK").write_text("")
    registry.register(registry.Format("marked", (".bin",), "json", marks=("MARK",)))
    try:
        items = discover([str(tmp_path / "runs")])
    finally:
        registry.unregister("marked")
    assert [Path(i.source).name for i in items] == ["export"]
