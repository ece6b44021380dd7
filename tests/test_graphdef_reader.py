"""The ``graphdef`` reader: frozen graphs written by TensorFlow (tests/tf_fixtures_graphs.py),
every constant equal, bit for bit, to what a TensorFlow session computes from the same file, and
every frozen variable to the variable's value."""

from __future__ import annotations

import json
import math
import os
import resource

import numpy as np
import pytest

import converter
from converter import registry
from converter.cli import main
from converter.errors import FormatError, UsageError
from tests.helpers import assert_same, tf_available

GRAPHS = ["frozen_tf1", "frozen_v2", "unpacked", "cond_functions", "cond_lowered", "nested",
          "defun"]
WITH_VARIABLES = ["frozen_tf1", "frozen_v2", "cond_functions", "cond_lowered", "nested"]


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_graphs import built

    return built(tmp_path_factory)


def _bits(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.hasobject else array.reshape(-1).view(np.uint8)


@pytest.mark.parametrize("name", GRAPHS)
def test_every_constant_equals_what_tensorflow_computes(written, name):
    out, expected = written
    consts = expected[name]["consts"]
    with converter.read(out / f"{name}.pb") as ckpt:
        assert ckpt.source.format == "graphdef"
        assert sorted(ckpt) == sorted(consts)
        for key, value in consts.items():
            ours = ckpt[key].read()
            assert ours.dtype == value.dtype and ours.shape == value.shape, key
            assert ckpt[key].shape == value.shape and ckpt[key].dtype == value.dtype, key
            if value.dtype.hasobject:
                assert ours.tolist() == value.tolist(), key
            else:
                assert np.array_equal(_bits(ours), _bits(value)), key


@pytest.mark.parametrize("name", WITH_VARIABLES)
def test_frozen_variables_equal_the_variables_bit_for_bit(written, name):
    out, expected = written
    variables = expected[name]["variables"]
    with converter.read(out / f"{name}.pb") as ckpt:
        for key, value in variables.items():
            assert ckpt[key].kind == "variable", key
            assert_same(ckpt[key].read(), value, key)
            assert np.array_equal(_bits(ckpt[key].read()), _bits(value)), key
        others = {k for k, t in ckpt.items() if t.kind == "variable"} - set(variables)
        assert not others


def test_tf1_variables_keep_their_names_and_dtypes(written):
    out, expected = written
    with converter.read(out / "frozen_tf1.pb") as ckpt:
        assert {"dense/kernel", "dense/bias", "ref/kernel", "res/w"} <= set(ckpt)
        assert "ref/kernel/read" not in ckpt
        dtypes = {k: converter.dtypes.name_of(t.dtype) for k, t in ckpt.items()}
    assert dtypes["half"] == "float16" and dtypes["steps"] == "int64"
    assert "bfloat16" in dtypes.values() and "string" in dtypes.values()
    consts = expected["frozen_tf1"]["consts"]
    broadcast = [k for k, v in consts.items() if v.shape == (5,) and v.dtype == np.float32
                 and np.all(v == 0.5)]
    assert broadcast  # tf.constant(0.5, shape=[5]) stores one float_val


@pytest.mark.parametrize("name", ["cond_functions", "defun"])
def test_library_constants_are_named_after_their_function(written, name):
    out, expected = written
    wanted = expected[name]["in_functions"]
    with converter.read(out / f"{name}.pb") as ckpt:
        inside = {k: t for k, t in ckpt.items() if "function" in t.attrs}
        assert sorted(inside) == sorted(wanted)
        assert all(k.startswith(t.attrs["function"] + "/") for k, t in inside.items())
        assert all(t.kind == "other" for t in inside.values())
        assert int(ckpt.source.facts["functions"]) >= 1
    if name == "cond_functions":  # the then-branch and the loop body keep their constants
        assert any(k.startswith("cond_true_") and k.endswith("/cond/Const") for k in wanted)
        assert any(k.startswith("while_body_") and k.endswith("/while/Const") for k in wanted)


def test_a_library_constant_named_like_a_graph_node_is_refused(written, tmp_path, capsys):
    from converter.proto import encode

    out, expected = written
    data = (out / "defun.pb").read_bytes()
    [inside] = expected["defun"]["in_functions"]
    value = encode([(1, b"value"), (2, encode([(8, encode([(1, 1), (5, ("fixed32", 0))]))]))])
    clash = tmp_path / "clash.pb"
    clash.write_bytes(data + encode([(1, encode([(1, inside.encode()), (2, b"Const"),
                                                 (5, value)]))]))
    err = _one_line_error(capsys, ["inspect", str(clash)])
    assert f"two nodes named {inside!r}" in err and "clash.pb" in err
    twice = tmp_path / "twice.pb"  # the same library twice: each function listed twice
    library = next(v for k, v in _fields(data) if k == 2)
    twice.write_bytes(data + encode([(2, library)]))
    assert "two nodes named" in _one_line_error(capsys, ["inspect", str(twice)])
    nameless = tmp_path / "nameless.pb"
    nameless.write_bytes(data + encode([(2, encode([(1, b"")]))]))
    assert "without a name" in _one_line_error(capsys, ["inspect", str(nameless)])


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    from converter import proto

    return [(k, v) for k, values in proto.decode(data).items() for v in values]


def test_content_constants_are_file_spans(written):
    out, _ = written
    path = out / "frozen_tf1.pb"
    data = path.read_bytes()
    with converter.read(path) as ckpt:
        kernel = ckpt["dense/kernel"]
        assert kernel.span is not None and kernel.span[0] == str(path)
        _, offset, nbytes = kernel.span
        assert data[offset:offset + nbytes] == kernel.read().tobytes()


def test_min_size_leaves_out_small_constants(written, capsys):
    out, expected = written
    path = out / "frozen_tf1.pb"
    consts = expected["frozen_tf1"]["consts"]
    with converter.read(path, min_size=5) as ckpt:
        assert sorted(ckpt) == sorted(k for k, v in consts.items() if v.size >= 5)
        assert "left out" in ckpt.source.facts
    assert main(["inspect", str(path), "--min-size", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in report["tensors"]} == {k for k, v in consts.items() if v.size >= 2}
    with pytest.raises(UsageError, match="min_size"):
        converter.read(path, min_size=-1)


def test_sniffed_by_suffix_and_content(written, tmp_path):
    out, _ = written
    assert registry.detect(out / "frozen_v2.pb").name == "graphdef"
    assert registry.get("graphdef").can_write is False
    with pytest.raises(UsageError, match="read but not written"):
        converter.write({"w": np.ones(2)}, tmp_path / "x.pb")


@pytest.mark.parametrize("to,suffix", [("npz", ".npz"), ("safetensors", ".safetensors"),
                                       ("hdf5", ".h5"), ("tf", "")])
@pytest.mark.parametrize("name", ["frozen_v2", "frozen_tf1", "cond_functions"])
def test_every_writer_converts_a_frozen_graph(written, tmp_path, capsys, to, suffix, name):
    out, expected = written
    consts = expected[name]["consts"]
    args = []
    if to == "safetensors":  # safetensors holds no strings
        args = [a for k, v in consts.items() if v.dtype.hasobject for a in ("--exclude", k)]
    dst = tmp_path / f"weights{suffix}" if suffix else tmp_path / "model.ckpt"
    assert main(["convert", str(out / f"{name}.pb"), str(dst), "--to", to, *args]) == 0
    with converter.read(dst) as back:
        wanted = {k: v for k, v in consts.items() if not (to == "safetensors"
                                                         and v.dtype.hasobject)}
        assert sorted(back) == sorted(wanted)
        for key, value in wanted.items():
            ours = back[key].read()
            if value.dtype.hasobject:
                assert ours.tolist() == value.tolist()
            else:
                assert ours.dtype == value.dtype
                assert np.array_equal(_bits(ours), _bits(value)), key


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.77, 0.999])
def test_truncated_pb_is_a_one_line_format_error(written, tmp_path, capsys, fraction):
    out, _ = written
    data = (out / "frozen_tf1.pb").read_bytes()
    bad = tmp_path / "cut.pb"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(FormatError, match="cut.pb"):
        with converter.read(bad) as ckpt:
            for t in ckpt.values():
                t.read()
    assert "cut.pb" in _one_line_error(capsys, ["inspect", str(bad)])


def test_corrupted_pb_files_give_clean_errors(written, tmp_path):
    out, _ = written
    data = (out / "frozen_tf1.pb").read_bytes()
    rng = np.random.default_rng(1919)
    for i in range(60):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            mutated[pos] = int(rng.integers(0, 256))
        bad = tmp_path / f"m{i}.pb"
        bad.write_bytes(bytes(mutated))
        try:
            with converter.read(bad, format="graphdef") as ckpt:
                for t in ckpt.values():
                    t.read()
        except FormatError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc)


def _graph(tensor: bytes) -> bytes:
    from converter.proto import encode

    value = encode([(1, b"value"), (2, encode([(8, tensor)]))])
    return encode([(1, encode([(1, b"c"), (2, b"Const"), (5, value)]))])


def test_huge_declared_shape_is_refused_before_anything_is_allocated(tmp_path, capsys):
    from converter.proto import encode, encode_shape

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # One float broadcast to 2**40 elements: TensorFlow would fill 4 TiB.
    broadcast = tmp_path / "broadcast.pb"
    broadcast.write_bytes(_graph(encode([(1, 1), (2, encode_shape((2**20, 2**20))),
                                         (5, ("fixed32", 0x3F800000))])))
    assert "would take" in _one_line_error(capsys, ["inspect", str(broadcast)])
    # tensor_content shorter than the shape it declares.
    short = tmp_path / "short.pb"
    short.write_bytes(_graph(encode([(1, 1), (2, encode_shape((2**31, 2**10))),
                                     (4, b"\0" * 64)])))
    assert "tensor_content holds 64 bytes" in _one_line_error(capsys, ["inspect", str(short)])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_over_two_gib_is_refused_in_one_line(tmp_path, capsys):
    big = tmp_path / "big.pb"
    with open(big, "wb") as f:
        f.write(b"\x0a")
        f.truncate(2**31)  # sparse: no disk used
    err = _one_line_error(capsys, ["inspect", str(big)])
    assert "2 GiB" in err and "big.pb" in err


def test_saved_model_pb_points_to_its_directory(written, capsys):
    out, _ = written
    err = _one_line_error(capsys, ["inspect", str(out / "module_sm" / "saved_model.pb")])
    assert "SavedModel" in err and str(out / "module_sm") in err


def test_empty_and_not_a_graph(tmp_path, capsys):
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(capsys, ["inspect", str(empty)])
    text = tmp_path / "text.pb"
    text.write_bytes(b'\x0a\x04node{name: "x"}')
    assert "text.pb" in _one_line_error(capsys, ["inspect", str(text)])


def test_listing_reads_no_values(written, monkeypatch):
    out, _ = written
    from converter.graphs import tensorproto

    def boom(*args):
        raise AssertionError("listing decoded values")

    monkeypatch.setattr(tensorproto, "values", boom)
    with converter.read(out / "frozen_tf1.pb") as ckpt:
        assert math.prod(ckpt["dense/kernel"].shape) == 20
    assert os.path.exists(out / "frozen_tf1.pb")
