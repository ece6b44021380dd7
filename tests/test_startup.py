"""What ``ckpt inspect`` and ``ckpt convert`` of a TF bundle load: modules that only other
commands, other formats or error paths need stay unimported, so starting the command costs
what listing a checkpoint needs. Run in a fresh interpreter, as the command is."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import converter

# Each costs half a millisecond or more to import; importlib.metadata (the plugin scan) far more.
LAZY = ("importlib.metadata", "tempfile", "difflib", "html", "zipfile", "converter.tensor_stats")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    out = tmp_path_factory.mktemp("startup") / "model.ckpt-1"
    converter.write({"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                     "dense/bias": np.zeros(3, np.float32)}, out, format="tf")
    return out


def _loaded_after(code: str) -> list[str]:
    check = f"\nimport sys\nprint(*sorted(m for m in {LAZY + ('shutil',)!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + check],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1].split()


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_a_bundle_command_imports_only_what_it_uses(tmp_path, prefix, command):
    argv = [command, str(prefix)]
    if command == "convert":
        argv += [str(tmp_path / "out.safetensors"), "-q"]
    loaded = _loaded_after(f"""
        from converter.cli import main
        assert main({argv!r}) == 0
    """)
    # argparse imports shutil for the terminal width.
    assert [m for m in loaded if m != "shutil"] == []


def test_reading_a_bundle_from_code_imports_only_what_it_uses(prefix):
    loaded = _loaded_after(f"""
        import converter
        with converter.read({str(prefix)!r}) as ckpt:
            ckpt["dense/kernel"].read()
    """)
    assert loaded == []


def _numpy_after(code: str) -> bool:
    check = "\nimport sys\nprint('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + check],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1] == "True"


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_listing_a_bundle_imports_no_numpy(prefix, args):
    # Names, dtypes, shapes and sizes come from the index: numpy is half of what starting
    # the command would cost.
    assert not _numpy_after(f"""
        import contextlib, io
        from converter.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["inspect", {str(prefix)!r}, *{args!r}]) == 0
        assert "dense/kernel" in out.getvalue()
    """)


def test_a_bundle_read_from_code_imports_numpy_for_the_values_only(prefix):
    assert not _numpy_after(f"""
        import converter
        with converter.read({str(prefix)!r}) as ckpt:
            t = ckpt["dense/kernel"]
            assert (t.dtype_name, t.shape, t.nbytes) == ("float32", (2, 3), 24)
    """)
    assert _numpy_after(f"""
        import converter
        with converter.read({str(prefix)!r}) as ckpt:
            array = ckpt["dense/kernel"].read()
            assert array.tolist() == [[0, 1, 2], [3, 4, 5]] and str(array.dtype) == "float32"
            assert ckpt["dense/kernel"].dtype == array.dtype
    """)


def test_listing_a_tf2_bundle_reads_its_object_graph_without_numpy(tmp_path):
    prefix = tmp_path / "tf2" / "ckpt-1"
    key = "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    converter.write({key: np.ones((2, 2), np.float32)}, prefix, format="tf")
    with converter.read(prefix) as ckpt:
        assert ckpt.source.layout == "tf2" and ckpt[key].kind == "variable"
    assert not _numpy_after(f"""
        import contextlib, io
        from converter.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["inspect", {str(prefix)!r}]) == 0
        assert "(tf2)" in out.getvalue(), out.getvalue()
    """)


def test_verify_of_a_bundle_imports_no_numpy(prefix):
    # Checksums are taken on bytes read with pread: numpy would be a third of the command.
    assert not _numpy_after(f"""
        import contextlib, io
        from converter.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["verify", {str(prefix)!r}]) == 0
        assert "2 tensors" in out.getvalue()
    """)


def test_converting_a_bundle_to_safetensors_imports_no_numpy(prefix, tmp_path):
    # The bytes are copied and checksummed as they are: numpy would be a third of the command.
    out = tmp_path / "out.safetensors"
    assert not _numpy_after(f"""
        from converter.cli import main
        assert main(["convert", {str(prefix)!r}, {str(out)!r}, "-q"]) == 0
    """)
    with converter.read(out) as back:
        assert back["dense/kernel"].read().tolist() == [[0, 1, 2], [3, 4, 5]]
