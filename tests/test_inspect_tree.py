"""``ckpt inspect --tree`` / ``converter.inspection.tree`` and the readable-name column, on
checkpoints TensorFlow wrote: counts against ``tf.train.load_checkpoint``'s shapes, slots folded
into their variables, readable names against the object graph as TensorFlow decodes it."""

from __future__ import annotations

import json
import math

import pytest

import converter
from converter import inspection, scopes
from converter.cli import main
from tests.inspect_tf import tf_views as tf_views  # a fixture


def _shapes(tf_fixtures, fixture: str) -> dict[str, int]:
    """Elements per key, from the shapes TensorFlow reports."""
    return {k: math.prod(s) for k, s in tf_fixtures[fixture]["shapes"].items()}


def _node(root: scopes.Node, path: str) -> scopes.Node:
    node = root
    for part in path.split("/"):
        node = node.children[part]
    return node


def test_tf1_adam_tree_counts_and_slots(tf_fixtures):
    sizes = _shapes(tf_fixtures, "tf1_adam")
    slots = {k for k in sizes if k.endswith(("/Adam", "/Adam_1"))}
    with converter.read(tf_fixtures["tf1_adam"]["prefix"]) as ckpt:
        root = inspection.tree(ckpt)
    assert root.params + root.slot_params == sum(sizes.values())
    assert root.slot_params == sum(sizes[k] for k in slots)
    assert root.tensors == len(sizes) - len(slots)
    for scope in ("dense", "dense_1"):
        node = _node(root, scope)
        assert node.params == sum(n for k, n in sizes.items()
                                  if k.startswith(scope + "/") and k not in slots)
        assert node.nbytes == 4 * node.params and node.dtypes == {"float32": node.params}
        for var in ("kernel", "bias"):
            leaf = node.children[var]
            assert leaf.tensor == f"{scope}/{var}" and leaf.params == sizes[f"{scope}/{var}"]
            assert sorted(leaf.slots) == ["Adam", "Adam_1"]
            assert leaf.slot_label() == "+2 Adam slots"
            assert leaf.children == {}  # the slots are folded, not listed
            assert leaf.slot_params == 2 * leaf.params
    assert set(root.children) == {"dense", "dense_1", "global_step", "beta1_power",
                                  "beta2_power"}
    assert root.dtypes == {"float32": root.params - 1, "int64": 1}


def test_depth_and_filter(tf_fixtures):
    sizes = _shapes(tf_fixtures, "tf1_adam")
    with converter.read(tf_fixtures["tf1_adam"]["prefix"]) as ckpt:
        full = inspection.tree(ckpt)
        shallow = inspection.tree(ckpt, 1)
        only = inspection.tree(ckpt, filter="dense_1/*")
    assert all(not c.children for c in shallow.children.values())
    for name, node in shallow.children.items():
        assert (node.params, node.slot_params) == (full.children[name].params,
                                                   full.children[name].slot_params)
    assert list(only.children) == ["dense_1"]
    assert only.params + only.slot_params == sum(n for k, n in sizes.items()
                                                 if k.startswith("dense_1/"))


def test_tree_cli(tf_fixtures, capsys):
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    assert main(["inspect", prefix, "--tree"]) == 0
    lines = capsys.readouterr().out.splitlines()
    kernel = next(line for line in lines if line.strip().startswith("kernel"))
    assert kernel.startswith("  kernel") and kernel.endswith("float32  +2 Adam slots")
    total = sum(_shapes(tf_fixtures, "tf1_adam").values())
    assert lines[-1].startswith("total: ")
    numbers = [int(w.replace(",", "")) for w in lines[-1].replace(";", " ").split()
               if w.replace(",", "").isdigit()]
    assert numbers[0] + numbers[3] == total  # values, tensors, bytes; the slots' values, bytes
    assert main(["inspect", prefix, "--tree", "--depth", "1", "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)["tree"]
    assert tree["params"] + tree["slot_params"] == total
    assert all("children" not in c for c in tree["children"])
    assert main(["inspect", prefix, "--depth", "1"]) == 2  # --depth without --tree
    assert "--depth" in capsys.readouterr().err


def test_readable_names_are_the_object_graphs(tf_fixtures, tf_views):
    for fixture, full_names in tf_views["full_names"].items():
        with converter.read(tf_fixtures[fixture]["prefix"]) as ckpt:
            readable = inspection.readable_names(ckpt)
            kinds = {k: t.kind for k, t in ckpt.items()}
        variables = {k: f for k, f in full_names.items() if kinds[k] != "slot"}
        assert variables and all(readable[k] == f for k, f in variables.items()), fixture
        assert set(readable) <= set(full_names)


def test_tf2_slots_fold_into_their_variables(tf_fixtures, tf_views):
    cases = {"tf2_keras": ("dense/kernel", "+2 Adam slots (m, v)"),
             "keras3_ckpt": ("sequential/dense/kernel", "+2 adam slots (momentum, velocity)")}
    for fixture, (path, label) in cases.items():
        if fixture not in tf_views["full_names"]:
            continue
        sizes = _shapes(tf_fixtures, fixture)
        with converter.read(tf_fixtures[fixture]["prefix"]) as ckpt:
            root = inspection.tree(ckpt)
            slots = sum(sizes[k] for k, t in ckpt.items()
                        if t.kind == "slot" and sizes[k] > 1)  # not the learning rate
        leaf = _node(root, path)
        assert leaf.slot_label() == label, fixture
        assert root.slot_params == slots and root.params + root.slot_params == \
            sum(sizes.values()), fixture


def test_listing_shows_readable_names_beside_keys(tf_fixtures, tf_views, capsys):
    fixture = "keras3_ckpt" if "keras3_ckpt" in tf_views["full_names"] else "tf2_keras"
    full_names = tf_views["full_names"][fixture]
    prefix = tf_fixtures[fixture]["prefix"]
    assert main(["inspect", prefix]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("readable name")
    for key, full in full_names.items():
        (line,) = [x for x in lines if x.startswith(key + " ")]
        assert line.endswith("  " + full)
    assert main(["inspect", prefix, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["tensors"]}
    assert {k: r["readable"] for k, r in rows.items() if "readable" in r} == full_names


def test_name_based_checkpoints_have_no_readable_column(tf_fixtures, capsys):
    assert main(["inspect", tf_fixtures["tf1_adam"]["prefix"]]) == 0
    assert "readable" not in capsys.readouterr().out


@pytest.mark.parametrize("names, sep", [(["a/b", "a.c"], "/"), (["bert.encoder.w", "x"], ".")])
def test_scope_separator(names, sep):
    assert scopes.scope_separator(names) == sep
