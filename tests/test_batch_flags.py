"""ckpt batch flags that must mean what they say: --dry-run writes nothing, --resume notices a
changed conversion, -q never hides a failure, and discovery finds every format the registry
knows (.keras archives, pre-2016 V1 TensorFlow checkpoints)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

import converter
from converter.batch import MANIFEST, discover
from converter.cli import main
from tests.helpers import assert_same


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(2):
        converter.write({"w": np.full((4, 4), i, np.float32)}, src / f"m{i}.npz")
    return src


def test_dry_run_writes_nothing_and_prints_the_plan(tmp_path, capsys):
    src = _src(tmp_path)
    out = tmp_path / "out"
    assert main(["batch", str(src), "--to", "safetensors", "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{src / f'm{i}.npz'} -> {out / 'src' / f'm{i}.safetensors'} "
                     "(npz -> safetensors)" for i in range(2)]
    # After a real run, the plan names what --resume would skip.
    assert main(["batch", str(src), "--to", "safetensors", "--out", str(out), "-q"]) == 0
    before = (out / MANIFEST).read_text()
    assert main(["batch", str(src), "--to", "safetensors", "--out", str(out), "--dry-run",
                 "--resume"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{src / f'm{i}.npz'}: skip (done before with the same conversion, unchanged)"
        for i in range(2)]
    assert (out / MANIFEST).read_text() == before


def test_resume_redoes_items_when_the_conversion_changes(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "out"
    first = converter.batch([str(src)], to="npz", out=out)
    assert [r.status for r in first] == ["done"] * 2
    same = converter.batch([str(src)], to="npz", out=out, resume=True)
    assert [r.status for r in same] == ["skipped"] * 2
    compressed = converter.batch([str(src)], to="npz", out=out, resume=True, compress=True)
    assert [r.status for r in compressed] == ["done"] * 2
    with zipfile.ZipFile(out / "src" / "m0.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    renamed = converter.batch([str(src)], to="npz", out=out, resume=True, compress=True,
                              rules=converter.rules.Rules().add_prefix("model/"))
    assert [r.status for r in renamed] == ["done"] * 2
    with converter.read(out / "src" / "m1.npz") as ckpt:
        assert list(ckpt) == ["model/w"]
    # Through the CLI too: a rule flag is part of the conversion.
    assert main(["batch", str(src), "--to", "npz", "--out", str(out), "--resume", "-q",
                 "--compress", "--add-prefix", "model/"]) == 0
    records = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert [r["status"] for r in records[-2:]] == ["skipped"] * 2


def test_quiet_still_names_every_failure(tmp_path, capsys):
    src = _src(tmp_path)
    (src / "bad.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    for quiet in ([], ["-q"]):
        out = tmp_path / f"out{len(quiet)}"
        assert main(["batch", str(src), "--to", "safetensors", "--out", str(out)] + quiet) == 1
        captured = capsys.readouterr()
        failures = [x for x in captured.err.splitlines() if x.startswith("FAILED ")]
        assert len(failures) == 1 and failures[0].startswith(f"FAILED {src / 'bad.npz'}: ")
        assert "FAILED" not in captured.out
        if quiet:
            assert captured.out == ""


def test_keras_archives_and_v1_checkpoints_are_found(tf, tmp_path):
    import keras

    src = tmp_path / "src"
    (src / "old").mkdir(parents=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.save(src / "model.keras")
    v1 = tf.compat.v1
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    with tf.Graph().as_default():
        v1.get_variable("w", initializer=value)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            saver = v1.train.Saver(write_version=v1.train.SaverDef.V1)
            saver.save(sess, str(src / "old" / "model.ckpt"), global_step=7,
                       write_meta_graph=False)
            saver.save(sess, str(src / "old" / "model.ckpt"), write_meta_graph=False)
    assert not list((src / "old").glob("*.index"))
    found = sorted(Path(i.source).name for i in discover([str(src)]))
    assert found == ["model.ckpt", "model.ckpt-7", "model.keras"]
    results = converter.batch([str(src)], to="safetensors", out=tmp_path / "out", jobs=1)
    assert [r.status for r in results] == ["done"] * 3
    for name, output in (("model.ckpt", "model"), ("model.ckpt-7", "model.ckpt-7")):
        with converter.read(tmp_path / "out" / "src" / "old" / f"{output}.safetensors") as got:
            reader = tf.compat.v1.train.NewCheckpointReader(str(src / "old" / name))
            assert list(got) == ["w"]
            assert_same(got["w"].read(), reader.get_tensor("w"))
    with converter.read(tmp_path / "out" / "src" / "model.safetensors") as got:
        kernel, bias = model.get_layer("dense").get_weights()
        values = sorted((np.asarray(t.read()) for t in got.values()), key=lambda a: a.ndim)
        assert_same(values[1], kernel)
        assert_same(values[0], bias)
