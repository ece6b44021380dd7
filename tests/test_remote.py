"""Checkpoints on object storage: every command on ``s3://`` URLs against a moto server on
127.0.0.1, bit-exact with the same commands on local files, reading only the bytes needed.

The server counts the bytes of every response, so "inspect reads the index only" is measured
where the bytes leave the storage, not asserted from our side.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import storage
from converter.cli import main
from converter.errors import FormatError
from converter.formats.tfbundle.layout import parse_state

from .helpers import assert_same, http_server, s3_client_for

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

_buckets = iter(range(10**6))


class _Counting:
    """WSGI middleware: the bytes of every response body, and the requests."""

    def __init__(self, app) -> None:
        self.app = app
        self.sent = 0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        for chunk in self.app(environ, start_response):
            with self.lock:
                self.sent += len(chunk)
            yield chunk

    def reset(self) -> None:
        with self.lock:
            self.sent = 0
            self.requests = []


class _Server(moto_server.ThreadedMotoServer):
    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.counter = _Counting(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, self.counter, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@pytest.fixture(scope="module")
def server():
    srv = _Server(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def bucket(server, monkeypatch):
    """``(fs, bucket name, endpoint, counter)``: a fresh bucket, credentials in the
    environment and the endpoint in fsspec's configuration (as a user's would be)."""
    fs, endpoint = s3_client_for(server, monkeypatch)
    name = f"ckpt-{next(_buckets)}-{os.getpid()}"
    fs.mkdir(name)
    yield fs, name, endpoint, server.counter
    fs.invalidate_cache()


def _put(fs, local: Path, remote: str) -> None:
    if local.is_dir():
        for p in sorted(local.rglob("*")):
            if p.is_file():
                fs.put_file(str(p), f"{remote}/{p.relative_to(local).as_posix()}")
    else:
        fs.put_file(str(local), remote)


def _put_bundle(fs, prefix: str, remote_dir: str) -> str:
    """Upload a TF checkpoint's index and shards; returns the remote prefix (no scheme)."""
    p = Path(prefix)
    for f in sorted(p.parent.iterdir()):
        if f.name.startswith(p.name + "."):
            fs.put_file(str(f), f"{remote_dir}/{f.name}")
    return f"{remote_dir}/{p.name}"


def _expected(fixture: dict) -> dict:
    with open(fixture["expected"], "rb") as f:
        return pickle.load(f)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["tf1_adam", "tf2_keras", "sharded", "tf1_partitioned",
                                  "tf1_strings"])
def test_tf_written_checkpoints_read_from_s3_equal_what_tensorflow_reads(
        tf_fixtures, bucket, name):
    fs, b, _, _ = bucket
    fixture = tf_fixtures[name]
    remote = _put_bundle(fs, fixture["prefix"], f"{b}/run")
    expected = _expected(fixture)
    with converter.read(f"s3://{remote}") as ckpt:
        assert ckpt.source.path == f"s3://{remote}"
        assert sorted(ckpt) == sorted(expected)
        for key, value in expected.items():
            assert_same(ckpt[key].read(), value, key)
        with converter.read(fixture["prefix"]) as local:
            assert [(t.name, t.kind, t.attrs) for t in ckpt.values()] == \
                [(t.name, t.kind, t.attrs) for t in local.values()]


def test_a_prefix_directory_names_its_latest_checkpoint(bucket):
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    for url in (f"s3://{b}/mlp", f"s3://{b}/mlp/", f"s3://{b}/mlp/model.ckpt-1000.index",
                f"s3://{b}/mlp/model.ckpt-1000.data-00000-of-00001"):
        with converter.read(url) as ckpt:
            assert ckpt.source.path == f"s3://{b}/mlp/model.ckpt-1000", url
            assert ckpt.source.step == 1000


def test_inspect_of_a_200_mb_bundle_fetches_under_one_percent(tmp_path, bucket, capsys):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(0)
    tensors = {f"layer{i}/kernel": rng.standard_normal((1250, 1000), dtype=np.float32)
               for i in range(40)}  # 40 x 5 MB
    tensors.update({f"layer{i}/bias": np.zeros(1000, np.float32) for i in range(40)})
    converter.write(tensors, tmp_path / "big" / "model.ckpt", format="tf")
    prefix = _put_bundle(fs, str(tmp_path / "big" / "model.ckpt"), f"{b}/big")
    size = sum(fs.size(p) for p in fs.find(f"{b}/big"))
    assert size > 200e6
    counter.reset()
    code, out, err = _run(capsys, "inspect", f"s3://{prefix}", "--json")
    served = counter.sent
    assert code == 0, err
    assert served < 0.01 * size, (served, counter.requests)
    remote = json.loads(out)
    code, out, _ = _run(capsys, "inspect", str(tmp_path / "big" / "model.ckpt"), "--json")
    local = json.loads(out)
    assert remote["tensors"] == local["tensors"]
    assert remote["count"] == 80 and remote["total_bytes"] == local["total_bytes"]


def test_convert_s3_to_local_local_to_s3_and_s3_to_s3_give_the_local_bytes(
        tmp_path, tf_fixtures, bucket, capsys):
    fs, b, _, _ = bucket
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    remote = _put_bundle(fs, prefix, f"{b}/src")
    local_out = tmp_path / "local.safetensors"
    assert _run(capsys, "convert", prefix, str(local_out))[0] == 0
    want = local_out.read_bytes()

    from_s3 = tmp_path / "from_s3.safetensors"
    assert _run(capsys, "convert", f"s3://{remote}", str(from_s3))[0] == 0
    assert from_s3.read_bytes() == want

    code, _, err = _run(capsys, "convert", prefix, f"s3://{b}/out/up.safetensors")
    assert code == 0, err
    assert "s3://" + b + "/out/up.safetensors" in err
    assert fs.cat_file(f"{b}/out/up.safetensors") == want

    code, _, err = _run(capsys, "convert", f"s3://{remote}", f"s3://{b}/out/s2s.safetensors")
    assert code == 0, err
    assert fs.cat_file(f"{b}/out/s2s.safetensors") == want


def test_a_bundle_written_to_s3_is_read_back_by_tensorflow(tmp_path, tf, tf_fixtures, bucket,
                                                           capsys):
    fs, b, _, _ = bucket
    fixture = tf_fixtures["tf1_adam"]
    code, _, err = _run(capsys, "convert", fixture["prefix"], f"s3://{b}/tf/model.ckpt",
                        "--max-shard-size", "100")
    assert code == 0, err
    names = sorted(p.rpartition("/")[2] for p in fs.find(f"{b}/tf"))
    assert "model.ckpt.index" in names and "checkpoint" in names  # as a local output has
    shards = [n for n in names if ".data-" in n]
    assert len(shards) > 1
    fs.get(f"{b}/tf", str(tmp_path / "back"), recursive=True)
    latest = tf.train.latest_checkpoint(str(tmp_path / "back"))
    assert latest is not None and Path(latest).name == "model.ckpt"
    reader = tf.train.load_checkpoint(latest)
    for key, value in _expected(fixture).items():
        assert_same(np.asarray(reader.get_tensor(key)), value, key)


def test_named_prefixes_written_into_a_run_on_s3_keep_its_state_file_as_locally(
        tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    for where in (str(tmp_path / "run"), f"s3://{b}/run"):
        for step in (1, 2):
            code, _, err = _run(capsys, "convert", "examples/mlp", f"{where}/model.ckpt-{step}",
                                "--to", "tf")
            assert code == 0, err
    local = (tmp_path / "run" / "checkpoint").read_text()
    remote = fs.cat(f"{b}/run/checkpoint").decode()
    assert remote == local and 'model_checkpoint_path: "model.ckpt-2"' in remote
    assert '"model.ckpt-1"' in remote
    with converter.read(f"s3://{b}/run/") as latest:
        assert latest.source.step == 2


def _record_uploads(monkeypatch) -> list[str]:
    """The names of the objects uploaded from now on, in order."""
    order: list[str] = []
    real = storage.upload

    def recorded(local_path: str, url: str, **kw) -> None:
        order.append(url.rpartition("/")[2])
        real(local_path, url, **kw)

    monkeypatch.setattr(storage, "upload", recorded)
    return order


def test_uploads_put_the_index_after_the_shards_it_names(tmp_path, bucket, monkeypatch):
    fs, b, _, _ = bucket
    order = _record_uploads(monkeypatch)
    tensors = {f"t{i}": np.full(300, i, np.float32) for i in range(4)}
    converter.write(tensors, f"s3://{b}/sharded/", format="tf", max_shard_size=1000)
    assert order[-2:] == ["model.ckpt.index", "checkpoint"]
    assert all(".data-" in n for n in order[:-2]) and len(order) == 6
    order.clear()
    converter.write(tensors, f"s3://{b}/st/model.safetensors", max_shard_size=1000)
    assert order[-1] == "model.safetensors.index.json"
    assert len(order) == 5
    with converter.read(f"s3://{b}/st/model.safetensors.index.json") as back:
        for k, v in tensors.items():
            assert_same(back[k].read(), v, k)


def test_existing_objects_are_kept_without_force(tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    fs.pipe_file(f"{b}/o/w.npz", b"keep me")
    code, _, err = _run(capsys, "convert", "examples/mlp", f"s3://{b}/o/w.npz")
    assert code == 2
    assert err.strip() == (f"ckpt: error: s3://{b}/o/w.npz: already exists (use --force to "
                           "overwrite)")
    assert fs.cat_file(f"{b}/o/w.npz") == b"keep me"
    code, _, err = _run(capsys, "convert", "examples/mlp", f"s3://{b}/o/w.npz", "--force")
    assert code == 0, err
    with converter.read(f"s3://{b}/o/w.npz") as back, converter.read("examples/mlp") as src:
        for k in src:
            assert_same(back[k].read(), src[k].read(), k)


def test_an_output_may_not_replace_its_remote_source(bucket, capsys):
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    src = f"s3://{b}/mlp/model.ckpt-1000"
    before = fs.cat_file(f"{b}/mlp/model.ckpt-1000.index")
    code, _, err = _run(capsys, "convert", src, src, "--to", "tf", "--force")
    assert code == 2
    assert "is the checkpoint being converted" in err
    assert fs.cat_file(f"{b}/mlp/model.ckpt-1000.index") == before


def _open_uploads(fs, b: str) -> list:
    return fs.call_s3("list_multipart_uploads", Bucket=b).get("Uploads", [])


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_an_interrupted_upload_leaves_no_object_and_no_open_multipart_upload(
        tmp_path, bucket, monkeypatch, stop):
    fs, b, _, _ = bucket
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    real_open = open
    reads = {"n": 0}

    class Failing:
        def __init__(self, f) -> None:
            self.f = f

        def read(self, n: int) -> bytes:
            reads["n"] += 1
            if reads["n"] == 3:  # two 5 MiB parts sent, the upload under way
                raise stop("stopped")
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

    def opening(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return Failing(f) if str(path) == str(big) else f

    monkeypatch.setattr("builtins.open", opening)
    with pytest.raises(stop):
        storage.upload(str(big), f"s3://{b}/up/big.bin", block=5 << 20)
    monkeypatch.undo()
    assert reads["n"] == 3
    fs.invalidate_cache()
    assert not fs.exists(f"{b}/up/big.bin")
    assert _open_uploads(fs, b) == []


def _stop_at_the_index(monkeypatch):
    """Make uploads stop (as Ctrl-C would) when they reach an ``.index`` object; returns the
    real upload."""
    real = storage.upload

    def failing(local_path: str, url: str, **kw) -> None:
        if url.endswith(".index"):
            raise KeyboardInterrupt
        real(local_path, url, **kw)

    monkeypatch.setattr(storage, "upload", failing)
    return real


def test_a_conversion_interrupted_while_uploading_leaves_no_index(tmp_path, bucket,
                                                                  monkeypatch):
    fs, b, _, _ = bucket
    _stop_at_the_index(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        converter.convert("examples/mlp", f"s3://{b}/cut/model.ckpt")
    fs.invalidate_cache()
    assert not fs.exists(f"{b}/cut/model.ckpt.index")
    with pytest.raises(FormatError):
        converter.read(f"s3://{b}/cut/model.ckpt")


def test_an_interrupt_while_the_scratch_copy_is_removed_still_removes_all_of_it(
        tmp_path, bucket, monkeypatch):
    import signal
    import tempfile

    fs, b, _, _ = bucket
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = shutil.rmtree

    def interrupted(path, *a, **kw):  # Ctrl-C just as the upload's scratch goes
        os.kill(os.getpid(), signal.SIGINT)
        real(path, *a, **kw)

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(shutil, "rmtree", interrupted)
        converter.convert("examples/mlp", f"s3://{b}/late/model.ckpt", to="tf")
    assert list(scratch.iterdir()) == []
    fs.invalidate_cache()
    with converter.read(f"s3://{b}/late/model.ckpt") as back, \
            converter.read("examples/mlp") as here:  # committed before the interrupt
        assert list(back) == list(here)


def test_verify_and_diff_on_s3(tmp_path, tf_fixtures, bucket, capsys):
    fs, b, _, _ = bucket
    prefix = tf_fixtures["sharded"]["prefix"]
    remote = _put_bundle(fs, prefix, f"{b}/v")
    code, out, err = _run(capsys, "verify", f"s3://{remote}", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and len(report["tensors"]) == len(tf_fixtures["sharded"]["shapes"])
    assert _run(capsys, "diff", f"s3://{remote}", prefix)[0] == 0
    # One byte changed in a shard: verify names the tensor and the URL, diff finds it.
    shard = next(p for p in fs.find(f"{b}/v") if ".data-" in p)
    data = bytearray(fs.cat_file(shard))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(shard, bytes(data))
    storage.forget("s3://" + shard)
    code, out, _ = _run(capsys, "verify", f"s3://{remote}")
    assert code == 1
    assert f"s3://{shard}: tensor" in out and "checksum mismatch" in out
    # A value changed in a valid file: diff on S3 finds it, as it does locally.
    with converter.read(prefix) as src:
        changed = {k: np.array(t.read()) for k, t in src.items() if not t.dtype.hasobject}
    key = next(k for k, v in changed.items() if v.size and v.dtype.kind == "f")
    changed[key].reshape(-1)[0] += 1
    converter.write(changed, tmp_path / "changed.safetensors")
    fs.put_file(str(tmp_path / "changed.safetensors"), f"{b}/v/changed.safetensors")
    code, out, _ = _run(capsys, "diff", f"s3://{b}/v/changed.safetensors", prefix)
    local = _run(capsys, "diff", str(tmp_path / "changed.safetensors"), prefix)
    assert code == local[0] == 1
    assert out == local[1]


@pytest.mark.parametrize("made, named", [("w.safetensors", "wrong.npz"),
                                          ("w.h5", "wrong.safetensors"),
                                          ("w.npz", "wrong.h5"), ("w.npy", "wrong.npz")])
def test_an_object_under_another_formats_suffix_is_read_by_its_content(
        tmp_path, bucket, made, named):
    fs, b, _, _ = bucket
    if made == "w.npy":
        np.save(tmp_path / made, np.arange(12, dtype=np.float32))
    else:
        converter.write({"w": np.arange(12, dtype=np.float32)}, tmp_path / made)
    local = tmp_path / named
    local.write_bytes((tmp_path / made).read_bytes())
    _put(fs, local, f"{b}/{named}")
    with converter.read(local) as here, converter.read(f"s3://{b}/{named}") as there:
        assert there.source.format == here.source.format != converter.registry.by_suffix(
            local).name
        assert list(there) == list(here)
        for k in here:
            assert_same(there[k].read(), here[k].read(), k)


def test_a_truncated_remote_object_gives_the_local_error(tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    local_dir = tmp_path / "t"
    shutil.copytree("examples/mlp", local_dir)
    shard = local_dir / "model.ckpt-1000.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-100])
    _put(fs, local_dir, f"{b}/t")
    storage.forget(f"s3://{b}/t/{shard.name}")
    local = _run(capsys, "verify", str(local_dir / "model.ckpt-1000"))
    remote = _run(capsys, "verify", f"s3://{b}/t/model.ckpt-1000")
    assert local[0] == remote[0] == 1
    assert remote[1] == local[1].replace(str(local_dir), f"s3://{b}/t")
    code, _, err = _run(capsys, "convert", f"s3://{b}/t/model.ckpt-1000",
                        str(tmp_path / "o.npz"))
    assert code == 2
    assert "the file is truncated" in err and f"s3://{b}/t/" in err
    assert not (tmp_path / "o.npz").exists()


def test_formats_read_from_local_files_only_are_fetched_then_removed(tmp_path, bucket,
                                                                     monkeypatch):
    import tempfile

    fs, b, _, _ = bucket  # npz and HDF5 are read by ranges
    tensors = {"a/w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.int64)}
    converter.write(tensors, tmp_path / "d", format="npy")
    _put(fs, tmp_path / "d", f"{b}/d")
    url = f"s3://{b}/d"
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    ckpt = converter.read(url)
    assert ckpt.source.path == url
    assert [p.name[:12] for p in temp.iterdir()] == ["ckpt-remote-"]  # the local copy
    for k, v in tensors.items():
        assert_same(ckpt[k].read(), v, k)
    ckpt.close()
    assert list(temp.iterdir()) == []


def test_storage_options_reach_lazy_reads(tmp_path, bucket, monkeypatch):
    import fsspec.config

    fs, b, endpoint, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    monkeypatch.delitem(fsspec.config.conf, "s3")
    url = f"s3://{b}/mlp/model.ckpt-1000"
    for known in [k for k in list(storage._scoped) if k.startswith("s3://")]:
        monkeypatch.delitem(storage._scoped, known)
    ckpt = converter.read(url, storage_options={"endpoint_url": endpoint})
    with converter.read("examples/mlp") as local:
        for k in local:  # read after read() returned: the options were kept for the prefix
            assert_same(ckpt[k].read(), local[k].read(), k)
    ckpt.close()


def test_credentials_never_appear_in_messages(bucket, capsys):
    _, b, endpoint, _ = bucket
    secret = "sEcReT-" + "x" * 20
    code, out, err = _run(capsys, "inspect", f"s3://{b}-missing/x.safetensors",
                          "--storage-option", f"secret={secret}",
                          "--storage-option", "key=AKIDEXAMPLE",
                          "--storage-option", f"endpoint_url={endpoint}")
    assert code == 2
    assert secret not in out + err and "AKIDEXAMPLE" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_a_protocol_without_its_package_is_one_line_naming_it(capsys):
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    code, _, err = _run(capsys, "inspect", "gs://bucket/model.ckpt")
    assert code == 2
    assert err.strip().endswith("(pip install gcsfs)"), err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("out", ["https://127.0.0.1:1/w.npz", "https://127.0.0.1:1/run/"])
def test_http_is_read_only(capsys, out):
    # Said before anything is asked of the server (a TF output lists the run it goes into).
    code, _, err = _run(capsys, "convert", "examples/mlp", out, "--to", "tf")
    assert (code, err) == (2, f"ckpt: error: {out}: https:// is read-only\n")


def test_batch_reads_remote_items_by_ranges(tmp_path, bucket, capsys):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(1)
    tensors = {f"layer{i}/kernel": rng.standard_normal((500, 1000), dtype=np.float32)
               for i in range(10)}  # 10 x 2 MB
    converter.write(tensors, tmp_path / "run" / "model.ckpt-5", format="tf")
    _put_bundle(fs, str(tmp_path / "run" / "model.ckpt-5"), f"{b}/runs/a")
    size = sum(fs.size(p) for p in fs.find(f"{b}/runs"))
    counter.reset()
    code, _, err = _run(capsys, "batch", f"s3://{b}/runs", "--to", "safetensors", "--out",
                        str(tmp_path / "out"), "--only", "layer3/*", "--jobs", "1", "-q")
    assert code == 0, err
    # One tensor of ten crossed the network, not the whole item.
    assert counter.sent < 0.2 * size, (counter.sent, size)
    out = next((tmp_path / "out").rglob("*.safetensors"))
    with converter.read(out) as back:
        assert list(back) == ["layer3/kernel"]
        assert_same(back["layer3/kernel"].read(), tensors["layer3/kernel"])


def test_batch_stages_remote_items_in_the_items_scratch_space(tmp_path, bucket, capsys,
                                                               monkeypatch):
    # Formats read only from local files are fetched for each item into that item's scratch
    # space (inside the run's, which its lock covers), removed once the item is done.
    fs, b, _, _ = bucket
    arrays = {f"w{i}": np.arange(i * 10, i * 10 + 6, dtype=np.float32) for i in range(2)}
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        fs.put_file(str(tmp_path / f"{name}.npy"), f"{b}/arrays/{name}.npy")
    staged: list[tuple[str, str | None]] = []
    real = storage.stage

    def stage(url: str, into: str) -> str:
        staged.append((into, storage.scratch_dir()))
        return real(url, into)

    monkeypatch.setattr(storage, "stage", stage)
    code, _, err = _run(capsys, "batch", f"s3://{b}/arrays", "--to", "safetensors", "--out",
                        str(tmp_path / "out"), "--jobs", "1", "-q")
    assert code == 0, err
    assert len(staged) == 2, staged
    for into, item_scratch in staged:
        assert item_scratch is not None and Path(item_scratch).name.startswith("ckpt-batch-item-")
        assert Path(into).parent == Path(item_scratch)
        assert not Path(into).exists() and not Path(item_scratch).exists()
    for name, array in arrays.items():
        out = next((tmp_path / "out").rglob(f"{name}.safetensors"))
        with converter.read(out) as back:
            assert_same(back[next(iter(back))].read(), array)


def test_a_saved_model_on_s3_lists_its_signatures(tf_fixtures, bucket, capsys):
    fs, b, _, _ = bucket
    local = Path(tf_fixtures["savedmodel"]["prefix"]).parent.parent
    assert (local / "saved_model.pb").is_file()
    _put(fs, local, f"{b}/sm")
    code, out, err = _run(capsys, "inspect", f"s3://{b}/sm", "--json")
    assert code == 0, err
    remote = json.loads(out)
    code, out, _ = _run(capsys, "inspect", str(local), "--json")
    want = json.loads(out)
    assert remote["tensors"] == want["tensors"]
    assert remote["meta_graphs"] == want["meta_graphs"] and remote["meta_graphs"]
    assert remote["source"]["saved_model"] == f"s3://{b}/sm"


@pytest.mark.parametrize("ranges", [True, False])
def test_https_and_http_urls_read_a_checkpoint(tmp_path, ranges, capsys):
    pytest.importorskip("aiohttp")
    shutil.copytree("examples/mlp", tmp_path / "mlp")
    converter.write({"w": np.arange(6, dtype=np.float32)}, tmp_path / "mlp" / "w.safetensors")
    server = http_server(tmp_path, ranges)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/mlp"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with converter.read(f"{base}/model.ckpt-1000") as remote, \
                    converter.read("examples/mlp") as local:
                for k in local:
                    assert_same(remote[k].read(), local[k].read(), k)
            with converter.read(f"{base}/w.safetensors") as st:
                assert_same(st["w"].read(), np.arange(6, dtype=np.float32))
        ignored = [w for w in caught if "ignores range requests" in str(w.message)]
        # once per object: the index, the data file, the safetensors file
        assert len(ignored) == (0 if ranges else 3), [str(w.message) for w in ignored]
        code, _, err = _run(capsys, "convert", "examples/mlp", f"{base}/out.npz")
        assert code == 2 and "read-only" in err
    finally:
        server.shutdown()



@pytest.mark.parametrize("command", ["inspect", "verify", "diff", "convert"])
def test_storage_option_flag_reaches_every_command(tmp_path, bucket, monkeypatch, capsys,
                                                   command):
    import fsspec.config

    fs, b, endpoint, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    monkeypatch.delitem(fsspec.config.conf, "s3")  # only the flag says where the server is
    url = f"s3://{b}/mlp/model.ckpt-1000"
    args = {"inspect": [url], "verify": [url], "diff": [url, "examples/mlp"],
            "convert": [url, str(tmp_path / "o.safetensors")]}[command]
    code, _, err = _run(capsys, command, *args, "--storage-option", f"endpoint_url={endpoint}")
    assert code == 0, err
    if command == "convert":
        with converter.read(tmp_path / "o.safetensors") as out, \
                converter.read("examples/mlp") as src:
            for k in src:
                assert_same(out[k].read(), src[k].read(), k)


@pytest.mark.parametrize("url", ["s3://{b}/x/../", "s3://{b}/pre/..", "s3://{b}/a//b.npz",
                                 "s3://{b}/./w.npz"])
def test_dot_segments_in_urls_are_refused_both_ways(tmp_path, bucket, capsys, monkeypatch, url):
    fs, b, _, _ = bucket
    url = url.format(b=b)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    for argv in (["convert", "examples/mlp", url, "--to", "tf"], ["inspect", url]):
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        assert "'.', '..' or empty parts" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    assert fs.find(b) == []


def test_options_stay_with_their_bucket_or_host_and_go_when_closed():
    secret = {"key": "A", "secret": "B"}
    forget = storage.remember("s3://bucket-a/run/model.ckpt", secret)
    try:
        assert storage._options_for("s3://bucket-a/run/model.ckpt.data-00000-of-00001") == secret
        assert storage._options_for("s3://bucket-ab/run/x") == {}
        assert storage._options_for("s3://bucket-a/other/x") == {}
    finally:
        forget()
    with pytest.raises(converter.UsageError, match="is closed"):
        storage._options_for("s3://bucket-a/run/model.ckpt.index")
    storage.reopen("s3://bucket-a/run/model.ckpt")  # a new read starts afresh
    assert storage._options_for("s3://bucket-a/run/model.ckpt.index") == {}
    storage.reopen("https://private.example/w.safetensors")
    forget = storage.remember("https://private.example/w.safetensors", {"headers": {"a": "b"}})
    try:
        assert storage._options_for("https://private.example/x")
        assert storage._options_for("https://evil.example/x") == {}
        assert storage._options_for("https://private.example.evil/x") == {}
    finally:
        forget()
    assert storage._key("s3://b/x") != storage._key("s3://c/x")
    with storage.options({"endpoint_url": "http://a"}):
        a = storage._key("s3://b/x")
    with storage.options({"endpoint_url": "http://b"}):
        assert storage._key("s3://b/x") != a  # two servers' objects are never mixed up


def test_a_second_read_sees_checkpoints_written_since(tmp_path, bucket):
    fs, b, _, _ = bucket
    for step in (9, 10):
        converter.write({"w": np.full(3, step, np.float32)},
                        tmp_path / f"s{step}" / f"model.ckpt-{step}", format="tf",
                        state_file=False)
    _put_bundle(fs, str(tmp_path / "s9" / "model.ckpt-9"), f"{b}/run")
    with converter.read(f"s3://{b}/run/") as first:
        assert first.source.step == 9
    _put_bundle(fs, str(tmp_path / "s10" / "model.ckpt-10"), f"{b}/run")
    with converter.read(f"s3://{b}/run/") as second:
        assert second.source.step == 10
        assert_same(second["w"].read(), np.full(3, 10, np.float32))


def test_an_upload_that_fails_while_completing_is_aborted(tmp_path, bucket, monkeypatch):
    fs, b, _, _ = bucket
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    real = s3fs.core.S3File._upload_chunk

    def failing(self, final=False):
        if final:
            raise KeyboardInterrupt
        return real(self, final)

    monkeypatch.setattr(s3fs.core.S3File, "_upload_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        storage.upload(str(big), f"s3://{b}/c/big.bin", block=5 << 20)
    monkeypatch.undo()
    fs.invalidate_cache()
    assert not fs.exists(f"{b}/c/big.bin")
    assert _open_uploads(fs, b) == []


def test_force_removes_the_shards_of_the_output_it_replaces(tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    target = f"s3://{b}/sh/model.safetensors"
    assert _run(capsys, "convert", "examples/mlp", target, "--max-shard-size", "5KB")[0] == 0
    shards = sorted(p.rpartition("/")[2] for p in fs.find(f"{b}/sh"))
    assert "model.safetensors.index.json" in shards and len(shards) > 2
    code, _, err = _run(capsys, "convert", "examples/mlp", target)
    assert code == 2 and "already exists" in err  # the earlier shards, as locally
    assert _run(capsys, "convert", "examples/mlp", target, "--force")[0] == 0
    fs.invalidate_cache()
    assert sorted(p.rpartition("/")[2] for p in fs.find(f"{b}/sh")) == ["model.safetensors"]


def test_an_interrupted_replacement_leaves_no_old_index_over_new_data(tmp_path, bucket,
                                                                     monkeypatch):
    fs, b, _, _ = bucket
    converter.convert("examples/mlp", f"s3://{b}/r/model.ckpt")
    real = _stop_at_the_index(monkeypatch)
    changed = {"w": np.ones(3, np.float32)}
    with pytest.raises(KeyboardInterrupt):
        converter.write(changed, f"s3://{b}/r/model.ckpt", format="tf", force=True)
    monkeypatch.setattr(storage, "upload", real)
    with pytest.raises(FormatError, match="not found"):
        converter.read(f"s3://{b}/r/model.ckpt", verify=False)


@pytest.mark.parametrize("option", ["endpoint_url=http://127.0.0.1:1", "bogus=1"])
def test_storage_errors_are_one_line(bucket, capsys, option):
    _, b, _, _ = bucket
    code, out, err = _run(capsys, "inspect", f"s3://{b}/x.safetensors", "--storage-option",
                          option)
    assert code == 2, err
    assert err.startswith("ckpt: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("url", ["s3://user:s3cr3t@bucket/x.npz",
                                 "https://host.invalid/x.safetensors?X-Amz-Signature=s3cr3t"])
def test_credentials_in_a_url_are_refused_without_echoing_them(capsys, url):
    code, out, err = _run(capsys, "inspect", url)
    assert code == 2
    assert "s3cr3t" not in out + err and len(err.strip().splitlines()) == 1


def test_a_safetensors_prefix_reads_as_a_local_directory_does(tmp_path, bucket):
    fs, b, _, _ = bucket
    tensors = {f"t{i}": np.full(300, i, np.float32) for i in range(4)}
    converter.write(tensors, tmp_path / "hf" / "model.safetensors", max_shard_size=1000)
    _put(fs, tmp_path / "hf", f"{b}/hf")
    for url in (f"s3://{b}/hf", f"s3://{b}/hf/"):
        with converter.read(url) as back:
            assert back.source.path == f"s3://{b}/hf/model.safetensors.index.json"
            for k, v in tensors.items():
                assert_same(back[k].read(), v, k)


def test_migrate_reads_from_and_writes_to_s3(tf, tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    shutil.copy("examples/mlp/models.py", tmp_path / "models.py")
    code, out, err = _run(capsys, "migrate", f"s3://{b}/mlp/model.ckpt-1000", "--model",
                          f"{tmp_path / 'models.py'}:build", "--preset", "keras-names",
                          f"s3://{b}/keras/out.weights.h5")
    assert code == 0, err
    assert "8 matched" in out
    assert not Path("s3:").exists()  # nothing written under a local path named after the URL
    fs.get_file(f"{b}/keras/out.weights.h5", str(tmp_path / "out.weights.h5"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("example_models", tmp_path / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build()
    model.load_weights(str(tmp_path / "out.weights.h5"))  # Keras reads what was uploaded
    reader = tf.train.load_checkpoint("examples/mlp/model.ckpt-1000")
    for layer, name in zip(model.layers, ["hidden1", "hidden2", "hidden3", "softmax_linear"],
                           strict=True):
        assert_same(np.asarray(layer.kernel), reader.get_tensor(f"{name}/weights"), name)
    code, _, err = _run(capsys, "migrate", f"s3://{b}/mlp/model.ckpt-1000", "--model",
                        f"{tmp_path / 'models.py'}:build", "--preset", "keras-names",
                        f"s3://{b}/keras/out.weights.h5")
    assert code == 2 and "exists" in err


def test_html_pages_of_remote_checkpoints_go_to_remote_storage(tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    src = f"s3://{b}/mlp/model.ckpt-1000"
    code, _, err = _run(capsys, "inspect", src, "--html", f"s3://{b}/pages/m.html")
    assert code == 0, err
    page = fs.cat_file(f"{b}/pages/m.html").decode()
    assert page.startswith("<!DOCTYPE html>") and "hidden1/weights" in page
    assert _run(capsys, "inspect", src, "--html", str(tmp_path / "m.html"))[0] == 0
    assert (tmp_path / "m.html").read_text() == page  # the same page either way
    code, _, err = _run(capsys, "inspect", src, "--html", f"s3://{b}/pages/m.html")
    assert code == 2 and "exists" in err
    code, _, err = _run(capsys, "diff", src, "examples/mlp", "--html", f"s3://{b}/pages/d.html")
    assert code == 0, err
    assert "softmax_linear" in fs.cat_file(f"{b}/pages/d.html").decode()
    assert not Path("s3:").exists()


def test_batch_hands_storage_options_to_its_workers_and_records_none(tmp_path, bucket,
                                                                     monkeypatch, capsys):
    import fsspec.config

    fs, b, endpoint, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/runs/mlp")
    monkeypatch.delitem(fsspec.config.conf, "s3")  # the workers learn the endpoint from the flag
    secret = "x" * 12 + "-SeCrEt"
    code, out, err = _run(capsys, "batch", f"s3://{b}/runs", "--to", "npz", "--out",
                          f"s3://{b}/converted", "--jobs", "2", "--json",
                          "--storage-option", f"endpoint_url={endpoint}",
                          "--storage-option", "config_kwargs={\"user_agent_extra\": \""
                          + secret + "\"}")
    assert code == 0, err
    assert secret not in out + err
    found = [p for p in fs.find(f"{b}/converted")]
    assert any(p.endswith(".npz") for p in found)
    manifest = next(p for p in found if p.endswith("manifest.jsonl"))
    assert secret not in fs.cat_file(manifest).decode()
    npz = next(p for p in found if p.endswith(".npz"))
    fs.get_file(npz, str(tmp_path / "o.npz"))
    with converter.read(tmp_path / "o.npz") as back, converter.read("examples/mlp") as src:
        for k in src:
            assert_same(back[k].read(), src[k].read(), k)


@pytest.mark.parametrize(("target", "clean"), [("extra.meta", False), ("sm_tf1", True),
                                               ("extra.ckpt", False)])
def test_plan_against_targets_on_s3(tmp_path_factory, bucket, capsys, target, clean):
    from tests.helpers import tf_available
    if not tf_available():
        pytest.skip("TensorFlow is not installed")
    from tests.tf_fixtures_plan import built

    fs, b, _, _ = bucket
    out, _ = built(tmp_path_factory)
    local = out / target
    if local.is_dir():
        _put(fs, local, f"{b}/t/{target}")
    elif target.endswith(".meta"):
        fs.put_file(str(local), f"{b}/t/{target}")
    else:
        _put_bundle(fs, str(local), f"{b}/t")
    _put_bundle(fs, str(out / "base.ckpt"), f"{b}/src")
    code, remote, _ = _run(capsys, "plan", f"s3://{b}/src/base.ckpt", "--target",
                           f"s3://{b}/t/{target}", "--json")
    want_code, want, _ = _run(capsys, "plan", str(out / "base.ckpt"), "--target", str(local),
                              "--json")
    assert code == want_code == (0 if clean else 1)
    r, w = json.loads(remote), json.loads(want)
    for key in ("matched", "missing", "unexpected", "shape_mismatch"):
        assert r[key] == w[key], key


@pytest.mark.parametrize("compress", [False, True])
def test_npz_on_s3_is_listed_from_its_directory_and_read_by_ranges(tmp_path, bucket, capsys,
                                                                  compress):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(2)
    tensors = {f"l{i}/w": rng.standard_normal((500, 1000), dtype=np.float32) for i in range(8)}
    local = tmp_path / "w.npz"
    converter.write(tensors, local, compress=compress)
    fs.put_file(str(local), f"{b}/w.npz")
    counter.reset()
    code, out, err = _run(capsys, "inspect", f"s3://{b}/w.npz", "--json")
    assert code == 0, err
    if not compress:  # deflated members look alike; stored ones cost only their headers
        assert counter.sent < 0.05 * local.stat().st_size, counter.sent
    assert json.loads(out)["tensors"] == json.loads(_run(capsys, "inspect", str(local),
                                                         "--json")[1])["tensors"]
    with converter.read(f"s3://{b}/w.npz") as remote:
        assert remote.source.path == f"s3://{b}/w.npz"
        for k, v in tensors.items():
            assert_same(remote[k].read(), v, k)
    out_st = tmp_path / "o.safetensors"
    assert _run(capsys, "convert", f"s3://{b}/w.npz", str(out_st))[0] == 0
    assert _run(capsys, "diff", str(out_st), str(local))[0] == 0


def test_a_damaged_npz_member_on_s3_is_caught(tmp_path, bucket):
    fs, b, _, _ = bucket
    local = tmp_path / "w.npz"
    converter.write({"w": np.arange(1000, dtype=np.float32)}, local)
    data = bytearray(local.read_bytes())
    data[len(data) // 3] ^= 0xFF
    fs.pipe_file(f"{b}/bad.npz", bytes(data))
    with converter.read(f"s3://{b}/bad.npz") as remote:
        with pytest.raises(converter.CorruptionError, match="CRC-32 mismatch"):
            remote["w"].read()


def test_a_big_tensor_streams_from_s3_into_a_local_file_bit_for_bit(tmp_path, bucket):
    fs, b, _, _ = bucket
    big = np.random.default_rng(3).standard_normal(10_500_000, dtype=np.float32)  # 42 MB
    converter.write({"big": big, "small": np.arange(5)}, tmp_path / "m.ckpt", format="tf")
    _put_bundle(fs, str(tmp_path / "m.ckpt"), f"{b}/big")
    for out in ("o.safetensors", "o.npz", "o.ckpt"):
        converter.convert(f"s3://{b}/big/m.ckpt", tmp_path / out, to=None
                          if out != "o.ckpt" else "tf").close()
        with converter.read(tmp_path / out) as back:
            assert_same(back["big"].read(), big, out)


def test_a_run_of_tensors_streams_from_s3_in_one_request(tmp_path, bucket):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(4)
    tensors = {f"w{i}": rng.standard_normal(3_000_000, dtype=np.float32) for i in range(3)}
    converter.write(tensors, tmp_path / "m.ckpt", format="tf")  # one 36 MB shard
    _put_bundle(fs, str(tmp_path / "m.ckpt"), f"{b}/run")
    counter.reset()
    converter.convert(f"s3://{b}/run/m.ckpt", tmp_path / "o.safetensors").close()
    data_gets = [r for r in counter.requests if r[0] == "GET" and ".data-" in r[1]]
    assert len(data_gets) == 1, counter.requests
    with converter.read(tmp_path / "o.safetensors") as back:
        for k, v in tensors.items():
            assert_same(back[k].read(), v, k)


@pytest.mark.parametrize("name", ["many.h5", "many.npz"])
def test_many_small_tensors_of_a_remote_file_are_fetched_a_window_at_a_time(
        tmp_path, bucket, name):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(5)
    tensors = {f"s{i // 20}/v{i}": rng.standard_normal(50, dtype=np.float32)
               for i in range(400)}
    converter.write(tensors, tmp_path / name)
    _put(fs, tmp_path / name, f"{b}/{name}")
    def gets() -> int:
        n = sum(1 for r in counter.requests if r[0] == "GET" and r[1].endswith(name))
        counter.reset()
        return n

    counter.reset()
    converter.read(f"s3://{b}/{name}").close()
    opening = gets()  # the file's own structure (an npz's local headers)
    converter.convert(f"s3://{b}/{name}", tmp_path / "o.safetensors").close()
    assert gets() - opening < 10, opening  # a request per tensor: 400
    with converter.read(tmp_path / "o.safetensors") as back:
        for k, v in tensors.items():
            assert_same(back[k].read(), v, k)


def test_a_closed_read_with_options_does_not_stop_later_runs_without_them(tmp_path, bucket):
    fs, b, endpoint, _ = bucket
    converter.write({"w": np.arange(4.0)}, tmp_path / "src" / "w.npz")
    _put(fs, tmp_path / "src", f"{b}/src")
    converter.read(f"s3://{b}/src/w.npz", storage_options={"endpoint_url": endpoint}).close()
    done = converter.batch([f"s3://{b}/src"], to="safetensors", out=f"s3://{b}/out")
    assert [r.status for r in done] == ["done"]
    converter.read(f"s3://{b}/src/w.npz", storage_options={"endpoint_url": endpoint}).close()
    converter.write({"v": np.zeros(2)}, f"s3://{b}/out/v.npz")
    with converter.read(f"s3://{b}/out/v.npz") as back:
        assert_same(back["v"].read(), np.zeros(2))


def test_stats_of_a_remote_checkpoint_equal_the_local_ones(tf_fixtures, bucket, capsys):
    fs, b, _, _ = bucket
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    remote = _put_bundle(fs, prefix, f"{b}/st")
    code, out, err = _run(capsys, "inspect", f"s3://{remote}", "--stats", "--json")
    assert code == 0, err
    local = json.loads(_run(capsys, "inspect", prefix, "--stats", "--json")[1])
    assert json.loads(out)["tensors"] == local["tensors"]
    assert any("stats" in t for t in local["tensors"])


def test_user_mistakes_with_urls_are_one_line_naming_them(bucket, capsys):
    _, b, _, _ = bucket
    cases = [
        (["inspect", f"s3://{b}/x.safetensors", "--storage-option", "endpoint_url"],
         "expected KEY=VALUE"),
        (["convert", "examples/mlp", f"s3://{b}-nobucket/x/model.safetensors"],
         f"s3://{b}-nobucket/x/model.safetensors: cannot write there"),
        (["convert", "examples/mlp", f"s3://{b}/z/m.bin"], f"s3://{b}/z/m.bin: cannot tell"),
    ]
    for i, (argv, says) in enumerate(cases):
        code, _, err = _run(capsys, *argv)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert says in lines[-1], (argv, err)
        assert i == 0 or len(lines) == 1  # argparse shows its usage above a usage error


def test_a_closed_checkpoint_does_not_read_without_its_options(bucket, monkeypatch):
    import fsspec.config

    fs, b, endpoint, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/mlp")
    monkeypatch.delitem(fsspec.config.conf, "s3")
    ckpt = converter.read(f"s3://{b}/mlp/model.ckpt-1000",
                          storage_options={"endpoint_url": endpoint})
    storage.forget_under(f"s3://{b}/mlp/model.ckpt-1000")
    ckpt.close()
    with pytest.raises(converter.UsageError, match="is closed"):
        ckpt["global_step"].read()  # never to a default endpoint of a bucket of that name
    with converter.read(f"s3://{b}/mlp/model.ckpt-1000",
                        storage_options={"endpoint_url": endpoint}) as again:
        assert int(again["global_step"].read()) == 1000


def _h5_files(tmp_path: Path) -> list[Path]:
    """An HDF5 file this package wrote, and one as other tools write them: a user block before
    the superblock, a chunked deflated dataset, big-endian data, a scalar and an empty one."""
    import h5py

    from converter import dtypes

    rng = np.random.default_rng(4)
    ours = tmp_path / "ours.h5"
    converter.write({"dense/kernel": rng.standard_normal((64, 32), dtype=np.float32),
                     "dense/bias": np.arange(32, dtype=np.float16),
                     "emb": rng.standard_normal((8, 4), dtype=np.float32).astype(
                         dtypes.from_name("bfloat16")),
                     "step": np.array(7, np.int64), "mask": np.array([True, False, True])},
                    ours)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w", userblock_size=512) as f:
        f["a/w"] = rng.standard_normal((100, 30), dtype=np.float32)
        f.create_dataset("a/packed", data=np.arange(20000, dtype=np.int32).reshape(200, 100),
                         chunks=(50, 100), compression="gzip", shuffle=True)
        f.create_dataset("big_endian", data=np.arange(12, dtype=">f4"))
        f["scalar"] = np.float64(2.5)
        f["empty"] = np.zeros((0, 3), np.float32)
    return [ours, other]


def test_hdf5_on_s3_converts_by_ranges_to_the_bytes_of_the_local_file(tmp_path, bucket,
                                                                      capsys):
    fs, b, _, _ = bucket
    for local in _h5_files(tmp_path):
        url = f"s3://{b}/{local.name}"
        _put(fs, local, url[5:])
        want, got = tmp_path / f"{local.stem}.l.safetensors", tmp_path / f"{local.stem}.r.st"
        assert _run(capsys, "convert", str(local), str(want))[0] == 0
        code, _, err = _run(capsys, "convert", url, str(got), "--to", "safetensors")
        assert code == 0, err
        assert got.read_bytes() == want.read_bytes(), local.name
        with converter.read(url) as remote, converter.read(local) as here:
            assert list(remote) == list(here)
            # Contiguous datasets stream from their ranges in the object, as from the file.
            spans = {k: t.span for k, t in remote.items() if t.span is not None}
            assert spans and spans == {k: (url, *here[k].span[1:]) for k in spans}, spans
            assert "a/packed" not in spans and "big_endian" not in spans
            for k in here:
                assert_same(remote[k].read(), here[k].read(), k)


def test_inspect_of_a_150_mb_hdf5_file_on_s3_fetches_under_two_percent(tmp_path, bucket,
                                                                        capsys):
    fs, b, _, counter = bucket
    rng = np.random.default_rng(5)
    tensors = {f"layer{i}/kernel": rng.standard_normal((1250, 1000), dtype=np.float32)
               for i in range(30)}  # 30 x 5 MB
    tensors.update({f"layer{i}/bias": np.zeros(1000, np.float32) for i in range(30)})
    tensors["vocab"] = np.array([b"alpha", b"beta"], dtype=object)  # a global heap to check
    local = tmp_path / "big.h5"
    converter.write(tensors, local)
    _put(fs, local, f"{b}/big.h5")
    size = local.stat().st_size
    assert size > 150e6
    counter.reset()
    code, out, err = _run(capsys, "inspect", f"s3://{b}/big.h5", "--json")
    served, requests = counter.sent, len(counter.requests)
    assert code == 0, err
    assert served < 0.02 * size and requests < 100, (served, requests)
    here = json.loads(_run(capsys, "inspect", str(local), "--json")[1])
    assert json.loads(out)["tensors"] == here["tensors"]


def test_keras_weight_files_on_s3_read_as_the_local_ones(keras_files, bucket):
    fs, b, _, _ = bucket
    for name in ("wrapped.weights.h5", "adam.h5"):  # Keras 3 save_weights, tf-keras model.save
        url = f"s3://{b}/{name}"
        _put(fs, keras_files / name, url[5:])
        with converter.read(url) as remote, converter.read(keras_files / name) as here:
            assert remote.source.layout == here.source.layout and here.source.layout
            assert list(remote) == list(here) and len(here) > 10
            for k, t in here.items():
                assert (remote[k].kind, remote[k].attrs) == (t.kind, t.attrs), k
                assert_same(remote[k].read(), t.read(), k)
                assert remote[k].span == (None if t.span is None else (url, *t.span[1:])), k
            assert any(t.span for t in remote.values())


def test_a_truncated_hdf5_object_gives_the_local_error(tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    full = tmp_path / "full.h5"
    converter.write({f"l{i}/w": np.full((100, 100), i, np.float32) for i in range(4)}, full)
    data = full.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 4000):
        local = tmp_path / f"cut{cut}.h5"
        local.write_bytes(data[:cut])
        url = f"s3://{b}/{local.name}"
        _put(fs, local, url[5:])
        here = _run(capsys, "inspect", str(local))
        remote = _run(capsys, "inspect", url)
        assert here[0] == remote[0] == 2, (here, remote)
        assert len(remote[2].strip().splitlines()) == 1, remote[2]
        assert remote[2] == here[2].replace(str(local), url)
        with pytest.raises(FormatError, match="truncated"):
            converter.read(url)


def test_a_corrupt_global_heap_in_a_remote_hdf5_object_is_refused(tmp_path, bucket):
    import subprocess
    import sys

    fs, b, endpoint, _ = bucket
    local = tmp_path / "s.h5"
    converter.write({"w": np.ones(4, np.float32),
                     "vocab": np.array([b"alpha", b"be"], dtype=object)}, local)
    data = bytearray(local.read_bytes())
    at = data.find(b"GCOL")
    data[at + 16:at + 18] = b"\0\0"  # an object of length 0: libhdf5 would loop forever
    data[at + 24:at + 32] = bytes(8)
    local.write_bytes(bytes(data))
    _put(fs, local, f"{b}/s.h5")
    code = ("import sys, converter\n"
            "try:\n"
            "    c = converter.read(sys.argv[1], storage_options={'endpoint_url': sys.argv[2]})\n"
            "    [t.read() for t in c.values()]\n"
            "except converter.errors.FormatError as e:\n"
            "    print(e)\n")
    want = f"corrupt global heap at offset {at}"
    for path in (str(local), f"s3://{b}/s.h5"):  # a child with a deadline, not this process
        done = subprocess.run([sys.executable, "-c", code, path, endpoint], capture_output=True,
                              text=True, timeout=60)
        assert done.stdout.startswith(f"{path}: {want}"), done.stdout + done.stderr


def test_a_server_that_cannot_be_reached_is_not_a_missing_object(capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _run(capsys, "inspect", f"http://127.0.0.1:{port}/model.safetensors")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot reach the storage server" in err and "no such object" not in err, err
    with pytest.raises(converter.StorageError, match="cannot reach the storage server"):
        converter.read(f"http://127.0.0.1:{port}/model.safetensors")


def test_a_sharded_safetensors_output_reads_back_by_the_name_it_was_written_under(
        tmp_path, bucket, capsys):
    fs, b, _, _ = bucket
    data = {f"w{i}": np.arange(i, i + 5000, dtype=np.float32) for i in range(4)}
    out = tmp_path / "sh" / "model.safetensors"
    converter.write(data, out, max_shard_size=30_000)
    assert not out.exists() and out.with_name("model.safetensors.index.json").is_file()
    _put(fs, out.parent, f"{b}/sh")
    for name in (str(out), f"s3://{b}/sh/model.safetensors"):
        with converter.read(name) as back:
            assert list(back) == list(data)
            for key, array in data.items():
                assert_same(back[key].read(), array)
        code, listed, err = _run(capsys, "inspect", name)
        assert code == 0, err
        assert "model.safetensors.index.json" in listed and "shards: 4" in listed, listed
    # A name with neither the file nor an index beside it is still missing.
    code, _, err = _run(capsys, "inspect", str(tmp_path / "sh" / "other.safetensors"))
    assert code == 2 and "no such file" in err, err


def test_the_summary_of_an_npy_directory_uploaded_names_its_destination(bucket, capsys):
    _, b, _, _ = bucket
    code, _, err = _run(capsys, "convert", "examples/mlp", f"s3://{b}/arrays", "--to", "npy")
    assert code == 0, err
    assert f" in s3://{b}/arrays " in err, err


def _run_both(capsys, tmp_path: Path, fs, b: str, *argv: str) -> tuple[tuple[int, str],
                                                                      tuple[int, str]]:
    """One convert command on a local run directory and on the same run on S3: ``RUN`` in
    ``argv`` stands for either. Returns ``(code, stderr)`` of each, with the run's name
    written as ``RUN`` in stderr and the time taken left out."""
    here = str(tmp_path / "run")
    there = f"s3://{b}/run"
    results = []
    for root in (here, there):
        code, _, err = _run(capsys, *[a.replace("RUN", root) for a in argv])
        results.append((code, re.sub(r" in [\d.]+ s$", "", err.replace(root, "RUN"), flags=re.M)))
    return results[0], results[1]


def _a_run(tmp_path: Path, fs, b: str) -> None:
    """A TF-written run (examples/mlp: model.ckpt-1000 and its state file), on local disk as
    ``run/`` and on S3 as ``run/``."""
    shutil.copytree("examples/mlp", tmp_path / "run")
    _put(fs, Path("examples/mlp"), f"{b}/run")


def _objects(fs, remote: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {p.rpartition("/")[2]: fs.cat_file(p) for p in fs.find(remote)}


def _files(local: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in local.iterdir()}


def test_a_bundle_added_to_a_run_on_s3_merges_its_state_file_as_locally(tmp_path, tf, bucket,
                                                                        capsys, monkeypatch):
    fs, b, _, _ = bucket
    _a_run(tmp_path, fs, b)
    order = _record_uploads(monkeypatch)
    # A new prefix in the run: no --force needed, the state file names it and keeps the old.
    local, remote = _run_both(capsys, tmp_path, fs, b, "convert",
                              "examples/mlp/model.ckpt-1000", "RUN/", "--to", "tf")
    assert local[0] == 0 and remote == local, (local, remote)
    assert order == ["model.ckpt.data-00000-of-00001", "model.ckpt.index", "checkpoint"]
    assert _objects(fs, f"{b}/run") == _files(tmp_path / "run")
    # The run's own checkpoint into the run again, replacing the bundle written above (now in
    # four shards): the state file still names the checkpoint being read.
    order.clear()
    local, remote = _run_both(capsys, tmp_path, fs, b, "convert", "RUN/model.ckpt-1000",
                              "RUN/", "--to", "tf", "--force", "--max-shard-size", "10KB")
    assert local[0] == 0 and remote == local, (local, remote)
    assert order[-2:] == ["model.ckpt.index", "checkpoint"] and len(order) == 6
    objects = _objects(fs, f"{b}/run")
    assert objects == _files(tmp_path / "run")
    assert "model.ckpt.data-00000-of-00001" not in objects  # the replaced bundle's shard
    # What TensorFlow makes of the run (it reads s3:// only with a plugin: a copy of it).
    fs.get(f"{b}/run", str(tmp_path / "back"), recursive=True)
    back = str(tmp_path / "back")
    state = tf.train.get_checkpoint_state(back)
    assert state.model_checkpoint_path == os.path.join(back, "model.ckpt")
    assert list(state.all_model_checkpoint_paths) == [os.path.join(back, "model.ckpt-1000"),
                                                      os.path.join(back, "model.ckpt")]
    assert tf.train.latest_checkpoint(back) == os.path.join(back, "model.ckpt")
    reader = tf.train.load_checkpoint(os.path.join(back, "model.ckpt"))
    with converter.read("examples/mlp/model.ckpt-1000") as src, \
            converter.read(f"s3://{b}/run/") as latest:
        assert latest.source.path == f"s3://{b}/run/model.ckpt"
        for k in src:
            assert_same(reader.get_tensor(k), src[k].read(), k)
            assert_same(latest[k].read(), src[k].read(), k)


@pytest.mark.parametrize("present", [
    ["model.ckpt.index"],
    ["model.ckpt.data-00000-of-00001"],
    ["model.ckpt.data-00001-of-00002", "model.ckpt.index"],
    ["model.ckpt.data-00000-of-00001", "model.ckpt.index"],
])
def test_only_the_bundles_own_objects_refuse_a_tf_output_into_a_run_on_s3(
        tmp_path, bucket, capsys, present):
    fs, b, _, _ = bucket
    _a_run(tmp_path, fs, b)
    for leaf in present:
        (tmp_path / "run" / leaf).write_bytes(b"keep me")
        fs.pipe_file(f"{b}/run/{leaf}", b"keep me")
    before = _objects(fs, f"{b}/run")
    local, remote = _run_both(capsys, tmp_path, fs, b, "convert",
                              "examples/mlp/model.ckpt-1000", "RUN/", "--to", "tf")
    # The first clashing object is named, the one the local command names.
    assert local == (2, f"ckpt: error: RUN/{present[0]}: already exists (use --force to "
                        "overwrite)\n")
    assert remote == local
    assert _objects(fs, f"{b}/run") == before


def test_an_interrupted_forced_replacement_keeps_the_runs_state_file(tmp_path, bucket, capsys,
                                                                    monkeypatch):
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/run")
    assert _run(capsys, "convert", "examples/mlp", f"s3://{b}/run/", "--to", "tf")[0] == 0
    state = fs.cat_file(f"{b}/run/checkpoint")
    _stop_at_the_index(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        converter.convert(f"s3://{b}/run/model.ckpt-1000", f"s3://{b}/run/", to="tf",
                          force=True)
    fs.invalidate_cache()
    assert fs.cat_file(f"{b}/run/checkpoint") == state
    assert not fs.exists(f"{b}/run/model.ckpt.index")
    # The state file names a checkpoint that is gone: refused, not another one read instead.
    with pytest.raises(FormatError, match="model.ckpt.index not found"):
        converter.read(f"s3://{b}/run/")
    with converter.read(f"s3://{b}/run/model.ckpt-1000") as kept:
        assert kept.source.step == 1000


def test_a_runs_state_file_on_s3_with_absolute_paths_lists_a_replaced_prefix_once(
        tmp_path, bucket, capsys):
    # TF1's Saver records absolute paths, of the machine that trained; a reader of the bucket
    # looks each up by its last component, beside the state file, and so does the merge.
    fs, b, _, _ = bucket
    _put(fs, Path("examples/mlp"), f"{b}/run")
    assert _run(capsys, "convert", "examples/mlp", f"s3://{b}/run/", "--to", "tf")[0] == 0
    fs.pipe_file(f"{b}/run/checkpoint", b'model_checkpoint_path: "/job/run/model.ckpt"\n'
                 b'all_model_checkpoint_paths: "/job/run/model.ckpt"\n'
                 b'all_model_checkpoint_paths: "/job/run/model.ckpt-1000"\n'
                 b"all_model_checkpoint_timestamps: 1.5\n"
                 b"all_model_checkpoint_timestamps: 2.5\n")
    code, _, err = _run(capsys, "convert", "examples/mlp", f"s3://{b}/run/", "--to", "tf",
                        "--force")
    assert code == 0, err
    fs.invalidate_cache()
    state = parse_state(fs.cat_file(f"{b}/run/checkpoint").decode(), "checkpoint")
    assert state.latest == "model.ckpt"
    assert state.paths == ["/job/run/model.ckpt-1000", "model.ckpt"]
    assert state.timestamps[0] == 2.5 and len(state.timestamps) == 2


def test_a_state_file_on_s3_that_does_not_parse_is_replaced_as_locally(tmp_path, bucket,
                                                                       capsys):
    fs, b, _, _ = bucket
    _a_run(tmp_path, fs, b)
    (tmp_path / "run" / "checkpoint").write_bytes(b"not a state file\n")
    fs.pipe_file(f"{b}/run/checkpoint", b"not a state file\n")
    local, remote = _run_both(capsys, tmp_path, fs, b, "convert",
                              "examples/mlp/model.ckpt-1000", "RUN/", "--to", "tf")
    assert local[0] == 0 and "RUN/checkpoint: line 1 is not a 'key: value' line" in local[1]
    assert remote == local
    assert _objects(fs, f"{b}/run") == _files(tmp_path / "run")


def test_an_s3_stream_broken_midway_resumes_bit_exact(tmp_path, bucket, monkeypatch):
    from converter import fetch

    fs, b, _, _ = bucket
    blob = np.random.default_rng(3).integers(0, 256, 30 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "x.bin").write_bytes(blob)
    fs.put_file(str(tmp_path / "x.bin"), f"{b}/x.bin")
    real, opens = fetch._open_s3, []

    async def flaky(fs_, path, start, end):
        read, close = await real(fs_, path, start, end)
        opens.append(start)
        left = [5_000_001] if len(opens) <= 2 else [1 << 62]

        async def cut(n):
            if left[0] <= 0:
                raise ConnectionResetError("cut")
            data = await read(min(n, left[0]))
            left[0] -= len(data)
            return data
        return cut, close

    monkeypatch.setattr(fetch, "_open_s3", flaky)
    f = storage.open_file(f"s3://{b}/x.bin")
    got = bytearray()
    for at, data in f.pieces(0, f.size):
        assert at == len(got)
        got += data
    assert len(opens) == 3 and bytes(got) == blob, opens
