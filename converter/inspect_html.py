"""``ckpt inspect SRC --html OUT.html``: one self-contained page to look inside a checkpoint.

The page needs no network: its CSS and its small script are inline, its histograms are inline
SVG. The scope tree (:func:`converter.inspection.tree`, optimizer slots folded) travels as
compact JSON and the script renders a scope's rows only when it is opened, so a checkpoint of
20 000 tensors makes a page of a few MB that opens at once. Every name reaches the page either
HTML-escaped or through ``textContent``, and the JSON is escaped so that no ``</script>`` in a
name can end its script element.

Histograms are of a bounded sample: at most :data:`SAMPLE` values per tensor, read with
``pread`` from :data:`WINDOWS` evenly spaced windows of the tensor's byte span (never the whole
tensor), for the :data:`MAX_HISTOGRAMS` largest numeric tensors. A tensor without a byte span
(compressed or chunked storage) is read whole only up to :data:`UNSPANNED_LIMIT` bytes.

The page acts on its URL fragment, so a link (or a headless browser) can open it in a given
state: ``#expand=dense&expand=dense/kernel&filter=kernel`` opens those scopes and filters.
"""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import display, dtypes, html_page, inspection, scopes, storage
from .scopes import Node
from .sizes import human
from .tensor import Checkpoint, Source, Tensor, as_checkpoint

SAMPLE = 4096  # values read per tensor for its histogram
WINDOWS = 64  # evenly spaced runs the sample is read in: rows and columns both show up
MAX_HISTOGRAMS = 200  # the largest numeric tensors get one
BINS = 32
UNSPANNED_LIMIT = 4 << 20  # bytes of a tensor without a span that may be read whole


@dataclass(frozen=True)
class Histogram:
    """Counts of a sample's finite values in equal bins from ``lo`` to ``hi``.

    Attributes:
        sampled: values in the sample; total: values in the tensor.
        nan, inf: non-finite values in the sample (not binned).
        integer: the bins are the integers ``lo`` to ``hi`` (a tensor of few distinct ints).
    """

    counts: list[int]
    lo: float
    hi: float
    sampled: int
    total: int
    nan: int = 0
    inf: int = 0
    integer: bool = False

    def summary(self) -> str:
        what = "all" if self.sampled == self.total else f"a sample of {self.sampled:,} of"
        text = f"{what} {self.total:,} values; min {_num(self.lo)}, max {_num(self.hi)}"
        if self.nan or self.inf:
            text += f"; NaN {self.nan}, Inf {self.inf}"
        return text

    def svg(self) -> str:
        """Bars as one filled path, 100 units high; the title says what was sampled."""
        top = max(self.counts) or 1
        parts = ["M0 100"]
        for c in self.counts:
            h = 0 if c == 0 else max(1, round(100 * c / top))
            parts.append(f"V{100 - h}h1")
        parts.append("V100z")
        return (f'<svg class="hist" viewBox="0 0 {len(self.counts)} 100" '
                f'preserveAspectRatio="none" role="img"><title>{html.escape(self.summary())}'
                f'</title><path d="{"".join(parts)}"/></svg>')


def _num(v: float) -> str:
    return f"{v:.4g}"


class _Sampler:
    """Reads bounded samples of tensors, keeping each file open once."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.bytes_read = 0

    def __enter__(self) -> _Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()

    def _pread(self, path: str, offset: int, n: int) -> bytes:
        if storage.is_url(path):  # a sample by ranged reads
            data = storage.open_file(path).pread(offset, n)
            self.bytes_read += len(data)
            return data
        fd = self.files.get(path)
        if fd is None:
            fd = self.files[path] = os.open(path, os.O_RDONLY)
        data = _pread(fd, n, offset)
        self.bytes_read += len(data)
        return data

    def sample(self, tensor: Tensor, n: int = SAMPLE) -> np.ndarray | None:
        """At most ``n`` of the tensor's values as float64, or None for strings, complex
        values, and tensors that cannot be sampled without reading more than a bound."""
        kind = inspection.value_kind(tensor.dtype)
        if kind in "Sc" or tensor.size == 0:
            return None
        dtype = tensor.dtype.newbyteorder("<") if tensor.dtype.byteorder == ">" \
            else tensor.dtype
        item = dtype.itemsize
        span = tensor.span
        if span is not None and item and span[2] == tensor.size * item:
            path, offset, _ = span
            if tensor.size <= n:
                raw = self._pread(path, offset, tensor.size * item)
            else:
                windows = min(WINDOWS, n)
                run = n // windows
                starts = np.linspace(0, tensor.size - run, windows).astype(np.int64)
                raw = b"".join(self._pread(path, offset + int(s) * item, run * item)
                               for s in starts)
            if len(raw) % item:
                return None  # a truncated file: verify says so; the page only leaves it out
            values = np.frombuffer(raw, dtype=dtype)
        elif tensor.nbytes <= UNSPANNED_LIMIT:
            values = tensor.read().reshape(-1)
            if values.size > n:
                values = values[np.linspace(0, values.size - 1, n).astype(np.int64)]
        else:
            return None
        if kind == "b":
            values = values.view(np.uint8)
        return values.astype(np.float64)

    def histogram(self, tensor: Tensor, bins: int = BINS) -> Histogram | None:
        values = self.sample(tensor)
        if values is None or values.size == 0:
            return None
        finite = values[np.isfinite(values)]
        nan = int(np.count_nonzero(np.isnan(values)))
        inf = values.size - finite.size - nan
        if finite.size == 0:
            return Histogram([0], math.nan, math.nan, values.size, tensor.size, nan, inf)
        lo, hi = float(finite.min()), float(finite.max())
        integer = inspection.value_kind(tensor.dtype) in "biu" and hi - lo < bins
        if integer:
            counts, _ = np.histogram(finite, bins=int(hi - lo) + 1, range=(lo - 0.5, hi + 0.5))
        elif lo == hi:
            counts = np.array([finite.size])
        else:
            counts, _ = np.histogram(finite, bins=bins, range=(lo, hi))
        return Histogram([int(c) for c in counts], lo, hi, values.size, tensor.size, nan, inf,
                         integer)


def _pread(fd: int, n: int, offset: int) -> bytes:
    """Every one of ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
    parts = []
    while n > 0:
        data = os.pread(fd, n, offset)
        if not data:
            break
        parts.append(data)
        n -= len(data)
        offset += len(data)
    return b"".join(parts)


def _chosen(ckpt: Checkpoint, limit: int) -> list[str]:
    """The ``limit`` largest numeric tensors, in checkpoint order."""
    numeric = [(t.size, i, k) for i, (k, t) in enumerate(ckpt.items())
               if t.size and inspection.value_kind(t.dtype) not in "Sc"]
    numeric.sort(key=lambda x: (-x[0], x[1]))
    return [k for _, _, k in sorted(numeric[:limit], key=lambda x: x[1])]


class _Encoder:
    """The tree as nested arrays: ``[name, params, nbytes, dtypes, tensors, extra, children?]``,
    dtypes as an index into a shared table and ``extra`` (kind, shape, raw key, slots,
    histogram) as 0 when there is nothing to say, to keep 20 000 tensors small."""

    def __init__(self, ckpt: Checkpoint, histograms: Mapping[str, int]) -> None:
        self.ckpt = ckpt
        self.histograms = histograms
        self.table: dict[str, int] = {}

    def _dtypes(self, counts: Mapping[str, int]) -> int:
        return self.table.setdefault(scopes.dtype_summary(counts), len(self.table))

    def encode(self, node: Node) -> tuple[list[Any], Counter[str]]:
        kinds: Counter[str] = Counter()
        kids = []
        for child in node.children.values():
            encoded, sub = self.encode(child)
            kids.append(encoded)
            kinds.update(sub)
        extra: dict[str, Any] = {}
        if node.tensor is not None:
            t = self.ckpt[node.tensor]
            kinds[t.kind] += 1
            extra["s"] = list(t.shape)
            if node.tensor != node.path:
                extra["r"] = node.tensor
            if node.tensor in self.histograms:
                extra["h"] = self.histograms[node.tensor]
        if set(kinds) != {"variable"}:
            extra["k"] = ", ".join(k for k, _ in kinds.most_common())
        label = display.slot_note(node)
        if label:
            extra["l"] = label
        out: list[Any] = [node.name, node.params, node.nbytes, self._dtypes(node.dtypes),
                          node.tensors, extra or 0]
        if kids:
            out.append(kids)
        return out, kinds


def page(checkpoint: Checkpoint | Mapping[str, Any], *, title: str = "checkpoint",
         source: Source | None = None, signatures: list[str] | None = None,
         max_histograms: int = MAX_HISTOGRAMS) -> str:
    """The HTML page of a checkpoint.

    Args:
        title: what the page is of (the path given).
        source: what the reader found (format, layout, step, shards); default the
            checkpoint's own.
        signatures: lines describing a SavedModel's MetaGraphs and signatures
            (:func:`converter.graphs.describe`), shown as they are.
        max_histograms: histograms for this many of the largest numeric tensors.

    Example:
        >>> text = page(converter.read("model.ckpt-1000"), title="model.ckpt-1000")
    """
    ckpt = as_checkpoint(checkpoint)
    source = source if source is not None else ckpt.source
    chosen = _chosen(ckpt, max_histograms)
    figures: list[str] = []
    index: dict[str, int] = {}
    with _Sampler() as sampler:
        for key in chosen:
            h = sampler.histogram(ckpt[key])
            if h is None:
                continue
            index[key] = len(figures)
            figures.append(
                f'<figure id="h{len(figures)}" data-name="{html.escape(key)}">'
                f"<figcaption>{html.escape(key)}</figcaption>{h.svg()}"
                f'<div class="ax"><span>{_num(h.lo)}</span><span>{_num(h.hi)}</span></div>'
                f"<small>{html.escape(h.summary())}</small></figure>")
    root = inspection.tree(ckpt)
    encoder = _Encoder(ckpt, index)
    encoded, _ = encoder.encode(root)
    names = [n for _, n in root.walk() if n.path]
    sep = "/" if any("/" in n.path for n in names) else "."
    data = {"tree": encoded, "dtypes": list(encoder.table), "sep": sep}
    numeric = sum(1 for t in ckpt.values() if t.size and inspection.value_kind(t.dtype) not in "Sc")
    if len(figures) < numeric:
        note = (f"Histograms of the {len(figures):,} largest of {numeric:,} numeric tensors"
                if len(chosen) < numeric else
                f"Histograms of {len(figures):,} of {numeric:,} numeric tensors (the others are "
                "stored without a byte span and too large to read whole for a sample)")
    else:
        note = f"Histograms of all {numeric:,} numeric tensors"
    note += f", each from at most {SAMPLE:,} values read in {WINDOWS} evenly spaced runs."
    facts = _facts(ckpt, source, root)
    meta = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in ckpt.metadata.items())
    sig = "\n".join(signatures or [])
    esc = html.escape
    body = [
        f"<header><h1>{esc(title)}</h1><p class=\"sum\">{esc(facts[0][1])}</p></header>",
        "<section id=\"facts\"><table>",
        "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts[1:]),
        "</table></section>",
        f"<section id=\"metadata\"><h2>Metadata</h2><table>{meta}</table></section>"
        if meta else "",
        f"<section id=\"signatures\"><h2>Signatures</h2><pre>{esc(sig)}</pre></section>"
        if sig else "",
        html_page.tree_section("Scopes", ["scope", "params", "bytes", "dtypes", "kind",
                                          "shape / slots"],
                               "filter: part of a name, or a glob (dense/*/kernel)"),
        f"<section id=\"hist\"><h2>Histograms</h2><p>{esc(note)}</p>",
        f"<div class=\"hg\">{''.join(figures)}</div></section>",
    ]
    return html_page.document(f"ckpt inspect: {title}", body, data=data, script=_JS, css=_CSS)

def _facts(ckpt: Checkpoint, source: Source | None, root: Node) -> list[tuple[str, str]]:
    total = sum(t.nbytes for t in ckpt.values())
    line = f"{len(ckpt):,} tensors, {root.params + root.slot_params:,} values, {human(total)}"
    if root.slot_params:
        line += f" (optimizer slots: {root.slot_params:,} values, {human(root.slot_nbytes)})"
    out = [("summary", line)]
    if source is not None:
        out.append(("format", source.format + (f" ({source.layout})" if source.layout else "")))
        out.append(("path", source.path))
        if source.saved_model:
            out.append(("SavedModel", source.saved_model))
        if source.step is not None:
            out.append(("step", str(source.step)))
        if source.shards is not None:
            out.append(("shards", str(source.shards)))
        out += [(k, str(v)) for k, v in source.facts.items()]
    counts = Counter(dtypes.name_of(t.dtype) for t in ckpt.values())
    out.append(("dtypes", ", ".join(f"{d} ({n})" for d, n in counts.most_common())))
    kinds = Counter(t.kind for t in ckpt.values())
    out.append(("kinds", ", ".join(f"{k} ({n})" for k, n in kinds.most_common())))
    return out


def write(checkpoint: Checkpoint | Mapping[str, Any], path: str | os.PathLike[str], *,
          force: bool = False, **options: Any) -> int:
    """Write :func:`page` to ``path`` atomically (temporary name, then rename); an existing
    file is replaced only with ``force``. Returns the page's size in bytes."""
    return html_page.write(page(checkpoint, **options), path, force=force)


# The shared style (html_page.CSS) plus this page's columns and histograms.
_CSS = """
.hd,.r{grid-template-columns:minmax(16em,2.4fr) 7em 6em 9em 6em minmax(8em,1.4fr)}
.r>span:nth-child(2),.r>span:nth-child(3),.hd>span:nth-child(2),.hd>span:nth-child(3)
{text-align:right}
svg.hist{width:100%;height:48px;background:#fff;border:1px solid #ddd}
svg.hist path{fill:#4a7fd0}svg.mini{width:80px;height:16px;vertical-align:middle;
margin-left:6px;border:0}
.hg{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #e3e3e3;padding:6px}
figcaption{font-size:12px;word-break:break-all;margin-bottom:3px}
.ax{display:flex;justify-content:space-between;font-size:11px;color:#666}
"""

# Nodes: [name, params, nbytes, dtypes (index), tensors, extra, children?] (_Encoder).
_JS = r"""
treeView(function(D,h){
var DT=D.dtypes,el=h.el,fmt=h.fmt;
return {
own:function(node){var x=node[5];return !!(x&&x.s);},
cells:function(r,first,node,x){
  if(x.h!==undefined){var f=document.getElementById("h"+x.h);
    if(f){var s=f.querySelector("svg").cloneNode(true);s.classList.add("mini");
      first.appendChild(s);}}
  if(x.r)first.appendChild(el("span","raw",x.r));
  r.appendChild(el("span",null,fmt(node[1])));
  r.appendChild(el("span",null,h.hb(node[2])));
  r.appendChild(el("span",null,DT[node[3]]||""));
  r.appendChild(el("span","k",x.k||"variable"));
  var last=el("span");
  if(x.s)last.appendChild(el("span",null,"["+x.s.join(", ")+"] "));
  if(node[6]&&!x.s)last.appendChild(el("span",null,fmt(node[4])+
    (node[4]===1?" tensor ":" tensors ")));
  if(x.l)last.appendChild(el("span","sl",x.l));
  r.appendChild(last);
},
filtered:function(test){
  var figs=document.querySelectorAll("#hist figure");
  for(var i=0;i<figs.length;i++){var nm=figs[i].getAttribute("data-name");
    figs[i].classList.toggle("hide",!!test&&!test(nm));}
}
};
});
"""
