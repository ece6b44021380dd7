"""``ckpt convert SRC DST``: read any checkpoint and write it in another format."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import api, outputs, registry, storage
from ..errors import UsageError
from ..sizes import human
from .common import add_source, bar_wanted, parse_size, read_options
from .rule_args import add_rule_args, dry_run_report, rule_warnings_to_stderr, rules_from_args

if TYPE_CHECKING:
    from ..rules import Rules

HELP = "convert a checkpoint to another format"
EXAMPLES = """examples:
  ckpt convert model.ckpt-1000 model.safetensors
  ckpt convert train_dir/ weights.npz --compress
  ckpt convert weights.h5 out/npy --to npy
  ckpt convert model.safetensors out/model.ckpt --to tf --max-shard-size 2GB
  ckpt convert uncased_L-12_H-768_A-12/bert_model.ckpt bert-base/ --to hf
"""


def add_args(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("dst", metavar="DST", help="output path")
    p.add_argument("--to", metavar="FORMAT", help="output format (default: from DST's suffix)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--compress", action="store_true", help="npz: deflate members")
    p.add_argument("--max-shard-size", type=parse_size, metavar="SIZE",
                   help="tf, safetensors, hf: split the output into shards of at most SIZE "
                        "(5GB = 5e9 bytes, 5GiB = 5*2^30; hf's default is 50GB, as "
                        "transformers')")
    p.add_argument("--family", metavar="NAME",
                   help="hf: the model family, NAME or NAME:VARIANT for a checkpoint holding "
                        "more than one model (electra:generator); default: detected from the "
                        "tensor names, or with --from hf from config.json; ckpt formats "
                        "--families lists them")
    p.add_argument("--config", metavar="FILE",
                   help="hf: the release's config (bert_config.json, hparams.json, "
                        "operative_config.gin, a config.json) when it is not beside SRC")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_rule_args(p)


@storage.lookups_kept()  # the format is found, then the checkpoint read: each object once
def run(args: argparse.Namespace) -> int:
    out_fmt = registry.for_output(args.dst, args.to)
    src_fmt = registry.for_input(args.src, args.source_format)
    opts: dict = {}
    if args.compress:
        opts["compress"] = True
    if args.max_shard_size:
        opts["max_shard_size"] = args.max_shard_size
    for name in ("family", "config"):
        if getattr(args, name) is not None:
            if name == "family" and src_fmt.name == "hf" and out_fmt.name != "hf":
                continue  # a reader option: which family's names to go back to
            if out_fmt.name != "hf":
                also = " or --from hf" if name == "family" else ""
                raise UsageError(f"--{name} is for --to hf{also} only")
            opts[name] = getattr(args, name)
    rules = rules_from_args(args)
    if args.dry_run and out_fmt.name == "hf":
        return _hf_dry_run(args, src_fmt.name, rules, opts)
    if args.dry_run:
        with api.read(args.src, format=src_fmt.name, **read_options(args, src_fmt.name)) as src:
            with rule_warnings_to_stderr(args.quiet):
                print(dry_run_report(rules, src, args.json))
        return 0
    start = time.perf_counter()
    with rule_warnings_to_stderr(args.quiet), outputs.recording() as files, \
            _hf_recording(out_fmt.name) as models:
        ckpt = api.convert(  # the text as given: a trailing / names a directory
            args.src, args.dst, to=out_fmt.name, source_format=src_fmt.name, rules=rules,
            force=args.force, read_options=read_options(args, src_fmt.name),
            progress=bar_wanted(args.quiet), **opts,
        )
    seconds = time.perf_counter() - start
    # What the writer was given (after rules, without what the format cannot hold), and the
    # files it committed: a sharded output is its shards and index, not DST itself.
    summary: dict[str, Any]
    summary = {"source": str(args.src), "source_format": src_fmt.name, "output": args.dst,
               "format": out_fmt.name, "files": [str(f) for f in files],
               "tensors": len(ckpt), "bytes": ckpt.nbytes, "seconds": round(seconds, 3)}
    ckpt.close()
    for model in models:  # what --to hf made of the checkpoint
        summary.update(family=model.family.name, architecture=model.architecture.cls,
                       dropped=model.dropped)
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        print(f"wrote {_written(files, args.dst, out_fmt.name)}: {summary['tensors']} tensors, "
              f"{human(summary['bytes'])} in {seconds:.2f} s", file=sys.stderr)
        for model in models:
            from ..hf import short_list

            dropped = (f"; dropped {len(model.dropped)} ({short_list(model.dropped, 4)})"
                       if model.dropped else "")
            print(f"{model.family.name}: {model.architecture.cls}{dropped}", file=sys.stderr)
    return 0


def _hf_recording(fmt: str) -> AbstractContextManager[list]:
    if fmt != "hf":
        return nullcontext([])
    from .. import hf

    return hf.recording()


def _hf_dry_run(args: argparse.Namespace, src_fmt: str, rules: Rules | None,
                opts: dict) -> int:
    """The source -> transformers table, after the user's rules and the family's."""
    from .. import hf

    with api.read(args.src, format=src_fmt, **read_options(args, src_fmt)) as src:
        with rule_warnings_to_stderr(args.quiet):
            ckpt = rules.apply(src) if rules is not None else src
            prepared = hf.prepare(ckpt, family=opts.get("family"), config=opts.get("config"))
        if args.json:
            # The rules' dry-run document (tensors, dropped, warnings), and what hf adds.
            plan = prepared.plan.as_dict()
            print(json.dumps({
                "family": prepared.family.name, "class": prepared.architecture.cls,
                "config": prepared.config, **plan,
                "tokenizer": {str(p): to for p, to in prepared.tokenizers},
                "tokenizer_config": prepared.tokenizer_config}))
        else:
            print(hf.describe(prepared))
    return 0


def _written(files: list[Path | str], dst: str, fmt: str) -> str:
    """``out/m.npz (npz)``; ``3 safetensors files in out (m-00001-of-00002.safetensors, ...)``
    (URLs of uploaded objects alike)."""
    if len(files) <= 1:
        return f"{files[0] if files else dst} ({fmt})"
    names = [storage.name(f) if isinstance(f, str) else f.name for f in files]
    if len(names) > 5:
        names = [*names[:2], "...", *names[-2:]]
    parents = {storage.parent(f) if isinstance(f, str) else str(f.parent) for f in files}
    under = dst.rstrip("/") + "/"
    if len(parents) == 1:
        where = f" in {parents.pop()}"
    elif all(str(f).startswith(under) for f in files):  # a directory of scopes (npy)
        where = f" in {dst}"
    else:
        where = ""
    return f"{len(files)} {fmt} files{where} ({', '.join(names)})"
