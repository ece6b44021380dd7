"""ckpt batch finds the same items behind a source on S3 (or HTTP) as behind the same source
on disk: objects named one by one, TF prefixes, prefixes ("directories") and patterns; a
pattern that matches nothing and a prefix with nothing under it are refused in one line, as
locally; and outputs uploaded to an S3 DIR land where they would land in a local DIR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main

from .helpers import http_server, s3_client_for

BUCKET = "src"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``(local tree, S3 file system)``: one tree of checkpoints (and a file that is none),
    on disk and as the objects of the bucket ``src``, against a moto server on 127.0.0.1."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    root = tmp_path_factory.mktemp("tree")
    converter.write({"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, root / "k3.weights.h5")
    converter.write({"t": np.arange(4, dtype=np.int64)}, root / "tfk.h5")
    converter.write({"d": np.ones(3, np.float16)}, root / "sub" / "deep.h5")
    converter.write({"x": np.arange(5, dtype=np.int32)}, root / "sub" / "x.npz")
    converter.write({"w": np.full((2, 2), 7, np.float32)}, root / "run" / "model.ckpt-1",
                    format="tf")
    converter.write({"a": np.arange(3, dtype=np.float64)}, root / "arrays", format="npy")
    (root / "notes.txt").write_text("not a checkpoint\n")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            fs = s3_client_for(server, mp)[0]
            fs.mkdir(BUCKET)
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    fs.put_file(str(path), f"{BUCKET}/{path.relative_to(root).as_posix()}")
            yield root, fs
    finally:
        server.stop()


def _plan(sources: list[str], out: Path) -> list[tuple[str, str, str | None]]:
    """``(output relative to out, status, source format)`` of each planned item."""
    results = converter.batch(sources, to="npz", out=out, dry_run=True)
    return sorted((Path(r.output).relative_to(out).as_posix() if r.output else "", r.status,
                   r.format) for r in results)


@pytest.mark.parametrize("spec", [
    "k3.weights.h5", "notes.txt", "run/model.ckpt-1", "run/model.ckpt-1.index",
    "run/model.ckpt-1.data-00000-of-00001", "sub", "sub/", "run/*", "*.h5", "k?.weights.h5",
    "[kt]*.h5", "**/*.h5", "sub/**", "**.h5", "*", "arrays", "arr*"])
def test_a_source_on_s3_plans_the_items_it_plans_on_disk(tree, tmp_path, spec):
    root, _ = tree
    local = _plan([str(root / spec)], tmp_path / "out")
    assert local  # the case means something
    assert _plan([f"s3://{BUCKET}/{spec}"], tmp_path / "out") == local


def _refused(source: str, out: str, capsys) -> tuple[int, str]:
    code = main(["batch", source, "--to", "npz", "--out", out])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("spec", ["*.nomatch", "sub/*.h5x", "no*/x.h5", "[xyz].h5"])
def test_an_s3_pattern_matching_nothing_is_refused_as_locally(tree, tmp_path, capsys, spec):
    root, fs = tree
    source = str(root / spec)
    out = tmp_path / "o"
    assert _refused(source, str(out), capsys) == (2, f"ckpt: error: {source}: matches nothing\n")
    url = f"s3://{BUCKET}/{spec}"
    assert _refused(url, str(out), capsys) == (2, f"ckpt: error: {url}: matches nothing\n")
    # Refused before anything is made: no DIR, no manifest in the bucket.
    assert _refused(url, f"s3://{BUCKET}/refused", capsys)[0] == 2
    assert not out.exists()
    assert not fs.exists(f"{BUCKET}/refused/manifest.jsonl")


@pytest.mark.parametrize("spec", ["nonexist/", "nonexist", "sub/nonexist/", "run/model.ckpt-2"])
def test_a_missing_s3_prefix_is_refused_as_a_missing_directory_is(tree, tmp_path, capsys, spec):
    root, fs = tree
    out = tmp_path / "o"
    code, err = _refused(str(root / spec), str(out), capsys)
    assert code == 2 and err.endswith(": no such file or directory\n"), err
    url = f"s3://{BUCKET}/{spec}"
    assert _refused(url, str(out), capsys) == (2, f"ckpt: error: {url}: no such file or "
                                                  "directory\n")
    assert _refused(url, f"s3://{BUCKET}/refused", capsys)[0] == 2
    assert not out.exists()
    assert not fs.exists(f"{BUCKET}/refused/manifest.jsonl")


def test_single_items_land_directly_under_an_s3_out(tree, tmp_path):
    root, fs = tree
    # Objects, a bundle named by its index, a directory that is one checkpoint (an npy
    # directory), and a local file.
    named = ["k3.weights.h5", "tfk.h5", "run/model.ckpt-1.index", "arrays"]
    sources = [f"s3://{BUCKET}/{n}" for n in named] + [str(root / "sub" / "x.npz")]
    fs.mkdir("outb")
    results = converter.batch(sources, to="safetensors", out="s3://outb/conv", jobs=1)
    assert [(r.status, r.error) for r in results] == [("done", None)] * 5
    want = ["arrays", "k3.weights", "model.ckpt-1", "tfk", "x"]
    assert sorted(r.output for r in results) == [f"s3://outb/conv/{w}.safetensors" for w in want]
    local = converter.batch([str(root / n) for n in named] + sources[4:], to="safetensors",
                            out=tmp_path / "local", jobs=1)
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == \
        sorted([f"{w}.safetensors" for w in want] + ["manifest.jsonl"])
    for r in local:
        assert fs.cat_file(f"outb/conv/{Path(r.output).name}") == Path(r.output).read_bytes()
    assert sorted(fs.find("outb")) == sorted([f"outb/conv/{w}.safetensors" for w in want]
                                             + ["outb/conv/manifest.jsonl"])


def test_objects_over_http_convert_as_the_files_do(tree, tmp_path):
    pytest.importorskip("aiohttp")
    root, _ = tree
    server = http_server(root, ranges=True)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        remote = converter.batch([f"{base}/tfk.h5", f"{base}/sub/*.npz"], to="safetensors",
                                 out=tmp_path / "remote", jobs=1)
    finally:
        server.shutdown()
    assert [(r.source, r.status, r.error) for r in remote] == [
        (f"{base}/tfk.h5", "done", None), (f"{base}/sub/x.npz", "done", None)]
    local = converter.batch([str(root / "tfk.h5"), str(root / "sub" / "x.npz")],
                            to="safetensors", out=tmp_path / "local", jobs=1)
    for r, twin in zip(local, remote, strict=True):
        assert Path(twin.output).read_bytes() == Path(r.output).read_bytes()
