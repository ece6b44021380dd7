"""``ckpt inspect SRC``: names, dtypes, shapes and sizes, read from the index alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import api, outputs, registry, storage
from ..errors import UsageError
from ..sizes import human
from ..tensor import Checkpoint, Source
from . import inspect_values
from .common import add_source, read_options

if TYPE_CHECKING:
    from .. import graphs

HELP = "list the tensors of a checkpoint (reads no tensor data unless asked for values)"
EXAMPLES = """examples:
  ckpt inspect model.ckpt-1000
  ckpt inspect train_dir/            # the latest checkpoint; lists all prefixes and steps
  ckpt inspect exported_model/       # a SavedModel: its variables, tags and signatures
  ckpt inspect model.ckpt-1000.meta  # a TF1 graph: its variables, shapes, partitions
  ckpt inspect frozen.pb --min-size 2   # a frozen graph's constants, scalars left out
  ckpt inspect weights.safetensors --json | jq '.tensors[].name'
  ckpt inspect model.ckpt-1000 --stats          # min/max/mean/std, NaN and Inf per tensor
  ckpt inspect model.ckpt-1000 --tensor 'dense/*' --precision 3
  ckpt inspect model.ckpt-1000 --tree --depth 2
  ckpt inspect exported_model/ --html model.html   # a page: scope tree, histograms, signatures
"""


def add_args(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    inspect_values.add_args(p)
    g = p.add_argument_group("page")
    g.add_argument("--html", metavar="OUT.html",
                   help="write one self-contained page: the scope tree with a search box, "
                        "histograms of sampled values, metadata and signatures")
    g.add_argument("--force", action="store_true", help="with --html: overwrite OUT.html")


@storage.lookups_kept()  # the format is found, then the checkpoint read: each object once
def run(args: argparse.Namespace) -> int:
    # The graph readers and the page writer are imported where they are needed: listing a
    # checkpoint needs neither.
    if args.src.endswith(".meta") and not args.source_format:
        from ..graphs.metagraph import looks_like

        if looks_like(args.src):
            return _meta_graph(args)
    fmt = registry.for_input(args.src, args.source_format)
    if args.html is not None and (args.json or args.stats or inspect_values.wanted(args)):
        raise UsageError("--html writes a page; it does not go with --json, --stats, --tree, "
                         "--tensor or --all-tensors")
    with api.read(args.src, format=fmt.name, **read_options(args, fmt.name)) as ckpt:
        if args.html is not None:
            return _html(args, ckpt, ckpt.source or Source(fmt.name, str(args.src)))
        if inspect_values.wanted(args):
            return inspect_values.run(args, ckpt)
        rows = _rows(ckpt)
        readable, all_stats = inspect_values.annotate(args, ckpt, rows)
        metadata = dict(ckpt.metadata)
        source = ckpt.source or Source(fmt.name, str(args.src))
    graph = _saved_model(source)
    total = sum(r["nbytes"] for r in rows)
    if args.json:
        print(json.dumps({"path": str(args.src), "format": fmt.name, "source": source.as_dict(),
                          "metadata": metadata, "count": len(rows), "total_bytes": total,
                          "tensors": rows,
                          **({"meta_graphs": graph.as_dict()["meta_graphs"]} if graph else {})}))
        return 0
    width = max([len(r["name"]) for r in rows] + [4])
    # Without statistics or readable names there is nothing after the kind.
    extra = inspect_values.extra_columns(rows, readable, all_stats) if readable or all_stats \
        else [""] * (len(rows) + 1)
    kind_w = max([len(r["kind"]) for r in rows] + [4]) if any(extra) else 0
    lines = [f"{'name':<{width}}  {'dtype':<9} {'shape':<18} {'bytes':>11}  "
             f"{'kind':<{kind_w}}{extra[0]}"]
    # The columns between name and kind, once per dtype, shape and size: checkpoints of many
    # tensors repeat a few.
    middles: dict[tuple[str, tuple[int, ...], int], str] = {}
    for r, more in zip(rows, extra[1:], strict=True):
        key = (r["dtype"], tuple(r["shape"]), r["nbytes"])
        middle = middles.get(key)
        if middle is None:
            shape = "[" + ", ".join(map(str, r["shape"])) + "]"
            middle = middles[key] = f"  {r['dtype']:<9} {shape:<18} {r['nbytes']:>11}  "
        lines.append(f"{r['name']:<{width}}{middle}{r['kind']:<{kind_w}}{more}".rstrip())
    lines.append(f"{len(rows)} tensors, {human(total)} ({total} bytes); format {fmt.name}"
                 + (f" ({source.layout})" if source.layout else ""))
    lines += _source_lines(source, args.src)
    if graph:
        from .. import graphs

        lines += graphs.describe(graph)
    if metadata:
        lines.append("metadata:")
        lines += [f"  {key}: {value}" for key, value in metadata.items()]
    print("\n".join(lines))
    inspect_values.print_nonfinite(all_stats)
    return 0


def _rows(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """The listing: name, dtype, shape, bytes, kind (and attrs) of every tensor."""
    rows = []
    for t in ckpt.values():
        row = {"name": t.name, "dtype": t.dtype_name, "shape": list(t.shape), "nbytes": t.nbytes,
               "kind": t.kind}
        if t.attrs:
            row["attrs"] = t.attrs
        rows.append(row)
    return rows


def _html(args: argparse.Namespace, ckpt: Checkpoint, source: Source) -> int:
    from .. import graphs, inspect_html

    graph = _saved_model(source)
    files = api.source_files(ckpt, args.src)

    def page(out: Path | str) -> int:
        return inspect_html.write(ckpt, out, force=args.force, title=str(args.src),
                                  source=source,
                                  signatures=graphs.describe(graph) if graph else None)

    if storage.is_url(args.html):  # made in scratch space, then uploaded
        size = api.made_then_uploaded(args.html, page, force=args.force, sources=files)
    else:
        with outputs.from_source(Path(storage.local(args.src)), files, Path(args.html)):
            size = page(args.html)
    print(f"wrote {args.html} ({len(ckpt)} tensors, {human(size)})")
    return 0


def _meta_graph(args: argparse.Namespace) -> int:
    """A MetaGraphDef holds no weights: list its variables instead."""
    if inspect_values.wanted(args) or args.stats or args.html is not None:
        raise UsageError(f"{args.src}: a TensorFlow MetaGraph holds no values; inspect the "
                         "checkpoint beside it")
    from .. import graphs

    graph = graphs.meta_graph(args.src)
    if args.json:
        print(json.dumps({"path": str(args.src), "format": "metagraph", **graph.as_dict(),
                          "count": len(graph.variables)}))
    else:
        print("\n".join(graphs.describe_variables(graph)))
    return 0


def _source_lines(source: Source, given: str) -> list[str]:
    """What the reader found, one fact a line; the path only where it is not what was given."""
    lines = []
    if source.path not in (given, str(Path(given))):
        lines.append(f"read from: {source.path}")
    if source.saved_model:
        lines.append(f"SavedModel: {source.saved_model}")
    if source.step is not None:
        lines.append(f"step: {source.step}")
    if source.shards is not None:
        lines.append(f"shards: {source.shards}")
    lines += [f"{key}: {value}" for key, value in source.facts.items()]
    if len(source.checkpoints) > 1:
        lines.append("checkpoints in this directory:")
        lines += [f"  step {'-' if step is None else step:>8}  {prefix}"
                  for prefix, step in source.checkpoints]
    return lines


def _saved_model(source: Source) -> graphs.SavedModel | None:
    """The tags and signatures of the SavedModel whose variables were read, if it has a
    binary ``saved_model.pb``."""
    if not source.saved_model:
        return None
    import tempfile

    from .. import graphs

    if storage.is_url(source.saved_model):  # one object, fetched whole as a local one is read
        pb = storage.join(source.saved_model, "saved_model.pb")
        if not storage.exists(pb):
            return None
        with tempfile.TemporaryDirectory(prefix="ckpt-saved-model-") as scratch:
            return graphs.saved_model(storage.stage(pb, scratch))
    if not (Path(source.saved_model) / "saved_model.pb").exists():
        return None
    return graphs.saved_model(source.saved_model)
