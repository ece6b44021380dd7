"""A MetaGraphDef's variables (``ckpt inspect FILE.meta``, ``converter.graphs.meta_graph``),
decoded without TensorFlow and checked against what ``tf.compat.v1.train.import_meta_graph``
gives for graphs TensorFlow wrote (tests/tf_fixtures_plan.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converter import graphs
from converter.cli import main
from converter.errors import FormatError
from converter.graphs.metagraph import saved_model_variables
from tests.helpers import tf_available
from tests.tf_fixtures_plan import VARIANTS


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_plan import built

    return built(tmp_path_factory)


def _meta(out: Path, name: str) -> Path:
    return out / ("base.ckpt.meta" if name == "base" else f"{name}.meta")


def _ours(graph: graphs.MetaGraphVariables) -> list[dict]:
    return [{k: v for k, v in d.items() if k not in ("op", "resource")}
            for d in graph.as_dict()["variables"]]


@pytest.mark.parametrize("name", ["base", *VARIANTS])
def test_variables_are_those_tensorflow_imports(written, name):
    out, expected = written
    graph = graphs.meta_graph(_meta(out, name))
    assert _ours(graph) == expected[name]["variables"]
    assert graph.tensorflow_version  # meta_info_def, written by every Saver
    assert graph.checkpoint_names() == list(expected[name]["entries"])


def test_ops_and_resource_variables(written):
    out, _ = written
    by_name = {v.name: v for v in graphs.meta_graph(_meta(out, "base")).variables}
    assert (by_name["r"].op, by_name["r"].resource) == ("VarHandleOp", True)
    assert (by_name["enc/w"].op, by_name["enc/w"].resource) == ("VariableV2", False)


def test_saved_model_meta_graph(written):
    out, expected = written
    graph = saved_model_variables(out / "sm_tf1")
    assert graph.tags == ("serve",) and graph.has_collection
    assert _ours(graph) == expected["base"]["variables"]
    stripped = saved_model_variables(out / "sm_stripped")
    assert not stripped.has_collection and stripped.variables == ()


def test_creation_order_reads_through_the_same_decoder(written):
    from converter.loaders.order import meta_variables

    out, expected = written
    assert meta_variables(_meta(out, "repartitioned")) == list(
        expected["repartitioned"]["entries"])


def test_cli_lists_the_variables(written, capsys):
    out, expected = written
    meta = _meta(out, "base")
    assert main(["inspect", str(meta)]) == 0
    text = capsys.readouterr().out
    for v in expected["base"]["variables"]:
        assert any(line.split()[:1] == [v["name"]] for line in text.splitlines()), v["name"]
    assert "part of emb [10, 4] at [5, 0], length [5, 4]" in text
    assert "8 variables (7 checkpoint names)" in text
    assert main(["inspect", str(meta), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["format"] == "metagraph" and listed["count"] == 8
    assert [{k: v for k, v in d.items() if k not in ("op", "resource")}
            for d in listed["variables"]] == expected["base"]["variables"]


def test_cli_refuses_values_of_a_graph(written, capsys):
    out, _ = written
    assert main(["inspect", str(_meta(out, "base")), "--stats"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no values" in err


def _corrupt(data: bytes) -> list[bytes]:
    cuts = [data[:n] for n in (1, 2, 7, len(data) // 3, len(data) // 2, len(data) - 1)]
    flipped = bytearray(data)
    flipped[1] = 0xFF  # the first field's length, now past the file
    return [*cuts, bytes(flipped)]


def test_corrupt_meta_is_one_line_exit_2(written, tmp_path, capsys):
    out, _ = written
    data = _meta(out, "base").read_bytes()
    for i, bad in enumerate(_corrupt(data)):
        meta = tmp_path / f"bad{i}.meta"
        meta.write_bytes(bad)
        for argv in (["inspect", str(meta)],
                     ["plan", str(out / "base.ckpt"), "--target", str(meta)]):
            assert main(argv) == 2, (i, argv)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"ckpt: error: {meta}: "), err
        with pytest.raises(FormatError, match="not a MetaGraphDef"):
            graphs.meta_graph(meta)
