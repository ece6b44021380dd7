"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from .. import sizes, storage
from ..errors import UsageError


def parse_size(text: str) -> int:
    """``5GB`` → 5·10⁹ bytes, ``5GiB`` → 5·2³⁰ (as Hugging Face counts)."""
    try:
        return sizes.parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("size: ")) from None


def _storage_option(text: str) -> tuple[str, object]:
    try:
        return storage.parse_option(text)
    except UsageError as exc:  # argparse's own one-line usage error, exit 2
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--storage-option ")) from None


def add_storage(p: argparse.ArgumentParser) -> None:
    """``--storage-option KEY=VALUE`` for commands that take URLs (s3://, gs://, hf:// ...)."""
    p.add_argument("--storage-option", dest="storage_options", action="append",
                   type=_storage_option, default=[], metavar="KEY=VALUE",
                   help="fsspec option for URLs on remote storage (repeatable; VALUE is JSON "
                        "where it parses, e.g. anon=true, endpoint_url=http://host:9000); "
                        "credentials also come from the environment as usual")


def add_source(p: argparse.ArgumentParser, *, checksums_optional: bool = True) -> None:
    """The source argument and the reader flags. ``checksums_optional=False`` leaves out
    ``--no-verify`` (``ckpt verify``, whose checks it would turn off)."""
    p.add_argument("src", metavar="SRC",
                   help="checkpoint file, directory or TF prefix, or a URL (s3://, gs://, "
                        "az://, hf://, https:// ...)")
    add_storage(p)
    p.add_argument("--from", dest="source_format", metavar="FORMAT",
                   help="source format (default: detected)")
    if checksums_optional:
        p.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip checksum verification of TF data")
    else:
        p.set_defaults(verify=True)
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow pickled .npy/.npz content (only for files you trust)")
    p.add_argument("--allow-external", action="store_true",
                   help="follow HDF5 external links and storage in other files (trusted files)")
    p.add_argument("--min-size", type=int, default=0, metavar="N",
                   help="frozen graphs: leave out constants of fewer than N elements")


def read_options(args: argparse.Namespace, fmt: str | None) -> dict:
    """The reader options asked for on the command line that the source format takes."""
    from ..api import reader_options

    wanted = {"verify": False} if not args.verify else {}
    if args.allow_pickle:
        wanted["allow_pickle"] = True
    if getattr(args, "allow_external", False):
        wanted["allow_external"] = True
    if getattr(args, "min_size", 0):
        wanted["min_size"] = args.min_size
    if getattr(args, "family", None) and fmt == "hf":
        wanted["family"] = args.family
    if not wanted or fmt is None:
        return {}
    return reader_options(fmt, wanted)


def bar_wanted(quiet: bool) -> bool:
    """Whether a command shows a progress bar: not with ``-q``, and only on a terminal (a log
    file or a pipe would collect every redraw of the bar)."""
    import sys

    isatty = getattr(sys.stderr, "isatty", None)
    return not quiet and bool(isatty and isatty())
