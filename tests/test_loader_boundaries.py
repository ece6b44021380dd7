"""Where the loaders live and what they share: ``converter.tf1`` is the TF1 loader in
``converter.loaders``; one module opens a loader's source; pairing labels are an enum whose
values are the labels printed and written as JSON; tensor kinds are one ``Literal`` type."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import numpy as np
import pytest

import converter

PACKAGE = Path(converter.__file__).parent

# The labels reports printed and wrote before they were an enum, in stage order.
LABELS = ["name", "object graph", "scope suffix",
          "shape (auto-named variables in another order)", "layer structure",
          "shape (names misfit)", "shape (only candidate)", "shape (frozen graph)",
          "layer name + shape (frozen graph)", "order+shape"]


def test_tf1_is_the_loader_beside_the_others():
    import converter.loaders.tf1 as tf1
    from converter import tf1 as imported

    assert converter.tf1 is tf1 and imported is tf1
    assert converter.tf1.restore is converter.loaders.tf1.restore
    assert not (PACKAGE / "tf1.py").exists()


def test_loaders_package_only_re_exports():
    tree = ast.parse((PACKAGE / "loaders" / "__init__.py").read_text())
    body = [n for n in tree.body
            if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, ast.ImportFrom) or
               isinstance(n, ast.Assign) and n.targets[0].id == "__all__" for n in body), \
        [ast.dump(n)[:60] for n in body]


def _opens_a_source(path: Path) -> bool:
    """Whether the module reads a path or wraps a mapping as a checkpoint itself."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "read" and \
                    isinstance(f.value, ast.Name) and f.value.id == "api":
                return True
            if isinstance(f, ast.Name) and f.id == "as_checkpoint":
                return True
    return False


def test_one_module_opens_a_loaders_source():
    modules = [*(PACKAGE / "loaders").glob("*.py"), PACKAGE / "migrate.py"]
    assert [p.name for p in modules if _opens_a_source(p)] == ["source.py"]


def test_open_source_applies_rules_and_keeps_the_creation_order():
    from converter.loaders.source import open_source
    from converter.rules import Rules

    arrays = {"layer10/w": np.zeros(1), "layer2/w": np.ones(1)}
    ckpt, order, raw = open_source(arrays, Rules().strip_prefix("layer"))
    assert list(ckpt) == ["10/w", "2/w"] and list(raw) == list(arrays)
    assert order == {"10/w": 0, "2/w": 1}  # a dict's own order, in the new names


def test_pairing_labels_are_an_enum_of_the_old_strings():
    from converter.loaders.report import How

    assert [h.value for h in How] == LABELS
    assert all(isinstance(h, str) and h == h.value for h in How)
    # Printed as the label on every Python version, never as "How.NAME".
    assert [f"{h}" for h in How] == LABELS and [str(h) for h in How] == LABELS


def test_load_report_json_and_table_show_the_labels():
    from converter.loaders import Target, pair
    from converter.loaders.report import How

    f32 = np.dtype(np.float32)
    targets = [Target("dense/kernel", ["dense/kernel"], (2, 3), f32),
               Target("m/dense/bias", ["m/dense/bias"], (3,), f32),
               Target("other", ["other"], (4,), f32)]
    ckpt = {"dense/kernel": np.zeros((2, 3), f32), "dense/bias": np.zeros(3, f32),
            "w": np.zeros(4, f32)}
    report = pair(targets, converter.as_checkpoint(ckpt))
    assert [p.how for p in report.pairings] == [How.NAME, How.SCOPE_SUFFIX, How.ONLY]
    pairings = json.loads(report.to_json())["pairings"]
    assert [p["how"] for p in pairings] == ["name", "scope suffix", "shape (only candidate)"]
    assert all(type(p["how"]) is str for p in report.to_dict()["pairings"])
    assert "m/dense/bias  <-  dense/bias  (scope suffix)" in report.table()


def test_ambiguous_name_error_spells_the_label():
    from converter.errors import LoadError
    from converter.loaders import Target, pair

    f32 = np.dtype(np.float32)
    ckpt = {"a/k/.ATTRIBUTES/VARIABLE_VALUE": np.zeros(1, f32), "a/k:0": np.zeros(1, f32)}
    with pytest.raises(LoadError, match=r"matches several checkpoint tensors \(name\)"):
        pair([Target("a/k", ["a/k"], (1,), f32)], converter.as_checkpoint(ckpt))


def test_kind_literal_holds_exactly_the_kinds_readers_set(tmp_path):
    from converter.tensor import Kind

    f32 = np.float32
    converter.write({"a/.ATTRIBUTES/VARIABLE_VALUE": np.ones(2, f32),
                     "save_counter/.ATTRIBUTES/VARIABLE_VALUE": np.int64(1),
                     "extra": np.zeros(1, f32)}, tmp_path / "tf2" / "ckpt", format="tf")
    converter.write({"dense/kernel": np.ones(2, f32), "dense/kernel/Adam": np.ones(2, f32),
                     "global_step": np.int64(3)}, tmp_path / "tf1" / "ckpt", format="tf")
    seen = set()
    for prefix in (tmp_path / "tf2" / "ckpt", tmp_path / "tf1" / "ckpt"):
        with converter.read(prefix) as ckpt:
            seen |= {t.kind for t in ckpt.values()}
    assert seen == set(typing.get_args(Kind))
    assert not hasattr(converter.tensor, "KINDS")


def test_renamed_tables_and_savers():
    import importlib

    from converter.rules import toml

    assert set(toml.RULE_TABLES) >= {"rename", "map", "map_file", "preset", "cast"}
    assert not hasattr(toml, "KINDS")
    # converter.migrate is the function; the module saves .keras models too, not only weights.
    module = importlib.import_module("converter.migrate")
    assert callable(module.save_model_file) and not hasattr(module, "save_weights")
