"""What the command line says: MetaGraph files, closed pipes, and what a conversion wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main


def _convert(capsys, *argv: str) -> tuple[dict, str]:
    """The JSON summary and the human line of one conversion."""
    assert main(["convert", *argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for f in summary["files"]:
        Path(f).unlink() if Path(f).is_file() else shutil.rmtree(f)
    assert main(["convert", *argv]) == 0
    return summary, capsys.readouterr().err


# -- a MetaGraph beside its checkpoint


def test_meta_file_names_its_checkpoint(tf_fixtures, tmp_path, capsys):
    # `ckpt inspect` lists a MetaGraph's variables (tests/test_metagraph.py); convert refuses.
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    meta = Path(prefix + ".meta")
    assert meta.is_file()  # written by tf.train.Saver beside the checkpoint
    extra = [str(tmp_path / "out.npz")]
    assert main(["convert", str(meta), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ckpt: error: {meta}: a TensorFlow MetaGraph (graph, not weights); its "
                   f"checkpoint is {prefix} (use that prefix)")
    assert not (tmp_path / "out.npz").exists()
    lone = tmp_path / "graph.meta"
    shutil.copy(meta, lone)
    assert main(["convert", str(lone), *extra]) == 2
    err = capsys.readouterr().err
    assert "a TensorFlow MetaGraph (graph, not weights)" in err and "graph.index" in err


def test_other_meta_files_are_not_called_metagraphs(tmp_path, capsys):
    (tmp_path / "notes.meta").write_text("hello")
    assert main(["inspect", str(tmp_path / "notes.meta")]) == 2
    assert "not a checkpoint of any known format" in capsys.readouterr().err


# -- output cut short by the reader (`ckpt inspect ... | head -1`)


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    # Far more lines than a pipe buffers, so the command is still printing when the reader goes.
    path = tmp_path_factory.mktemp("many") / "many.safetensors"
    converter.write({f"layer{i}/kernel": np.zeros(2, np.float32) for i in range(6000)}, path)
    return path


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["table", "json"])
def test_closed_pipe_ends_quietly(many, extra):
    proc = subprocess.Popen([sys.executable, "-m", "converter", "inspect", str(many), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(20)
    proc.stdout.close()  # as `head -c 20` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert first and err == b""


def test_broken_pipe_elsewhere_is_still_an_error(monkeypatch, capsys, many):
    from converter.cli import inspect

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(inspect, "run", broken)
    assert main(["inspect", str(many)]) == 2
    assert "Broken pipe" in capsys.readouterr().err


# -- what `ckpt convert` says it wrote


@pytest.fixture
def small(tmp_path) -> Path:
    path = tmp_path / "src.safetensors"
    converter.write({f"t{i}": np.full(250, i, np.float32) for i in range(4)}, path)
    return path


def test_summary_names_tf_shards_and_index(small, tmp_path, capsys):
    out = tmp_path / "out"
    summary, err = _convert(capsys, str(small), str(out / "m.ckpt"), "--to", "tf",
                            "--max-shard-size", "2KB")
    names = sorted(Path(f).name for f in summary["files"])
    assert names == sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint", "m.ckpt.data-00000-of-00002", "m.ckpt.data-00001-of-00002",
                     "m.ckpt.index"]
    assert summary["tensors"] == 4 and summary["bytes"] == 4000
    assert err.startswith(f"wrote 4 tf files in {out} (") and "m.ckpt.index" in err
    assert "4 tensors" in err


def test_summary_names_safetensors_shards_and_index(small, tmp_path, capsys):
    out = tmp_path / "out"
    summary, err = _convert(capsys, str(small), str(out / "m.safetensors"),
                            "--max-shard-size", "2KB")
    files = [Path(f) for f in summary["files"]]
    assert all(f.is_file() for f in files) and not (out / "m.safetensors").exists()
    assert sorted(f.name for f in files) == [
        "m-00001-of-00002.safetensors", "m-00002-of-00002.safetensors",
        "m.safetensors.index.json"]
    assert f"{out / 'm.safetensors'} " not in err and "m.safetensors.index.json" in err


def test_summary_names_npy_directory(small, tmp_path, capsys):
    out = tmp_path / "arrays"
    summary, err = _convert(capsys, str(small), str(out), "--to", "npy")
    assert summary["files"] == [str(out)] and out.is_dir()
    assert err.startswith(f"wrote {out} (npy): 4 tensors")


def test_summary_counts_tensors_kept_by_rules(small, tmp_path, capsys):
    summary, err = _convert(capsys, str(small), str(tmp_path / "o.npz"), "--exclude", "t1")
    assert summary["tensors"] == 3 and summary["bytes"] == 3000 and "3 tensors" in err
    with converter.read(tmp_path / "o.npz") as back:
        assert len(back) == 3


def test_summary_leaves_out_the_object_graph_safetensors_cannot_hold(tf_fixtures, tmp_path,
                                                                     capsys):
    # (npz keeps the graph: it stores strings.)
    prefix = tf_fixtures["tf2_keras"]["prefix"]
    summary, err = _convert(capsys, prefix, str(tmp_path / "o.safetensors"))
    with converter.read(tmp_path / "o.safetensors") as back:
        written = len(back)
        nbytes = back.nbytes
    with converter.read(prefix) as src:
        assert written == len(src) - 1  # the object graph
    assert summary["tensors"] == written and summary["bytes"] == nbytes
    assert f"{written} tensors" in err and "object graph" in err


def test_an_option_the_writer_does_not_take_is_named_for_the_caller(tmp_path, capsys):
    src = tmp_path / "w.safetensors"
    converter.write({"w": np.zeros(4, np.float32)}, src)
    out = tmp_path / "w.npz"
    assert main(["convert", str(src), str(out), "--max-shard-size", "1KB", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--max-shard-size" in err[0], err
    with pytest.raises(converter.UsageError, match="max_shard_size="):
        converter.convert(src, out, max_shard_size=1000)
    assert not out.exists()


def test_a_format_other_than_the_suffix_says_warns(tmp_path, capsys):
    src = tmp_path / "w.safetensors"
    converter.write({"w": np.zeros(4, np.float32)}, src)
    out = tmp_path / "y.safetensors"
    assert main(["convert", str(src), str(out), "--to", "npz"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "warning" in line] == [
        f"ckpt: warning: {out}: writing npz under a name that says safetensors"]
    with converter.read(out, format="npz") as back:
        assert back["w"].read().tolist() == [0.0] * 4


def test_a_trailing_slash_names_a_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    converter.write({"w": np.arange(3, dtype=np.float32)}, "w.safetensors")
    assert main(["convert", "w.safetensors", "new/", "--to", "tf", "-q"]) == 0
    with converter.read(tmp_path / "new") as back:
        assert Path(back.source.path).name == "model.ckpt"
        assert back["w"].read().tolist() == [0.0, 1.0, 2.0]
    assert main(["convert", "w.safetensors", "other/", "--to", "safetensors", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other/: names a directory" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "w.safetensors"]


@pytest.mark.parametrize("argv, names", [
    (["convert", "examples/mlp", "{tmp}/o.npz", "--max-shard-size", "10QB"],
     ["ckpt convert", "--max-shard-size", "10QB"]),
    (["convert", "examples/mlp", "{tmp}/o.npz", "--storage-option", "foo"],
     ["ckpt convert", "--storage-option", "foo"]),
    (["inspect", "examples/mlp", "--jsn"], ["ckpt inspect", "--jsn"]),
    (["inspect"], ["ckpt inspect", "SRC"]),
    (["nosuch"], ["ckpt", "nosuch"]),
])
def test_usage_errors_are_one_line_naming_the_command(tmp_path, capsys, argv, names):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and "usage:" not in err, err
    assert all(n in err for n in names) and "--help" in err, err
