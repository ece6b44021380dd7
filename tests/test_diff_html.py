"""``ckpt diff A B --html OUT.html``: a checkpoint TensorFlow wrote against a copy with one
tensor changed, one removed, one added and one reshaped; each tensor's mark in the page's table
and tree, the largest difference against numpy's, hostile names, and the output's atomic write.
The page in headless Chromium is tested in tests/test_inspect_html.py."""

from __future__ import annotations

import html.parser
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.sizes import human
from tests.inspect_tf import tf_views as tf_views  # a fixture

EVIL = "evil/<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">" \
       "</script><script>document.body.setAttribute('data-pwned','2')</script>"


class _Page(html.parser.HTMLParser):
    """The differences table (``{data-name: data-status}``), the summary and the tree's JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.table: dict[str, str] = {}
        self.cells: dict[str, list[str]] = {}
        self.data = ""
        self.summary = ""
        self._in: str | None = None
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-name" in a:
            self._row = a["data-name"]
            self.table[self._row] = a["data-status"]
            self.cells[self._row] = []
        elif tag == "td" and self._row is not None:
            self.cells[self._row].append("")
            self._in = "td"
        elif tag == "script" and a.get("id") == "data":
            self._in = "data"
        elif a.get("id") == "summary":
            self._in = "summary"

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag in ("td", "script", "p"):
            self._in = None

    def handle_data(self, data):
        if self._in == "td" and self._row is not None:
            self.cells[self._row][-1] += data
        elif self._in == "data":
            self.data += data
        elif self._in == "summary":
            self.summary += data

    def tree(self) -> dict[str, tuple[str, dict]]:
        """``{path: (mark, extra)}`` of the tree's tensors."""
        data = json.loads(self.data)
        out: dict[str, tuple[str, dict]] = {}

        def walk(node, path):
            extra = node[5] or {}
            if "t" in extra:
                out[path] = (extra["t"], extra)
            for kid in node[6] if len(node) > 6 else []:
                walk(kid, f"{path}{data['sep']}{kid[0]}" if path else kid[0])

        walk(data["tree"], "")
        return out


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    return page


@pytest.fixture(scope="module")
def changed(tf_fixtures, tmp_path_factory):
    """(A's prefix, B's path, A's values as TensorFlow read them, B's values)."""
    fixture = tf_fixtures["tf1_adam"]
    with open(fixture["expected"], "rb") as f:
        a = pickle.load(f)
    b = dict(a)
    b["dense/bias"] = a["dense/bias"] + np.float32(0.25)  # changed
    del b["beta1_power"]  # removed
    b["extra/added"] = np.arange(3, dtype=np.int32)  # added
    b["dense_1/kernel"] = a["dense_1/kernel"].reshape(2, 5)  # reshaped
    b["dense_1/bias"] = a["dense_1/bias"].astype(np.float64)  # another dtype, the same values
    out = tmp_path_factory.mktemp("diff_html") / "b.safetensors"
    converter.write(b, out)
    return fixture["prefix"], out, a, b


MARKS = {"dense/bias": "values", "beta1_power": "only-a", "extra/added": "only-b",
         "dense_1/kernel": "shape", "dense_1/bias": "dtype"}


def test_each_tensor_is_marked(changed, tmp_path, capsys):
    a_path, b_path, a, b = changed
    out = tmp_path / "d.html"
    assert main(["diff", a_path, str(b_path), "--html", str(out)]) == 1  # differences: still 1
    printed = capsys.readouterr().out
    assert printed.endswith(f"wrote {out} ({human(out.stat().st_size)})\n")
    page = parse(out)
    assert page.table == MARKS
    delta = np.abs(b["dense/bias"].astype(np.float64) - a["dense/bias"].astype(np.float64))
    assert page.cells["dense/bias"] == ["dense/bias", "values differ", "float32 [5]",
                                        "float32 [5]", f"{delta.max():.6g}"]
    assert page.cells["dense_1/kernel"][2:4] == ["float32 [5, 2]", "float32 [2, 5]"]
    assert page.cells["beta1_power"][2:4] == ["float32 []", "—"]
    assert page.cells["dense_1/bias"][1:] == ["dtype differs", "float32 [2]", "float64 [2]", "0"]
    tree = page.tree()
    assert set(tree) == set(a) | set(b)  # every tensor a row, optimizer slots too
    assert {k: m for k, (m, _) in tree.items() if m != "equal"} == MARKS
    assert tree["dense/bias"][1]["m"] == f"{delta.max():.6g}"
    equal = len(set(a) & set(b)) - 3
    assert page.summary == f"{equal} equal, 3 differ, 1 only in A, 1 only in B"
    assert printed.splitlines()[-2] == page.summary


def test_equal_checkpoints_and_readable_names(tf_fixtures, tf_views, tmp_path):
    prefix = tf_fixtures["tf2_keras"]["prefix"]
    out = tmp_path / "same.html"
    assert main(["diff", prefix, prefix, "--html", str(out)]) == 0
    page = parse(out)
    assert page.table == {} and "every tensor is in both, equal" in out.read_text()
    tree = page.tree()
    assert {m for m, _ in tree.values()} == {"equal"}
    # Placed by the object graph's names as TensorFlow decodes them, each key beside its name.
    full_names = tf_views["full_names"]["tf2_keras"]
    variables = {f: k for k, f in full_names.items() if f in tree}
    assert "dense/kernel" in variables
    assert all(tree[f][1]["r"] == k for f, k in variables.items())


def test_hostile_names_are_escaped(tmp_path):
    a = {EVIL: np.zeros(3, np.float32), "<b>bold</b>": np.ones(2, np.float32)}
    b = {EVIL: np.ones(3, np.float32)}
    converter.write(a, tmp_path / "a.safetensors")
    converter.write(b, tmp_path / "b.safetensors")
    out = tmp_path / "d.html"
    assert main(["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                 "--html", str(out)]) == 1
    raw = out.read_text()
    assert "<img" not in raw and "<script>document" not in raw and "<b>bold" not in raw
    assert raw.count("</script>") == 2  # the page's own two script elements
    page = parse(out)
    assert page.table == {EVIL: "values", "<b>bold</b>": "only-a"}  # intact, as text
    assert set(page.tree()) == {EVIL, "<b>bold</b>"}


def test_output_is_atomic_and_needs_force(changed, tmp_path, capsys):
    a_path, b_path, _, _ = changed
    out = tmp_path / "d.html"
    out.write_text("mine")
    assert main(["diff", a_path, str(b_path), "--html", str(out)]) == 2
    captured = capsys.readouterr()
    assert "already exists (use --force" in captured.err and captured.out == ""
    assert out.read_text() == "mine"
    assert main(["diff", a_path, str(b_path), "--html", str(out), "--force"]) == 1
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.html"]
    capsys.readouterr()
    for target in (str(b_path), a_path + ".index"):  # neither checkpoint may be replaced
        assert main(["diff", a_path, str(b_path), "--html", target, "--force"]) == 2
        assert "checkpoint being" in capsys.readouterr().err
    assert converter.read(b_path)["extra/added"].read().tolist() == [0, 1, 2]


def test_json_stays_alone_on_stdout(changed, tmp_path, capsys):
    a_path, b_path, _, _ = changed
    out = tmp_path / "d.html"
    assert main(["diff", a_path, str(b_path), "--html", str(out), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["only_a"] == ["beta1_power"] and report["only_b"] == ["extra/added"]
    assert captured.err.startswith(f"wrote {out}")
    assert parse(out).table == MARKS
