"""Rename rules without TensorFlow: every rule kind, order, laziness, collisions, TOML, transforms
against numpy, strictness and the CLI flags."""

from __future__ import annotations

import argparse
import json
import re
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import converter
from converter.cli.rule_args import (
    add_rule_args,
    dry_run_report,
    format_plan,
    rule_warnings_to_stderr,
    rules_from_args,
    split_rename,
)
from converter.errors import RenameError, UsageError
from converter.rules import Exclude, Map, Rename, Rules, RuleWarning
from converter.tensor import Checkpoint, Tensor
from tests.helpers import assert_same

MLP = ["global_step", "hidden1/weights", "hidden1/weights/Adam", "hidden1/weights/Adam_1",
       "hidden1/biases", "hidden2/weights", "hidden2/biases", "hidden3/weights",
       "hidden3/biases", "softmax_linear/weights", "softmax_linear/biases", "beta1_power"]


class Recorder:
    """Tensors whose loads are counted, so tests can prove nothing was read."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def tensor(self, name: str, array: np.ndarray, **kw) -> Tensor:
        def load() -> np.ndarray:
            self.reads.append(name)
            return array

        return Tensor(name, array.dtype, array.shape, load, **kw)

    def checkpoint(self, arrays: dict[str, np.ndarray], **kw) -> Checkpoint:
        return Checkpoint({n: self.tensor(n, a, **kw) for n, a in arrays.items()},
                          {"format": "test", "global_step": "7"})


def names(rules: Rules, source) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleWarning)
        return list(rules.apply(source)) if not isinstance(source, list) else \
            [r.name for r in rules.plan(source)]


def rnd(shape, seed=0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_rule_args(parser)
    return parser.parse_args(list(argv))


# ----------------------------------------------------------------------------- name rules


def test_rename_with_groups():
    got = names(Rules().rename(r"hidden([123])/", r"dnn/layer\1/"), MLP)
    assert "dnn/layer1/weights/Adam" in got and "dnn/layer3/biases" in got
    assert "softmax_linear/weights" in got and not any(n.startswith("hidden") for n in got)


def test_rename_errors_name_the_rule():
    with pytest.raises(RenameError, match=r"invalid regular expression 'hidden\('"):
        Rules().rename("hidden(", "x")
    with pytest.raises(RenameError, match="group '2'"):
        Rules().rename("a(b)", r"\2")
    with pytest.raises(RenameError, match=r"rule 1 \(rename 'global_step' -> ''\).*empty"):
        Rules().rename("global_step", "").plan(MLP)


def test_map_and_map_files(tmp_path):
    assert names(Rules().map({"global_step": "step"}), MLP)[0] == "step"
    (tmp_path / "m.json").write_text(json.dumps({"beta1_power": "b1"}))
    (tmp_path / "m.toml").write_text('[map]\n"hidden1/biases" = "h1/b"\n')
    (tmp_path / "flat.toml").write_text('"hidden2/biases" = "h2/b"\n')
    rules = Rules().map_file(tmp_path / "m.json").map_file(tmp_path / "m.toml").map_file(
        tmp_path / "flat.toml")
    got = names(rules, MLP)
    assert {"b1", "h1/b", "h2/b"} <= set(got)
    (tmp_path / "bad.toml").write_text("dense.kernel = 'x'\n")
    with pytest.raises(RenameError, match="quote names"):
        Rules().map_file(tmp_path / "bad.toml")
    with pytest.raises(RenameError, match=r"\.json or \.toml"):
        Rules().map_file(tmp_path / "m.txt")


def test_only_exclude_globs_cross_slashes():
    assert names(Rules().exclude("*/Adam*"), MLP) == [n for n in MLP if "Adam" not in n]
    assert names(Rules().only("hidden[12]/*"), MLP) == [n for n in MLP if n[:7] in
                                                        ("hidden1", "hidden2")]
    assert names(Rules().only("hidden[!12]/w*"), MLP) == ["hidden3/weights"]
    assert names(Rules().exclude("re:_\\d$", "global_?tep"), MLP) == [
        n for n in MLP if n not in ("hidden1/weights/Adam_1", "global_step")]
    # A glob matches the whole name; a regex is searched.
    assert names(Rules().only("weights"), MLP) == []
    assert names(Rules().only("re:weights$"), MLP) == [n for n in MLP if n.endswith("weights")]


def test_prefixes():
    ckpt = {"model/a": np.zeros(1), "model/b": np.ones(2), "c": np.zeros(3)}
    assert names(Rules().strip_prefix("model/").add_prefix("enc/"), ckpt) == [
        "enc/a", "enc/b", "enc/c"]
    with pytest.raises(RenameError, match="empty name"):
        Rules().strip_prefix("c").apply(ckpt)


def test_order_matters():
    rename_first = Rules().rename("^hidden1/", "keep/").exclude("hidden*")
    exclude_first = Rules().exclude("hidden*").rename("^hidden1/", "keep/")
    a, b = names(rename_first, MLP), names(exclude_first, MLP)
    assert "keep/weights" in a and not any(n.startswith("keep/") for n in b)
    assert a != b


# ----------------------------------------------------------------------------- presets


def test_drop_optimizer_uses_kinds_not_prefixes():
    rec = Recorder()
    graph = np.array(b"graph", dtype=object)
    ckpt = Checkpoint({
        "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE":
            rec.tensor("k", rnd(2), kind="variable"),
        "optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE": rec.tensor("m", rnd(2),
                                                                        kind="slot"),
        "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE": rec.tensor(
            "i", np.int64(1), kind="counter"),
        "_CHECKPOINTABLE_OBJECT_GRAPH": rec.tensor("g", graph, kind="object_graph"),
    })
    assert list(Rules().preset("drop-optimizer").apply(ckpt)) == [
        "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"]
    assert rec.reads == []
    assert names(Rules().preset("drop-optimizer"), MLP) == [
        n for n in MLP if "Adam" not in n and n not in ("global_step", "beta1_power")]


def test_use_ema():
    ckpt = {"w": rnd(2), "w/ExponentialMovingAverage": rnd(2, 1), "b": rnd(1, 2),
            "lonely/ExponentialMovingAverage": rnd(1, 3)}
    out = Rules().preset("use-ema").apply(ckpt)
    assert list(out) == ["w", "b", "lonely"]
    assert_same(out["w"].read(), ckpt["w/ExponentialMovingAverage"])
    assert_same(out["b"].read(), ckpt["b"])
    plan = Rules().preset("use-ema").plan(ckpt)
    assert [(d.name, d.rule) for d in plan.dropped] == [("w", "rule 1 (preset use-ema)")]


def tf2(name, full_name="", kind="variable", **attrs):
    attrs = {"full_name": full_name, **attrs} if full_name else attrs
    return Tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE", np.float32, (1,), lambda: rnd(1),
                  kind=kind, attrs=attrs)


def test_tf2_names():
    k = "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    tensors = [
        tf2("model/layer_with_weights-0/kernel", "dense/kernel"),
        tf2("model/a/bias", "dup/bias"), tf2("model/b/bias", "dup/bias"),
        tf2("model/layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m", "x", kind="slot",
            slot_of=k, slot_name="m"),
        Tensor("_CHECKPOINTABLE_OBJECT_GRAPH", object, (), lambda: None, kind="object_graph"),
        Tensor("plain", np.float32, (1,), lambda: rnd(1)),
    ]
    ckpt = Checkpoint({t.name: t for t in tensors})
    assert list(Rules().preset("tf2-names").apply(ckpt)) == [
        "dense/kernel", "model/a/bias", "model/b/bias", "dense/kernel/m", "plain"]
    # From bare keys (no reader): strip the attribute suffix, slots by their marker.
    assert names(Rules().preset("tf2-names"), [k, k.replace(
        "/.ATTRIBUTES", "/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES")]) == [
        "model/layer_with_weights-0/kernel", "model/layer_with_weights-0/kernel/v"]


def test_keras_names():
    assert names(Rules().preset("keras-names"), ["dense/kernel:0", "dense_1/bias:0",
                                                 "conv1/weights", "conv1/weights/Momentum",
                                                 "conv1/biases", "sep/depthwise_weights",
                                                 "conv1/biases/Adam_1:0"]) == [
        "dense/kernel", "dense_1/bias", "conv1/kernel", "conv1/kernel/Momentum", "conv1/bias",
        "sep/depthwise_kernel", "conv1/bias/Adam_1"]
    assert names(Rules().preset("keras-names", slim=False), ["a/weights:0"]) == ["a/weights"]


def test_lstm_preset_plan_and_misfit():
    units, inputs = 3, 2
    ckpt = {"rnn/lstm_cell/kernel": rnd((inputs + units, 4 * units)),
            "rnn/lstm_cell/bias": rnd(4 * units, 1)}
    plan = Rules().preset("tf1-lstm-to-keras").plan(ckpt)
    assert [(r.name, r.shape) for r in plan] == [
        ("rnn/lstm_cell/kernel", (2, 12)), ("rnn/lstm_cell/recurrent_kernel", (3, 12)),
        ("rnn/lstm_cell/bias", (12,))]
    assert "gates i,j,f,o->i,f,c,o" in plan.rows[0].transform
    assert "add 1.0 to block 1 of 4" in plan.rows[2].transform
    bad = dict(ckpt, **{"rnn/lstm_cell/bias": rnd(10)})
    with pytest.raises(RenameError, match=r"rule 1 \(preset tf1-lstm-to-keras\).*\[4\*units\]"):
        Rules().preset("tf1-lstm-to-keras").apply(bad)
    peep = dict(ckpt, **{"rnn/lstm_cell/w_f_diag": rnd(3)})
    with pytest.raises(RenameError, match="peepholes"):
        Rules().preset("tf1-lstm-to-keras").apply(peep)
    with pytest.raises(RenameError, match="unknown preset 'nope'.*drop-optimizer"):
        Rules().preset("nope")
    with pytest.raises(RenameError, match="unknown option.*forget"):
        Rules().preset("tf1-lstm-to-keras", forget=1)


def test_lstm_preset_values_against_numpy():
    units, inputs = 2, 3
    kernel, bias = rnd((inputs + units, 4 * units)), rnd(4 * units, 1)
    out = Rules().preset("tf1-lstm-to-keras", forget_bias=0.5).apply(
        {"enc/basic_lstm_cell/weights": kernel, "enc/basic_lstm_cell/biases": bias})
    i, j, f, o = np.split(kernel, 4, axis=1)
    keras_order = np.concatenate([i, f, j, o], axis=1)
    assert_same(out["enc/basic_lstm_cell/kernel"].read(), keras_order[:inputs])
    assert_same(out["enc/basic_lstm_cell/recurrent_kernel"].read(), keras_order[inputs:])
    bi, bj, bf, bo = np.split(bias, 4)
    assert_same(out["enc/basic_lstm_cell/bias"].read(),
                np.concatenate([bi, bf + np.float32(0.5), bj, bo]))


# ----------------------------------------------------------------------------- transforms


def test_transforms_match_numpy_bit_exact():
    a, q, k, v = rnd((4, 6)), rnd((3, 2), 1), rnd((3, 2), 2), rnd((3, 2), 3)
    gates = rnd((2, 8), 4)
    ckpt = {"a": a, "l/q": q, "l/k": k, "l/v": v, "gates": gates, "h": rnd((6,), 5)}
    rules = (Rules().transpose("a", [1, 0]).concat(["*/q", "*/k", "*/v"], r"\1/qkv", axis=1)
             .split("gates", ["g/first", "g/rest"], axis=1, sizes=[3, -1])
             .reshape("h", [2, -1]).cast("float32:bfloat16", match="h")
             .reorder_gates("g/rest", "abcde->edcba", axis=1)
             .add_constant("a", 2.5, axis=0, block=1, blocks=3))
    out = rules.apply(ckpt)
    assert list(out) == ["a", "l/qkv", "g/first", "g/rest", "h"]
    added = np.ascontiguousarray(a.T)
    added[2:4] += np.float32(2.5)
    assert_same(out["a"].read(), added)
    assert_same(out["l/qkv"].read(), np.concatenate([q, k, v], axis=1))
    assert_same(out["g/first"].read(), gates[:, :3])
    assert_same(out["g/rest"].read(), gates[:, 3:][:, ::-1])
    assert_same(out["h"].read(), ckpt["h"].reshape(2, 3).astype(ml_dtypes.bfloat16))
    for name, t in out.items():
        assert t.span is None, name
        assert (t.shape, t.dtype) == (t.read().shape, t.read().dtype), name


def test_transforms_that_do_not_fit_fail_before_reading():
    rec = Recorder()
    ckpt = rec.checkpoint({"a": rnd((4, 6)), "b": rnd((3, 5)), "s": np.array([b"x"],
                                                                            dtype=object)})
    cases = [
        (Rules().transpose("a", [0, 2]), r"transpose 'a' axes \[0, 2\].*not a permutation"),
        (Rules().reshape("a", [5, -1]), "cannot be reshaped"),
        (Rules().split("b", ["x", "y"], axis=1), "does not split into 2 equal parts"),
        (Rules().concat(["a", "b"], "ab", axis=0), "cannot concatenate"),
        (Rules().concat(["a", "zzz"], "az"), "no tensor for part"),
        (Rules().reorder_gates("b", "ijfo->ifjo"), "is not 4 equal gates"),
        (Rules().split("a", ["x", "y"], axis=2), "axis 2 is out of range"),
        (Rules().cast("string:float32"), "cannot cast string"),
    ]
    for rules, message in cases:
        with pytest.raises(RenameError, match=message):
            rules.apply(ckpt)
    assert rec.reads == []
    with pytest.raises(RenameError, match="FROM:TO"):
        Rules().cast("float32")
    with pytest.raises(RenameError, match="unknown dtype 'float99'"):
        Rules().cast("float32:float99")


def test_transforms_read_lazily():
    rec = Recorder()
    out = Rules().transpose("*", [1, 0]).apply(rec.checkpoint({"a": rnd((2, 3))}))
    assert rec.reads == [] and out["a"].shape == (3, 2)
    out["a"].read()
    assert rec.reads == ["a"]


# ----------------------------------------------------------------------------- laziness


NAME = st.text("ab/_1", min_size=1, max_size=8).filter(lambda s: s.strip("/") == s)
NAME_RULES = st.lists(st.one_of(
    st.builds(lambda p: Rename(re.escape(p), "x"), NAME),
    st.builds(lambda p: Exclude((p + "*",)), NAME),
    st.builds(lambda a, b: Map(((a, b),)), NAME, NAME),
    st.just(Rules().add_prefix("p/").rules[0]),
    st.just(Rules().strip_prefix("a").rules[0]),
    st.just(Rules().preset("drop-optimizer").rules[0]),
    st.just(Rules().preset("keras-names").rules[0]),
), max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.lists(NAME, min_size=1, max_size=6, unique=True), NAME_RULES)
def test_renaming_never_reads_or_changes_data(tensor_names, rule_list):
    rec = Recorder()
    arrays = {n: rnd((2,), i) for i, n in enumerate(tensor_names)}
    ckpt = rec.checkpoint(arrays, span=("file", 0, 8))
    rules = Rules(rule_list)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuleWarning)
            out = rules.apply(ckpt)
            plan = rules.plan(ckpt)
    except RenameError as exc:
        assert any(m in str(exc) for m in ("would both become", "empty name", "mapped twice"))
        return
    assert rec.reads == []
    assert out.metadata == ckpt.metadata
    assert [r.name for r in plan] == list(out)
    kept = {r.old for r in plan} | {d.name for d in plan.dropped}
    assert kept == set(arrays)
    for row in plan:
        t = out[row.name]
        assert t.read() is arrays[row.old]  # the very same array: nothing converted
        assert t.span == ("file", 0, 8) and row.transform == ""


# ----------------------------------------------------------------------------- collisions


def test_collision_names_both_sources_and_the_target():
    with pytest.raises(RenameError) as info:
        Rules().rename(r"hidden[12]/", "h/").plan(MLP)
    message = str(info.value)
    assert "'hidden1/weights' and 'hidden2/weights' would both become 'h/weights'" in message
    assert message.startswith("rule 1 (rename 'hidden[12]/' -> 'h/')")
    with pytest.raises(RenameError, match="'global_step' and 'beta1_power' would both"):
        Rules().map({"global_step": "beta1_power"}).plan(MLP)
    # A swap within one rule is no collision; a declared concat is none either.
    assert names(Rules().map({"global_step": "beta1_power", "beta1_power": "global_step"}),
                 MLP)[0] == "beta1_power"
    plan = Rules().concat(["hidden1/biases", "hidden2/biases"], "both").plan(MLP)
    assert [r.sources for r in plan if r.name == "both"] == [("hidden1/biases",
                                                              "hidden2/biases")]


# ----------------------------------------------------------------------------- TOML


EVERY_KIND = (
    Rules(strict=True).rename(r"hidden([123])/(?=w)", r"dnn/layer\1/").map({"a b": 'q"uote'})
    .only("*", "re:^x").exclude("*/Adam*").strip_prefix("model/").add_prefix("enc/")
    .preset("drop-optimizer").preset("use-ema", suffix="EMA").preset("tf2-names")
    .preset("keras-names", slim=False).preset("tf1-lstm-to-keras", forget_bias=0.0)
    .cast("float32:bfloat16", match="*/kernel").transpose("*/kernel", [1, 0])
    .reshape("x", [2, -1]).split("*/qkv", [r"\1/q", r"\1/k", r"\1/v"], axis=0)
    .concat(["*/q", "*/k"], r"\1/qk", axis=1).reorder_gates("*/bias", "ijfo->ifjo", axis=0)
    .add_constant("*/bias", 1.5, axis=0, block=1, blocks=4)
)


def test_toml_round_trip():
    text = EVERY_KIND.to_toml()
    back = Rules.from_toml(text)
    assert back == EVERY_KIND and back.to_toml() == text
    big = Rules().map({f"layer_{i}/kernel": f"encoder/layer_{i}/kernel" for i in range(9)})
    assert "[rule.map]" in big.to_toml() and Rules.from_toml(big.to_toml()) == big


def test_toml_round_trip_plans_identically(tmp_path):
    rules = (Rules().preset("drop-optimizer").only("hidden[123]/*")
             .rename(r"hidden([123])/", r"dnn/layer\1/").transpose("*/weights", [1, 0]))
    ckpt = {n: rnd((2, 3), i) for i, n in enumerate(MLP)}
    (tmp_path / "r.toml").write_text(rules.to_toml())
    assert Rules.from_toml(tmp_path / "r.toml").plan(ckpt) == rules.plan(ckpt)


def test_toml_map_file_is_relative_to_the_rules_file(tmp_path):
    (tmp_path / "names.json").write_text('{"global_step": "step"}')
    (tmp_path / "r.toml").write_text('[[rule]]\nmap_file = "names.json"\n')
    assert names(Rules.from_toml(str(tmp_path / "r.toml")), MLP)[0] == "step"


@pytest.mark.parametrize("text, message", [
    ("[[rule]]\nrename = 'a'\nto = 'b'\nonly = 'c'\n", "exactly one of"),
    ("[[rule]]\nfoo = 1\n", "exactly one of"),
    ("[[rule]]\nrename = 'a'\n", "rule 1: rename rule: needs to"),
    ("[[rule]]\ntranspose = 'a'\naxes = [1, 0]\nbogus = 1\n", "unknown option.*bogus"),
    ("[[rule]]\ntranspose = 'a'\naxes = 'x'\n", "axes must be a list of integers"),
    ("[[rule]]\npreset = 'nope'\n", "unknown preset"),
    ("rules = 1\n", "unknown key"),
    ("[[rule]\n", "invalid TOML"),
])
def test_toml_errors(text, message):
    with pytest.raises(RenameError, match=message):
        Rules.from_toml(text)


# ----------------------------------------------------------------------------- strictness


def test_no_match_warns_and_strict_raises():
    rules = Rules().map({"nope": "x"}).exclude("*/Adam*", "zzz*")
    with pytest.warns(RuleWarning) as caught:
        rules.apply({n: np.zeros(1) for n in MLP})
    assert [str(w.message) for w in caught] == [
        "rule 1 (map 'nope' -> 'x'): 'nope' matched no tensor",
        "rule 2 (exclude '*/Adam*', 'zzz*'): 'zzz*' matched nothing"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = rules.plan(MLP)  # a plan reports, it does not warn
    assert len(plan.warnings) == 2
    with pytest.raises(RenameError, match=r"rule 1 .*'nope' matched no tensor \(strict"):
        rules.plan(MLP, strict=True)
    with pytest.raises(RenameError, match="strict"):
        Rules(rules, strict=True).plan(MLP)


# ----------------------------------------------------------------------------- apply


def test_apply_keeps_metadata_accepts_dicts_and_closes_the_source():
    closed = []
    src = Checkpoint({"a": Tensor.from_array("a", rnd(2))}, {"format": "x"},
                     closers=[lambda: closed.append(1)])
    out = Rules().add_prefix("p/").apply(src)
    assert out.metadata == {"format": "x"} and list(out) == ["p/a"]
    out.close()
    assert closed == [1]
    out = Rules().rename("a", "b").apply({"a": np.arange(3)})
    assert_same(out["b"].read(), np.arange(3)) and out["b"].name == "b"
    with pytest.warns(RuleWarning, match="matched nothing"):
        assert len(Rules().add_prefix("p/").apply(converter.Checkpoint())) == 0


def test_plan_json_and_table():
    plan = Rules().exclude("*/Adam*").transpose("hidden1/weights", [1, 0]).plan(
        {n: rnd((2, 3)) for n in MLP})
    data = json.loads(plan.to_json())
    row = next(r for r in data["tensors"] if r["name"] == "hidden1/weights")
    assert row == {"name": "hidden1/weights", "source": ["hidden1/weights"], "shape": [3, 2],
                   "dtype": "float32", "transform": "transpose [1, 0]"}
    assert {"name": "hidden1/weights/Adam", "rule": "rule 1 (exclude '*/Adam*')"} in \
        data["dropped"]
    table = plan.table().splitlines()
    assert table[0].split() == ["new", "name", "old", "name", "shape", "dtype", "transform"]
    assert table[1].split() == ["global_step", "=", "[2,", "3]", "float32"]
    assert "10 tensors kept, 2 dropped" in table


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("text, pattern, replacement", [
    (r"hidden([123])/=dnn/layer\1/", r"hidden([123])/", r"dnn/layer\1/"),
    (r"a(?=b)=c", r"a(?=b)", "c"),
    (r"(?<=x)y=z", r"(?<=x)y", "z"),
    (r"(?P<n>a)(?P=n)=b", r"(?P<n>a)(?P=n)", "b"),
    (r"(?!q)a=b=c", r"(?!q)a", "b=c"),
    (r"a\=b=c", r"a\=b", "c"),
    ("a=", "a", ""),
])
def test_split_rename(text, pattern, replacement):
    assert split_rename(text) == (pattern, replacement)


@pytest.mark.parametrize("argv", [["--rename", "abc"], ["--rename", "=x"], ["--map", "a"],
                                  ["--map", "=b"], ["--preset", "use-ema:suffix"]])
def test_bad_flags(argv):
    with pytest.raises(UsageError):
        rules_from_args(parse(*argv))


def test_flags_apply_in_command_line_order(tmp_path):
    (tmp_path / "r.toml").write_text("[[rule]]\nstrip_prefix = 'dnn/'\n")
    args = parse("--preset", "drop-optimizer", "--only", "hidden[12]/*",
                 "--rename", r"hidden(\d)/=dnn/layer\1/", "--rules", str(tmp_path / "r.toml"),
                 "--map", "layer1/weights=first", "--add-prefix", "net/",
                 "--exclude", "re:biases$", "--preset", "tf1-lstm-to-keras:forget_bias=0.5",
                 "--cast", "float32:float16", "--strict-rules")
    assert [k for k, _ in args.rule_steps] == [
        "preset", "only", "rename", "rules", "map", "add_prefix", "exclude", "preset", "cast"]
    rules = rules_from_args(args)
    assert rules.strict and len(rules) == 9
    assert rules.rules[7].forget_bias == 0.5
    ckpt = {n: rnd(4) for n in MLP}
    with pytest.raises(RenameError, match=r"rule 8 \(preset tf1-lstm-to-keras"):
        rules.plan(ckpt)  # strict: no LSTM here
    assert [r.name for r in Rules(rules.rules[:7]).plan(ckpt)] == ["net/first",
                                                                   "net/layer2/weights"]
    assert rules_from_args(parse()) is None and rules_from_args(parse("--dry-run")) is None


def test_dry_run_report():
    rules = rules_from_args(parse("--exclude", "*/Adam*", "--map", "global_step=step"))
    ckpt = {n: rnd(2) for n in MLP}
    table = dry_run_report(rules, ckpt, as_json=False)
    assert re.search(r"^step +global_step +\[2\] +float32$", table, re.M)
    assert "dropped hidden1/weights/Adam    by rule 1 (exclude '*/Adam*')" in table
    data = json.loads(dry_run_report(rules, ckpt, as_json=True))
    assert data["tensors"][0]["name"] == "step" and len(data["dropped"]) == 2
    assert "0 dropped" in dry_run_report(None, ckpt, as_json=False)
    plan = rules.plan(ckpt)
    assert format_plan(plan.rows, [d.name for d in plan.dropped]).endswith(
        "dropped hidden1/weights/Adam_1")


def test_rule_warnings_to_stderr(capsys):
    with rule_warnings_to_stderr():
        Rules().exclude("nope").apply({"a": np.zeros(1)})
    assert capsys.readouterr().err == "ckpt: warning: rule 1 (exclude 'nope'): 'nope' matched " \
        "nothing\n"
    with rule_warnings_to_stderr(quiet=True):
        Rules().exclude("nope").apply({"a": np.zeros(1)})
    assert capsys.readouterr().err == ""


def test_cli_convert_with_rules_when_wired(tmp_path):
    from converter.cli import build_parser, main

    try:
        build_parser().parse_args(["convert", "a", "b", "--map", "x=y", "--dry-run"])
    except SystemExit:
        pytest.skip("ckpt convert does not take rule flags yet")
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    converter.write({"v1": np.arange(3.0), "v2": np.ones(2)}, src)
    assert main(["convert", str(src), str(dst), "--map", "v1=other-v1", "--dry-run", "-q"]) == 0
    assert not dst.exists()
    assert main(["convert", str(src), str(dst), "--map", "v1=other-v1", "-q"]) == 0
    with converter.read(dst) as out:
        assert list(out) == ["other-v1", "v2"]
