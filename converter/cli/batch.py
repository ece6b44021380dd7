"""``ckpt batch SRC... --to FORMAT --out DIR``: convert many checkpoints, in parallel, resumable."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..sizes import human
from .common import add_storage, bar_wanted, parse_size
from .rule_args import add_rule_args, rule_warnings_to_stderr, rules_from_args

HELP = "convert every checkpoint in directories, globs and archives (parallel, resumable)"
EXAMPLES = """examples:
  ckpt batch runs/ --to safetensors --out converted/ --preset drop-optimizer
  ckpt batch 'zoo/*.tar.gz' --to npz --out out/ --latest --jobs 4
  ckpt batch runs/ --to safetensors --out converted/ --resume      # after an interruption
  ckpt batch runs/ --to safetensors --out converted/ --shard 2/3   # machine 2 of 3
  ckpt batch runs/ --to npz --out converted/ --dry-run             # the plan; writes nothing
"""


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="files, TF prefixes, directories (searched recursively), globs, "
                        ".tar/.tar.gz/.tgz/.zip archives, URLs (s3://bucket/runs ...)")
    add_storage(p)
    p.add_argument("--to", required=True, metavar="FORMAT", help="output format")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (mirrors the "
                                                               "input tree; holds manifest.jsonl)")
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--resume", action="store_true",
                   help="skip items done with the same conversion and unchanged according to "
                        "DIR/manifest.jsonl; the others are redone, replacing their outputs")
    p.add_argument("--latest", action="store_true",
                   help="only the latest checkpoint of each training directory")
    p.add_argument("--shard", metavar="I/N",
                   help="take this machine's share: I counts from 1 to N (stable across runs)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="where items run: local processes, or a Dask cluster (extra: dask)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address for --executor dask (tcp://host:8786)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--compress", action="store_true", help="npz: deflate members")
    p.add_argument("--max-shard-size", type=parse_size, metavar="SIZE",
                   help="tf, safetensors, hf: split each output into shards of at most SIZE")
    p.add_argument("--family", metavar="NAME",
                   help="hf: the model family of every item (default: detected per item)")
    p.add_argument("--config", metavar="FILE",
                   help="hf: the release's config for every item that has none beside it")
    p.add_argument("--max-unpacked", type=parse_size, metavar="SIZE",
                   help="the most an archive may unpack to (default: 20 times its size, at "
                        "least 1GiB)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, no summary (failures are still named on stderr)")
    p.add_argument("--json", action="store_true", help="print the results as JSON lines")
    p.add_argument("--dry-run", action="store_true",
                   help="print each item's plan (source -> output, formats, or why it is "
                        "skipped or refused) and write nothing")
    add_rule_args(p, dry_run=False)


def run(args: argparse.Namespace) -> int:
    from ..batch import batch, parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    if args.jobs is not None and args.jobs < 1:
        from ..errors import UsageError

        raise UsageError("--jobs must be at least 1")
    options: dict = {}
    if args.compress:
        options["compress"] = True
    if args.max_shard_size:
        options["max_shard_size"] = args.max_shard_size
    for name in ("family", "config"):
        value = getattr(args, name)
        if value is not None:
            if args.to != "hf":
                from ..errors import UsageError

                raise UsageError(f"--{name} is for --to hf only")
            # Workers may run elsewhere in the tree (or on a cluster): a path, made absolute.
            if name == "config":  # only for items without their own: the writer's fallback
                options["default_config"] = str(Path(value).resolve())
            else:
                options[name] = value
    with rule_warnings_to_stderr(args.quiet):
        results = batch(args.sources, to=args.to, out=args.out, rules=rules_from_args(args),
                        jobs=args.jobs, resume=args.resume, latest=args.latest, shard=shard,
                        force=args.force, progress=bar_wanted(args.quiet) and not args.dry_run,
                        executor=args.executor, scheduler=args.scheduler,
                        dry_run=args.dry_run, max_unpacked=args.max_unpacked,
                        storage_options=dict(args.storage_options), **options)
    failed = [r for r in results if r.status == "failed"]
    if args.json:
        for r in results:
            print(json.dumps(r.__dict__))
    elif args.dry_run:
        for r in results:
            if r.status == "planned":
                print(f"{r.source} -> {r.output} ({r.format or '?'} -> {args.to})")
            elif r.status == "skipped":
                print(f"{r.source}: skip (done before with the same conversion, unchanged)")
    elif not args.quiet:
        done = [r for r in results if r.status == "done"]
        skipped = [r for r in results if r.status == "skipped"]
        print(f"{len(results)} items: {len(done)} converted, {len(skipped)} skipped "
              f"(unchanged), {len(failed)} failed; "
              f"{human(sum(r.size for r in done))} in {sum(r.seconds for r in done):.1f} s "
              "of work")
    # Failures are errors, not progress: named on stderr whatever -q says.
    for r in failed:
        print(f"FAILED {r.error}" if r.error and r.error.startswith(r.source)
              else f"FAILED {r.source}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
