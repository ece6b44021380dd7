"""``ckpt migrate SRC --model module:factory OUT``: load a checkpoint into a Keras model built by
``factory()`` (or loaded from a ``.keras`` file) and save it as Keras reads it (``.keras``,
``.weights.h5``) or as a TF2 checkpoint; ``--with-optimizer`` carries the optimizer state too."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_storage
from .rule_args import add_rule_args, rule_warnings_to_stderr, rules_from_args

HELP = "load a checkpoint into a Keras model and save it (.keras, .weights.h5, TF2 checkpoint)"
EXAMPLES = """examples:
  ckpt migrate tf1/model.ckpt-1000 --model mymodels:build --preset drop-optimizer out.weights.h5
  ckpt migrate tfkeras/ckpt --model models.py:build model.weights.h5    # tf.keras save_weights
  ckpt migrate saved_model_dir/ --model new_arch.keras model.keras      # a SavedModel
  ckpt migrate old.h5 --model models.py:build_v2 --no-strict --match order out/ckpt
  ckpt migrate moved/model.ckpt --model m.py:build --match order --order-from g.meta out.keras
  ckpt migrate train/model.ckpt-500 --model models.py:compiled --with-optimizer resume.keras
"""


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="checkpoint to load (any readable format)")
    add_storage(p)
    p.add_argument("out", metavar="OUT", help=".keras or .weights.h5 (Keras 3), .h5 (tf.keras) "
                                              "or a TF2 checkpoint prefix")
    p.add_argument("--model", required=True, metavar="MODULE:FUNCTION|FILE.keras",
                   help="function building the target Keras model (module path or file.py), "
                        "or a .keras file whose architecture is the target")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                   help="fail (writing nothing) when anything is missing, unexpected or "
                        "misfit (default: --strict)")
    p.add_argument("--match", choices=("name", "order"), default="name",
                   help="'order' also pairs what names leave, in creation order where "
                        "shapes agree (a .meta beside the checkpoint, the file's own order, "
                        "numbered names: layer2 before layer10)")
    p.add_argument("--order-from", metavar="FILE.meta",
                   help="with --match order: the .meta graph whose variables give the "
                        "checkpoint's creation order (default: PREFIX.meta beside SRC)")
    p.add_argument("--with-optimizer", action="store_true",
                   help="carry the optimizer state (slots, step counter) into the compiled "
                        "model's optimizer; OUT must be a .keras file")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="print the load report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    add_rule_args(p)


def run(args: argparse.Namespace) -> int:
    from ..loaders import load_into
    from ..migrate import load_factory, migrate

    factory = load_factory(args.model)
    rules = rules_from_args(args)
    with rule_warnings_to_stderr(args.quiet):
        if args.dry_run:
            report = load_into(factory(), args.src, rules=rules, strict=False, match=args.match,
                               order_from=args.order_from)
        else:
            report = migrate(args.src, factory, Path(args.out), rules=rules, strict=args.strict,
                             match=args.match, force=args.force,
                             with_optimizer=args.with_optimizer, order_from=args.order_from)
    if args.json:
        print(report.to_json())
    elif not args.quiet or not report.ok:
        print(report.table())
        if not args.dry_run:
            print(f"wrote {args.out}", file=sys.stderr)
    return 0
