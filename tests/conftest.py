"""Shared fixtures (helpers that are not fixtures live in tests/helpers.py). TensorFlow is only
imported by tests that need it, once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HERE, s3_client_for, tf_available

# Before TensorFlow is first imported: tf.keras is tf-keras 2, `import keras` stays Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



@pytest.fixture(scope="session")
def keras_files(tmp_path_factory) -> Path:
    """Files written by Keras itself (tests/keras_fixtures.py, in one subprocess)."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    out = tmp_path_factory.mktemp("keras_files")
    subprocess.run([sys.executable, str(HERE / "keras_fixtures.py"), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


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


@pytest.fixture(scope="module")
def fresh_tf_keras_names(tf):
    """Later test modules expect tf.keras auto names counted from scratch (``dense``, not
    ``dense_7``): a module that builds tf.keras models uses this to reset tf.keras's counters
    when it is done (``pytestmark = pytest.mark.usefixtures("fresh_tf_keras_names")``)."""
    yield
    tf.keras.backend.clear_session()


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
    pytest.importorskip("s3fs")

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield s3_client_for(server, monkeypatch)[0]
    finally:
        server.stop()
