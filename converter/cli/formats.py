"""``ckpt formats``: the format registry."""

from __future__ import annotations

import argparse

from .. import registry

HELP = "list the formats converter reads and writes"


def add_args(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for fmt in registry.formats().values():
        mode = "read/write" if fmt.can_write else "read"
        print(f"{fmt.name:<12} {mode:<10} {' '.join(fmt.suffixes):<24} {fmt.description}")
    return 0
