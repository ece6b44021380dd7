"""Remote spans are streamed: one ranged GET per run of tensors, read as it arrives, resumed
where a broken connection left it, and read by pieces from servers that ignore ranges."""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import storage
from converter.errors import ConverterWarning

from .helpers import assert_same, ckpt_peak_rss, http_server

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("fsspec")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(7)
    tensors = {f"w{i}": rng.standard_normal(2_500_000, dtype=np.float32) for i in range(3)}
    tensors["step"] = np.int64(5)
    converter.write(tensors, root / "m.ckpt", format="tf")  # one 30 MB shard
    return root, tensors


def _data_gets(server) -> list[tuple[str, str]]:
    return [g for g in server.gets if ".data-" in g[0]]


def _check(out: Path, tensors: dict) -> None:
    with converter.read(out) as back:
        for k, v in tensors.items():
            assert_same(back[k].read(), v, k)


def test_a_run_streams_over_http_in_one_ranged_get(tmp_path, bundle):
    root, tensors = bundle
    server = http_server(root)
    try:
        converter.convert(server.url("m.ckpt"), tmp_path / "o.safetensors").close()
    finally:
        server.shutdown()
    gets = _data_gets(server)
    assert len(gets) == 1 and gets[0][1].startswith("bytes=0-"), gets
    _check(tmp_path / "o.safetensors", tensors)


def test_a_stream_cut_midway_is_resumed_where_it_stopped(tmp_path, bundle):
    root, tensors = bundle
    server = http_server(root, cut=2)
    try:
        converter.convert(server.url("m.ckpt"), tmp_path / "o.npz").close()
    finally:
        server.shutdown()
    gets = _data_gets(server)
    assert len(gets) == 3, gets
    starts = [int(re.match(r"bytes=(\d+)-", r).group(1)) for _, r in gets]
    assert starts[0] == 0 and 0 < starts[1] < starts[2], starts  # resumed, never restarted
    _check(tmp_path / "o.npz", tensors)


def test_a_stream_that_keeps_breaking_is_one_error(tmp_path, bundle):
    root, _ = bundle
    server = http_server(root, cut=100)
    try:
        with pytest.raises(converter.ConverterError, match="m.ckpt.data-00000-of-00001"):
            converter.convert(server.url("m.ckpt"), tmp_path / "o.safetensors")
    finally:
        server.shutdown()
    assert not (tmp_path / "o.safetensors").exists()
    assert 4 <= len(_data_gets(server)) <= 6  # resumed a few times, not without end


def test_a_server_ignoring_ranges_is_read_once_by_the_fallback(tmp_path, bundle):
    root, tensors = bundle
    server = http_server(root, ranges=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converter.convert(server.url("m.ckpt"), tmp_path / "o.safetensors").close()
    finally:
        server.shutdown()
    assert any("ignores range requests" in str(w.message) for w in caught)
    _check(tmp_path / "o.safetensors", tensors)


@pytest.mark.parametrize("name", ["plain.h5", "k3.weights.h5", "w.safetensors", "w.npz"])
def test_small_files_from_a_server_ignoring_ranges_read_as_the_local_ones(
        tmp_path, keras_files, name):
    # A first read that asks for the whole of a small object cannot tell whether the server
    # honoured the range: it must not conclude that it did.
    tensors = {"a/w": np.arange(300, dtype=np.float32), "b": np.ones((3, 4), np.float16)}
    if name == "k3.weights.h5":
        local = keras_files / "k3.weights.h5" if (keras_files / "k3.weights.h5").exists() \
            else next(keras_files.glob("*.weights.h5"))
        (tmp_path / name).write_bytes(local.read_bytes())
    else:
        converter.write(tensors, tmp_path / name)
    server = http_server(tmp_path, ranges=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with converter.read(server.url(name)) as remote, \
                    converter.read(tmp_path / name) as here:
                assert list(remote) == list(here)
                for k in here:
                    assert_same(remote[k].read(), here[k].read(), k)
            # a conversion copies spans: ranged reads of their own
            converter.convert(server.url(name), tmp_path / "out.safetensors").close()
        with converter.read(tmp_path / "out.safetensors") as out, \
                converter.read(tmp_path / name) as here:
            assert list(out) == list(here)
            for k in here:
                assert_same(out[k].read(), here[k].read(), k)
    finally:
        server.shutdown()


class _Slow(http.server.SimpleHTTPRequestHandler):
    """Ranges, each body sent at about RATE bytes/s (a slow link)."""

    RATE = 16 << 20
    gets: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.gets.append(self.headers.get("Range", ""))
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if m is None or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start, end = int(m.group(1)), int(m.group(2)) + 1 if m.group(2) else len(data)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        step = 1 << 20
        try:
            for at in range(start, end, step):
                self.wfile.write(data[at:min(at + step, end)])
                time.sleep(step / self.RATE)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_a_long_stream_over_http_is_not_cut_by_the_clients_total_timeout(tmp_path):
    # aiohttp's total timeout (300 s by default, here 1 s) would count the reading of the
    # body: one ranged GET for a whole run would be cut every `total` seconds.
    blob = np.random.default_rng(0).integers(0, 256, 40 << 20, dtype=np.uint8).tobytes()
    _Slow.gets = []
    (tmp_path / "blob.bin").write_bytes(blob)
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Slow, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/blob.bin"
    try:
        with storage.options({"client_kwargs": {
                "timeout": aiohttp.ClientTimeout(total=1.0)}}):
            f = storage.open_file(url)
            got = bytearray()
            for at, data in f.pieces(0, f.size):
                assert at == len(got)
                got += data
        assert bytes(got) == blob
        assert len(_Slow.gets) == 1, _Slow.gets  # one stream, never cut and resumed
    finally:
        srv.shutdown()


def test_a_first_read_of_the_whole_object_does_not_conclude_ranges_work(tmp_path):
    # The whole-object case of RemoteFile._probe: test_remote_streams' small-file test passes
    # with it removed (the magic sniff reads 16 bytes first); this one does not.
    converter.write({"a": np.arange(300, dtype=np.float32)}, tmp_path / "w.npz")
    srv = http_server(tmp_path, ranges=False)
    try:
        f = storage.open_file(f"http://127.0.0.1:{srv.server_address[1]}/w.npz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole = f.read_all()
            assert f.pread(10, 20) == whole[10:30]
    finally:
        srv.shutdown()


def test_an_object_gone_before_its_stream_is_a_formaterror_naming_it(tmp_path):
    (tmp_path / "gone.bin").write_bytes(bytes(20 << 20))
    srv = http_server(tmp_path, ranges=True)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/gone.bin"
        f = storage.open_file(url)
        (tmp_path / "gone.bin").unlink()
        with pytest.raises(converter.FormatError, match="went away"):
            for _ in f.pieces(0, f.size):
                pass
    finally:
        srv.shutdown()


def test_a_big_object_from_a_server_ignoring_ranges_is_not_held_in_memory(tmp_path):
    big = np.random.default_rng(1).standard_normal(40_000_000, dtype=np.float32)  # 160 MB
    converter.write({"big": big}, tmp_path / "big.safetensors")
    del big
    server = http_server(tmp_path, ranges=False)
    try:
        code, peak, out, err = ckpt_peak_rss("inspect", server.url("big.safetensors"))
    finally:
        server.shutdown()
    assert code == 0, err
    assert "big" in out and err.count("ignores range requests") == 1, err
    assert peak < 120e6, peak  # the object is 160 MB


@pytest.mark.parametrize("command", ["inspect", "convert", "verify"])
def test_a_command_finds_the_format_and_reads_with_one_download(tmp_path, command):
    # Its format found, then the checkpoint read: from a server that ignores ranges, each is
    # the whole object, and looking it up afresh between the two fetched it all twice.
    from converter.cli import main

    tensors = {"w": np.arange(50_000, dtype=np.float32)}
    converter.write(tensors, tmp_path / "w.safetensors")
    server = http_server(tmp_path, ranges=False)
    try:
        argv = [command, server.url("w.safetensors")]
        if command == "convert":
            argv += [str(tmp_path / "out.npz"), "-q"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConverterWarning)
            assert main(argv) == 0
    finally:
        server.shutdown()
    asked = [wanted for path, wanted in server.gets if path == "/w.safetensors"]
    assert len(asked) == 2 and asked.count("") == 1, asked  # the first read, then the copy
    if command == "convert":
        _check(tmp_path / "out.npz", tensors)
