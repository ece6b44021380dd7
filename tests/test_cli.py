"""The ckpt command line, run in-process through ``main(argv)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import converter
from converter.cli import main
from tests.helpers import assert_same, assert_same_checkpoint
from tests.samples import sample


@pytest.fixture
def npz(tmp_path):
    data = sample({"float32", "bfloat16", "int64", "bool"})
    path = tmp_path / "in.npz"
    converter.write(data, path)
    return path, data


def test_convert_and_back_is_bit_exact(tmp_path, npz, capsys):
    path, data = npz
    assert main(["convert", str(path), str(tmp_path / "x.safetensors"), "-q"]) == 0
    assert main(["convert", str(tmp_path / "x.safetensors"), str(tmp_path / "back.npz"), "-q"]) == 0
    with converter.read(tmp_path / "back.npz") as back:
        assert_same_checkpoint(back, data)
    assert (tmp_path / "in.npz").read_bytes() == path.read_bytes()


def test_convert_json_summary(tmp_path, npz, capsys):
    path, data = npz
    assert main(["convert", str(path), str(tmp_path / "o.h5"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "hdf5" and summary["tensors"] == len(data)
    assert summary["bytes"] == sum(np.asarray(v).nbytes for v in data.values())


def test_convert_to_named_format_and_options(tmp_path, npz):
    path, data = npz
    assert main(["convert", str(path), str(tmp_path / "dir"), "--to", "npy", "-q"]) == 0
    assert (tmp_path / "dir" / "dense" / "kernel.npy").is_file()
    assert main(["convert", str(tmp_path / "dir"), str(tmp_path / "c.npz"), "--compress",
                 "-q"]) == 0
    assert main(["convert", str(path), str(tmp_path / "m.ckpt"), "--max-shard-size", "200B",
                 "-q"]) == 0
    assert len(list(tmp_path.glob("m.ckpt.data-*"))) > 1
    with converter.read(tmp_path / "m.ckpt") as back:
        assert_same_checkpoint(back, data)


def test_inspect_table_and_json(npz, capsys):
    path, data = npz
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "dense/kernel" in out and "bfloat16" in out and f"{len(data)} tensors" in out
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "npz" and report["count"] == len(data)
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["dense/kernel"]["shape"] == [4, 5]
    assert rows["dense/kernel"]["dtype"] == "float32"
    assert rows["global_step"]["kind"] == "counter"
    assert report["total_bytes"] == sum(np.asarray(v).nbytes for v in data.values())


def test_inspect_reads_no_tensor_data(tmp_path, monkeypatch, capsys):
    converter.write({"w": np.ones((3, 3))}, tmp_path / "m.safetensors")

    def boom(self):
        raise AssertionError("inspect read tensor data")

    monkeypatch.setattr(converter.Tensor, "read", boom)
    assert main(["inspect", str(tmp_path / "m.safetensors")]) == 0


def test_inspect_training_directory_lists_checkpoints(tmp_path, capsys):
    for step in (100, 200, 300):
        converter.write({"w": np.full(2, step, np.float32)}, tmp_path / f"model.ckpt-{step}",
                        format="tf")
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model.ckpt-300" in out and "step      100" in out
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"]["step"] == 300
    assert [c["step"] for c in report["source"]["checkpoints"]] == [100, 200, 300]


def test_formats_and_help(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name in ("tf", "safetensors", "npz", "npy", "hdf5"):
        assert name in out
    assert main(["convert", "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["inspect", "{tmp}/missing.npz"], "no such file"),
    (["inspect", "{tmp}/unknown.xyz"], "not a checkpoint of any known format"),
    (["convert", "{tmp}/in.npz", "{tmp}/out.unknown"], "cannot tell the output format"),
    (["convert", "{tmp}/in.npz", "{tmp}/out.npz", "--to", "nope"], "unknown format 'nope'"),
    (["convert", "{tmp}/in.npz", "{tmp}/exists.safetensors"], "already exists"),
    (["inspect", "{tmp}/truncated.safetensors"], "truncated.safetensors"),
    (["inspect", "{tmp}/truncated.npz"], "truncated.npz"),
    (["convert", "{tmp}/in.npz", "{tmp}/in.npz"], "is the checkpoint being converted"),
    (["inspect", "{tmp}/adir"], "adir"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, npz, capsys, argv, message):
    (tmp_path / "unknown.xyz").write_bytes(b"hello world, not a checkpoint")
    (tmp_path / "exists.safetensors").write_bytes(b"keep me")
    good = (tmp_path / "in.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    converter.write({"a": np.ones(100)}, tmp_path / "t.safetensors")
    (tmp_path / "truncated.safetensors").write_bytes(
        (tmp_path / "t.safetensors").read_bytes()[:100])
    (tmp_path / "adir").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ckpt: error:") and err.count("\n") == 1, err
    assert message in err
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "a failed command changed files"


def test_usage_error_exit_code(capsys):
    assert main(["convert"]) == 2
    assert main([]) == 2


def test_python_m_converter_and_console_script(tmp_path, npz):
    path, data = npz
    out = subprocess.run([sys.executable, "-m", "converter", "inspect", str(path), "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["count"] == len(data)
    bad = subprocess.run([sys.executable, "-m", "converter", "inspect", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_force_overwrites(tmp_path, npz):
    path, data = npz
    (tmp_path / "o.safetensors").write_bytes(b"old")
    assert main(["convert", str(path), str(tmp_path / "o.safetensors"), "--force", "-q"]) == 0
    with converter.read(tmp_path / "o.safetensors") as back:
        assert_same(back["dense/kernel"].read(), data["dense/kernel"])


@pytest.mark.parametrize("command, collects", [("inspect", False), ("convert", False),
                                               ("batch", True)])
def test_checkpoint_commands_run_without_the_cyclic_collector(tmp_path, command, collects):
    # The objects a reader builds form no cycles; collections would only rescan them. The
    # program itself (not main(), which a caller's process runs) turns the collector off for
    # the commands that read and convert, and leaves it on for the others.
    src = tmp_path / "m.ckpt"
    converter.write({f"s{i // 100}/v{i}": np.full(3, i, np.float32) for i in range(3000)}, src)
    args = {"inspect": [str(src)], "convert": [str(src), str(tmp_path / "m.npz"), "-q"],
            "batch": [str(src), "--to", "npz", "--out", str(tmp_path / "b"), "-q"]}[command]
    code = """
import atexit, gc, os, sys
collections = []
gc.callbacks.append(lambda phase, info: collections.append(phase))
atexit.register(lambda: os.write(int(os.environ["COUNT_FD"]), str(len(collections)).encode()))
from converter.cli import entry
collections.clear()  # those of the imports, before the program runs
entry()
"""
    read, write = os.pipe()
    proc = subprocess.run([sys.executable, "-c", code, command, *args], pass_fds=(write,),
                          capture_output=True, text=True,
                          env={**os.environ, "COUNT_FD": str(write)})
    os.close(write)
    with os.fdopen(read) as f:
        count = int(f.read())
    assert proc.returncode == 0, proc.stderr
    assert (count > 0) is collects, count


@pytest.mark.parametrize("args, enabled", [(["inspect", "examples/mlp"], False),
                                           (["inspect", "memory:///nothing/here"], True)])
def test_the_collector_stays_on_where_remote_storage_runs(args, enabled):
    # fsspec's event loop and the range-reading threads do make cycles.
    code = """
import atexit, gc, os
atexit.register(lambda: os.write(int(os.environ["COUNT_FD"]), str(gc.isenabled()).encode()))
from converter.cli import entry
entry()
"""
    read, write = os.pipe()
    subprocess.run([sys.executable, "-c", code, *args], pass_fds=(write,), capture_output=True,
                   env={**os.environ, "COUNT_FD": str(write)})
    os.close(write)
    with os.fdopen(read) as f:
        assert f.read() == str(enabled)
