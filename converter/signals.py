"""The signals that stop a conversion: turned into an exception that unwinds every writer's
cleanup (:func:`stopping`), and held while something must not be cut in half: renames of a group
of outputs, their cleanup, and a library's bookkeeping between two writes.

Python runs signal handlers in the main thread only, so elsewhere (and where handlers cannot be
set) nothing is held.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# Ctrl-C, and what `timeout`, schedulers (Slurm, Kubernetes) and a closed terminal send.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


def _install(handler: Any, *, default_only: bool = False) -> dict[int, Any] | None:
    """Set ``handler`` for every stop signal (``default_only``: for those whose handler is the
    default, which ends the process); the previous handlers, or None where signals cannot be
    set here."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous: dict[int, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            current = signal.getsignal(sig)
            if current is None:  # installed outside Python: cannot be restored
                continue
            if default_only and current != signal.SIG_DFL:
                continue
            previous[sig] = signal.signal(sig, handler)
    except (ValueError, OSError):  # e.g. an embedded interpreter without signal support
        _restore(previous)
        return None
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that every writer's cleanup
    (which handles KeyboardInterrupt) runs; ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextmanager
def stopping() -> Iterator[None]:
    """Turn the stop signals into :class:`Stopped` inside the block where they would end the
    process outright (default handler): Ctrl-C already raises KeyboardInterrupt, and an ignored
    SIGHUP (nohup) or a handler of the caller's stays as it is."""
    previous = _install(_stop, default_only=True)
    try:
        yield
    finally:
        if previous is not None:
            _restore(previous)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block is done, then deliver them. Also for
    writers whose library runs Python callbacks from C, where an interrupt raised inside would be
    printed and lost instead of unwinding the writer."""
    held: list[int] = []
    previous = _install(lambda signum, frame: held.append(signum))
    if previous is None:
        yield
        return
    try:
        yield
    finally:
        _restore(previous)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


class Sections:
    """Stop signals as usual, except inside ``with sections:`` blocks, where they wait for the
    block's end. For a writer with many short stretches of library bookkeeping (zipfile marking
    a member open) between interruptible writes: the handlers are installed once, and entering
    a stretch costs a counter, not six system calls."""

    def __init__(self) -> None:
        self._depth = 0
        self._held: list[int] = []
        self._previous: dict[int, Any] | None = None

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if not self._depth and self._held:
            held = list(dict.fromkeys(self._held))
            self._held.clear()
            for sig in held:
                self._deliver(sig, None)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._held.append(signum)
        else:
            self._deliver(signum, frame)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        handler = (self._previous or {}).get(signum, signal.SIG_DFL)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:  # what the signal would have done: end the process
            self.close()
            signal.raise_signal(signum)

    def open(self) -> Sections:
        self._previous = _install(self._handler)
        return self

    def close(self) -> None:
        if self._previous is not None:
            _restore(self._previous)
            self._previous = None


@contextmanager
def sections() -> Iterator[Sections]:
    """A :class:`Sections` whose handlers are in place for the block."""
    s = Sections().open()
    try:
        yield s
    finally:
        s.close()
