"""``Checkpoint._repr_html_`` and ``_repr_pretty_``: the scope tree in small for notebooks and
IPython, on checkpoints TensorFlow wrote (counts against TensorFlow's shapes, readable names
against the object graph as TensorFlow decodes it), hostile names, the row cap and depth limit,
and that no tensor is read."""

from __future__ import annotations

import html.parser
import math

import numpy as np
import pytest

import converter
from converter import display
from converter.tensor import Tensor
from tests.inspect_tf import tf_views as tf_views  # a fixture


class _Rows(html.parser.HTMLParser):
    """``{data-path: (tag, cells)}`` of the view's rows, the tags seen, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self._row: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "data-path" in a:
            self._row, self._depth = a["data-path"], 0
            self.rows[self._row] = (tag, [])
        elif self._row is not None and tag == "span":
            self._depth += 1
            if self._depth == 1:
                self.rows[self._row][1].append("")

    def handle_endtag(self, tag):
        if self._row is not None and tag == "span":
            self._depth -= 1
        elif tag in ("div", "summary"):
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._depth:
            cells = self.rows[self._row][1]
            cells[-1] += data


def parse(text: str) -> _Rows:
    parsed = _Rows()
    parsed.feed(text)
    parsed.close()
    return parsed


class FakePrinter:
    """IPython's printer as far as ``_repr_pretty_`` uses it."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def text(self, s: str) -> None:
        self.parts.append(s)

    def break_(self) -> None:
        self.parts.append("\n")

    def value(self) -> str:
        return "".join(self.parts)


def pretty(ckpt, cycle: bool = False) -> str:
    p = FakePrinter()
    ckpt._repr_pretty_(p, cycle)
    return p.value()


def _elements(tf_fixtures, fixture: str) -> dict[str, int]:
    return {k: math.prod(s) for k, s in tf_fixtures[fixture]["shapes"].items()}


def test_tf1_saver_view_has_scopes_counts_and_folded_slots(tf_fixtures):
    fixture = tf_fixtures["tf1_adam"]
    sizes = _elements(tf_fixtures, "tf1_adam")
    with converter.read(fixture["prefix"]) as ckpt:
        view = parse(ckpt._repr_html_())
        text = pretty(ckpt)
    assert set(view.rows) == {"dense", "dense/kernel", "dense/bias", "dense_1", "dense_1/kernel",
                              "dense_1/bias", "global_step", "beta1_power", "beta2_power"}
    for path, (_, cells) in view.rows.items():
        params = cells[1].replace(",", "")
        under = [k for k in sizes if (k == path or k.startswith(path + "/"))
                 and not k.endswith(("/Adam", "/Adam_1"))]
        assert int(params) == sum(sizes[k] for k in under), path
        if path in fixture["shapes"]:  # a tensor: its shape as TensorFlow reports it
            assert cells[4].startswith(str(fixture["shapes"][path])), path
    assert view.rows["dense"][0] == "summary"  # a scope opens; a tensor is a plain row
    assert view.rows["dense/kernel"][0] == "div"
    assert view.rows["dense/kernel"][1][4].endswith("+2 Adam slots")
    assert "script" not in view.tags
    total = sum(sizes.values())
    slots = sum(n for k, n in sizes.items() if k.endswith(("/Adam", "/Adam_1")))
    assert f"{total - slots:,} values in" in "".join(view.text)
    assert f"optimizer slots folded in: {slots:,} values" in "".join(view.text)
    lines = text.splitlines()
    assert lines[0] == f"Checkpoint (tf, tf1) {ckpt.source.path}"
    kernel = next(x for x in lines if x.startswith("  kernel"))
    assert kernel.endswith(f"float32  {fixture['shapes']['dense/kernel']}  +2 Adam slots")
    assert lines[-1].startswith(f"total: {total - slots:,} values")


def test_tf2_view_is_placed_by_the_object_graphs_names(tf_fixtures, tf_views):
    full_names = tf_views["full_names"]["tf2_keras"]
    with converter.read(tf_fixtures["tf2_keras"]["prefix"]) as ckpt:
        view = parse(ckpt._repr_html_())
        kinds = {k: t.kind for k, t in ckpt.items()}
    variables = {f for k, f in full_names.items() if kinds[k] == "variable"}
    assert variables and variables <= set(view.rows)
    assert not any(".ATTRIBUTES" in p for p in view.rows)
    assert view.rows["dense/kernel"][1][4].endswith("+2 Adam slots (m, v)")


def test_names_are_escaped():
    hostile = {"<script>x</script>": np.zeros(3, np.float32),
               "<img src=x onerror=alert(1)>": np.zeros(2, np.float32),
               'q"uote\'s & <u>': np.zeros(1, np.int8)}
    ckpt = converter.as_checkpoint(hostile)
    raw = ckpt._repr_html_()
    assert "<script" not in raw and "<img" not in raw and "<u>" not in raw
    assert "&lt;script&gt;x&lt;" in raw
    view = parse(raw)
    assert {"<script>x<", "<script>x</script>", "<img src=x onerror=alert(1)>",
            'q"uote\'s & <u>'} <= set(view.rows)  # the names, intact, as text
    assert "u" not in view.tags and "img" not in view.tags
    lines = pretty(ckpt).splitlines()  # text is not HTML: names as they are
    assert any(x.startswith("<script>x< ") for x in lines)
    assert any(x.startswith("  script> ") for x in lines)


def _wide(n: int = 20_000) -> converter.Checkpoint:
    tensors = {}
    for i in range(n):
        layer, unit = divmod(i, 100)
        tensors[f"encoder/layer_{layer:03d}/unit_{unit:02d}/kernel"] = Tensor(
            f"k{i}", np.float32, (i % 7 + 1, 4), lambda: pytest.fail("a tensor was read"))
    tensors["head/bias"] = Tensor("b", np.float32, (4,), lambda: pytest.fail("read"))
    return converter.Checkpoint(tensors)


def test_a_large_checkpoint_shows_a_capped_breadth_first_view():
    ckpt = _wide()
    raw = ckpt._repr_html_()
    assert len(raw) < 20_000
    view = parse(raw)
    assert len(view.rows) == display.ROWS
    # Breadth first: both top-level scopes, then as many layers as fit, in order.
    layers = display.ROWS - 2
    assert set(view.rows) == {"encoder", "head"} | {f"encoder/layer_{i:03d}"
                                                    for i in range(layers)}
    text = "".join(view.text)
    assert f"… {200 - layers} more ({(200 - layers) * 100:,} tensors)" in text
    assert "total: " in text and "20,001 tensors not listed" in text
    lines = pretty(ckpt).splitlines()
    assert len(lines) == 1 + 1 + display.ROWS + 1 + 1  # heading, header, rows, more, total
    assert lines[-2].split() == ["head", "4", "16", "B", "float32", "1", "tensor"]
    assert lines[-3] == f"  … {200 - layers} more ({(200 - layers) * 100:,} tensors)"


def test_depth_is_limited_and_deeper_tensors_are_counted():
    deep = "/".join(f"s{i}" for i in range(10)) + "/kernel"
    ckpt = converter.as_checkpoint({deep: np.zeros((2, 3)), "top": np.zeros(1)})
    view = parse(ckpt._repr_html_())
    assert max(p.count("/") for p in view.rows) == display.DEPTH - 1
    cut = "/".join(f"s{i}" for i in range(display.DEPTH))
    assert view.rows[cut][1][1] == "6" and view.rows[cut][1][4] == "1 tensor"
    assert deep not in view.rows


def test_small_views_open_and_nothing_is_read(tmp_path, monkeypatch):
    converter.write({"dense/kernel": np.ones((3, 4), np.float32),
                     "dense/bias": np.ones(4, np.float32)}, tmp_path / "m.safetensors")
    monkeypatch.setattr(Tensor, "read", lambda self: pytest.fail(f"{self.name} was read"))
    with converter.read(tmp_path / "m.safetensors") as ckpt:
        raw = ckpt._repr_html_()
        text = pretty(ckpt)
    assert "<details open>" in raw
    dense, kernel = text.splitlines()[2:4]
    assert dense.split() == ["dense", "16", "64", "B", "float32", "2", "tensors"]
    assert kernel.startswith("  kernel ") and kernel.endswith("48 B  float32  [3, 4]")


def test_empty_and_cycle():
    empty = converter.Checkpoint()
    assert pretty(empty) == "Checkpoint: no tensors"
    assert "no tensors" in empty._repr_html_()
    assert pretty(converter.as_checkpoint({"a": np.zeros(1)}), cycle=True) == "Checkpoint(...)"


def test_ipython_pretty_printer():
    lib_pretty = pytest.importorskip("IPython.lib.pretty")
    ckpt = _wide(300)
    assert lib_pretty.pretty(ckpt) == "\n".join(display.lines(ckpt, "Checkpoint"))
    # Inside a container the printer indents each line; the tree keeps its shape.
    nested = lib_pretty.pretty({"ckpt": converter.as_checkpoint({"a/b": np.zeros(2)})})
    assert nested.startswith("{'ckpt': Checkpoint\n") and "  b " in nested
