"""The ``ckpt`` command line: argparse subcommands, one module each (``add_args`` + ``run``).

Library errors become one line on stderr and exit code 2; nothing prints a traceback. SIGINT,
SIGTERM and SIGHUP stop a command the same way: outputs being written are removed, one line says
so, and the exit code is 128 + the signal number (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import select
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__, storage
from ..errors import ConverterError, ConverterWarning, speaking
from ..signals import stopping

# One module each (converter.cli.NAME: HELP, add_args, run), imported only when the parser
# needs it: a command pays for its own imports, not every other command's (start-up is much of
# what a small conversion costs).
COMMANDS = ("convert", "inspect", "verify", "diff", "migrate", "plan", "batch", "formats")

EPILOG = """examples:
  ckpt inspect model.ckpt-1000
  ckpt convert model.ckpt-1000 weights.safetensors
  ckpt convert train_dir/ weights.npz --compress
  ckpt convert weights.safetensors out/model.ckpt --to tf
  ckpt verify model.ckpt-1000
  ckpt diff model.ckpt-1000 model.safetensors
  ckpt plan model.ckpt-1000 --target new_graph.meta
"""


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, naming the command and where its help is (argparse prints
    the whole usage block first)."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ckpt`` parser; with ``command``, the parser of that command alone (what parsing
    its arguments needs), else of them all (the overall help, unknown commands)."""
    parser = _Parser(
        prog="ckpt", description="Move model weights between checkpoint formats.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.commands = {}
    parser.add_argument("--version", action="version", version=f"ckpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS if command is None else (command,):
        module = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           epilog=getattr(module, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_args(p)
        p.set_defaults(run=module.run)
        parser.commands[name] = p
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ckpt`` with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # told by the command's parser, which names the command
            commands = getattr(parser, "commands", {})
            commands.get(args.command, parser).error(
                f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with speaking("cli"), stopping(), \
                storage.options(dict(getattr(args, "storage_options", None) or [])):
            try:
                code = int(args.run(args) or 0)
                sys.stdout.flush()  # a reader that has gone shows here, not at exit
                return code
            except ConverterError as exc:
                print(f"ckpt: error: {exc}", file=sys.stderr)
                return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            return 0  # `ckpt inspect ... | head`: the reader has all it wanted
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ckpt: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        how = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        try:
            print(f"ckpt: interrupted{how}", file=sys.stderr)
        except OSError:  # SIGHUP: the terminal may be gone
            pass
        return 128 + signum
    finally:
        warnings.showwarning = shown


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it; if so, point it at the
    null device (as Python's signal documentation advises), so that the flush at exit cannot
    fail again. A broken pipe elsewhere (a remote upload) stays an error."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no descriptor (captured), no poll()
        return False
    if not any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Our own warnings are for users: one line, no source location.
    if issubclass(category, ConverterWarning):
        print(f"ckpt: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


# Commands that read or convert checkpoints build tens of thousands of objects (a tensor's
# record, its loader) that form no cycles and live until the process ends: the cyclic garbage
# collector would only scan them again and again (tens of milliseconds for 20,000 tensors, a
# tenth of such a command). The commands that run other libraries' code (migrate and plan build
# Keras models) or many conversions in one process (batch) keep it.
WITHOUT_COLLECTOR = frozenset({"convert", "inspect", "verify", "diff", "formats"})


def entry() -> None:
    """The ``ckpt`` program (also ``python -m converter``)."""
    # Remote storage runs asyncio and thread pools, whose objects do form cycles (a failed
    # request's traceback holding a piece of data): with a URL, the collector stays on.
    if sys.argv[1:2] and sys.argv[1] in WITHOUT_COLLECTOR and \
            not any(storage.is_url(a) for a in sys.argv[2:]):
        gc.disable()
    code = main()
    # The interpreter's last garbage collection at exit scans every object still alive (tens
    # of thousands of tensors after a big conversion) only to free memory the exit frees anyway.
    gc.freeze()
    sys.exit(code)
