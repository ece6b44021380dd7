"""``ckpt diff A B``: compare two checkpoints of any formats; exit 1 when they differ.

Rename rules apply to A only, so A can be compared with B under B's names (a rule run over B
as well would warn about everything it does not find there).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path

from .. import api, diff_html, outputs, storage
from ..diff import diff
from ..errors import UsageError
from ..sizes import human
from .common import add_storage
from .rule_args import add_rule_args, rule_warnings_to_stderr, rules_from_args

HELP = "compare two checkpoints (exit 1 if they differ)"
EXAMPLES = """examples:
  ckpt diff model.ckpt-1000 model.safetensors            # bit for bit
  ckpt diff a.npz b.h5 --rtol 1e-6 --atol 1e-8 --json
  ckpt diff old.ckpt-1000 new.ckpt-2000 --html diff.html   # both trees side by side
  ckpt diff old.ckpt-1000 new.safetensors --preset drop-optimizer --map w=dense/kernel
                                                        # rules rename A's tensors only
"""


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="first checkpoint (the rename rules apply to it)")
    add_storage(p)
    p.add_argument("b", metavar="B", help="second checkpoint")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="relative tolerance: |a - b| <= atol + rtol * |b|, NaN equal to NaN "
                   "(default 0; with atol 0 too, values must be equal bit for bit)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="OUT.html",
                   help="also write one self-contained page: both scope trees in one, each "
                        "tensor marked (only in A or B, dtype, shape, values, equal), with a "
                        "filter and an only-differences switch")
    p.add_argument("--force", action="store_true", help="with --html: overwrite OUT.html")
    add_rule_args(p, dry_run=False, applies_to="A only (B is read as it is)")


def run(args: argparse.Namespace) -> int:
    rules = rules_from_args(args)
    remote_page = args.html is not None and storage.is_url(args.html)
    if args.html is not None and not remote_page:  # before a diff that may take long
        outputs.check_free([Path(args.html)], args.force)
    elif remote_page and not args.force and storage.exists(args.html):
        raise UsageError(f"{args.html}: exists (use --force to replace it)")
    with api.read(args.a) as a, api.read(args.b) as b, rule_warnings_to_stderr(), \
            ExitStack() as guard:
        if args.html is not None and not remote_page:  # it may replace neither checkpoint
            for src, ckpt in ((args.a, a), (args.b, b)):
                guard.enter_context(outputs.from_source(Path(src), api.source_files(ckpt, src),
                                                        Path(args.html)))
        if rules is not None:
            a = rules.apply(a)
        report = diff(a, b, rtol=args.rtol, atol=args.atol)
        if args.html is not None:
            facts = [("rename rules", "applied to A; B read as it is")] \
                if rules is not None else []
            def page(out: Path | str) -> int:
                return diff_html.write(a, b, report, out, force=args.force,
                                       title_a=str(args.a), title_b=str(args.b),
                                       rtol=args.rtol, atol=args.atol, facts=facts)

            size = api.made_then_uploaded(
                args.html, page, force=args.force,
                sources=api.source_files(a, args.a) | api.source_files(b, args.b)) \
                if remote_page else page(args.html)
    wrote = f"wrote {args.html} ({human(size)})" if args.html is not None else None
    if args.json:
        print(json.dumps(report.to_dict()))
        if wrote:
            print(wrote, file=sys.stderr)  # stdout is the JSON alone
        return 0 if report.equal else 1
    for name in report.left_out:
        print(f"left out: {name} (a TF2 object graph, on one side only)")
    for name in report.only_a:
        print(f"only in A: {name}")
    for name in report.only_b:
        print(f"only in B: {name}")
    for t in report.differing:
        parts = []
        if t.dtype:
            parts.append(f"dtype {t.dtype[0]} != {t.dtype[1]}")
        if t.shape:
            parts.append(f"shape {t.shape[0]} != {t.shape[1]}")
        if t.max_abs is not None:
            parts.append(f"max abs {t.max_abs:.6g}, max rel {t.max_rel:.6g}")
        print(f"differs: {t.name}: {'; '.join(parts) or 'values differ'}")
    same = len(report.tensors) - len(report.differing)
    print(f"{same} equal, {len(report.differing)} differ, {len(report.only_a)} only in A, "
          f"{len(report.only_b)} only in B")
    if wrote:
        print(wrote)
    return 0 if report.equal else 1

