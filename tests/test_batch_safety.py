"""ckpt batch: outputs stay inside --out whatever the sources are called, collisions are errors,
archives unpack once and within limits, odd trees fail one item with one line, and a killed
run leaves neither scratch space nor workers behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.batch import MANIFEST
from converter.cli import main


def _npz(path: Path, value: int = 0) -> bytes:
    converter.write({"w": np.full((3, 2), value, np.float32)}, path)
    return path.read_bytes()


def _outside(root: Path, out: Path) -> list[Path]:
    """Files under ``root`` that a batch wrote outside ``out``."""
    return [p for p in root.rglob("*.safetensors") if out not in p.parents]


def test_remote_keys_cannot_climb_out_of_out(s3, tmp_path):
    import boto3

    data = _npz(tmp_path / "w.npz")
    s3.makedirs("safety", exist_ok=True)
    client = boto3.client("s3", endpoint_url=s3.client_kwargs.get("endpoint_url")
                          or s3.endpoint_url)
    for key in ("src/ok.npz", "src/../../evil.npz", "src/a/../../../evil2.npz", "src//abs.npz"):
        client.put_object(Bucket="safety", Key=key, Body=data)
    out = tmp_path / "deep" / "out"
    results = converter.batch(["s3://safety/src"], to="safetensors", out=out, jobs=1)
    status = {r.source.rpartition("/")[2]: r for r in results}
    assert status["ok.npz"].status == "done"
    for name in ("evil.npz", "evil2.npz", "abs.npz"):
        assert status[name].status == "failed", name
        assert "points outside" in status[name].error
    assert _outside(tmp_path, out) == []
    assert sorted(p.name for p in out.rglob("*.safetensors")) == ["ok.safetensors"]


def test_dotdot_source_is_mirrored_inside_out(tmp_path, monkeypatch, capsys):
    _npz(tmp_path / "runs" / "w.npz")
    (tmp_path / "runs" / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "runs" / "cwd")
    out = tmp_path / "runs" / "cwd" / "conv"
    assert main(["batch", "..", "--to", "safetensors", "--out", "conv", "-q"]) == 0
    assert (out / "runs" / "w.safetensors").is_file()
    assert _outside(tmp_path, out) == []


def test_archive_named_dots_is_refused(tmp_path, capsys):
    data = _npz(tmp_path / "w.npz")
    (tmp_path / "src").mkdir()
    with tarfile.open(tmp_path / "src" / "...tar", "w") as tf:
        info = tarfile.TarInfo("w.npz")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = tmp_path / "src" / "out"
    assert main(["batch", str(tmp_path / "src" / "...tar"), "--to", "safetensors", "--out",
                 str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "outside --out" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*.safetensors")) == []


@pytest.mark.parametrize("force", [False, True])
def test_outputs_that_collide_fail_before_anything_is_written(tmp_path, capsys, force):
    src = tmp_path / "src"
    _npz(src / "w.npz", 1)
    converter.write({"w": np.zeros(2, np.float32)}, src / "w.h5")
    _npz(src / "v.npz", 2)
    args = ["batch", str(src), "--to", "safetensors", "--out", str(tmp_path / "out"), "-q"]
    assert main(args + ["--force"] * force) == 1
    err = capsys.readouterr().err
    assert f"FAILED {src / 'w.npz'}" in err and f"FAILED {src / 'w.h5'}" in err
    assert "also the output of" in err
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.safetensors")) == [
        "v.safetensors"]
    records = [json.loads(x) for x in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    assert sorted(r["status"] for r in records) == ["done", "failed", "failed"]


def test_output_onto_the_mirror_directory_fails(tmp_path, capsys):
    src = tmp_path / "src"
    _npz(src / "..npz")
    _npz(src / "w.npz")
    assert main(["batch", str(src), "--to", "npy", "--out", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {src / '..npz'}" in err and "outside --out" in err
    assert (tmp_path / "out" / "src" / "w").exists()


def test_torn_manifest_line_does_not_swallow_the_next_record(tmp_path):
    src = tmp_path / "src"
    _npz(src / "w.npz")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"source": "/elsewhere/x.npz", "output": "/o/x.saf')  # kill -9
    with pytest.warns(converter.errors.ConverterWarning, match="line 1 is not a whole record"):
        first = converter.batch([str(src)], to="safetensors", out=out, resume=True)
    assert [r.status for r in first] == ["done"]
    with pytest.warns(converter.errors.ConverterWarning, match="line 1 is not a whole record"):
        again = converter.batch([str(src)], to="safetensors", out=out, resume=True)
    assert [r.status for r in again] == ["skipped"]


def _tar_of(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_each_archive_is_read_once_whatever_its_member_count(tmp_path, monkeypatch):
    data = _npz(tmp_path / "w.npz")
    members = {f"run/m{i:03d}.npz": data for i in range(40)}
    tgz = _tar_of(tmp_path / "many.tgz", members, "w:gz")
    zpath = tmp_path / "many.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    opened: list[str] = []
    real_tar, real_zip = tarfile.open, zipfile.ZipFile

    def counting_tar(name=None, *args, **kwargs):
        opened.append(str(name))
        return real_tar(name, *args, **kwargs)

    class CountingZip(real_zip):  # type: ignore[misc, valid-type]
        def __init__(self, file, *args, **kwargs):
            opened.append(str(file))
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(tarfile, "open", counting_tar)
    monkeypatch.setattr(zipfile, "ZipFile", CountingZip)
    for archive in (tgz, zpath):
        opened.clear()
        results = converter.batch([str(archive)], to="safetensors", jobs=1,
                                  out=tmp_path / archive.name.replace(".", "_"))
        assert [r.status for r in results] == ["done"] * 40
        assert opened.count(str(archive)) <= 2  # listed once, unpacked once
    assert not list(Path(tempfile.gettempdir()).glob("ckpt-batch-*/archives/*"))


def _sparse_tar(path: Path, name: str, real: int) -> Path:
    """A GNU sparse member of ``real`` bytes (all a hole but the last block) in a 2 KiB tar."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 512
    buf = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))

    def octal(n: int) -> bytes:
        return b"%011o\0" % n

    buf[386:398], buf[398:410] = octal(real - 512), octal(512)  # the one data extent
    buf[483:495] = octal(real)  # the size the member unpacks to
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    path.write_bytes(bytes(buf) + bytes(512) + bytes(1024))
    return path


def test_unpacked_size_is_capped(tmp_path, capsys):
    ok = _tar_of(tmp_path / "ok.tar", {"w.npz": _npz(tmp_path / "w.npz")})
    out = str(tmp_path / "out")
    assert main(["batch", str(ok), "--to", "safetensors", "--out", out, "-q",
                 "--max-unpacked", "100B"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "more than the limit" in err and "--max-unpacked" in err
    assert main(["batch", str(ok), "--to", "safetensors", "--out", out, "-q"]) == 0
    # Declaring 8 GiB in a 2 KiB archive: refused before a byte is unpacked.
    bomb = _sparse_tar(tmp_path / "bomb.tar", "big.npz", 8 << 30)
    with tarfile.open(bomb) as tf:
        assert tf.getmember("big.npz").size == 8 << 30
    assert main(["batch", str(bomb), "--to", "safetensors", "--out", out, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "8589934592 bytes, more than the limit" in err


def test_unreadable_archive_fails_as_an_item(tmp_path, capsys):
    _npz(tmp_path / "src" / "w.npz")
    (tmp_path / "src" / "bad.tar.gz").write_bytes(b"\x1f\x8b not really")
    assert main(["batch", str(tmp_path / "src"), "--to", "safetensors", "--out",
                 str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.tar.gz: unreadable archive" in err
    assert (tmp_path / "out" / "src" / "w.safetensors").is_file()


def test_free_space_is_checked_before_unpacking(tmp_path, monkeypatch):
    import shutil

    ok = _tar_of(tmp_path / "ok.tar", {"w.npz": _npz(tmp_path / "w.npz")})
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=10))
    results = converter.batch([str(ok)], to="safetensors", out=tmp_path / "out", jobs=1)
    assert [r.status for r in results] == ["failed"]
    assert "only 10 are free" in results[0].error


def test_member_shadowed_by_a_link_fails_one_line(tmp_path, capsys):
    data = _npz(tmp_path / "w.npz")
    with tarfile.open(tmp_path / "shadow.tar", "w") as tf:
        for name in ("m.npz", "good.npz"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("m.npz")
        link.type = tarfile.SYMTYPE
        link.linkname = "nowhere"
        tf.addfile(link)
    assert main(["batch", str(tmp_path / "shadow.tar"), "--to", "safetensors", "--out",
                 str(tmp_path / "out"), "--jobs", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FAILED" in err and "link that shadows" in err
    assert (tmp_path / "out" / "shadow" / "good.safetensors").is_file()


def test_member_nested_2000_deep_fails_one_line(tmp_path, capsys):
    data = _npz(tmp_path / "w.npz")
    _tar_of(tmp_path / "deep.tar", {"a/" * 2000 + "w.npz": data, "w.npz": data})
    assert main(["batch", str(tmp_path / "deep.tar"), "--to", "safetensors", "--out",
                 str(tmp_path / "out"), "--jobs", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested more than" in err
    assert (tmp_path / "out" / "deep" / "w.safetensors").is_file()


def _deep(root: Path, levels: int) -> None:
    """``root/d/d/...``, ``levels`` deep: made level by level relative to an open directory,
    since every call through the whole path walks it again (and mkdir(parents=True)
    recurses once per level)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(fd)


def _remove_deep(root: Path) -> None:
    # shutil.rmtree (and pytest's clean-up with it) recurses once per level too: lift the
    # tree one level at a time instead.
    while (root / "d").is_dir():
        if (root / "d" / "d").is_dir():
            os.rename(root / "d" / "d", root / "lifted")
            os.rmdir(root / "d")
            os.rename(root / "lifted", root / "d")
        else:
            os.rmdir(root / "d")


def test_symlink_loops_and_deep_trees_in_sources(tmp_path, capsys):
    src = tmp_path / "src"
    _npz(src / "sub" / "w.npz")
    os.symlink("..", src / "sub" / "up")  # a directory loop
    os.symlink("self", src / "self")  # a link to itself
    _deep(src, 1200)
    out = str(tmp_path / "out")
    limit = sys.getrecursionlimit()
    try:
        assert main(["batch", str(src), "--to", "safetensors", "--out", out, "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "nested more than" in err and "Traceback" not in err
        depth = 0
        frame = sys._getframe()
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        # The standard glob recurses per level: let it fail soon rather than 1000 levels down.
        sys.setrecursionlimit(depth + 150)
        code = main(["batch", f"{src}/**", "--to", "safetensors", "--out", out + "2", "-q"])
        sys.setrecursionlimit(limit)
        assert code == 2
        assert "too deep to search with a pattern" in capsys.readouterr().err
    finally:
        sys.setrecursionlimit(limit)
        _remove_deep(src)
    assert main(["batch", f"{src}/**", "--to", "safetensors", "--out", out + "2", "-q"]) == 1
    err = capsys.readouterr().err
    assert "symbolic link loop" in err and "Traceback" not in err
    assert all(line.startswith("FAILED ") for line in err.splitlines())
    # Found once, though the loop lets the pattern reach it by ever longer paths.
    assert [p.name for p in Path(out + "2").rglob("*.safetensors")] == ["w.safetensors"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _slow_sources(src: Path, n: int = 8) -> None:
    for i in range(n):  # ~24 MiB each: slow enough to catch mid-run
        converter.write({"w": np.full((1536, 4096), i, np.float32)}, src / f"m{i:02d}.npz")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_end_when_the_parent_is_killed(tmp_path):
    src = tmp_path / "src"
    _slow_sources(src)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "converter", "batch", str(src), "--to",
                             "safetensors", "--out", str(tmp_path / "out"), "--jobs", "2", "-q"],
                            start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(workers) >= 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 20
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_scratch_of_a_killed_run_is_removed_by_the_next(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _slow_sources(src, 4)
    with tarfile.open(tmp_path / "run.tar", "w") as tf:
        tf.add(src, arcname="run")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "converter", "batch", str(tmp_path / "run.tar"),
                             "--to", "safetensors", "--out", str(tmp_path / "out"), "-q"],
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while not list(scratch.glob("ckpt-batch-*/**/*.npz")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # the workers, killed too, let go of the lock
    assert list(scratch.glob("ckpt-batch-*"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _npz(tmp_path / "small" / "w.npz")
    converter.batch([str(tmp_path / "small")], to="npz", out=tmp_path / "o2", jobs=1)
    assert list(scratch.iterdir()) == []


def test_scratch_in_use_is_left_alone(tmp_path):
    import fcntl

    from converter.batch.scratch import LOCK, PREFIX, remove_stale

    held, dead, new = (tmp_path / f"{PREFIX}{n}" for n in ("held", "dead", "new"))
    for d in (held, dead, new):
        d.mkdir()
    (dead / LOCK).write_text("12345\n")  # its run was killed: nobody holds the lock
    (new / LOCK).write_text("")  # a run that has not taken its lock yet
    (held / LOCK).write_text(f"{os.getpid()}\n")
    with open(held / LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert remove_stale(tmp_path) == [dead]
    assert held.is_dir() and new.is_dir() and not dead.exists()
