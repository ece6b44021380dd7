"""The ``ckpt`` command line: argparse subcommands, one module each (``add_args`` + ``run``).

Library errors become one line on stderr and exit code 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import ConverterError, ConverterWarning, speaking
from . import batch, convert, diff, formats, inspect, migrate, verify

COMMANDS = {"convert": convert, "inspect": inspect, "verify": verify, "diff": diff,
            "migrate": migrate, "batch": batch, "formats": formats}

EPILOG = """examples:
  ckpt inspect model.ckpt-1000
  ckpt convert model.ckpt-1000 weights.safetensors
  ckpt convert train_dir/ weights.npz --compress
  ckpt convert weights.safetensors out/model.ckpt --to tf
  ckpt verify model.ckpt-1000
  ckpt diff model.ckpt-1000 model.safetensors
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ckpt", description="Move model weights between checkpoint formats.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ckpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           epilog=getattr(module, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_args(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ckpt`` with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with speaking("cli"):  # messages name --flags, not Python keywords
            try:
                return int(args.run(args) or 0)
            except ConverterError as exc:
                print(f"ckpt: error: {exc}", file=sys.stderr)
                return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ckpt: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ckpt: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Our own warnings are for users: one line, no source location.
    if issubclass(category, ConverterWarning):
        print(f"ckpt: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def entry() -> None:
    # The interpreter's last garbage collection at exit scans every object still alive (tens
    # of thousands of tensors after a big conversion) only to free memory the exit frees anyway.
    code = main()
    gc.freeze()
    sys.exit(code)
