"""``ckpt diff``: every flag its ``--help`` lists does what it says; rename rules apply to A
only (B keeps its names, and a rule is not run over B to warn about what B lacks)."""

from __future__ import annotations

import json
import re

import ml_dtypes
import numpy as np
import pytest

import converter
from converter.cli import build_parser, main

K = np.arange(1, 13, dtype=np.float32).reshape(3, 4) / 8
S = np.full(4, 0.25, np.float32)
STEP = np.array(7, np.int64)
A = {"net/dense/kernel": K, "net/dense/kernel/Adam": S, "global_step": STEP}


def _run(tmp_path, b: dict, *flags: str) -> int:
    converter.write(A, tmp_path / "a.safetensors", force=True)
    converter.write(b, tmp_path / "b.npz", force=True)
    return main(["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.npz"), *flags])


def _files(tmp_path) -> dict[str, str]:
    (tmp_path / "names.json").write_text(json.dumps({"net/dense/kernel": "kernel"}))
    (tmp_path / "r.toml").write_text('[[rule]]\npreset = "drop-optimizer"\n\n'
                                     '[[rule]]\nstrip_prefix = "net/"\n')
    return {"MAP": str(tmp_path / "names.json"), "RULES": str(tmp_path / "r.toml")}


# flag -> (its arguments, B that A matches only with the flag)
CASES = {
    "--rename": (["^net/=model/"], {"model/dense/kernel": K, "model/dense/kernel/Adam": S,
                                    "global_step": STEP}),
    "--map": (["net/dense/kernel=kernel"], {"kernel": K, "net/dense/kernel/Adam": S,
                                            "global_step": STEP}),
    "--map-file": (["MAP"], {"kernel": K, "net/dense/kernel/Adam": S, "global_step": STEP}),
    "--only": (["net/dense/kernel"], {"net/dense/kernel": K}),
    "--exclude": (["*/Adam"], {"net/dense/kernel": K, "global_step": STEP}),
    "--strip-prefix": (["net/"], {"dense/kernel": K, "dense/kernel/Adam": S,
                                  "global_step": STEP}),
    "--add-prefix": (["m/"], {"m/net/dense/kernel": K, "m/net/dense/kernel/Adam": S,
                              "m/global_step": STEP}),
    "--preset": (["drop-optimizer"], {"net/dense/kernel": K}),
    "--cast": (["float32:bfloat16"], {"net/dense/kernel": K.astype(ml_dtypes.bfloat16),
                                      "net/dense/kernel/Adam": S.astype(ml_dtypes.bfloat16),
                                      "global_step": STEP}),
    "--rules": (["RULES"], {"dense/kernel": K}),
    "--rtol": (["1e-6"], {"net/dense/kernel": K * np.float32(1 + 2**-22),
                          "net/dense/kernel/Adam": S, "global_step": STEP}),
    "--atol": (["1e-6"], {"net/dense/kernel": K + np.float32(2**-22),
                          "net/dense/kernel/Adam": S, "global_step": STEP}),
}
OTHER_FLAGS = {"-h", "--help", "--json", "--strict-rules",  # tested below
               "--storage-option",  # tests/test_remote.py
               "--html", "--force"}  # tests/test_diff_html.py


def _help() -> str:
    sub = build_parser()._subparsers._group_actions[0].choices["diff"]
    return sub.format_help()


def test_every_flag_in_help_is_tested_and_dry_run_is_gone():
    text = _help()
    flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text.split("examples:")[0]))
    assert "--dry-run" not in flags
    assert flags == set(CASES) | OTHER_FLAGS, flags ^ (set(CASES) | OTHER_FLAGS)
    assert "applied to A only" in " ".join(text.split())


@pytest.mark.parametrize("flag", sorted(CASES))
def test_each_flag_does_what_it_says(tmp_path, capsys, flag):
    args, b = CASES[flag]
    args = [_files(tmp_path).get(a, a) for a in args]
    assert _run(tmp_path, b) == 1  # without the flag, A and B differ
    capsys.readouterr()
    assert _run(tmp_path, b, flag, *args) == 0
    out, err = capsys.readouterr()
    assert err == ""  # in particular no rule "matched nothing" from being run over B
    assert out.endswith(f"{len(b)} equal, 0 differ, 0 only in A, 0 only in B\n")


def test_rules_rename_a_only(tmp_path, capsys):
    b = {"kernel": K, "net/dense/kernel/Adam": S, "global_step": STEP}
    # Run over B too, this map would find no 'net/dense/kernel' there and warn.
    assert _run(tmp_path, b, "--map", "net/dense/kernel=kernel") == 0
    assert "warning" not in capsys.readouterr().err
    # B is read as it is: renaming what B calls 'kernel' does nothing to it.
    assert _run(tmp_path, b, "--map", "kernel=other") == 1
    captured = capsys.readouterr()
    assert "'kernel' matched no tensor" in captured.err
    assert "only in A: net/dense/kernel" in captured.out and "only in B: kernel" in captured.out


def test_strict_rules(tmp_path, capsys):
    b = dict(A)
    assert _run(tmp_path, b, "--exclude", "nothing*") == 0
    assert "ckpt: warning: rule 1 (exclude 'nothing*'): 'nothing*' matched nothing" in \
        capsys.readouterr().err
    assert _run(tmp_path, b, "--exclude", "nothing*", "--strict-rules") == 2
    err = capsys.readouterr().err
    assert err.startswith("ckpt: error: rule 1") and err.count("\n") == 1


def test_json(tmp_path, capsys):
    b = {"net/dense/kernel": K + 1, "global_step": STEP, "extra": S}
    assert _run(tmp_path, b, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["equal"] is False
    assert report["only_a"] == ["net/dense/kernel/Adam"] and report["only_b"] == ["extra"]
    kernel = next(t for t in report["tensors"] if t["name"] == "net/dense/kernel")
    assert kernel["equal"] is False and kernel["max_abs"] == 1.0
    assert _run(tmp_path, dict(A), "--json") == 0
    assert json.loads(capsys.readouterr().out)["equal"] is True


def test_dry_run_is_refused(tmp_path, capsys):
    assert _run(tmp_path, dict(A), "--dry-run") == 2
    assert "unrecognized arguments: --dry-run" in capsys.readouterr().err


def test_byte_order_is_not_a_difference(tmp_path, capsys):
    # numpy keeps a big-endian array as it is; every writer stores it little-endian.
    values = (np.arange(1, 6, dtype=np.float32) / 3).astype(">f4")
    np.savez(tmp_path / "be.npz", be=values)
    assert main(["convert", str(tmp_path / "be.npz"), str(tmp_path / "le.npz"), "-q"]) == 0
    assert np.load(tmp_path / "le.npz")["be"].dtype == np.dtype("<f4")
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "be.npz"), str(tmp_path / "le.npz")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 equal, 0 differ, 0 only in A, 0 only in B"
    other = values.astype("<f4")
    other[2] = 7
    np.savez(tmp_path / "other.npz", be=other)
    assert main(["diff", str(tmp_path / "be.npz"), str(tmp_path / "other.npz"), "--json"]) == 1
    row = json.loads(capsys.readouterr().out)["tensors"][0]
    assert row["dtype"] is None and row["max_abs"] == 7 - float(values[2])
