"""However a checkpoint is named (prefix, directory, data shard), no output of `convert` or
`migrate` may overwrite its files, `--force` or not; nor may an output replace the directory's
`checkpoint` state file with other content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mlp"


@pytest.fixture
def run(tmp_path):
    d = tmp_path / "run"
    converter.write({"w": np.arange(6, dtype=np.float32)}, d / "model.ckpt-1000", format="tf")
    return d


def _unchanged(run: Path, before: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("named", ["dir", "shard", "prefix"])
@pytest.mark.parametrize("target", ["model.ckpt-1000.index", "model.ckpt-1000.data-00000-of-00001",
                                    "checkpoint"])
def test_convert_never_overwrites_the_source_however_named(run, capsys, named, target):
    src = {"dir": run, "shard": run / "model.ckpt-1000.data-00000-of-00001",
           "prefix": run / "model.ckpt-1000"}[named]
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["convert", str(src), str(run / target), "--to", "safetensors", "--force",
                 "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint being converted" in err[0], err
    _unchanged(run, before)
    with converter.read(run) as back:
        assert back["w"].read().tolist() == list(range(6))


def test_tf_output_beside_its_source_still_updates_the_state_file(run):
    assert main(["convert", str(run / "model.ckpt-1000"), str(run / "small.ckpt"), "--to", "tf",
                 "-q"]) == 0
    with converter.read(run / "small.ckpt") as back:
        assert back["w"].read().tolist() == list(range(6))


def test_migrate_never_overwrites_its_source(tmp_path, capsys):
    pytest.importorskip("keras")
    d = tmp_path / "mlp"
    shutil.copytree(EXAMPLE, d)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    for out in ("model.ckpt-1000", "model.ckpt-1000.index"):
        code = main(["migrate", str(d / "model.ckpt-1000"), "--model", f"{d / 'models.py'}:build",
                     "--preset", "keras-names", str(d / out), "--force"])
        assert code == 2
        err = [line for line in capsys.readouterr().err.splitlines()
               if line.startswith("ckpt:")]
        assert len(err) == 1 and "checkpoint being converted" in err[0], err
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_migrate_keras3_model_to_legacy_h5_is_one_line(tmp_path, capsys):
    pytest.importorskip("keras")
    d = tmp_path / "mlp"
    shutil.copytree(EXAMPLE, d)
    code = main(["migrate", str(d / "model.ckpt-1000"), "--model", f"{d / 'models.py'}:build",
                 "--preset", "keras-names", str(d / "out.h5")])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ckpt:")]
    assert len(err) == 1 and ".weights.h5" in err[0], err
    assert not (d / "out.h5").exists()
