"""SavedModel tags and signatures, decoded from ``saved_model.pb`` without TensorFlow, checked
against what TensorFlow reports for SavedModels it wrote (tests/tf_fixtures_graphs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import converter
from converter import graphs
from converter.cli import main
from converter.errors import FormatError, UsageError
from tests.helpers import assert_same, tf_available

SAVED_MODELS = ["module_sm", "keras_sm"]


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_graphs import built

    return built(tmp_path_factory)


def _ours(model: graphs.SavedModel) -> list[dict]:
    return [{"tags": list(g.tags), "tensorflow_version": g.tensorflow_version,
             "signatures": {s.name: {"method": s.method,
                                     **{what: {t.key: {"name": t.name, "dtype": t.dtype,
                                                       "shape": None if t.shape is None
                                                       else list(t.shape),
                                                       "encoding": t.encoding}
                                               for t in infos}
                                        for what, infos in (("inputs", s.inputs),
                                                            ("outputs", s.outputs))}}
                            for s in g.signatures}}
            for g in model.meta_graphs]


_TF_NAMES = {"float16": "float16", "half": "float16"}


@pytest.mark.parametrize("name", SAVED_MODELS)
def test_signatures_are_those_of_the_meta_graph_def(written, name):
    out, expected = written
    model = graphs.saved_model(out / name)
    meta = expected[name]["meta"]
    assert model.schema_version == meta["schema_version"]
    assert _ours(model) == meta["meta_graphs"]
    # The file itself names the same SavedModel.
    assert _ours(graphs.saved_model(out / name / "saved_model.pb")) == meta["meta_graphs"]


@pytest.mark.parametrize("name", SAVED_MODELS)
def test_signatures_match_what_tensorflow_loads(written, name):
    out, expected = written
    ours = graphs.signatures(out / name)
    loaded = expected[name]["loaded"]
    # tf.saved_model.load lists the callable signatures, not the init op's.
    assert sorted(loaded) == sorted(n for n in ours if not n.startswith("__"))
    for sig_name, sig in loaded.items():
        for what in ("inputs", "outputs"):
            infos = {t.key: t for t in getattr(ours[sig_name], what)}
            assert sorted(infos) == sorted(sig[what])
            for key, (dtype, shape) in sig[what].items():
                assert infos[key].dtype == _TF_NAMES.get(dtype, dtype)
                assert infos[key].shape == (None if shape is None else
                                            tuple(-1 if d is None else d for d in shape))


def test_module_with_two_signatures(written):
    out, _ = written
    sigs = graphs.signatures(out / "module_sm", tags="serve")
    assert {"serving_default", "lookup"} <= set(sigs)
    serving = sigs["serving_default"]
    assert serving.method == "tensorflow/serving/predict"
    assert [(t.key, t.dtype, t.shape) for t in serving.inputs] == [("x", "float32", (-1, 3))]
    assert [t.key for t in serving.outputs] == ["bf", "y"]
    lookup = {t.key: t for t in sigs["lookup"].inputs}
    assert (lookup["ids"].dtype, lookup["ids"].shape) == ("int64", (2,))
    assert (lookup["label"].dtype, lookup["label"].shape) == ("string", None)
    with pytest.raises(UsageError, match="no MetaGraph tagged gpu,serve"):
        graphs.signatures(out / "module_sm", tags=["serve", "gpu"])


@pytest.mark.parametrize("name", SAVED_MODELS)
def test_variables_equal_tensorflows_reader(written, name):
    out, expected = written
    with converter.read(out / name) as ckpt:
        assert ckpt.source.saved_model == str(out / name)
        for key, value in expected[name]["variables"].items():
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH":
                assert_same(ckpt[key].read(), value, key)


def test_inspect_lists_tags_and_signatures(written, capsys):
    out, expected = written
    assert main(["inspect", str(out / "module_sm")]) == 0
    text = capsys.readouterr().out
    assert "MetaGraph tags: serve" in text
    assert "signature 'lookup': tensorflow/serving/predict" in text
    assert "input  x: float32 [-1, 3] (serving_default_x:0)" in text
    assert "input  label: string unknown rank (lookup_label:0)" in text
    assert main(["inspect", str(out / "keras_sm"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"]["saved_model"] == str(out / "keras_sm")
    [graph] = report["meta_graphs"]
    assert graph["tags"] == ["serve"]
    sigs = {s["name"]: s for s in graph["signatures"]}
    wanted = expected["keras_sm"]["meta"]["meta_graphs"][0]["signatures"]["serving_default"]
    assert {t["key"]: t["shape"] for t in sigs["serving_default"]["inputs"]} == \
        {k: v["shape"] for k, v in wanted["inputs"].items()}


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("cut", [1, 7, 0.5, -3])
def test_truncated_saved_model_pb_is_one_line_error(written, tmp_path, capsys, cut):
    out, _ = written
    directory = _copy(out / "module_sm", tmp_path / "sm")
    pb = directory / "saved_model.pb"
    data = pb.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    pb.write_bytes(data[:n])
    with pytest.raises(FormatError, match="saved_model.pb: not a SavedModel"):
        graphs.saved_model(directory)
    assert main(["inspect", str(directory)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "saved_model.pb" in err


def test_corrupt_lengths_never_run_past_the_file(written, tmp_path):
    out, _ = written
    data = bytearray((out / "module_sm" / "saved_model.pb").read_bytes())
    rng = np.random.default_rng(19)
    for i in range(40):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), 4):
            mutated[pos] = int(rng.integers(0, 256))
        pb = tmp_path / f"m{i}" / "saved_model.pb"
        pb.parent.mkdir()
        pb.write_bytes(bytes(mutated))
        try:
            graphs.saved_model(pb.parent)
        except FormatError as exc:
            assert "\n" not in str(exc) and str(pb) in str(exc)


def test_no_saved_model_pb(tmp_path):
    with pytest.raises(FormatError, match="saved_model.pb: no such file"):
        graphs.saved_model(tmp_path)
