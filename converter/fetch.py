"""Streaming a stretch of a remote object with one ranged GET.

A conversion reads each run of tensors front to back. Fetching that run as many ranged
requests costs a request (and on some servers a pass over the whole object) per piece; one
request with ``Range: bytes=START-END`` whose body is read as it arrives costs one. A thread
reads the body a piece at a time into a small queue, so the network keeps delivering while
the caller checks and writes the piece before; memory is bounded by the queue, not the span.

Only file systems whose ranged GET we can open are streamed: s3fs (``s3://``) and fsspec's
HTTP file system (``http(s)://``, where a server that answers the whole object instead of the
range is left to the caller's fallback). Every other file system reads by pieces as before.
A stream that breaks in the middle is reopened where it stopped, a few times.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .errors import ConverterError, CorruptionError, FormatError

READS = 1 << 20  # the most asked of a body at once; pieces are gathered from such reads
_QUEUED = 3  # pieces fetched ahead of the caller
_REOPEN = 3  # times a broken stream is reopened where it stopped without a piece between
_SOCK_READ = 60.0  # seconds an HTTP stream may send nothing, where the session sets no limit
_DONE = object()

# (read(n) -> bytes, close()) of an opened body
Body = tuple[Callable[[int], Awaitable[bytes]], Callable[[], None]]


class RangesIgnored(Exception):
    """The server answered the whole object to a ranged GET."""


async def _open_s3(fs: Any, path: str, start: int, end: int) -> Body:
    bucket, key, version = fs.split_path(path)
    kw = dict(getattr(fs, "req_kw", None) or {})
    if version:
        kw["VersionId"] = version
    resp = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                             Range=f"bytes={start}-{end - 1}", **kw)
    body = resp["Body"]
    return body.read, body.close


async def _open_http(fs: Any, path: str, start: int, end: int) -> Body:
    import aiohttp

    session = await fs.set_session()
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    # aiohttp's total timeout (300 s by default) counts the reading of the body too: a stream
    # of a big run would be cut every `total` seconds. Kept: the connect and per-read limits.
    limits = kw.pop("timeout", None) or session.timeout
    timeout = aiohttp.ClientTimeout(total=None, connect=limits.connect,
                                    sock_connect=limits.sock_connect,
                                    sock_read=limits.sock_read or _SOCK_READ)
    r = await session.get(fs.encode_url(path), headers=headers, timeout=timeout, **kw)
    if r.status == 404:
        r.release()
        raise FileNotFoundError(path)
    if r.status >= 400:
        r.release()
        r.raise_for_status()
    if r.status != 206:
        r.release()
        raise RangesIgnored(path)
    return r.content.read, r.release


def opener(fs: Any) -> Callable[[Any, str, int, int], Awaitable[Body]] | None:
    """How to open a ranged stream on ``fs``, or None where it is read by pieces."""
    kind = type(fs)
    names = {f"{k.__module__}.{k.__qualname__}" for k in kind.__mro__}
    if "s3fs.core.S3FileSystem" in names and hasattr(fs, "_call_s3"):
        return _open_s3
    if "fsspec.implementations.http.HTTPFileSystem" in names:
        return _open_http
    return None


def stream(url: str, fs: Any, path: str, start: int, end: int, piece: int,
           call: Callable[..., Any], what: str = "") -> Iterator[tuple[int, bytes]]:
    """Bytes ``[start, end)`` of the object at ``path`` as ``(offset, bytes)`` pieces of
    ``piece`` bytes (the last shorter), from one ranged GET read ahead by a thread. ``call``
    runs a storage call with its errors in one line (:func:`converter.storage.call`).
    Raises RangesIgnored before the first piece where the server does not do ranges."""
    from fsspec.asyn import sync

    open_body = opener(fs)
    if open_body is None:
        raise ValueError(f"{url}: no ranged stream for {type(fs).__name__}")
    state: dict[str, Any] = {"body": None}
    ahead: queue.Queue[Any] = queue.Queue(_QUEUED)
    stop = threading.Event()

    def opened(at: int) -> Body | RangesIgnored:
        try:
            return sync(fs.loop, open_body, fs, path, at, end)
        except RangesIgnored as exc:  # not a failure: the caller reads another way
            return exc

    def reopen(at: int) -> None:
        body = call(url, "read", opened, at)
        if isinstance(body, RangesIgnored):
            raise body
        state["body"] = body

    async def gather(read: Callable[[int], Awaitable[bytes]], n: int) -> bytes:
        parts = []
        while n > 0:
            data = await read(min(n, READS))
            if not data:
                break
            parts.append(data)
            n -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close() -> None:
        body, state["body"] = state["body"], None
        if body is not None:
            try:
                fs.loop.call_soon_threadsafe(body[1])
            except RuntimeError:  # the loop is gone: nothing to release
                pass

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        at, broken, since = start, 0, 0
        try:
            while at < end and not stop.is_set():
                n = min(piece, end - at)
                got = b""
                while len(got) < n:
                    try:
                        if state["body"] is None:
                            reopen(at + len(got))
                        more = sync(fs.loop, gather, state["body"][0], n - len(got))
                    except (RangesIgnored, FileNotFoundError):
                        raise  # the object changed: reopening again will not help
                    except Exception:
                        close()
                        if stop.is_set():
                            return
                        broken, since = broken + 1, 0
                        if broken > _REOPEN:
                            raise
                        continue
                    if not more:  # the body ended before the range did
                        raise CorruptionError(
                            f"{url}: {what}data at {at + len(got)}+{end - at - len(got)}: "
                            "the object ended first; the file is truncated")
                    since += len(more)
                    if since >= piece:  # a piece's worth since the last break: start afresh
                        broken = 0
                    got += more
                if not put((at, got)):
                    return
                at += n
            put(_DONE)
        except BaseException as exc:  # handed to the caller, who raises it
            put(exc)
        finally:
            close()

    reopen(start)  # raises here, in the caller, if the object cannot be opened
    worker = threading.Thread(target=fetch, name="ckpt-stream", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                if isinstance(item, RangesIgnored):  # on a reopen, after pieces were given
                    raise FormatError(f"{url}: the server stopped answering ranged requests")
                if isinstance(item, ConverterError):
                    raise item
                call(url, "read", _raise, item)
            yield item
    finally:
        stop.set()
        close()  # a read still waiting for the server returns at once
        worker.join(5)


def _raise(exc: BaseException) -> None:
    raise exc
