"""ckpt verify and ckpt diff."""

from __future__ import annotations

import json

import numpy as np
import pytest

import converter
from converter.cli import main
from tests.helpers import http_server
from tests.samples import sample


@pytest.fixture
def bundle(tmp_path):
    data = sample({"float32", "int64", "string", "bfloat16"})
    converter.write(data, tmp_path / "m.ckpt")
    return tmp_path / "m.ckpt", data


def _flip(path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


def test_verify_clean_and_corrupt(bundle, capsys):
    prefix, data = bundle
    assert main(["verify", str(prefix)]) == 0
    assert f"{len(data)} tensors" in capsys.readouterr().out
    _flip(prefix.with_name("m.ckpt.data-00000-of-00001"), 3)
    assert main(["verify", str(prefix), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    bad = [t for t in report["tensors"] if not t["ok"]]
    assert len(bad) == 1 and "checksum" in bad[0]["error"]
    assert report["ok"] is False


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".h5", ".ckpt"])
def test_verify_truncated_file_is_exit_1(tmp_path, suffix, capsys):
    path = tmp_path / f"m{suffix}"
    converter.write({"a": np.arange(2000, dtype=np.float64)}, path)
    target = path if suffix != ".ckpt" else tmp_path / "m.ckpt.data-00000-of-00001"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    assert main(["verify", str(path)]) == 1
    assert "BAD" in capsys.readouterr().out


def test_verify_api(bundle):
    prefix, data = bundle
    report = converter.verify(prefix)
    assert report.ok and [t.name for t in report.tensors] == list(data)


def test_diff_identical_and_different(tmp_path, bundle, capsys):
    prefix, data = bundle
    converter.convert(prefix, tmp_path / "copy.h5").close()
    assert main(["diff", str(prefix), str(tmp_path / "copy.h5")]) == 0
    assert "0 differ" in capsys.readouterr().out
    changed = dict(data)
    changed["dense/kernel"] = data["dense/kernel"] + np.float32(1e-3)
    del changed["scalar"]
    changed["extra"] = np.zeros(2)
    converter.write(changed, tmp_path / "other.npz")
    assert main(["diff", str(prefix), str(tmp_path / "other.npz"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["only_a"] == ["scalar"] and report["only_b"] == ["extra"]
    (kernel,) = [t for t in report["tensors"] if not t["equal"]]
    assert kernel["name"] == "dense/kernel"
    assert kernel["max_abs"] == pytest.approx(1e-3, rel=1e-2)
    assert main(["diff", str(prefix), str(tmp_path / "other.npz"), "--atol", "1e-2"]) == 1
    out = capsys.readouterr().out
    assert "only in A: scalar" in out and "differs: dense/kernel" not in out


def test_diff_bit_exact_by_default():
    a = {"x": np.array([0.0, np.nan], np.float32)}
    b = {"x": np.array([-0.0, np.nan], np.float32)}
    assert not converter.diff(a, b).equal
    assert converter.diff(a, b, atol=1e-9).equal
    assert converter.diff(a, {"x": a["x"].copy()}).equal
    assert not converter.diff(a, {"x": a["x"].astype(np.float64)}).equal


def test_verify_refuses_no_verify_rather_than_passing_a_corrupt_file(bundle, capsys):
    prefix, _ = bundle
    _flip(prefix.with_name("m.ckpt.data-00000-of-00001"), 3)
    assert main(["verify", str(prefix), "--no-verify"]) == 2
    assert "unrecognized arguments: --no-verify" in capsys.readouterr().err
    assert main(["verify", str(prefix)]) == 1


@pytest.mark.parametrize("name", ["nosuch.npz", "nosuch.ckpt", "nosuch"])
def test_verify_of_a_missing_path_cannot_run(tmp_path, name, capsys):
    assert main(["verify", str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and str(tmp_path / name) in err
    assert "no such file or directory" in err
    with pytest.raises(converter.FormatError, match="no such file"):
        converter.verify(tmp_path / name)


def test_verify_names_a_missing_shard_by_its_path(tmp_path, capsys):
    data = {f"v{i}": np.arange(100, dtype=np.float32) + i for i in range(4)}
    converter.write(data, tmp_path / "m.ckpt", format="tf", max_shard_size=800)
    shards = sorted(tmp_path.glob("m.ckpt.data-*"))
    assert len(shards) > 1
    shards[1].unlink()
    assert main(["verify", str(tmp_path / "m.ckpt")]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert bad and all(str(shards[1]) in line and "[Errno" not in line for line in bad), out


def test_a_truncated_safetensors_header_is_named_as_such(tmp_path, capsys):
    path = tmp_path / "t.safetensors"
    converter.write({f"w{i}": np.zeros(3, np.float32) for i in range(40)}, path)
    head = path.read_bytes()
    path.write_bytes(head[:int.from_bytes(head[:8], "little") // 2])  # inside the header
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "header" in err and "known format" not in err, err
    assert main(["verify", str(path)]) == 1
    assert "header" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["nosuch.npz", "nosuch.ckpt"])
def test_verify_of_a_missing_remote_path_cannot_run_as_a_local_one(tmp_path, name, capsys):
    srv = http_server(tmp_path, ranges=True)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{name}"
        assert main(["verify", url]) == 2, capsys.readouterr()
    finally:
        srv.shutdown()


@pytest.mark.parametrize("data", [b"", b"\x00" * 4])
def test_an_empty_or_cut_safetensors_verifies_bad_as_the_same_object_remotely(
        tmp_path, data, capsys):
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    srv = http_server(tmp_path, ranges=True)
    try:
        remote = main(["verify", f"http://127.0.0.1:{srv.server_address[1]}/w.safetensors"])
    finally:
        srv.shutdown()
    local = main(["verify", str(path)])
    assert local == remote, (local, remote, capsys.readouterr())


def test_verify_false_cannot_make_the_api_verify_pass_a_corrupt_bundle(tmp_path):
    # The CLI no longer takes --no-verify; converter.verify(..., verify=False) still says ok.
    converter.write({"a": np.arange(1000, dtype=np.float32)}, tmp_path / "c.ckpt", format="tf")
    shard = tmp_path / "c.ckpt.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    assert not converter.verify(tmp_path / "c.ckpt").ok
    try:
        report = converter.verify(tmp_path / "c.ckpt", verify=False)
    except converter.UsageError:
        return
    assert not report.ok


def test_diff_of_a_tf2_bundle_and_its_conversion_leaves_the_object_graph_out(
        tf_fixtures, tmp_path, capsys):
    prefix = tf_fixtures["tf2_keras"]["prefix"]
    converter.convert(prefix, tmp_path / "w.safetensors").close()
    assert main(["diff", prefix, str(tmp_path / "w.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "left out: _CHECKPOINTABLE_OBJECT_GRAPH" in out and "0 only in A" in out, out
    assert main(["diff", prefix, prefix, "--json"]) == 0  # both have one: compared
    report = json.loads(capsys.readouterr().out)
    assert report["left_out"] == [] and "_CHECKPOINTABLE_OBJECT_GRAPH" in [
        t["name"] for t in report["tensors"]]
