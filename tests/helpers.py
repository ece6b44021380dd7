"""Helpers shared by the tests: bit-exact comparisons, the TensorFlow probe, a TF1 LSTM
checkpoint builder. Import them as ``from tests.helpers import assert_same``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# ``python -c PAUSED_CLI READY SENT ARGS...``: the CLI, with every writer stopping after its second
# tensor (it touches READY) until the test has signalled it (and touched SENT).
PAUSED_CLI = """
import sys, time
from pathlib import Path
from converter.formats import hdf5, npy, npz, safetensors
from converter.formats.tfbundle import writer
from converter.cli import main

ready, sent = Path(sys.argv[1]), Path(sys.argv[2])

def hook(real):
    def tracked(*args, **kwargs):
        for i, tensor in enumerate(real(*args, **kwargs)):
            if i == 1:
                ready.touch()
                deadline = time.monotonic() + 60
                while not sent.exists() and time.monotonic() < deadline:
                    time.sleep(0.005)
            yield tensor
    return tracked

for module in (hdf5, npy, npz, safetensors, writer):
    module.tracked = hook(module.tracked)
sys.exit(main(sys.argv[3:]))
"""


def tf_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def assert_same(actual, expected, name: str = "") -> None:
    """Bit-exact equality of values, dtype and shape (NaN payloads and -0.0 included)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.hasobject:
        assert [bytes(x) for x in actual.reshape(-1)] == [bytes(x) for x in
                                                           expected.reshape(-1)], name
    else:
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(
            expected).tobytes(), f"{name}: values differ"


def assert_same_checkpoint(actual, expected, ordered: bool = True) -> None:
    """The same names (in the same order unless ``ordered=False``), each tensor bit-exact."""
    if ordered:
        assert list(actual) == list(expected)
    else:
        assert sorted(actual) == sorted(expected)
    for name in expected:
        assert_same(np.asarray(actual[name]), np.asarray(expected[name]), name)


def tf1_lstm_checkpoint(tf, prefix, x: np.ndarray, units: int, *, cell_name: str = "LSTMCell",
                        scope: str | None = None, forget_bias: float = 1.0, seed: int = 1):
    """Run a TF1 LSTM cell over ``x`` with random weights and biases (so that gate order
    matters), save it with Saver; returns ``(outputs, saved prefix)``."""
    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default():
        cell = getattr(v1.nn.rnn_cell, cell_name)(units, forget_bias=forget_bias, name=scope)
        outputs, _ = v1.nn.dynamic_rnn(cell, tf.constant(x), dtype=tf.float32)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for var in v1.global_variables():
                sess.run(var.assign(rng.uniform(-1, 1, var.shape).astype(np.float32)))
            expected = sess.run(outputs)
            saved = v1.train.Saver().save(sess, str(prefix), write_meta_graph=False)
    return expected, saved


def need_disk(directory: Path, nbytes: int) -> None:
    """Skip, naming what is missing, when ``directory``'s file system cannot hold ``nbytes`` more
    (with 256 MiB to spare): the scale tests write gigabytes, and a full disk proves nothing about
    the code under test."""
    import shutil

    import pytest

    free = shutil.disk_usage(directory).free
    if free < nbytes + (256 << 20):
        pytest.skip(f"needs {(nbytes + (256 << 20)) / 2**30:.1f} GiB free in {directory}, "
                    f"has {free / 2**30:.1f} GiB")


def bert_tensors(*, hidden: int, layers: int, inter: int, vocab: int, positions: int,
                 heads: str = "pretraining", seed: int = 0, scale: float = 0.02,
                 slots: bool = True) -> dict[str, np.ndarray]:
    """A Google BERT checkpoint's tensors under modeling.py's names, random: ``heads`` is
    ``pretraining`` (cls/predictions, cls/seq_relationship), ``classifier`` (run_classifier's
    3-label output_weights/output_bias) or ``none``; ``slots`` adds AdamWeightDecay's
    adam_m/adam_v and global_step."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}

    def w(name: str, *shape: int) -> None:
        t[name] = (rng.standard_normal(shape) * scale).astype(np.float32)

    for kind, rows in (("word", vocab), ("position", positions), ("token_type", 2)):
        w(f"bert/embeddings/{kind}_embeddings", rows, hidden)
    w("bert/embeddings/LayerNorm/gamma", hidden)
    w("bert/embeddings/LayerNorm/beta", hidden)
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        for part, n_in, n_out in (
                ("attention/self/query", hidden, hidden), ("attention/self/key", hidden, hidden),
                ("attention/self/value", hidden, hidden),
                ("attention/output/dense", hidden, hidden), ("intermediate/dense", hidden, inter),
                ("output/dense", inter, hidden)):
            w(p + part + "/kernel", n_in, n_out)
            w(p + part + "/bias", n_out)
        for part in ("attention/output/LayerNorm", "output/LayerNorm"):
            w(p + part + "/gamma", hidden)
            w(p + part + "/beta", hidden)
    w("bert/pooler/dense/kernel", hidden, hidden)
    w("bert/pooler/dense/bias", hidden)
    if heads == "pretraining":
        w("cls/predictions/transform/dense/kernel", hidden, hidden)
        w("cls/predictions/transform/dense/bias", hidden)
        w("cls/predictions/transform/LayerNorm/gamma", hidden)
        w("cls/predictions/transform/LayerNorm/beta", hidden)
        w("cls/predictions/output_bias", vocab)
        w("cls/seq_relationship/output_weights", 2, hidden)
        w("cls/seq_relationship/output_bias", 2)
    elif heads == "classifier":
        w("output_weights", 3, hidden)
        w("output_bias", 3)
    if slots:
        for name in list(t):
            t[name + "/adam_m"] = np.zeros_like(t[name])
            t[name + "/adam_v"] = np.ones_like(t[name])
        t["global_step"] = np.array(1000, np.int64)
    return t


def tf_releases(root: Path, cases: dict, seed: int, beside) -> dict[str, tuple[Path, dict]]:
    """Checkpoints written by TensorFlow under a release's names, one per case, in one
    subprocess (tests/tf_hf_writer.py): ``cases`` maps a name to ``(shapes, with_files)``;
    ``beside(directory)`` puts the release's config and tokenizer files beside the cases
    that have ``with_files``. Returns ``{case: (prefix, the arrays saved)}``."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(seed)
    jobs, found = [], {}
    for case, (shapes, with_files) in cases.items():
        d = root / case
        d.mkdir()
        arrays = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
        np.savez(d / "arrays.npz", **arrays)
        if with_files:
            beside(d)
        jobs.append({"npz": str(d / "arrays.npz"), "prefix": str(d / "model.ckpt")})
        found[case] = (d / "model.ckpt", arrays)
    (root / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([sys.executable, str(HERE / "tf_hf_writer.py"), str(root / "jobs.json")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return found


_WRITTEN: dict[str, tuple[Path, dict]] = {}


def written_once(script: str, tmp_path_factory) -> tuple[Path, dict]:
    """Run the fixture script ``script`` (``python SCRIPT OUT``, which writes its files and
    ``OUT/expected.pkl``) once per test session, in a subprocess; its directory and what it
    recorded TensorFlow reading or doing."""
    import pickle
    import subprocess
    import sys

    if script not in _WRITTEN:
        out = tmp_path_factory.mktemp(Path(script).stem)
        subprocess.run([sys.executable, script, str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out / "expected.pkl", "rb") as f:
            _WRITTEN[script] = (out, pickle.load(f))
    return _WRITTEN[script]


def s3_client_for(server, monkeypatch):
    """``(fs, endpoint)`` for a moto server started in this process: test credentials in the
    environment and the endpoint in fsspec's configuration, as a user's would be."""
    import fsspec.config
    import s3fs

    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True), endpoint


def http_server(root: Path, ranges: bool = True, *, cut: int = 0):
    """A static file server on 127.0.0.1 that honours ``Range: bytes=A-B`` (or ignores it).
    It records each GET's ``(path, Range header)`` in ``server.gets``, names its files by
    ``server.url(name)``, and cuts the first ``cut`` ranged answers for a data shard short
    (half the body, then the connection closed), as a lost connection would."""
    import functools
    import http.server
    import re
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            wanted = self.headers.get("Range", "")
            with server.lock:
                server.gets.append((self.path, wanted))
                short = ".data-" in self.path and server.cut > 0
                if short:
                    server.cut -= 1
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
            path = Path(self.translate_path(self.path))
            if not ranges or match is None or not path.is_file():
                return super().do_GET()
            data = path.read_bytes()
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            body = data[start:end]
            self.send_response(206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if short else body)
            if short:
                self.wfile.flush()
                self.close_connection = True

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.gets, server.cut, server.lock = [], cut, threading.Lock()
    server.url = lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


_MEASURED = """
import os, subprocess, sys, tempfile
with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    p = subprocess.Popen([sys.executable, "-m", "converter", *sys.argv[1:]], stdout=out,
                         stderr=err)
    _, status, usage = os.wait4(p.pid, 0)
    out.seek(0)
    err.seek(0)
    print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
    sys.stdout.write(out.read().decode())
    sys.stderr.write(err.read().decode())
"""


def ckpt_peak_rss(*argv: str) -> tuple[int, int, str, str]:
    """``(exit code, peak RSS in bytes, stdout, stderr)`` of ``ckpt ARGV`` run in a fresh
    process. Through a small launcher: a child's peak counts from its parent's size at fork,
    and the test process is large."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _MEASURED, *argv], capture_output=True,
                            text=True, check=True)
    first, _, out = result.stdout.partition("\n")
    code, peak = map(int, first.split())
    return code, peak, out, result.stderr
