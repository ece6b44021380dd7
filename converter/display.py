"""How a checkpoint shows itself: the scope tree in small, as text (``ckpt inspect --tree``,
IPython's pretty printer) and as HTML (Jupyter's ``_repr_html_``).

The tree is :func:`converter.scopes.build`'s, optimizer slots folded into their variables,
built from the index alone (no values are read). A view in a notebook has to stay small
whatever the checkpoint: at most :data:`DEPTH` levels, and at most :data:`ROWS` scopes chosen
breadth first (every top-level scope before any of their children), the rest counted on a
``… N more`` line. The HTML needs no script (a ``<details>`` tree) and every name in it is
escaped: tensor names are whatever the file says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import scopes
from .scopes import Node, TensorLike
from .sizes import human

ROWS = 50  # scopes and tensors shown in a notebook
DEPTH = 6  # levels built; what lies deeper is counted in its ancestor
OPEN_ROWS = 20  # a view of at most this many rows opens every scope


def slot_note(node: Node) -> str:
    """``+2 Adam slots`` on a variable, ``+1.5 MiB optimizer slots`` on a scope, else ``""``."""
    note = node.slot_label()
    if not note and node.slot_nbytes and node.children:
        note = f"+{human(node.slot_nbytes)} optimizer slots"
    return note


def total_line(root: Node) -> str:
    line = (f"total: {root.params:,} values in {root.tensors:,} "
            f"tensor{'s' if root.tensors != 1 else ''}, {human(root.nbytes)}")
    if root.slot_params:
        line += (f"; optimizer slots folded in: {root.slot_params:,} values, "
                 f"{human(root.slot_nbytes)}")
    return line


def chosen(root: Node, limit: int | None) -> dict[int, int]:
    """``{id(node): children shown}`` of the nodes shown (the root included), at most
    ``limit`` below the root, breadth first, each scope's children in order."""
    shown = {id(root): 0}
    level, left = [root], limit
    while level and (left is None or left > 0):
        below = []
        for node in level:
            for child in node.children.values():
                if left is not None and left == 0:
                    break
                shown[id(node)] += 1
                shown[id(child)] = 0
                below.append(child)
                left = None if left is None else left - 1
        level = below
    return shown


def _more(node: Node, skip: int) -> str:
    rest = list(node.children.values())[skip:]
    tensors = sum(max(c.tensors, 1) for c in rest)
    return f"… {len(rest):,} more ({tensors:,} tensor{'s' if tensors != 1 else ''})"


def _last(node: Node, tensors: Mapping[str, TensorLike]) -> str:
    """A tensor's shape, or how many tensors a scope holds."""
    if node.tensor is not None and node.tensor in tensors:
        return "[" + ", ".join(map(str, tensors[node.tensor].shape)) + "]"
    return f"{node.tensors:,} tensor{'s' if node.tensors != 1 else ''}"


def tree_lines(root: Node, *, limit: int | None = None,
               tensors: Mapping[str, TensorLike] | None = None) -> list[str]:
    """``ckpt inspect --tree``'s text: a header, one row per scope (parameters, bytes, dtypes,
    the slots folded in), the total. ``limit``: at most that many rows (see :func:`chosen`);
    ``tensors``: add each tensor's shape and each scope's tensor count."""
    shown = chosen(root, limit)
    rows: list[tuple[int, Node | str]] = []

    def visit(node: Node, depth: int) -> None:
        if depth:
            rows.append((depth, node))
        n = shown[id(node)]
        for child in list(node.children.values())[:n]:
            visit(child, depth + 1)
        if 0 < n < len(node.children):
            rows.append((depth + 1, _more(node, n)))

    visit(root, 0)
    width = max([2 * (d - 1) + len(n.name if isinstance(n, Node) else "") for d, n in rows]
                + [5])
    lines = [f"{'scope':<{width}}  {'params':>12} {'bytes':>10}  dtypes"]
    for d, n in rows:
        if isinstance(n, str):
            lines.append(f"{'  ' * (d - 1)}{n}")
            continue
        label = f"{'  ' * (d - 1)}{n.name}"
        note = slot_note(n)
        if tensors is not None:
            note = f"{_last(n, tensors)}  {note}".rstrip()
        lines.append(f"{label:<{width}}  {n.params:>12,} {human(n.nbytes):>10}  "
                     f"{scopes.dtype_summary(n.dtypes)}" + (f"  {note}" if note else ""))
    lines.append(total_line(root))
    return lines


def _tree(tensors: Mapping[str, TensorLike]) -> Node:
    return scopes.build(tensors, DEPTH, rows=ROWS)


def lines(tensors: Mapping[str, TensorLike], heading: str) -> list[str]:
    """The text view: ``heading``, then the tree in small."""
    if not tensors:
        return [f"{heading}: no tensors"]
    return [heading, *tree_lines(_tree(tensors), limit=ROWS, tensors=tensors)]


def pretty(p: Any, tensors: Mapping[str, TensorLike], heading: str, cycle: bool) -> None:
    """IPython's ``_repr_pretty_``: :func:`lines` through the printer ``p``."""
    if cycle:  # a checkpoint holds tensors, never itself; the protocol asks all the same
        p.text("Checkpoint(...)")
        return
    for i, line in enumerate(lines(tensors, heading)):
        if i:
            p.break_()
        p.text(line)


_CSS = """
.ckpt-view{font:13px/1.45 system-ui,sans-serif;max-width:64em}
.ckpt-view .hd,.ckpt-view summary,.ckpt-view .r{display:grid;gap:8px;
grid-template-columns:minmax(14em,2fr) 7em 6em 8em minmax(7em,1.3fr)}
.ckpt-view .hd{font-weight:600;color:#666;border-bottom:1px solid #ccc}
.ckpt-view summary{cursor:pointer;list-style:none}
.ckpt-view summary::-webkit-details-marker{display:none}
.ckpt-view summary,.ckpt-view .r{border-bottom:1px solid #eee}
.ckpt-view span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.ckpt-view .n::before{content:"\\00b7";display:inline-block;width:1.1em;color:#bbb}
.ckpt-view summary .n::before{content:"\\25b8";color:#36c}
.ckpt-view details[open]>summary .n::before{content:"\\25be"}
.ckpt-view .p,.ckpt-view .b{text-align:right}.ckpt-view .sl{color:#a60}
.ckpt-view .more,.ckpt-view .tot{color:#777;font-style:italic}
"""


def _row(node: Node, depth: int, tensors: Mapping[str, TensorLike], tag: str) -> str:
    from html import escape as esc
    note = slot_note(node)
    return (f'<{tag} class="r" title="{esc(node.path)}" data-path="{esc(node.path)}">'
            f'<span class="n" style="padding-left:{(depth - 1) * 1.2:.1f}em">{esc(node.name)}'
            f'</span><span class="p">{node.params:,}</span><span class="b">'
            f"{human(node.nbytes)}</span><span>{esc(scopes.dtype_summary(node.dtypes))}</span>"
            f"<span>{esc(_last(node, tensors))}"
            + (f' <span class="sl">{esc(note)}</span>' if note else "") + f"</span></{tag}>")


def html_view(tensors: Mapping[str, TensorLike], heading: str) -> str:
    """The HTML view: ``heading``, a summary, the tree in small as nested ``<details>``."""
    from html import escape as esc
    if not tensors:
        return f'<div class="ckpt-view"><b>{esc(heading)}</b>: no tensors</div>'
    root = _tree(tensors)
    shown = chosen(root, ROWS)
    opened = len(shown) - 1 <= OPEN_ROWS
    out: list[str] = []

    def visit(node: Node, depth: int, open_it: bool) -> None:
        n = shown[id(node)]
        if depth and not n:
            out.append(_row(node, depth, tensors, "div"))
            return
        if depth:
            out.append("<details open>" if open_it else "<details>")
            out.append(_row(node, depth, tensors, "summary"))
        for child in list(node.children.values())[:n]:
            # An only child opens too: one scope holding everything says nothing closed.
            visit(child, depth + 1, opened or len(node.children) == 1)
        if n < len(node.children):
            out.append(f'<div class="more" style="padding-left:{depth * 1.2 + 1.1:.1f}em">'
                       f"{esc(_more(node, n))}</div>")
        if depth:
            out.append("</details>")

    visit(root, 0, opened)
    summary = (f"{len(tensors):,} tensors, {root.params + root.slot_params:,} values, "
               f"{human(root.nbytes + root.slot_nbytes)}; "
               f"{esc(scopes.dtype_summary(root.dtypes))}")
    listed = sum(1 for _, n in root.walk() if n.tensor is not None and id(n) in shown)
    foot = total_line(root) + (f"; {root.tensors - listed:,} tensors not listed "
                               "(converter.inspection.tree() or ckpt inspect --tree lists all)"
                               if listed < root.tensors else "")
    return "".join([
        f'<div class="ckpt-view"><style>{_CSS}</style>',
        f"<div><b>{esc(heading)}</b>: {summary}</div>",
        '<div class="hd"><span>scope</span><span class="p">params</span>'
        '<span class="b">bytes</span><span>dtypes</span><span>shape / slots</span></div>',
        *out,
        f'<div class="tot">{esc(foot)}</div></div>',
    ])
