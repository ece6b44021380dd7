"""``ckpt formats``: the format registry."""

from __future__ import annotations

import argparse

from .. import registry

HELP = "list the formats converter reads and writes"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", action="store_true",
                   help="list the model families --to hf knows, and the classes they make")


def run(args: argparse.Namespace) -> int:
    if args.families:
        from ..hf import families

        for fam in families().values():
            classes = ", ".join(dict.fromkeys(a.cls for a in fam.architectures)) or (
                "the class its config names")
            back = any(fam.reverse_for(a) for a in fam.architectures)
            print(f"{fam.name:<16} {fam.description}\n{'':<16} {classes}"
                  + ("; --from hf goes back" if back else ""))
        return 0
    for fmt in registry.formats().values():
        mode = "read/write" if fmt.can_write else "read"
        print(f"{fmt.name:<12} {mode:<10} {' '.join(fmt.suffixes):<24} {fmt.description}")
    return 0
