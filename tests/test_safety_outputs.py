"""Writing outputs is safe: --force replaces the files a conversion writes and nothing else (never
a directory tree, never its own input), destinations are checked when committing, sharded
outputs leave no stale shards, permission bits never widen, and failures or killed writers
leave nothing behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import _tempfiles, outputs
from converter.cli import main
from converter.formats import safetensors as st_format
from tests.helpers import assert_same_checkpoint


def _data(seed: int = 0, n: int = 4, size: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}/w": rng.standard_normal(size).astype(np.float32) for i in range(n)}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ckpt: error: "), err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture(autouse=True)
def _sweep_every_time(monkeypatch):
    # A process searches a directory for stale temporaries once a minute; tests need each time.
    monkeypatch.setattr(_tempfiles, "_swept", {})


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A training directory: two TF checkpoints, a state file and unrelated files."""
    run = tmp_path / "run"
    converter.write(_data(1), run / "model.ckpt-1", format="tf")
    converter.write(_data(2), run / "model.ckpt-2", format="tf")
    (run / "events.out.tfevents.1").write_bytes(b"logs")
    (run / "notes").mkdir()
    (run / "notes" / "config.yaml").write_text("lr: 0.1\n")
    return run


# --- 1. --force never removes a directory tree, nor the input -------------------------------


@pytest.mark.parametrize("to", ["safetensors", "npz", "npy", "hdf5"])
def test_force_onto_the_source_directory_is_refused(run_dir, capsys, to):
    before = _tree(run_dir)
    assert main(["convert", str(run_dir), str(run_dir), "--to", to, "--force", "-q"]) == 2
    _one_error(capsys, str(run_dir), "checkpoint being converted")
    assert _tree(run_dir) == before


@pytest.mark.parametrize("to", ["safetensors", "npz", "hdf5"])
def test_force_never_replaces_a_directory_with_a_file(tmp_path, run_dir, capsys, to):
    src = tmp_path / "w.safetensors"
    converter.write(_data(3), src)
    before = _tree(run_dir)
    assert main(["convert", str(src), str(run_dir), "--to", to, "--force", "-q"]) == 2
    _one_error(capsys, str(run_dir), "is a directory")
    assert _tree(run_dir) == before and _leftovers(tmp_path) == []


def test_force_onto_a_directory_holding_the_input_is_refused(run_dir, capsys):
    before = _tree(run_dir)
    assert main(["convert", str(run_dir / "model.ckpt-2"), str(run_dir), "--to", "npy",
                 "--force", "-q"]) == 2
    _one_error(capsys, str(run_dir), "checkpoint being converted")
    assert _tree(run_dir) == before


@pytest.mark.parametrize("src_name,to", [("w.safetensors", None), ("w.npz", None),
                                         ("w.h5", None), ("m.ckpt", "tf")])
def test_force_onto_the_input_file_is_refused(tmp_path, capsys, src_name, to):
    src = tmp_path / src_name
    converter.write(_data(4), src, format=to)
    before = _tree(tmp_path)
    flags = ["--to", to] if to else []
    assert main(["convert", str(src), str(src), "--force", "-q", *flags]) == 2
    _one_error(capsys, "checkpoint being converted")
    assert _tree(tmp_path) == before


def test_force_onto_the_input_through_another_name_is_refused(tmp_path, capsys):
    # A sharded source read through its index: the output's first shard is one of the input's.
    src = tmp_path / "model.safetensors"
    converter.write(_data(5, n=4, size=1024), src, max_shard_size=5000)
    before = _tree(tmp_path)
    assert main(["convert", str(src.with_name(src.name + ".index.json")), str(src), "--force",
                 "--max-shard-size", "5000", "-q"]) == 2
    _one_error(capsys, "checkpoint being converted")
    assert _tree(tmp_path) == before


def test_tf_output_beside_its_source_is_fine(run_dir):
    converter.convert(run_dir / "model.ckpt-2", run_dir, to="tf", force=True).close()
    with converter.read(run_dir / "model.ckpt") as ckpt:
        assert_same_checkpoint(ckpt, _data(2), ordered=False)
    assert (run_dir / "notes" / "config.yaml").exists()


def test_npy_directory_force_replaces_only_an_earlier_npy_output(tmp_path, capsys):
    src = tmp_path / "w.safetensors"
    converter.write(_data(6), src)
    out = tmp_path / "out"
    converter.convert(tmp_path / "w.safetensors", out, to="npy").close()
    converter.write(_data(7), src, force=True)
    assert main(["convert", str(src), str(out), "--to", "npy", "--force", "-q"]) == 0
    with converter.read(out, format="npy") as ckpt:
        assert_same_checkpoint(ckpt, _data(7))
    # Something that is not part of that output makes the directory someone else's.
    (out / "layer0" / "README").write_text("mine")
    before = _tree(out)
    assert main(["convert", str(src), str(out), "--to", "npy", "--force", "-q"]) == 2
    _one_error(capsys, str(out), "layer0/README")
    assert _tree(out) == before
    foreign = tmp_path / "data"
    (foreign / "x").mkdir(parents=True)
    (foreign / "x" / "y.npy").write_bytes(b"not ours")
    assert main(["convert", str(src), str(foreign), "--to", "npy", "--force", "-q"]) == 2
    _one_error(capsys, str(foreign), "x/y.npy")
    assert (foreign / "x" / "y.npy").read_bytes() == b"not ours"
    assert _leftovers(tmp_path) == []


# --- 2. the TF state file never removes a directory ------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_tf_state_file_never_removes_a_directory(tmp_path, capsys, force):
    src = tmp_path / "w.safetensors"
    converter.write(_data(8), src)
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "precious.txt").write_text("keep")
    flags = ["--force"] if force else []
    assert main(["convert", str(src), str(out / "m.ckpt"), "-q", *flags]) == 2
    _one_error(capsys, str(out / "checkpoint"), "directory")
    assert (out / "checkpoint" / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]


# --- 3. whether a destination is free is decided at commit -----------------------------------


def test_destination_made_while_writing_is_not_overwritten(tmp_path, monkeypatch):
    # Another process finishes the same new output while this one is writing.
    dst = tmp_path / "out" / "w.safetensors"
    real = st_format.tracked

    def other_writer_finishes(*args, **kwargs):
        for i, tensor in enumerate(real(*args, **kwargs)):
            if i == 1:
                dst.write_bytes(b"the other writer's output")
            yield tensor

    monkeypatch.setattr(st_format, "tracked", other_writer_finishes)
    with pytest.raises(converter.UsageError, match="already exists"):
        converter.write(_data(9), dst)
    assert dst.read_bytes() == b"the other writer's output"
    assert _leftovers(tmp_path) == []


def test_two_processes_writing_one_new_destination_without_force(tmp_path):
    sources = []
    for seed in (1, 2):
        path = tmp_path / f"src{seed}.safetensors"
        converter.write(_data(seed, n=8, size=64 * 1024), path)
        sources.append(path)
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from converter.formats import safetensors as s\n"
            "from converter.cli import main\n"
            "real, go = s.tracked, Path(sys.argv[1])\n"
            "def tracked(*a, **k):\n"
            "    for i, t in enumerate(real(*a, **k)):\n"
            "        if i == 1:\n"
            "            go.touch()\n"  # both have begun: neither output exists yet
            "            while len(list(go.parent.glob('go-*'))) < 2: time.sleep(0.01)\n"
            "        yield t\n"
            "s.tracked = tracked\n"
            "sys.exit(main(sys.argv[2:]))\n")
    dst = tmp_path / "out.safetensors"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"go-{i}"),
                               "convert", str(src), str(dst), "-q"],
                              stderr=subprocess.PIPE, text=True)
             for i, src in enumerate(sources)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert any("already exists" in err for _, err in results)
    winner = sources[[code for code, _ in results].index(0)]
    with converter.read(dst) as got, converter.read(winner) as want:
        assert_same_checkpoint(got, want)
    assert _leftovers(tmp_path) == []


# --- 4. no stale shards ----------------------------------------------------------------------


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_safetensors_force_removes_stale_shards(tmp_path):
    out = tmp_path / "out"
    dst = out / "model.safetensors"
    big, small = _data(10, n=6, size=1024), _data(11, n=2, size=1024)
    (out / "other").mkdir(parents=True)
    unrelated = ["model-notes.txt", "other-00001-of-00002.safetensors",
                 "model-00001-of-00002.safetensors.bak"]
    for name in unrelated:
        (out / name).write_bytes(b"not ours")
    converter.write(big, dst, max_shard_size=5000)
    assert len([n for n in _names(out) if n.endswith("-of-00006.safetensors")]) == 6
    converter.write(small, dst, max_shard_size=5000, force=True)
    assert _names(out) == sorted(["model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors",
                                  "model.safetensors.index.json", "other", *unrelated])
    with converter.read(out / "model.safetensors.index.json") as ckpt:
        assert_same_checkpoint(ckpt, small)
    converter.write(big, dst, force=True)  # one file: the index and its shards go
    assert _names(out) == sorted(["model.safetensors", "other", *unrelated])
    converter.write(small, dst, max_shard_size=5000, force=True)  # and back: the file goes
    assert "model.safetensors" not in _names(out)
    for name in unrelated:
        assert (out / name).read_bytes() == b"not ours"


def test_sharded_output_beside_an_old_one_needs_force(tmp_path):
    dst = tmp_path / "model.safetensors"
    converter.write(_data(12), dst)
    with pytest.raises(converter.UsageError, match="already exists"):
        converter.write(_data(12, n=4, size=1024), dst, max_shard_size=5000)
    assert _names(tmp_path) == ["model.safetensors"]


def test_tf_force_removes_stale_data_shards(tmp_path, tf):
    prefix = tmp_path / "model.ckpt"
    big, small = _data(13, n=6, size=1024), _data(14, n=2, size=1024)
    converter.write(_data(15), tmp_path / "model.ckpt-7", format="tf")  # another prefix
    converter.write(big, prefix, format="tf", max_shard_size=5000)
    assert len([n for n in _names(tmp_path) if n.startswith("model.ckpt.data-")]) == 6
    converter.write(small, prefix, format="tf", force=True)
    assert [n for n in _names(tmp_path) if n.startswith("model.ckpt.")] == [
        "model.ckpt.data-00000-of-00001", "model.ckpt.index"]
    assert "model.ckpt-7.data-00000-of-00001" in _names(tmp_path)
    reader = tf.train.load_checkpoint(str(prefix))
    for name, value in small.items():
        assert reader.get_tensor(name).tobytes() == value.tobytes()


# --- 5. permission bits ----------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    def set_umask(value: int) -> None:
        os.umask(value)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("to,name", [("safetensors", "o.safetensors"), ("npz", "o.npz"),
                                     ("hdf5", "o.h5"), ("tf", "o.ckpt")])
def test_outputs_get_the_source_permission_bits_at_most(tmp_path, umask, to, name):
    src = tmp_path / "src.safetensors"
    converter.write(_data(16), src)
    os.chmod(src, 0o600)
    out = tmp_path / "out"
    converter.convert(src, out / name, to=to).close()
    made = [p for p in out.iterdir()]
    assert made and {p.name: _mode(p) for p in made} == {p.name: 0o600 for p in made}
    os.chmod(src, 0o640)
    umask(0o027)
    converter.convert(src, out / name, to=to, force=True).close()
    assert {p.name: _mode(p) for p in out.iterdir()} == {p.name: 0o640 for p in made}
    umask(0o077)
    os.chmod(src, 0o644)
    converter.convert(src, out / name, to=to, force=True).close()
    assert {p.name: _mode(p) for p in out.iterdir()} == {p.name: 0o600 for p in made}


def test_npy_directory_and_tf_prefix_sources(tmp_path, umask):
    src = tmp_path / "src"
    converter.write(_data(17), src / "m.ckpt", format="tf")
    for p in src.iterdir():
        os.chmod(p, 0o640)
    os.chmod(src / "m.ckpt.data-00000-of-00001", 0o600)  # the most private file decides
    converter.convert(src / "m.ckpt", tmp_path / "npy", to="npy").close()
    assert _mode(tmp_path / "npy") == 0o700
    assert {_mode(p) for p in (tmp_path / "npy").rglob("*") if p.is_dir()} == {0o700}
    assert {_mode(p) for p in (tmp_path / "npy").rglob("*") if p.is_file()} == {0o600}


def test_writes_without_a_source_follow_the_umask(tmp_path, umask):
    umask(0o002)
    converter.write(_data(18), tmp_path / "w.safetensors")
    converter.write(_data(18), tmp_path / "d", format="npy")
    assert _mode(tmp_path / "w.safetensors") == 0o664
    assert _mode(tmp_path / "d") == 0o775
    assert {_mode(p) for p in (tmp_path / "d").rglob("*") if p.is_file()} == {0o664}


def _during_write(monkeypatch, action) -> None:
    """Run ``action()`` in every writer after its second tensor (temporaries exist)."""
    from converter.formats import hdf5, npy, npz
    from converter.formats.tfbundle import writer

    for module in (st_format, npz, npy, hdf5, writer):
        real = module.tracked

        def tracked(*args, _real=real, **kwargs):
            for i, tensor in enumerate(_real(*args, **kwargs)):
                if i == 1:
                    action()
                yield tensor

        monkeypatch.setattr(module, "tracked", tracked)


@pytest.mark.parametrize("to,name", [("safetensors", "o.safetensors"), ("npz", "o.npz"),
                                     ("hdf5", "o.h5"), ("tf", "o.ckpt"), ("npy", "o")])
def test_temporaries_are_private(tmp_path, umask, monkeypatch, to, name):
    seen: dict[str, int] = {}
    out = tmp_path / "out"
    _during_write(monkeypatch, lambda: seen.update(
        {p.name: _mode(p) for p in out.iterdir() if ".tmp-" in p.name}))
    converter.write(_data(19), out / name, format=to)
    assert seen and set(seen.values()) == {0o700 if to == "npy" else 0o600}, seen


# --- 6. a failed conversion leaves no directory it made --------------------------------------


@pytest.mark.parametrize("to,name", [("tf", "m.ckpt"), ("safetensors", "w.safetensors"),
                                     ("npy", "d")])
def test_failure_removes_the_directories_it_made(tmp_path, to, name):
    (tmp_path / "kept").mkdir()

    def unreadable():
        raise converter.CorruptionError("src: tensor 'b': crc32c mismatch")

    bad = converter.Checkpoint({"a": converter.Tensor.from_array("a", np.ones(3, np.float32)),
                                "b": converter.Tensor("b", np.float32, (3,), unreadable)})
    with pytest.raises(converter.CorruptionError):
        converter.write(bad, tmp_path / "kept" / "new" / "deeper" / name, format=to)
    assert list(tmp_path.rglob("*")) == [tmp_path / "kept"]


def test_failure_keeps_a_directory_another_writer_uses(tmp_path):
    group = outputs.Outputs()
    tmp = group.new(tmp_path / "new" / "a.safetensors")
    tmp.write_bytes(b"partial")
    (tmp_path / "new" / "b.safetensors").write_bytes(b"someone else's")
    group.abort()
    assert _names(tmp_path / "new") == ["b.safetensors"]


# --- 8. temporaries of killed writers --------------------------------------------------------


def _age(path: Path, seconds: float = 3600) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    live = outputs.Outputs()  # a writer still at work: its temporary is locked
    live_file = live.new(out / "a.safetensors")
    stale = [out / ".w.safetensors.tmp-0123abcd", out / ".m.ckpt.index.tmp-deadbeef",
             out / ".k.weights.h5.tmp-00ff00ff.weights.h5"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    stale_dir = out / ".npy.tmp-12345678"
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "t.npy").write_bytes(b"x")
    old_dir = out / ".npy.old-87654321"
    old_dir.mkdir()
    young = out / ".y.safetensors.tmp-aaaabbbb"
    young.write_bytes(b"x")
    foreign = [out / ".m.ckpt.tmp-migrate", out / "w.safetensors.tmp-0123abcd",
               out / ".w.safetensors.tmp-0123abc", out / ".x.tmp-ABCDEF01"]
    for p in foreign:
        p.write_bytes(b"not ours")
    link = out / ".l.safetensors.tmp-01010101"
    link.symlink_to(tmp_path / "elsewhere")
    for p in [*stale, stale_dir, old_dir, live_file, *foreign, link]:
        _age(p)
    _tempfiles._swept.clear()
    converter.write(_data(20), out / "new.safetensors")
    kept = [live_file, young, *foreign, link, out / "new.safetensors"]
    assert _names(out) == sorted(p.name for p in kept)
    live.abort()


def test_a_live_writer_keeps_its_temporaries_however_old(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    decoy = out / ".dead.npz.tmp-00000000"

    def old_and_another_writer_sweeps() -> None:
        decoy.write_bytes(b"a killed writer's")
        for p in out.iterdir():
            _age(p)
        _tempfiles._swept.clear()
        converter.write({"x": np.zeros(2)}, out / "other.npz", force=True)
        assert not decoy.exists()  # the search did run

    _during_write(monkeypatch, old_and_another_writer_sweeps)
    converter.write(_data(22), out / "d", format="npy")  # a temporary directory
    converter.write(_data(22), out / "w.safetensors")  # a temporary file
    with converter.read(out / "d", format="npy") as a, converter.read(out / "w.safetensors") as b:
        assert_same_checkpoint(a, _data(22))
        assert_same_checkpoint(b, _data(22))


def test_the_next_run_removes_what_kill_9_left(tmp_path):
    src = tmp_path / "src.safetensors"
    converter.write(_data(21, n=6, size=64 * 1024), src)
    out = tmp_path / "out"
    ready = tmp_path / "ready"
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from converter.formats import npz\n"
            "from converter.cli import main\n"
            "real = npz.tracked\n"
            "def tracked(*a, **k):\n"
            "    for i, t in enumerate(real(*a, **k)):\n"
            "        if i == 3:\n"
            "            Path(sys.argv[1]).touch()\n"
            "            time.sleep(60)\n"
            "        yield t\n"
            "npz.tracked = tracked\n"
            "sys.exit(main(sys.argv[2:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ready), "convert", str(src),
                             str(out / "a.npz"), "-q"])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    (left,) = _leftovers(out)
    assert (out / left).stat().st_size > 3 * 64 * 1024 * 4  # what was written so far
    converter.convert(src, out / "b.npz").close()
    assert _leftovers(out) == [left]  # just killed: too young to be judged
    _age(out / left, _tempfiles.STALE_AFTER + 60)
    _tempfiles._swept.clear()  # the same process searched this directory a moment ago
    converter.convert(src, out / "c.npz").close()
    assert _leftovers(out) == [] and _names(out) == ["b.npz", "c.npz"]


@pytest.mark.parametrize("inside", ["a.safetensors/x.npz", "a.safetensors/sub/x.npz"])
def test_an_output_inside_a_file_names_that_file(tmp_path, inside, capsys):
    from converter.cli import main

    np.savez(tmp_path / "in.npz", w=np.arange(3.0))
    (tmp_path / "a.safetensors").write_bytes(b"not a directory")
    assert main(["convert", str(tmp_path / "in.npz"), str(tmp_path / inside)]) == 2
    assert capsys.readouterr().err == (f"ckpt: error: {tmp_path / 'a.safetensors'}: is not a "
                                       "directory, and the output goes inside it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "in.npz"]


def test_a_read_only_output_format_is_refused_naming_the_output(tmp_path, capsys):
    from converter.cli import main

    np.savez(tmp_path / "in.npz", w=np.arange(3.0))
    assert main(["convert", str(tmp_path / "in.npz"), str(tmp_path / "m.keras")]) == 2
    assert capsys.readouterr().err == (
        f"ckpt: error: {tmp_path / 'm.keras'}: format 'keras' can be read but not written "
        "(ckpt migrate SRC --model MODULE:FUNCTION OUT.keras builds the model and saves it)\n")
