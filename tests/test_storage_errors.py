"""Storage that cannot be reached or that fails is one line and exit 2 (StorageError), told
apart from a bad or missing file: a closed port on 127.0.0.1 for S3 (botocore and s3fs), and
Python's own HTTP server answering 503 for ``http(s)://`` URLs and for an S3 endpoint."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

import converter
from converter.cli import main

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

KEY = "AKIDUNREACHABLE0001"
SECRET = "uNrEaChAbLe-s3cr3t-value"
# botocore retries a refused connection with back-off (seconds each) unless told not to.
NO_RETRIES = json.dumps({"retries": {"total_max_attempts": 1}})


def _closed_port() -> int:
    with socket.socket() as s:  # nothing listens on it once it is closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(monkeypatch):
    """``--storage-option`` flags for an S3 endpoint nothing listens on, with credentials in
    the environment and in the options (neither may be shown)."""
    pytest.importorskip("s3fs")
    for key, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    port = _closed_port()
    flags = ["--storage-option", f"endpoint_url=http://127.0.0.1:{port}",
             "--storage-option", f"config_kwargs={NO_RETRIES}",
             "--storage-option", f"key={KEY}", "--storage-option", f"secret={SECRET}"]
    return port, flags


class _Failing(http.server.BaseHTTPRequestHandler):
    """503 for everything but ``/gone/...``, which is 404, and ``/denied/...``, 403."""

    def _answer(self) -> None:
        status = 404 if self.path.startswith("/gone/") else \
            403 if self.path.startswith("/denied/") else 503
        self.send_response(status)
        self.send_header("Content-Length", "4")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"busy")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing():
    """The port of an HTTP server that answers 503 (404 under /gone/)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert out == "", out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert KEY not in err and SECRET not in err, err
    return err.strip()


@pytest.mark.parametrize("command", ["inspect", "convert", "verify", "diff", "batch",
                                     "batch-out"])
def test_an_unreachable_s3_endpoint_is_one_line_and_exit_2(tmp_path, capsys, unreachable,
                                                           command):
    port, flags = unreachable
    url = "s3://bucket/model.safetensors"
    local = tmp_path / "w.safetensors"
    converter.write({"w": [1.0, 2.0]}, local)
    argv = {
        "inspect": ["inspect", url],
        "convert": ["convert", url, str(tmp_path / "out.npz")],
        "verify": ["verify", url],  # not "BAD" and exit 1: nothing is known about the file
        "diff": ["diff", str(local), url],
        "batch": ["batch", "s3://bucket/runs", "--to", "npz", "--out", str(tmp_path / "o")],
        "batch-out": ["batch", str(local), "--to", "npz", "--out", "s3://bucket/converted"],
    }[command]
    err = _one_line(capsys, argv + flags)
    assert f"cannot reach the storage server at 127.0.0.1:{port} (connection refused)" in err, \
        err
    assert err.startswith("ckpt: error: s3://bucket/"), err
    assert "?" not in err, err  # no request's query string
    assert not (tmp_path / "out.npz").exists()


def test_the_python_api_raises_storage_error(unreachable):
    port, _ = unreachable
    assert "StorageError" in converter.__all__
    assert issubclass(converter.StorageError, converter.ConverterError)
    assert not issubclass(converter.StorageError, converter.FormatError)
    options = {"endpoint_url": f"http://127.0.0.1:{port}",
               "config_kwargs": json.loads(NO_RETRIES)}
    with pytest.raises(converter.StorageError, match="connection refused") as caught:
        converter.read("s3://bucket/model.safetensors", storage_options=options)
    assert SECRET not in str(caught.value)
    with pytest.raises(converter.StorageError, match="connection refused"):
        converter.verify("s3://bucket/model.safetensors", storage_options=options)


@pytest.mark.parametrize("name", ["model.safetensors", "model.ckpt-1", "model.npz"])
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_an_http_server_answering_503_is_a_storage_error(capsys, failing, command, name):
    url = f"http://127.0.0.1:{failing}/{name}"
    err = _one_line(capsys, [command, url])
    assert "the storage server failed (HTTP 503 Service Unavailable)" in err, err
    with pytest.raises(converter.StorageError, match="HTTP 503"):
        converter.read(url)


def test_a_missing_object_on_an_http_server_is_still_missing(capsys, failing):
    url = f"http://127.0.0.1:{failing}/gone/model.safetensors"
    err = _one_line(capsys, ["inspect", url])
    assert "storage server" not in err and "no such object" in err, err
    with pytest.raises(converter.FormatError):
        converter.read(url)


def test_tls_to_a_server_that_speaks_none_is_a_storage_error(capsys, failing):
    err = _one_line(capsys, ["inspect", f"https://127.0.0.1:{failing}/model.safetensors"])
    assert f"cannot reach the storage server at 127.0.0.1:{failing} (TLS failed" in err, err


def test_an_s3_endpoint_answering_503_is_a_storage_error(capsys, failing, monkeypatch):
    pytest.importorskip("s3fs")
    for key, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    err = _one_line(capsys, ["inspect", "s3://bucket/model.safetensors",
                             "--storage-option", f"endpoint_url=http://127.0.0.1:{failing}",
                             "--storage-option", f"config_kwargs={NO_RETRIES}"])
    assert "s3://bucket/model.safetensors: the storage server failed (HTTP 503" in err, err


def test_a_server_that_does_not_answer_in_time_is_a_storage_error():
    aiohttp = pytest.importorskip("aiohttp")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/model.safetensors"
        options = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=0.3)}}
        with pytest.raises(converter.StorageError, match=r"did not answer in time \(timed out\)"):
            converter.read(url, storage_options=options)


def test_access_denied_names_the_object_asked_for(failing, monkeypatch, capsys):
    pytest.importorskip("s3fs")
    for key, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    url = "s3://denied/x.safetensors"
    err = _one_line(capsys, ["inspect", url, "--storage-option",
                             f"endpoint_url=http://127.0.0.1:{failing}",
                             "--storage-option", f"config_kwargs={NO_RETRIES}"])
    assert err.startswith(f"ckpt: error: {url}:"), err  # not a sibling probed for it
    assert "index.json" not in err and "access denied" in err and "credentials" in err
