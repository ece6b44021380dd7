"""The parts of ``ckpt inspect`` that look at values and structure: ``--tensor``,
``--all-tensors``, ``--stats``, ``--tree`` and the readable-name column of TF2 checkpoints.
The computing is in :mod:`converter.inspection`; this module chooses what to show and how."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from .. import display, dtypes, inspection
from ..errors import UsageError
from ..tensor import Checkpoint, Tensor

if TYPE_CHECKING:
    from ..tensor_stats import Stats

SHOWN_NONFINITE = 10  # names listed on the NaN/Inf line before "and N more"


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("values and structure")
    g.add_argument("--tensor", dest="tensors", action="append", metavar="NAME", default=[],
                   help="print this tensor's values and statistics (repeatable; a glob, or "
                        "re:REGEX; raw keys or readable TF2 names)")
    g.add_argument("--all-tensors", action="store_true", help="print every tensor's values")
    g.add_argument("--threshold", type=int, metavar="N",
                   help="print at most N values of a tensor, summarizing the rest "
                        "(numpy's threshold; default 1000)")
    g.add_argument("--precision", type=int, metavar="N",
                   help="digits after the point when printing values (default 8)")
    g.add_argument("--stats", action="store_true",
                   help="add min, max, mean, std, zeros, NaN and Inf counts per tensor "
                        "(reads every tensor once, streaming)")
    g.add_argument("--tree", action="store_true",
                   help="the scope tree: parameters, bytes and dtypes per scope, optimizer "
                        "slots folded into their variables")
    g.add_argument("--depth", type=int, metavar="N", help="with --tree: scopes down to depth N")
    g.add_argument("--filter", metavar="GLOB",
                   help="with --tree: only tensors matching GLOB (or re:REGEX)")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command shows values or the tree instead of the plain listing."""
    if (args.depth is not None or args.filter is not None) and not args.tree:
        raise UsageError("--depth and --filter go with --tree")
    if args.tree and (args.tensors or args.all_tensors):
        raise UsageError("--tree lists scopes; it does not go with --tensor or --all-tensors")
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be at least 1, got {args.depth}")
    return bool(args.tree or args.tensors or args.all_tensors)


def run(args: argparse.Namespace, ckpt: Checkpoint) -> int:
    """``--tree``, ``--tensor`` or ``--all-tensors`` (:func:`wanted` said one is asked for)."""
    if args.tree:
        return _run_tree(args, ckpt)
    readable = inspection.readable_names(ckpt)
    names = list(ckpt) if args.all_tensors else _matching(args.src, ckpt, args.tensors, readable)
    all_stats = inspection.stats_all(ckpt, names)
    if args.json:
        print(json.dumps({"path": str(args.src), "tensors": [
            {**_head(ckpt[n], readable), "stats": all_stats[n].to_dict()} for n in names],
            "nonfinite": inspection.nonfinite(all_stats)}))
        return 0
    options = {k: v for k, v in (("threshold", args.threshold), ("precision", args.precision))
               if v is not None}
    import numpy as np  # printing arrays: the listing above needed none

    for n in names:
        t = ckpt[n]
        label = f"  ({readable[n]})" if n in readable else ""
        print(f"tensor: {n} ({dtypes.name_of(t.dtype)}) {list(t.shape)}{label}")
        with np.printoptions(**options):
            print(t.read())
        print(stats_line(all_stats[n]))
    total = sum(ckpt[n].size for n in names)
    print(f"{len(names)} of {len(ckpt)} tensors, {total} values")
    print_nonfinite(all_stats)
    return 0


def _matching(src: str, ckpt: Checkpoint, patterns: list[str],
              readable: Mapping[str, str]) -> list[str]:
    """Keys matched by any of ``patterns`` (an exact key or readable name first, else a glob or
    ``re:`` regex against both), in checkpoint order; a pattern matching nothing is an error
    naming the closest names."""
    from ..rules.core import Pattern

    by_readable = {r: k for k, r in readable.items()}
    found: set[str] = set()
    for text in patterns:
        exact = text if text in ckpt else by_readable.get(text)
        if exact is not None:
            found.add(exact)
            continue
        pattern = Pattern(text)
        hits = {k for k in ckpt
                if pattern.match(k) or (k in readable and pattern.match(readable[k]))}
        if not hits:
            import difflib

            close = difflib.get_close_matches(text, [*ckpt, *by_readable], n=3, cutoff=0.5)
            raise UsageError(f"{src}: no tensor matches {text!r}"
                             + (f"; close matches: {', '.join(close)}" if close else ""))
        found |= hits
    return [k for k in ckpt if k in found]


def _head(t: Tensor, readable: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "dtype": dtypes.name_of(t.dtype),
                           "shape": list(t.shape), "kind": t.kind}
    if t.name in readable:
        out["readable"] = readable[t.name]
    return out


def _num(v: float | int | None) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.6g}"


def stats_line(s: Stats) -> str:
    if s.note and s.min is None and not (s.nan or s.inf or s.zeros):
        return f"  ({s.note})"
    return (f"  min {_num(s.min)}  max {_num(s.max)}  mean {_num(s.mean)}  std {_num(s.std)}  "
            f"zeros {s.zeros}  nan {s.nan}  inf {s.inf}" + (f"  ({s.note})" if s.note else ""))


STATS_HEADER = ("min", "max", "mean", "std", "zeros", "nan", "inf")


def stats_cells(s: Stats) -> list[str]:
    """The listing's statistics columns for one tensor."""
    if s.note and s.min is None and not (s.nan or s.inf or s.zeros):
        return ["-"] * 4 + [str(s.zeros), str(s.nan), str(s.inf)]
    return [_num(s.min), _num(s.max), _num(s.mean), _num(s.std), str(s.zeros), str(s.nan),
            str(s.inf)]


def annotate(args: argparse.Namespace, ckpt: Checkpoint, rows: list[dict[str, Any]]
             ) -> tuple[dict[str, str], dict[str, Stats]]:
    """Add ``readable`` (TF2 object keys) and, with ``--stats``, ``stats`` to the listing's
    rows; returns both as mappings by name."""
    readable = inspection.readable_names(ckpt)
    all_stats = inspection.stats_all(ckpt) if args.stats else {}
    for r in rows:
        if r["name"] in readable:
            r["readable"] = readable[r["name"]]
        if all_stats:
            r["stats"] = all_stats[r["name"]].to_dict()
    return readable, all_stats


def extra_columns(rows: list[dict[str, Any]], readable: Mapping[str, str],
                  all_stats: Mapping[str, Stats]) -> list[str]:
    """The listing's header and each row's text after ``kind``: the statistics (``--stats``)
    and the readable name of a TF2 object key (empty strings when there are neither)."""
    table = [[*STATS_HEADER] if all_stats else []]
    table += [stats_cells(all_stats[r["name"]]) if all_stats else [] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = ["".join(f"  {cell:>{w}}" for cell, w in zip(row, widths, strict=True))
           for row in table]
    if readable:
        out = [out[0] + "  readable name"] + [
            line + f"  {readable.get(r['name'], '')}"
            for line, r in zip(out[1:], rows, strict=True)]
    return [line.rstrip() for line in out]


def colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def nonfinite_line(all_stats: Mapping[str, Stats], stream: TextIO) -> str | None:
    """``2 tensors contain NaN or Inf: a, b`` (red on a terminal), or None when none does."""
    if not all_stats:  # no values were read: leave the statistics module unloaded
        return None
    bad = inspection.nonfinite(all_stats)
    if not bad:
        return None
    shown = ", ".join(bad[:SHOWN_NONFINITE])
    more = f" and {len(bad) - SHOWN_NONFINITE} more" if len(bad) > SHOWN_NONFINITE else ""
    line = f"{len(bad)} tensor{'s' if len(bad) > 1 else ''} contain{'' if len(bad) > 1 else 's'}" \
           f" NaN or Inf: {shown}{more}"
    return f"\033[1;31m{line}\033[0m" if colour(stream) else line


def print_nonfinite(all_stats: Mapping[str, Stats]) -> None:
    line = nonfinite_line(all_stats, sys.stdout)
    if line is not None:
        print(line)


def _run_tree(args: argparse.Namespace, ckpt: Checkpoint) -> int:
    root = inspection.tree(ckpt, args.depth, filter=args.filter)
    if args.json:
        print(json.dumps({"path": str(args.src), "tree": root.to_dict()}))
        return 0
    print("\n".join(display.tree_lines(root)))
    return 0
