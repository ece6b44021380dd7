"""``ckpt diff A B --html OUT.html``: one self-contained page of what differs between two
checkpoints.

The tensors of both make one scope tree, placed by their readable names when both are TF2
object-based checkpoints and no two keys would share a place (else by their keys), with one row
per tensor — optimizer slots too, since a slot may be what differs — and columns for A, for B
and for the largest absolute difference :func:`converter.diff.diff` found. Each tensor is
marked ``only-a``, ``only-b``, ``dtype``, ``shape`` (dtype too, when both differ), ``values``
or ``equal`` (the row's ``data-status``); a scope says what differs beneath it. A filter box
(part of a name, or a glob) and "only differences" narrow the tree, and a table lists the
differences up front (the first :data:`LISTED`). The page is built as ``ckpt inspect --html``'s
(:mod:`converter.html_page`): nothing fetched, every name escaped, and the URL fragment opens
it in a state (``#only=1&filter=dense``). Only the index is read here: the values were
compared by the diff.
"""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import dtypes, html_page, scopes
from .diff import DiffReport, TensorDiff
from .scopes import Node
from .tensor import Checkpoint, Tensor, as_checkpoint

LABELS = {"only-a": "only in A", "only-b": "only in B", "dtype": "dtype differs",
          "shape": "shape differs", "values": "values differ", "equal": "equal"}
LISTED = 1000  # differences in the table; the tree holds them all


def status(d: TensorDiff) -> str:
    """The mark of a tensor in both: ``shape``, ``dtype``, ``values`` or ``equal``."""
    if d.shape is not None:
        return "shape"
    if d.dtype is not None:
        return "dtype"
    return "equal" if d.equal else "values"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


@dataclass
class _Sum:
    """What lies under a node: tensors and values on each side, marks, the largest
    difference."""

    a: list[int] = field(default_factory=lambda: [0, 0])
    b: list[int] = field(default_factory=lambda: [0, 0])
    marks: Counter[str] = field(default_factory=Counter)
    max_abs: float | None = None

    def add(self, other: _Sum) -> None:
        for mine, theirs in ((self.a, other.a), (self.b, other.b)):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        self.marks.update(other.marks)
        self.bigger(other.max_abs)

    def bigger(self, v: float | None) -> None:
        if v is not None and not math.isnan(v) and (self.max_abs is None or v > self.max_abs):
            self.max_abs = v

    @property
    def differing(self) -> int:
        return sum(n for m, n in self.marks.items() if m != "equal")

    def label(self) -> str:
        if not self.differing:
            n = self.marks["equal"]
            return "equal" if n == 1 else f"all {n:,} equal"
        return ", ".join(f"{n:,} {LABELS[m]}" for m, n in sorted(
            self.marks.items(), key=lambda x: list(LABELS).index(x[0])) if m != "equal")


class _Comparison:
    """Both checkpoints and the report, tensor by tensor."""

    def __init__(self, a: Checkpoint, b: Checkpoint, report: DiffReport) -> None:
        self.a, self.b = a, b
        # The report lists A's tensors that B has, in A's order.
        self.diffs = dict(zip([k for k in a if k in b], report.tensors, strict=True))

    def mark(self, key: str) -> str:
        if key not in self.b:
            return "only-a"
        if key not in self.a:
            return "only-b"
        return status(self.diffs[key])

    @staticmethod
    def describe(t: Tensor | None) -> str:
        return "—" if t is None else f"{dtypes.name_of(t.dtype)} [{', '.join(map(str, t.shape))}]"

    def encode(self, node: Node) -> tuple[list[Any], _Sum]:
        """``[name, A, B, differing, tensors, extra, children?]``: A and B as text; extra
        ``t`` (the mark of the node's own tensor), ``r`` (its key, where the node is placed
        by a readable name), ``m`` (largest absolute difference), ``c`` (a scope's marks)."""
        total = _Sum()
        kids = []
        for child in node.children.values():
            encoded, sub = self.encode(child)
            kids.append(encoded)
            total.add(sub)
        extra: dict[str, Any] = {}
        if node.tensor is not None:
            key = node.tensor
            ta, tb = self.a.get(key), self.b.get(key)
            mark = self.mark(key)
            total.marks[mark] += 1
            for side, t in ((total.a, ta), (total.b, tb)):
                if t is not None:
                    side[0] += 1
                    side[1] += t.size
            d = self.diffs.get(key)
            if d is not None:
                total.bigger(d.max_abs)
                if d.max_abs is not None:
                    extra["m"] = _num(d.max_abs)
            extra["t"] = mark
            if key != node.path:
                extra["r"] = key
            cells = [self.describe(ta), self.describe(tb)]
        else:
            cells = [f"{_plural(s[0], 'tensor')}, {_plural(s[1], 'value')}" if s[0] else "—"
                     for s in (total.a, total.b)]
            extra["c"] = total.label()
            if total.max_abs is not None:
                extra["m"] = _num(total.max_abs)
        out: list[Any] = [node.name, *cells, total.differing, sum(total.marks.values()), extra]
        if kids:
            out.append(kids)
        return out, total


def _placed(a: Checkpoint, b: Checkpoint, keys: list[str]) -> dict[str, str]:
    """Readable names for TF2 keys (A's where A has the key), unless two keys would meet."""
    ra, rb = scopes.readable_names(a), scopes.readable_names(b)
    names = {k: n for k in keys if (n := (ra if k in a else rb).get(k)) is not None}
    shown = [names.get(k, k) for k in keys]
    return names if len(set(shown)) == len(shown) else {}


def page(a: Checkpoint | Mapping[str, Any], b: Checkpoint | Mapping[str, Any],
         report: DiffReport, *, title_a: str = "A", title_b: str = "B",
         rtol: float = 0.0, atol: float = 0.0, facts: Sequence[tuple[str, str]] = ()) -> str:
    """The HTML page of ``report`` (:func:`converter.diff.diff` of ``a`` and ``b``).

    Args:
        title_a, title_b: what A and B are (the paths given).
        rtol, atol: the tolerances the diff was made with, to say so.
        facts: more ``(what, text)`` lines for the page's head (rules applied ...).

    Example:
        >>> a, b = converter.read("old.ckpt-1000"), converter.read("new.safetensors")
        >>> text = page(a, b, converter.diff(a, b), title_a="old", title_b="new")
    """
    a, b = as_checkpoint(a), as_checkpoint(b)
    cmp = _Comparison(a, b, report)
    keys = [*a, *(k for k in b if k not in a)]
    union = {k: a[k] if k in a else b[k] for k in keys}
    root = scopes.build(union, names=_placed(a, b, keys), fold_slots=False)
    encoded, _ = cmp.encode(root)
    data = {"tree": encoded, "sep": scopes.scope_separator(
        [n.path for _, n in root.walk() if n.path]), "labels": LABELS}
    esc = html.escape
    marks = Counter(cmp.mark(k) for k in keys)
    summary = (f"{marks['equal']:,} equal, {len(report.differing):,} differ, "
               f"{len(report.only_a):,} only in A, {len(report.only_b):,} only in B")
    how = ("values bit for bit" if not (rtol or atol) else
           f"|a − b| ≤ atol + rtol·|b| elementwise (rtol {rtol:g}, atol {atol:g}), NaN equal "
           "to NaN")
    head = [("A", _side(title_a, a)), ("B", _side(title_b, b)), ("compared", how), *facts]
    body = [
        f"<header><h1>{esc(title_a)} ↔ {esc(title_b)}</h1>"
        f"<p class=\"sum\" id=\"summary\">{esc(summary)}</p></header>",
        "<section id=\"facts\"><table>",
        "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in head),
        "</table></section>",
        _table(cmp, keys),
        html_page.tree_section(
            "Scopes", ["scope", "status", "A", "B", "max |a − b|"],
            "filter: part of a name, or a glob (dense/*/kernel)",
            "<label><input id=\"only\" type=\"checkbox\"> only differences</label> "),
    ]
    title = f"ckpt diff: {title_a} ↔ {title_b}"
    return html_page.document(title, body, data=data, script=_JS, css=_CSS)


def _side(title: str, ckpt: Checkpoint) -> str:
    s = ckpt.source
    where = f"{s.format}{' (' + s.layout + ')' if s.layout else ''}, " if s is not None else ""
    return f"{title}: {where}{len(ckpt):,} tensors"


def _table(cmp: _Comparison, keys: list[str]) -> str:
    esc = html.escape
    rows = []
    differing = [k for k in keys if cmp.mark(k) != "equal"]
    for key in differing[:LISTED]:
        mark = cmp.mark(key)
        d = cmp.diffs.get(key)
        rows.append(f"<tr data-name=\"{esc(key)}\" data-status=\"{mark}\" class=\"st-{mark}\">"
                    f"<td>{esc(key)}</td><td>{LABELS[mark]}</td>"
                    f"<td>{esc(cmp.describe(cmp.a.get(key)))}</td>"
                    f"<td>{esc(cmp.describe(cmp.b.get(key)))}</td>"
                    f"<td class=\"num\">{_num(d.max_abs if d else None)}</td></tr>")
    if not differing:
        return ("<section id=\"differences\"><h2>Differences</h2>"
                "<p>None: every tensor is in both, equal.</p></section>")
    more = (f"<p>The first {LISTED:,} of {len(differing):,}; the tree below holds them all.</p>"
            if len(differing) > LISTED else "")
    return ("<section id=\"differences\"><h2>Differences</h2><table id=\"changes\"><tr>"
            "<th>tensor</th><th>status</th><th>A</th><th>B</th><th>max |a − b|</th></tr>"
            f"{''.join(rows)}</table>{more}</section>")


def write(a: Checkpoint | Mapping[str, Any], b: Checkpoint | Mapping[str, Any],
          report: DiffReport, path: str | os.PathLike[str], *, force: bool = False,
          **options: Any) -> int:
    """Write :func:`page` to ``path`` atomically (temporary name, then rename); an existing
    file is replaced only with ``force``. Returns the page's size in bytes."""
    return html_page.write(page(a, b, report, **options), path, force=force)


_CSS = """
.hd,.r{grid-template-columns:minmax(16em,2.4fr) minmax(9em,1.2fr) minmax(9em,1fr)
minmax(9em,1fr) 7em}
.r>span:nth-child(5),.hd>span:nth-child(5),td.num{text-align:right}
#changes{margin-bottom:.5em}#changes td{word-break:break-all}
.st-only-a{background:#fde8e8}.st-only-b{background:#e3f4e6}
.st-dtype,.st-shape{background:#fff3c4}.st-values{background:#fde3cc}
.st-scope>span:nth-child(2){color:#b33}
label{margin-right:.8em;color:#444}
"""

# Nodes: [name, A, B, differing, tensors, extra, children?] (_Comparison.encode).
_JS = r"""
treeView(function(D,h){
var el=h.el,L=D.labels,box=document.getElementById("only");
box.addEventListener("change",h.refresh);
return {
restricted:function(){return box.checked;},
own:function(node){var x=node[5];return !!(x&&x.t)&&(!box.checked||x.t!=="equal");},
cells:function(r,first,node,x){
  if(x.r)first.appendChild(el("span","raw",x.r));
  if(x.t){r.setAttribute("data-status",x.t);r.classList.add("st-"+x.t);}
  else{r.setAttribute("data-differs",String(node[3]));if(node[3])r.classList.add("st-scope");}
  var st=el("span",null,x.t?L[x.t]:x.c||"");st.title=st.textContent;r.appendChild(st);
  r.appendChild(el("span",null,node[1]));
  r.appendChild(el("span",null,node[2]));
  r.appendChild(el("span",null,x.m||""));
},
filtered:function(test){
  var rows=document.querySelectorAll("#changes tr[data-name]");
  for(var i=0;i<rows.length;i++)
    rows[i].classList.toggle("hide",!!test&&!test(rows[i].getAttribute("data-name")));
},
init:function(args){if(args.get("only")==="1"&&!box.checked)box.click();}
};
});
"""
