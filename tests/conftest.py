"""Shared fixtures. TensorFlow is only imported by tests that need it, once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Before TensorFlow is first imported: tf.keras is tf-keras 2, `import keras` stays Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).parent


def tf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported once for the session (skips cleanly where the extra is absent)."""
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="session")
def tf_fixtures(tmp_path_factory) -> dict[str, dict]:
    """Checkpoints written by TensorFlow itself (tests/tf_fixtures.py, in one subprocess),
    with the values TensorFlow reads back from them."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    out = tmp_path_factory.mktemp("tf_fixtures")
    subprocess.run([sys.executable, str(HERE / "tf_fixtures.py"), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "manifest.json").read_text())


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


@pytest.fixture(scope="session")
def optimizer_fixtures(tmp_path_factory) -> dict[str, dict]:
    """Keras 2 full-model .h5 files, Estimator-style checkpoints of Keras optimizers and a
    zero-size tensor, written by TensorFlow (tests/tf_fixtures_rules.py, in one subprocess)."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    out = tmp_path_factory.mktemp("optimizer_fixtures")
    subprocess.run([sys.executable, str(HERE / "tf_fixtures_rules.py"), str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture
def s3(monkeypatch):
    """An S3 file system against a moto server on 127.0.0.1 (endpoint and test credentials set
    for fsspec too). moto's state outlives its server in one process: use a bucket per test."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    import fsspec.config

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                           ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        yield fs
    finally:
        server.stop()
