"""``ckpt inspect SRC --html OUT.html``: the page opened in headless Chromium (tree, expanding a
scope, filtering, histograms, escaping, a screenshot), its size for 20 000 tensors, the bounded
sample its histograms are read from, and a SavedModel written by TensorFlow. Also the page of
``ckpt diff A B --html`` in Chromium, built on the same tree (the rest of it:
tests/test_diff_html.py)."""

from __future__ import annotations

import html.parser
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import inspect_html
from converter.cli import main
from converter.tensor import Tensor
from tests.helpers import tf_available

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.access(p, os.X_OK)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")

# A name that would run if the page put it into HTML unescaped.
EVIL = "evil/<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">" \
       "</script><script>document.body.setAttribute('data-pwned','2')</script>"


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with nothing that reaches the network; its stdout."""
    profile = tmp_path / f"profile-{os.urandom(4).hex()}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(tmp_path: Path, page: Path, fragment: str = "") -> _Dom:
    text = chromium(tmp_path, "--virtual-time-budget=2000", "--dump-dom",
                    page.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    parsed = _Dom()
    parsed.feed(text)
    parsed.close()
    return parsed


class _Dom(html.parser.HTMLParser):
    """Elements as (tag, attributes) in document order, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def rows(self) -> list[str]:
        return [a["data-path"] or "" for t, a in self.elements if "data-path" in a]

    def attr(self, tag: str, name: str) -> str | None:
        return next((a.get(name) for t, a in self.elements if t == tag and name in a), None)

    def figures(self) -> dict[str, bool]:
        """``{tensor name: shown}`` of the histogram figures."""
        return {a["data-name"]: "hide" not in (a.get("class") or "").split()
                for t, a in self.elements if t == "figure"}


@pytest.fixture(scope="module")
def small_page(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("page")
    rng = np.random.default_rng(7)
    converter.write({
        "dense/kernel": rng.standard_normal((64, 32)).astype(np.float32),
        "dense/bias": np.linspace(-1, 1, 32, dtype=np.float32),
        "dense/kernel/Adam": rng.random((64, 32), dtype=np.float32),
        "dense/kernel/Adam_1": rng.random((64, 32), dtype=np.float32),
        "head/logits/kernel": rng.uniform(-2, 2, (32, 10)).astype(np.float32),
        "head/logits/bias": np.zeros(10, np.float32),
        EVIL: np.arange(6, dtype=np.int64),
        "global_step": np.array(1000, np.int64),
    }, d / "m.safetensors")
    assert main(["inspect", str(d / "m.safetensors"), "--html", str(d / "m.html")]) == 0
    return d / "m.html"


@needs_chromium
def test_tree_opens_at_the_root_with_scopes_closed(small_page, tmp_path):
    page = dom(tmp_path, small_page)
    assert page.attr("body", "data-ready") == "1"
    rows = page.rows()
    assert rows[:1] == [""]  # the root, open
    assert {"dense", "head", "evil", "global_step"} <= set(rows)
    assert "dense/kernel" not in rows and "head/logits" not in rows


@needs_chromium
def test_expanding_a_scope_shows_its_children_and_their_histograms(small_page, tmp_path):
    page = dom(tmp_path, small_page, "expand=dense&expand=head/logits")
    rows = page.rows()
    assert {"dense/kernel", "dense/bias", "head/logits", "head/logits/kernel",
            "head/logits/bias"} <= set(rows)
    # Slots are folded into their variable, not listed.
    assert "dense/kernel/Adam" not in rows
    assert "+2 Adam slots" in "".join(page.text)
    minis = [a for t, a in page.elements if t == "svg" and "mini" in (a.get("class") or "")]
    assert len(minis) >= 4
    paths = [a.get("d") for t, a in page.elements if t == "path"]
    assert all(p and p.startswith("M0 100") for p in paths)


@needs_chromium
def test_filter_hides_what_does_not_match(small_page, tmp_path):
    page = dom(tmp_path, small_page, "filter=kernel")
    rows = set(page.rows())
    assert {"", "dense", "dense/kernel", "head", "head/logits", "head/logits/kernel"} <= rows
    assert not rows & {"dense/bias", "head/logits/bias", "global_step", "evil"}
    figures = page.figures()
    assert figures["dense/kernel"] and figures["head/logits/kernel"]
    assert not figures["dense/bias"] and not figures["global_step"]
    assert "2 matching" in "".join(page.text)
    glob = set(dom(tmp_path, small_page, "filter=" + "*/bias").rows())
    assert {"dense/bias", "head/logits/bias"} <= glob and "dense/kernel" not in glob


@needs_chromium
def test_names_are_escaped(small_page, tmp_path):
    raw = small_page.read_text()
    assert "<img" not in raw and "<script>document" not in raw
    page = dom(tmp_path, small_page, "expand=" + EVIL.rsplit("/", 1)[0])
    assert page.attr("body", "data-pwned") is None
    assert not [a for t, a in page.elements if t == "img"]
    assert EVIL in page.figures()  # the name, intact, as text
    assert any("onerror" in s for s in page.text)


def _png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG as an (h, w, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    assert header is not None
    w, h, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 255
        elif kind == 1:
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        else:
            cur_l = line.tolist()
            up = prev.tolist()
            for i in range(stride):
                a = cur_l[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    cur_l[i] = (cur_l[i] + (a + b) // 2) & 255
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    cur_l[i] = (cur_l[i] + pred) & 255
            cur = np.array(cur_l, np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)


@needs_chromium
def test_screenshot_shows_the_page(small_page, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900",
             "--virtual-time-budget=2000", small_page.resolve().as_uri() + "#expand=dense")
    pixels = _png_pixels(shot.read_bytes())[:, :, :3]
    assert pixels.shape[:2] == (900, 1200)
    flat = pixels.reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(flat, axis=0)}
    assert len(colours) > 50  # text, rules, bars: not a blank or one-colour page
    background = (flat == (250, 250, 250)).all(axis=1) | (flat == 255).all(axis=1)
    assert background.mean() < 0.97
    bars = (np.abs(flat.astype(int) - (0x4A, 0x7F, 0xD0)).sum(axis=1) < 30).sum()
    assert bars > 2000  # the histograms' blue


def _many(path: Path, n: int = 20_000) -> None:
    tensors = {}
    for i in range(n):
        layer, unit = divmod(i, 100)
        tensors[f"encoder/layer_{layer:03d}/unit_{unit:02d}/kernel"] = \
            np.full((i % 7 + 1, 4), i, np.float32)
    converter.write(tensors, path)


@pytest.fixture(scope="module")
def many_page(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("many")
    _many(d / "many.safetensors")
    assert main(["inspect", str(d / "many.safetensors"), "--html", str(d / "many.html")]) == 0
    return d / "many.html"


def test_page_of_20000_tensors_is_under_5_mb(many_page):
    size = many_page.stat().st_size
    assert size < 5_000_000, size
    text = many_page.read_text()
    assert text.count("<figure") == inspect_html.MAX_HISTOGRAMS
    assert "Histograms of the 200 largest of 20,000 numeric tensors" in text
    for needle in ("http://", "https://", "<link", " src="):
        assert needle not in text


@needs_chromium
def test_page_of_20000_tensors_expands_quickly(many_page, tmp_path):
    page = dom(tmp_path, many_page, "expand=encoder")
    rows = page.rows()
    assert "encoder/layer_199" in rows and len(rows) == 202  # root, encoder, 200 layers
    assert float(page.attr("body", "data-render-ms") or "inf") < 1000
    found = dom(tmp_path, many_page, "filter=unit_05")
    assert "200 matching" in "".join(found.text)
    assert {f"encoder/layer_{i:03d}/unit_05/kernel" for i in range(200)} <= set(found.rows())
    assert "encoder/layer_000/unit_06" not in found.rows()


def test_histograms_read_a_bounded_sample(tmp_path, monkeypatch):
    big = np.random.default_rng(3).standard_normal(4 << 20).astype(np.float32)  # 16 MiB
    small = np.arange(100, dtype=np.float32)
    converter.write({"big": big, "small": small}, tmp_path / "m.safetensors")
    read = []
    real_pread = inspect_html._pread
    monkeypatch.setattr(inspect_html, "_pread",
                        lambda fd, n, offset: read.append(n) or real_pread(fd, n, offset))
    whole = []
    real_read = Tensor.read
    monkeypatch.setattr(Tensor, "read", lambda self: whole.append(self.name) or real_read(self))
    with converter.read(tmp_path / "m.safetensors") as ckpt:
        with inspect_html._Sampler() as sampler:
            values = sampler.sample(ckpt["big"])
        assert values is not None and values.size == inspect_html.SAMPLE
        run = inspect_html.SAMPLE // inspect_html.WINDOWS
        assert np.array_equal(values[:run], big[:run])
        assert np.array_equal(values[-run:], big[-run:])
        assert sum(read) == inspect_html.SAMPLE * 4
        read.clear()
        inspect_html.page(ckpt)
    assert sum(read) == (inspect_html.SAMPLE + small.size) * 4
    assert whole == []


def test_tensors_without_a_span_are_read_whole_only_when_small(tmp_path):
    big = np.ones(2 << 20, np.float32)  # 8 MiB, above UNSPANNED_LIMIT
    converter.write({"big": big, "small": np.arange(9.0)}, tmp_path / "m.npz", compress=True)
    with converter.read(tmp_path / "m.npz") as ckpt:
        assert ckpt["big"].span is None
        text = inspect_html.page(ckpt)
    assert 'data-name="small"' in text and 'data-name="big"' not in text
    assert "Histograms of 1 of 2 numeric tensors" in text


def test_output_is_atomic_and_needs_force(small_page, tmp_path, capsys):
    src = small_page.with_name("m.safetensors")
    out = tmp_path / "p.html"
    out.write_text("mine")
    assert main(["inspect", str(src), "--html", str(out)]) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert out.read_text() == "mine"
    assert main(["inspect", str(src), "--html", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]
    assert main(["inspect", str(src), "--html", str(src), "--force"]) == 2
    assert "checkpoint being" in capsys.readouterr().err
    assert main(["inspect", str(src), "--html", str(out), "--json"]) == 2


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_graphs import built

    return built(tmp_path_factory)


def test_saved_model_page_has_tensorflows_signatures_and_values(written, tmp_path):
    out, expected = written
    page = tmp_path / "sm.html"
    assert main(["inspect", str(out / "module_sm"), "--html", str(page)]) == 0
    text = page.read_text()
    for name, sig in expected["module_sm"]["loaded"].items():
        assert f"signature &#x27;{name}&#x27;: tensorflow/serving/predict" in text
        for key, (dtype, _) in sig["inputs"].items():
            assert f"input  {key}: {dtype}" in text
    values = expected["module_sm"]["variables"]
    with converter.read(out / "module_sm") as ckpt:
        for key in ("kernel/.ATTRIBUTES/VARIABLE_VALUE", "half/.ATTRIBUTES/VARIABLE_VALUE"):
            with inspect_html._Sampler() as sampler:
                h = sampler.histogram(ckpt[key])
            tf_values = values[key].astype(np.float64).reshape(-1)
            assert h is not None and (h.lo, h.hi) == (tf_values.min(), tf_values.max())
            counts, _ = np.histogram(tf_values, bins=inspect_html.BINS, range=(h.lo, h.hi))
            assert h.counts == counts.tolist() and h.sampled == tf_values.size
    if CHROMIUM is not None:
        shown = dom(tmp_path, page, "expand=dense")
        assert "dense/kernel" in shown.rows()  # the readable name, raw key beside it
        assert "kernel/.ATTRIBUTES/VARIABLE_VALUE" in shown.text


@needs_chromium
def test_diff_page_shows_only_differences_when_switched(tmp_path):
    rng = np.random.default_rng(5)
    a = {"dense/kernel": rng.standard_normal((4, 3)).astype(np.float32),
         "dense/bias": np.zeros(3, np.float32),
         "head/w": rng.standard_normal((3, 2)).astype(np.float32),
         "head/b": np.zeros(2, np.float32),
         "gone": np.arange(4, dtype=np.int64),
         EVIL: np.zeros(2, np.float32)}
    b = dict(a, **{"dense/bias": a["dense/bias"] + 1, "head/w": a["head/w"].reshape(2, 3),
                   "new/x": np.ones(5, np.float32), EVIL: np.ones(2, np.float32)})
    del b["gone"]
    converter.write(a, tmp_path / "a.safetensors")
    converter.write(b, tmp_path / "b.safetensors")
    out = tmp_path / "d.html"
    assert main(["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                 "--html", str(out)]) == 1
    parts = EVIL.split("/")
    evil_scopes = {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}  # EVIL included
    everything = dom(tmp_path, out, "expand=dense&expand=head")
    assert {"dense/kernel", "head/b", "dense/bias", "head/w", "gone"} <= set(everything.rows())
    only = dom(tmp_path, out, "only=1")  # the switch, clicked as a user would
    assert only.attr("body", "data-pwned") is None
    marks = {a["data-path"]: a.get("data-status") for t, a in only.elements if "data-path" in a}
    assert set(marks) == {"", "dense", "dense/bias", "head", "head/w", "gone", "new",
                          "new/x"} | evil_scopes
    assert {p: m for p, m in marks.items() if m} == {
        "dense/bias": "values", "head/w": "shape", "gone": "only-a", "new/x": "only-b",
        EVIL: "values"}
    assert "5 matching" in "".join(only.text)
    both = dom(tmp_path, out, "only=1&filter=head")
    assert set(both.rows()) == {"", "head", "head/w"}
