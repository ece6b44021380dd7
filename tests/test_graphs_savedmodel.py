"""SavedModel tags and signatures, decoded from ``saved_model.pb`` without TensorFlow, checked
against what TensorFlow reports for SavedModels it wrote (tests/tf_fixtures_graphs.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import converter
from converter import graphs
from converter.cli import main
from converter.errors import FormatError, UsageError
from tests.helpers import assert_same, tf_available

SAVED_MODELS = ["module_sm", "keras_sm", "tf1_sm"]
TF2_SAVED_MODELS = ["module_sm", "keras_sm"]


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


@pytest.mark.parametrize("name", TF2_SAVED_MODELS)
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


def _cli_listing(text: str) -> list:
    """``saved_model_cli show --all``'s MetaGraphs, signatures and tensors, in its order:
    ``[(tags, [(signature, method, [(what, key, dtype, shape, name)])])]``."""
    graphs, tensor = [], None
    for line in text.splitlines():
        if m := re.match(r"MetaGraphDef with tag-set: '(.*)' contains", line):
            graphs.append((m[1], []))
        elif m := re.match(r"signature_def\['(.*)'\]:$", line):
            graphs[-1][1].append([m[1], None, []])
        elif m := re.match(r"    (input|output)s\['(.*)'\] tensor_info:$", line):
            tensor = [m[1], m[2]]
            graphs[-1][1][-1][2].append(tensor)
        elif m := re.match(r" {8}(dtype|shape|name): ?(.*)$", line):
            tensor.append(m[2])
        elif m := re.match(r"  Method name is: (.*)$", line):
            graphs[-1][1][-1][1] = m[1]
    return [(tags, [(n, method, [tuple(t) for t in ts]) for n, method, ts in sigs])
            for tags, sigs in graphs]


def _our_listing(text: str) -> list:
    """The same from ``ckpt inspect DIR``, in saved_model_cli's spelling: DT_ dtypes (through
    TensorFlow's enum), shapes as tuples, a sparse tensor's name blank."""
    from tensorflow.core.framework import types_pb2

    from converter.graphs.tensorproto import DT_NAMES, OTHER_NAMES

    enum = {name: e for e, name in {**DT_NAMES, **OTHER_NAMES}.items()}
    graphs = []
    for line in text.splitlines():
        if m := re.match(r"MetaGraph tags: (.*?)(?: \(TensorFlow .*\))?$", line):
            graphs.append((m[1], []))
        elif m := re.match(r"  signature '(.*)'(?:: (.*))?$", line):
            graphs[-1][1].append((m[1], m[2] or "", []))
        elif m := re.match(r"    (input|output) +(\S+): (\S+) (\[.*\]|unknown rank) \((.*)\)$",
                           line):
            what, key, dtype, shape, name = m.groups()
            shape = "unknown_rank" if shape == "unknown rank" else \
                "(" + shape[1:-1] + ")"
            name = "" if name.endswith(", coo_sparse") else name
            graphs[-1][1][-1][2].append((what, key, types_pb2.DataType.Name(enum[dtype]),
                                         shape, name))
    return graphs


@pytest.mark.parametrize("name", SAVED_MODELS)
def test_inspect_lists_what_saved_model_cli_shows(written, capsys, name):
    out, expected = written
    theirs = _cli_listing(expected[name]["cli"])
    assert theirs and all(sigs for _, sigs in theirs)
    assert main(["inspect", str(out / name)]) == 0
    assert _our_listing(capsys.readouterr().out) == theirs


def test_tf1_export_lists_its_tag_sets_and_estimator_signatures(written, capsys):
    out, expected = written
    model = graphs.saved_model(out / "tf1_sm")
    assert [g.tags for g in model.meta_graphs] == [("serve",), ("eval",)]  # as written
    sigs = graphs.signatures(out / "tf1_sm")  # the serve MetaGraph's
    assert {n: s.method for n, s in sigs.items()} == {
        "classification": "tensorflow/serving/classify",
        "regression": "tensorflow/serving/regress",
        "serving_default": "tensorflow/serving/predict", "sparse": "tensorflow/serving/predict"}
    [ids] = sigs["sparse"].inputs
    assert (ids.encoding, ids.dtype, ids.shape) == ("coo_sparse", "int64", (-1, 5))
    assert [t.name for t in sigs["classification"].inputs] == ["examples:0"]
    assert list(graphs.signatures(out / "tf1_sm", tags="eval")) == ["predict"]
    with converter.read(out / "tf1_sm") as ckpt:
        kinds = {k: t.kind for k, t in ckpt.items()}
    assert kinds == {"dense/kernel": "variable", "dense/bias": "variable", "half": "variable",
                     "global_step": "counter"}


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
