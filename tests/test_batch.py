"""ckpt batch: trees, archives, foreign state files, failures, interruption and resume, shards."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.batch import MANIFEST, discover, parse_shard
from converter.batch.discover import in_shard
from converter.cli import main
from tests.helpers import assert_same_checkpoint


@pytest.fixture(scope="module")
def tree(tf, tf_fixtures, tmp_path_factory) -> Path:
    """30+ checkpoints written by TensorFlow: TF1 runs with several steps, TF2 and sharded
    bundles from the session fixtures, npz files, and one corrupt checkpoint."""
    root = tmp_path_factory.mktemp("tree") / "runs"
    v1 = tf.compat.v1
    for run in range(3):
        (root / f"run{run}").mkdir(parents=True)
        with tf.Graph().as_default():
            v1.set_random_seed(run)
            w = v1.get_variable("dense/kernel", [8, 4])
            v1.get_variable("dense/bias", [4])
            step = v1.train.get_or_create_global_step()
            bump = [w.assign_add(tf.ones_like(w)), step.assign_add(1)]
            saver = v1.train.Saver(max_to_keep=None)
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                for _ in range(10):
                    sess.run(bump)
                    saver.save(sess, str(root / f"run{run}" / "model.ckpt"), global_step=step,
                               write_meta_graph=False)
    for name in ("tf2_keras", "sharded", "savedmodel"):
        src = Path(tf_fixtures[name]["prefix"])
        src_dir = src.parent.parent if name == "savedmodel" else src.parent
        shutil.copytree(src_dir, root / "tf2" / name)
    for i in range(2):
        converter.write({"x": np.arange(i + 3, dtype=np.float32)}, root / "npz" / f"w{i}.npz")
    bad = root / "broken"
    shutil.copytree(root / "run0", bad)
    data = bad / "model.ckpt-5.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    return root


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.safetensors"))


def test_tree_with_two_workers(tree, tmp_path, capsys):
    items = discover([str(tree)])
    assert len(items) >= 30
    code = main(["batch", str(tree), "--to", "safetensors", "--out", str(tmp_path / "out"),
                 "--jobs", "2", "-q"])
    assert code == 1
    results = converter.batch([str(tree)], to="safetensors", out=tmp_path / "out2", jobs=2)
    failed = [r for r in results if r.status == "failed"]
    assert [r.source for r in failed] == [str(tree / "broken" / "model.ckpt-5")]
    assert "checksum" in failed[0].error
    assert len([r for r in results if r.status == "done"]) == len(items) - 1
    out = tmp_path / "out2" / "runs" / "run1" / "model.ckpt-7.safetensors"
    with converter.read(out) as got, converter.read(tree / "run1" / "model.ckpt-7") as want:
        assert_same_checkpoint(got, want)
    assert (tmp_path / "out2" / "runs" / "tf2" / "sharded" / "ckpt.safetensors").is_file()
    lines = (tmp_path / "out2" / MANIFEST).read_text().splitlines()
    assert len(lines) == len(items)
    record = json.loads(lines[0])
    assert {"source", "size", "mtime", "output", "sha256", "status", "seconds", "error"} <= set(
        record)


def test_latest_only(tree, tmp_path):
    results = converter.batch([str(tree / "run2")], to="npz", out=tmp_path, latest=True)
    assert [Path(r.source).name for r in results] == ["model.ckpt-10"]


def test_archives_convert_like_the_directory(tree, tmp_path):
    with tarfile.open(tmp_path / "run1.tar.gz", "w:gz") as tf:
        tf.add(tree / "run1", arcname="run1")
    with zipfile.ZipFile(tmp_path / "run1.zip", "w") as zf:
        for f in sorted((tree / "run1").iterdir()):
            zf.write(f, f"run1/{f.name}")
    direct = converter.batch([str(tree / "run1")], to="safetensors", out=tmp_path / "d")
    for archive in ("run1.tar.gz", "run1.zip"):
        results = converter.batch([str(tmp_path / archive)], to="safetensors",
                                  out=tmp_path / archive.replace(".", "_"))
        assert [r.status for r in results] == ["done"] * 10
        assert sorted(r.sha256 for r in results) == sorted(r.sha256 for r in direct)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("ckpt-batch-*"))


def test_state_file_from_another_machine(tree, tmp_path):
    run = tmp_path / "copied"
    shutil.copytree(tree / "run0", run)
    (run / "checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/train/run0/model.ckpt-8"\n'
        'all_model_checkpoint_paths: "/home/someone/train/run0/model.ckpt-8"\n')
    with pytest.warns(converter.errors.ConverterWarning, match="model.ckpt-8"):
        with converter.read(run) as ckpt:
            assert ckpt.source.path.endswith("model.ckpt-8")
    results = converter.batch([str(run)], to="npz", out=tmp_path / "o", latest=True)
    assert [Path(r.source).name for r in results] == ["model.ckpt-8"]


def test_shards_cover_every_item_once(tree):
    items = discover([str(tree)])
    taken = [[i.key for i in items if in_shard(i, parse_shard(f"{k}/3"))] for k in (1, 2, 3)]
    assert sorted(sum(taken, [])) == sorted(i.key for i in items)
    assert all(taken)
    with pytest.raises(converter.UsageError):
        parse_shard("0/3")


def test_kill_then_resume(tmp_path):
    src = tmp_path / "src"
    for i in range(12):  # ~24 MiB each: slow enough to interrupt
        converter.write({"w": np.full((1536, 4096), i, np.float32)}, src / f"m{i:02d}.npz")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "converter", "batch", str(src), "--to", "safetensors",
           "--out", str(out), "--jobs", "2", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = (out / MANIFEST).read_text().count("\n") if (out / MANIFEST).exists() else 0
        if done >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    while time.monotonic() < deadline + 60:  # the workers clean up after their parent is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    # Outputs appear only under their final names, complete: no temporary file is left.
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    finished = {r["source"] for r in records if r["status"] == "done"}
    assert 3 <= len(finished) < 12
    for p in _outputs(out):  # whatever exists is complete
        with converter.read(p) as ckpt:
            assert ckpt["w"].shape == (1536, 4096)
    results = converter.batch([str(src)], to="safetensors", out=out, resume=True, jobs=2)
    assert {r.source for r in results if r.status == "skipped"} == finished
    assert all(r.status in ("done", "skipped") for r in results) and len(results) == 12
    assert len(_outputs(out)) == 12


def test_dask_executor_matches_local_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "src"
    for i in range(6):
        converter.write({"w": np.full((64, 8), i, np.float32), "step": np.int64(i)},
                        src / f"run{i % 2}" / f"model.ckpt-{i}", format="tf")
    local = converter.batch([str(src)], to="safetensors", out=tmp_path / "local", jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = converter.batch([str(src)], to="safetensors", out=tmp_path / "dask",
                                 executor="dask", scheduler=cluster.scheduler_address)
    assert [r.status for r in remote] == ["done"] * 6
    assert [r.source for r in remote] == [r.source for r in local]
    assert [r.sha256 for r in remote] == [r.sha256 for r in local]
    for r in local:
        twin = Path(r.output.replace(str(tmp_path / "local"), str(tmp_path / "dask")))
        assert Path(r.output).read_bytes() == twin.read_bytes()


def test_s3_sources_and_outputs(s3, tmp_path):
    fs = s3
    fs.mkdir("bucket")
    src = tmp_path / "src"
    for step in (1, 2):  # TF bundles: separate .index and .data objects in the bucket
        converter.write({"w": np.full((32, 4), step, np.float32)},
                        src / "run" / f"model.ckpt-{step}", format="tf")
    converter.write({"x": np.arange(5)}, src / "extra.npz")
    fs.put(str(src), "bucket/src", recursive=True)
    assert fs.exists("bucket/src/run/model.ckpt-1.data-00000-of-00001")

    local = converter.batch([str(src)], to="safetensors", out=tmp_path / "local", jobs=1)
    remote = converter.batch(["s3://bucket/src"], to="safetensors", out="s3://bucket/out",
                             jobs=2)
    assert [r.status for r in remote] == ["done"] * 3
    assert sorted(r.sha256 for r in remote) == sorted(r.sha256 for r in local)
    for r in local:
        rel = Path(r.output).relative_to(tmp_path / "local").as_posix()
        assert fs.cat(f"bucket/out/{rel}") == Path(r.output).read_bytes()
    assert len(fs.cat("bucket/out/manifest.jsonl").decode().splitlines()) == 3
    again = converter.batch(["s3://bucket/src"], to="safetensors", out="s3://bucket/out",
                            resume=True)
    assert [r.status for r in again] == ["skipped"] * 3


def test_writer_options_reach_every_item(tmp_path, capsys):
    for i in range(3):
        converter.write({"w": np.zeros((64, 64), np.float32)}, tmp_path / "src" / f"m{i}.npz")
    assert main(["batch", str(tmp_path / "src"), "--to", "npz", "--out", str(tmp_path / "out"),
                 "--compress", "--jobs", "2", "-q"]) == 0
    outputs = sorted((tmp_path / "out").rglob("*.npz"))
    assert len(outputs) == 3
    for path in outputs:
        with zipfile.ZipFile(path) as zf:
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}


@pytest.mark.parametrize("to", ["graphdef", "keras"])
def test_a_format_that_cannot_be_written_is_refused_before_anything(tmp_path, capsys, to):
    converter.write({"w": np.zeros(3)}, tmp_path / "src" / "w.npz")
    assert main(["batch", str(tmp_path / "src"), "--to", to, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "can be read but not written" in err, err
    assert not (tmp_path / "out").exists()


def test_a_remote_manifest_is_uploaded_as_items_finish(s3, tmp_path, monkeypatch):
    from converter.batch import run

    fs = s3
    fs.mkdir("grow")
    for i in range(3):
        converter.write({"w": np.full(4, i, np.float32)}, tmp_path / "src" / f"m{i}.npz")
    uploaded: list[int] = []
    real = run.write_bytes

    def recorded(url: str, data: bytes) -> None:
        if url.endswith("manifest.jsonl"):
            uploaded.append(len(data.splitlines()))
        real(url, data)

    monkeypatch.setattr(run, "write_bytes", recorded)
    monkeypatch.setattr(run, "MANIFEST_EVERY", 0.0)
    done = converter.batch([str(tmp_path / "src")], to="safetensors", out="s3://grow/out",
                           jobs=1)
    assert [r.status for r in done] == ["done"] * 3
    # a killed run would have left the records uploaded before the last one
    assert uploaded[:3] == [1, 2, 3] and uploaded[-1] == 3, uploaded


@pytest.mark.parametrize("state", [True, False])
def test_latest_picks_the_same_checkpoint_on_s3_as_locally(s3, tmp_path, state):
    fs, bucket = s3, f"lat{int(state)}"  # moto's buckets outlive its server: one per test
    fs.mkdir(bucket)
    run = tmp_path / "src" / "run"
    for name in ("model.ckpt-200", "model.ckpt-1000", "model.ckpt"):
        converter.write({"w": np.zeros(2, np.float32)}, run / name, format="tf",
                        state_file=state)
    fs.put(str(tmp_path / "src"), f"{bucket}/src", recursive=True)
    picked = {}
    for where, source in (("local", str(tmp_path / "src")), ("s3", f"s3://{bucket}/src")):
        done = converter.batch([source], to="npz", out=tmp_path / f"out-{where}", latest=True,
                               dry_run=True)
        picked[where] = [r.source.rpartition("/")[2] for r in done]
    # the state file's latest where there is one, else the highest step
    assert picked["s3"] == picked["local"] == ["model.ckpt" if state else "model.ckpt-1000"]


def test_a_pattern_matching_files_in_several_runs_keeps_them_apart(s3, tmp_path):
    fs = s3
    fs.mkdir("globs")
    for run in ("a", "b"):
        converter.write({"w": np.zeros(2, np.float32)}, tmp_path / "src" / run / "model.ckpt-3",
                        format="tf")
        (tmp_path / "src" / run / "model.ckpt-3.meta").write_bytes(b"graph")  # beside it
    fs.put(str(tmp_path / "src"), "globs/src", recursive=True)
    planned = {}
    for where, pattern in (("local", f"{tmp_path}/src/*/model.ckpt-*"),
                           ("s3", "s3://globs/src/*/model.ckpt-*")):
        out = tmp_path / f"out-{where}"
        done = converter.batch([pattern], to="npz", out=out, dry_run=True)
        assert [r.status for r in done] == ["planned"] * 2, [(r.source, r.error) for r in done]
        planned[where] = sorted(Path(r.output).relative_to(out).as_posix() for r in done)
    assert planned["s3"] == planned["local"] == ["a/model.ckpt-3.npz", "b/model.ckpt-3.npz"]


def test_the_manifest_is_fsynced_now_and_then_and_at_the_end(tmp_path, monkeypatch):
    # An fsync per item cost more than converting a small one; a lost machine loses at most
    # SYNC_EVERY seconds of records, whose items --resume converts again.
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        np.save(src / f"w{i}.npy", np.arange(i + 1, dtype=np.float32))
    synced = []
    real = os.fsync

    def counting(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(MANIFEST):
            synced.append(len((tmp_path / "out" / MANIFEST).read_text().splitlines()))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    monkeypatch.setattr(importlib.import_module("converter.batch.manifest"), "SYNC_EVERY",
                        3600.0, raising=False)
    results = converter.batch([src], to="safetensors", out=tmp_path / "out", jobs=1)
    assert len(results) == 30 and all(r.status == "done" for r in results)
    assert synced == [1, 30]  # after the first record, and when the manifest is closed


def test_a_damaged_file_named_as_a_checkpoint_fails_rather_than_being_skipped(tmp_path, capsys):
    # Skipped, it would leave a batch that exits 0 short of one checkpoint.
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "good.npz", w=np.arange(3.0))
    (src / "cut.npz").write_bytes((src / "good.npz").read_bytes()[:40])
    (src / "empty.npz").write_bytes(b"")  # no format's content, but named as an npz
    (src / "notes.txt").write_text("not a checkpoint, and not named as one")
    assert main(["batch", str(src), "--to", "safetensors", "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert f"FAILED {src / 'cut.npz'}: " in captured.err
    assert f"FAILED {src / 'empty.npz'}: " in captured.err
    assert captured.out.startswith("3 items: 1 converted, 0 skipped (unchanged), 2 failed")


def test_a_foreign_file_with_a_checkpoint_suffix_is_still_skipped(tmp_path, capsys):
    # PyTorch Lightning names its checkpoints last.ckpt: not a TF bundle, and not damaged.
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "good.npz", w=np.arange(3.0))
    (src / "last.ckpt").write_bytes(b"\x80\x02}q\x00(X\x0a\x00\x00\x00state_dict" + bytes(64))
    assert main(["batch", str(src), "--to", "safetensors", "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith("1 items: 1 converted")
    assert main(["inspect", str(src / "last.ckpt")]) == 2
    assert "not a checkpoint of any known format" in capsys.readouterr().err
