"""Consecutive exact maps act as one simultaneous map: they can swap and rotate names, from
flags, TOML or code, and still refuse collisions."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.cli.rule_args import add_rule_args, rules_from_args
from converter.errors import RenameError
from converter.rules import Map, Rules
from tests.helpers import assert_same

NAMES = ["a", "b", "c", "keep"]


def _arrays() -> dict[str, np.ndarray]:
    return {n: np.full(2, i, np.float32) for i, n in enumerate(NAMES)}


def _names(rules: Rules) -> dict[str, str]:
    return rules.plan(NAMES).names


def test_two_maps_swap_names():
    got = Rules().map({"a": "b"}).map({"b": "a"})
    assert _names(got) == {"b": "a", "a": "b", "c": "c", "keep": "keep"}
    out = got.apply(_arrays())
    assert_same(out["b"].read(), _arrays()["a"])
    assert_same(out["a"].read(), _arrays()["b"])


def test_three_maps_rotate_names():
    rules = Rules().map({"a": "b"}).map({"b": "c"}).map({"c": "a"})
    assert _names(rules) == {"b": "a", "c": "b", "a": "c", "keep": "keep"}


def test_map_flags_swap(tmp_path):
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    converter.write(_arrays(), src)
    assert main(["convert", str(src), str(dst), "--map", "a=b", "--map", "b=a", "-q"]) == 0
    with converter.read(dst) as back:
        assert_same(back["a"].read(), _arrays()["b"])
        assert_same(back["b"].read(), _arrays()["a"])


def test_toml_maps_and_map_files_merge(tmp_path):
    (tmp_path / "m.json").write_text('{"c": "a"}')
    text = ('[[rule]]\nmap = { a = "b" }\n\n[[rule]]\nmap = { b = "c" }\n\n'
            '[[rule]]\nmap_file = "m.json"\n')
    (tmp_path / "r.toml").write_text(text)
    rules = Rules.from_toml(tmp_path / "r.toml")
    assert _names(rules) == {"b": "a", "c": "b", "a": "c", "keep": "keep"}
    assert len(rules) == 3 and Rules.from_toml(rules.to_toml()) == rules  # kept as written


def test_merged_maps_still_refuse_collisions():
    with pytest.raises(RenameError, match=r"rules 1-2 .*'a' and 'b' would both become 'c'"):
        Rules().map({"a": "c"}).map({"b": "c"}).plan(NAMES)
    # 'a' moves onto 'keep', which no map moves away.
    with pytest.raises(RenameError, match="'a' and 'keep' would both become 'keep'"):
        Rules().map({"a": "keep"}).map({"b": "a"}).plan(NAMES)
    with pytest.raises(RenameError, match=r"rules 1-2 .*'a' is mapped twice, to 'b' .* 'c'"):
        Rules().map({"a": "b"}).map({"a": "c"}).plan(NAMES)
    with pytest.raises(RenameError, match="'a' is mapped twice"):
        Map((("a", "b"), ("a", "c")))


def test_maps_split_by_another_rule_run_one_after_the_other():
    # A rule between them ends the group: the second map sees the renamed names.
    rules = Rules().map({"a": "x"}).exclude("keep").map({"x": "y"})
    assert _names(rules) == {"y": "a", "b": "b", "c": "c"}


def test_merged_maps_report_unmatched_names():
    plan = Rules().map({"a": "b"}).map({"b": "a", "zzz": "q"}).plan(NAMES)
    assert plan.warnings == ["rules 1-2 (map 'a' -> 'b'; map (2 names)): 'zzz' matched no "
                             "tensor"]


def test_cli_map_flags_build_consecutive_maps():
    p = argparse.ArgumentParser()
    add_rule_args(p)
    rules = rules_from_args(p.parse_args(["--map", "a=b", "--map", "b=c", "--map", "c=a"]))
    assert _names(rules) == {"b": "a", "c": "b", "a": "c", "keep": "keep"}
