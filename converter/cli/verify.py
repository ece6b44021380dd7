"""``ckpt verify SRC``: read every tensor, check checksums and bounds; exit 1 if anything is bad."""

from __future__ import annotations

import argparse
import json

from .. import storage
from ..sizes import human
from ..verify import format_to_verify, verify
from .common import add_source, read_options

HELP = "check every tensor of a checkpoint (exit 1 if any is bad)"
EXAMPLES = """examples:
  ckpt verify model.ckpt-1000
  ckpt verify weights.safetensors --json
"""


def add_args(p: argparse.ArgumentParser) -> None:
    add_source(p, checksums_optional=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")


@storage.lookups_kept()  # the format is found, then the checkpoint read: each object once
def run(args: argparse.Namespace) -> int:
    # A missing path, an unknown format or storage that cannot be reached: the command cannot
    # run (exit 2), which is not the answer "bad" (exit 1).
    fmt = format_to_verify(args.src, args.source_format).name
    report = verify(args.src, format=fmt, **read_options(args, fmt))  # found once
    if args.json:
        print(json.dumps(report.to_dict()))
    elif report.error:
        print(f"BAD  {report.error}")
    else:
        for t in report.tensors:
            print(f"{'ok ' if t.ok else 'BAD'}  {t.name}" + (f": {t.error}" if t.error else ""))
        total = sum(t.nbytes for t in report.tensors)
        print(f"{len(report.tensors)} tensors, {human(total)}; {len(report.bad)} bad")
    return 0 if report.ok else 1
