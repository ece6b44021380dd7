"""``ckpt plan SRC --target TARGET``: which checkpoint tensors would restore into which
variables of a graph, checkpoint or Keras model, and what is missing, unexpected or misfit,
before anything runs (:mod:`converter.loaders.plan`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .rule_args import add_rule_args, rule_warnings_to_stderr, rules_from_args

if TYPE_CHECKING:
    from ..loaders.report import LoadReport
from .common import add_storage

HELP = "show what restoring a checkpoint into a graph, checkpoint or Keras model would do"
EXAMPLES = """examples:
  ckpt plan model.ckpt-1000 --target new_graph.meta        # as Saver.restore would pair
  ckpt plan model.ckpt-1000 --target new.meta --rename '^enc/=encoder/'
  ckpt plan model.ckpt-1000 --target exported_model/       # a SavedModel's variables
  ckpt plan old.ckpt --target new.ckpt --json               # one checkpoint for another
  ckpt plan old.h5 --target models.py:build --match order   # a Keras model (TensorFlow)
exit status: 0 a clean restore, 1 something missing, unexpected or misfit, 2 an error
"""


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="checkpoint to restore (any readable format)")
    add_storage(p)
    p.add_argument("--target", required=True, metavar="TARGET",
                   help="a TF1 .meta graph, a SavedModel directory, another checkpoint, or "
                        "MODULE:FACTORY / FILE.py:FACTORY building a Keras model")
    p.add_argument("--match", choices=("exact", "name", "order"), default=None,
                   help="'exact' pairs as tf.compat.v1.train.Saver.restore does (default for "
                        "graphs and checkpoints); 'name' and 'order' as converter's loaders "
                        "(ckpt migrate, converter.tf1.restore) do (default 'name' for Keras)")
    p.add_argument("--order-from", metavar="FILE.meta",
                   help="with --match order: the .meta graph whose variables give SRC's "
                        "creation order (default: PREFIX.meta beside SRC)")
    p.add_argument("--tags", metavar="TAG[,TAG...]",
                   help="the MetaGraph of a SavedModel target with several (default: serve)")
    p.add_argument("--from", dest="source_format", metavar="FORMAT",
                   help="SRC's format (default: detected)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; exit status only")
    add_rule_args(p, dry_run=False, applies_to="SRC")


def verdict(report: LoadReport, match: str) -> str:
    """One line: a clean restore, or the first error ``Saver.restore`` would raise."""
    if report.ok:
        return f"clean restore: all {len(report.matched)} variables restore"
    if match != "exact":
        return "not a clean restore"
    if report.missing:
        return (f"not a clean restore: Saver.restore would fail with NotFoundError (Key "
                f"{report.missing[0]} not found in checkpoint)")
    if report.shape_mismatch:
        m = report.shape_mismatch[0]
        what = (f"shape {m.variable_shape} in the graph, {m.tensor_shape} in the checkpoint"
                if m.variable_shape != m.tensor_shape
                else f"dtype {m.variable_dtype} in the graph, {m.tensor_dtype} in the checkpoint")
        return (f"not a clean restore: Saver.restore would fail with InvalidArgumentError "
                f"({m.variable}: {what})")
    return ("not a clean restore: Saver.restore would leave checkpoint tensors unused "
            "(--exclude them if that is meant)")


def run(args: argparse.Namespace) -> int:
    from ..loaders.plan import plan

    tags = args.tags.split(",") if args.tags else None
    rules = rules_from_args(args)
    with rule_warnings_to_stderr(args.quiet):
        report = plan(args.src, args.target, rules, match=args.match,
                      format=args.source_format, tags=tags, order_from=args.order_from)
    if args.json:
        print(report.to_json())
    elif not args.quiet:
        print(report.table())
        print(verdict(report, args.match or "exact"))
    return 0 if report.ok else 1
