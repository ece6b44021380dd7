"""Where checkpoints live: local paths, or fsspec URLs (``s3://``, ``gs://``, ``az://``, ``hf://``,
``http(s)://``) on object storage.

This module is the one place that decides local against remote. Local paths keep their fast
paths elsewhere (memory maps, ``copy_file_range``). A remote object is a :class:`RemoteFile`:
its size from one metadata request, and its bytes through ranged reads, so listing a
checkpoint fetches its index or header and nothing else, and a conversion streams each
tensor's span in large pieces with a few requests in flight. Outputs on remote storage are
written as one upload per object (multipart for big ones), which makes an object appear whole
or not at all; an upload that fails or is interrupted is aborted.

Credentials come from the environment and fsspec's own configuration, or from
``storage_options`` (the CLI's ``--storage-option KEY=VALUE``). They are handed to fsspec and
nowhere else: messages name URLs, never options.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import io
import json
import os
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import (
    ConverterError,
    ConverterWarning,
    CorruptionError,
    FormatError,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

# scheme://... with a scheme of two letters or more: C:\x on Windows is a path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# The package each protocol needs, for the install hint (fsspec's own messages vary).
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
            "abfs": "adlfs", "abfss": "adlfs", "hf": "huggingface_hub", "http": "aiohttp",
            "https": "aiohttp"}
READ_ONLY = ("http", "https")
PIECE = 8 << 20  # bytes per ranged request when streaming (stream.CHUNK)
IN_FLIGHT = 4  # ranged requests kept in flight while streaming
_MAX_OPEN = 256  # remote files kept open (their file system and size), most recent first

_options: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "storage_options", default=None)


_scratch: contextvars.ContextVar[str | None] = contextvars.ContextVar("scratch", default=None)


@contextlib.contextmanager
def scratch(directory: str | os.PathLike[str] | None) -> Iterator[None]:
    """Put the local copies of remote objects made inside the block (formats read from local
    files only) under ``directory`` instead of the system's temporary directory: a batch
    worker keeps each item's files in its own scratch space, removed with it."""
    token = _scratch.set(os.fspath(directory) if directory is not None else None)
    try:
        yield
    finally:
        _scratch.reset(token)


def scratch_dir() -> str | None:
    return _scratch.get()


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names remote storage; ``file://`` URLs name local paths (see
    :func:`local`), and so does everything without a scheme."""
    s = os.fspath(text)
    return isinstance(s, str) and bool(_URL.match(s)) and not s.startswith("file://")


def local(text: str | os.PathLike[str]) -> str:
    """``text`` as a local path: a ``file://`` URL loses its scheme (and a ``localhost``
    host, as RFC 8089 allows)."""
    s = os.fspath(text)
    if not (isinstance(s, str) and s.startswith("file://")):
        return s
    rest = s[len("file://"):]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost"):]
    return rest


def check(url: str) -> str:
    """``url`` if it names an object or prefix plainly: refused (UsageError) with ``.``, ``..``
    or empty parts (which fsspec would resolve away from what was named, or into another
    directory when staged), credentials in the URL (they would be echoed in every message:
    give them as storage options) or a query string or fragment (object names here are
    paths)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise UsageError(f"{protocol(url)}://{parts.hostname or ''}/...: credentials in the URL "
                         "would be shown in messages; give them with --storage-option (or "
                         "storage_options=) or the environment")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise UsageError(f"{url.split('?')[0].split('#')[0]}: a URL with a query string or "
                         "fragment is not supported (name the object by its path)")
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]  # a trailing / names a prefix
    if any(seg in ("", ".", "..") for seg in segments):  # (memory:///x has no host)
        raise UsageError(f"{url}: '.', '..' or empty parts in a URL are refused (name the "
                         "object by its plain path)")
    return url


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


# Options given with a URL, kept for the objects under it opened later (a lazy tensor read
# after read() returned still needs them), until the checkpoint read with them is closed.
_scoped: dict[str, Mapping[str, Any]] = {}
_scoped_lock = threading.Lock()
CLOSED: Mapping[str, Any] = {"closed": True}  # the options of a closed checkpoint


def scope_of(url: str) -> str:
    """The prefix options given with ``url`` cover: its parent, never above its bucket or
    host (``s3://bucket``, ``https://host``)."""
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}"
    up = parent(url)
    return up if len(up) > len(root) and up.startswith(root + "/") else root


def _covers(scope: str, url: str) -> bool:
    return url == scope or url.startswith(scope + "/")


@contextlib.contextmanager
def options(opts: Mapping[str, Any] | None) -> Iterator[None]:
    """Use ``opts`` as fsspec ``storage_options`` for the URLs opened inside the block."""
    if not opts:
        yield
        return
    token = _options.set({**(_options.get() or {}), **opts})
    try:
        yield
    finally:
        _options.reset(token)


def remember(url: str, opts: Mapping[str, Any] | None) -> Callable[[], None]:
    """Keep ``opts`` for the URLs under :func:`scope_of` ``url`` opened later, outside any
    :func:`options` block; returns the function that forgets them."""
    if not opts:
        return lambda: None
    scope = scope_of(url)
    kept = dict(opts)
    with _scoped_lock:
        _scoped[scope] = kept

    def forget_options() -> None:
        # Not simply removed: a tensor read after close() would then go out without the
        # options, to whatever endpoint a bucket of that name has by default.
        with _scoped_lock:
            if _scoped.get(scope) is kept:
                _scoped[scope] = CLOSED

    return forget_options


def reopen(url: str) -> None:
    """A new read or write of ``url``: what closed checkpoints left for the scopes that cover
    it, or that it covers (a directory named by a batch), is cleared."""
    with _scoped_lock:
        for k in [k for k, v in _scoped.items() if v is CLOSED and (
                _covers(k, url) or _covers(url.rstrip("/"), k))]:
            del _scoped[k]


def _options_for(url: str) -> Mapping[str, Any]:
    current = _options.get()
    if current is not None:
        return current
    with _scoped_lock:
        best = max((k for k in _scoped if _covers(k, url)), key=len, default=None)
        found = _scoped[best] if best is not None else {}
    if found is CLOSED:
        raise UsageError(f"{url}: the checkpoint read with its storage options is closed; "
                         "read it again")
    return found


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--storage-option``: VALUE as JSON where it is JSON (``true``, ``3``,
    ``{"a": 1}``), else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--storage-option {key or text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path inside it)`` for ``url``, with the current options."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UsageError(f'{url}: remote storage needs fsspec: pip install '
                         '"ckpt-converter[remote]"') from None
    try:
        return url_to_fs(check(url), **_options_for(url))
    except ImportError:
        package = PACKAGES.get(protocol(url))
        hint = f"pip install {package}" if package else "install its fsspec implementation"
        raise UsageError(f"{url}: {protocol(url)}:// needs a package that is not installed "
                         f"({hint})") from None
    except (ValueError, TypeError) as exc:  # unknown protocol, a bad option
        raise UsageError(f"{url}: cannot open ({_quiet(exc)})") from None


def call(url: str, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)`` on ``url``'s storage with its errors in one line: FileNotFoundError
    as it is (a missing object); a server that cannot be reached or that fails (HTTP 5xx) as
    StorageError; access denied (HTTP 403) and options the file system does not take as
    UsageError; anything else the
    storage library raises (botocore's, a refused request) as FormatError. Interruptions
    pass."""
    try:
        return fn(*args, **kw)
    except FileNotFoundError as exc:
        # fsspec's HTTP file system reports any failure to look an object up as missing; a
        # refused connection or a timeout is not a missing object. Only the causes it names:
        # what was handled on the way (a retry that then succeeded) says nothing.
        failure = _failure(url, exc, context=False)
        if failure is not None:
            raise StorageError(failure) from None
        raise
    except PermissionError as exc:  # s3fs's answer to 403: the credentials, not the file
        raise UsageError(f"{url}: {what} failed: access denied ({_quiet(exc)}); check the "
                         "credentials (environment or --storage-option)") from None
    except TypeError as exc:
        raise UsageError(f"{url}: {what} failed ({_quiet(exc)}; check --storage-option)"
                         ) from None
    except Exception as exc:
        failure = _failure(url, exc)
        if failure is not None:
            raise StorageError(failure) from None
        raise FormatError(f"{url}: {what} failed ({_quiet(exc)})") from None


def _failure(url: str, exc: BaseException, context: bool = True) -> str | None:
    """The StorageError message for ``exc`` (see :mod:`converter.storage_failures`), naming
    the server from the error, else from the endpoint option or an http(s) URL."""
    from .storage_failures import failure

    endpoints: list[object] = []
    with contextlib.suppress(ConverterError):  # a closed checkpoint's options: none to name
        opts = _options_for(url)
        client = opts.get("client_kwargs")
        endpoints += [opts.get("endpoint_url"),
                      client.get("endpoint_url") if isinstance(client, Mapping) else None]
    if protocol(url) in READ_ONLY:
        endpoints.append(url)
    return failure(url, exc, endpoints, context=context)


def _quiet(exc: BaseException) -> str:
    """An fsspec or botocore error in one line, without what the call was given: its type
    and the first line of its text, cut short, with no query strings (they may sign a URL)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _QUERY.sub("?...", text)
    kind = type(exc).__name__
    return f"{kind}: {text[:200]}" if text else kind


_QUERY = re.compile(r"\?[^\s\"'?]+=[^\s\"']*")


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def parent(url: str) -> str:
    return url.rstrip("/").rpartition("/")[0]


def name(url: str) -> str:
    return url.rstrip("/").rpartition("/")[2]


class NoSuchObject(FormatError):
    """What a URL names is not there (told apart from storage that refused to say)."""


class RemoteFile:
    """One object on remote storage, read by ranges. ``size`` is known once the object was
    found; a missing object raises FormatError naming it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        _fresh(self.fs, self.path)
        try:
            info = call(url, "looking it up", self.fs.info, self.path)
        except FileNotFoundError:
            raise NoSuchObject(f"{url}: no such object") from None
        if info.get("type") == "directory":
            raise FormatError(f"{url}: a directory (prefix), not an object")
        size = info.get("size")
        if not isinstance(size, int) or size < 0:
            raise FormatError(f"{url}: the storage does not say how big it is")
        self.size = size
        # Whether the server honours range requests is known after the first read; until
        # then reads take turns, so a server that sends the whole object each time is met once.
        self._ranges: bool | None = None if protocol(url) in READ_ONLY else True
        self._first = threading.Lock()
        self._copy: Any = None  # the whole object, spilled to a temporary file

    def pread(self, offset: int, n: int, what: str = "") -> bytes:
        """Exactly ``n`` bytes at ``offset``; CorruptionError where the object ends first."""
        if n <= 0:
            return b""
        if offset + n > self.size:
            raise CorruptionError(f"{self.url}: {what}data at {offset}+{n} runs past the end of "
                                  f"the file ({self.size} bytes); the file is truncated")
        if self._ranges is None:
            with self._first:
                if self._ranges is None:
                    return self._probe(offset, n, what)
        if self._copy is not None:
            return os.pread(self._copy.fileno(), n, offset)
        return self._check(self._get(offset, n), offset, n, what)

    def _get(self, offset: int, n: int) -> bytes:
        try:
            return call(self.url, "read", self.fs.cat_file, self.path, start=offset,
                        end=offset + n)
        except FileNotFoundError:
            raise FormatError(f"{self.url}: the object went away while it was read") from None

    def _check(self, data: bytes, offset: int, n: int, what: str) -> bytes:
        if len(data) != n:
            raise CorruptionError(f"{self.url}: {what}data at {offset}+{n}: {len(data)} bytes "
                                  "came back; the file is truncated")
        return data

    def _probe(self, offset: int, n: int, what: str) -> bytes:
        from . import fetch  # remote reads only: off start-up

        if fetch.opener(self.fs) is not None:
            # Streamed, so that a server answering the whole object is not read into memory.
            try:
                got = b"".join(d for _, d in fetch.stream(self.url, self.fs, self.path, offset,
                                                          offset + n, n, call, what))
            except fetch.RangesIgnored:
                return self._spill(offset, n, what)
            self._ranges = n < self.size or None  # the whole object tells nothing
            return self._check(got, offset, n, what)
        data = self._get(offset, n)
        if n == self.size:  # the whole object: whether the range was honoured is not known
            return self._check(data, offset, n, what)
        if len(data) == self.size > n:  # the server ignores Range and sent it all
            self._keep_copy(lambda f: f.write(data))
            return data[offset:offset + n]
        self._ranges = True
        return self._check(data, offset, n, what)

    def _spill(self, offset: int, n: int, what: str) -> bytes:
        """The object downloaded once, streamed into a temporary file, read from there on."""
        def download(f: Any) -> None:
            call(self.url, "download", self.fs.get_file, self.path, f)

        copy = self._keep_copy(download)
        size = os.fstat(copy.fileno()).st_size
        if size != self.size:
            raise CorruptionError(f"{self.url}: {size} bytes came back of {self.size}; the "
                                  "file is truncated")
        return self._check(os.pread(copy.fileno(), n, offset), offset, n, what)

    def _keep_copy(self, fill: Callable[[Any], Any]) -> Any:
        warnings.warn(f"{self.url}: the server ignores range requests; the object is "
                      "fetched once into a temporary file", ConverterWarning, stacklevel=4)
        import tempfile

        copy = tempfile.TemporaryFile(prefix="ckpt-remote-", dir=scratch_dir())
        weakref.finalize(self, copy.close)
        fill(copy)
        copy.flush()
        self._copy = copy
        self._ranges = False
        return copy

    def read_all(self, max_size: int | None = None) -> bytes:
        if max_size is not None and self.size > max_size:
            raise FormatError(f"{self.url}: {self.size} bytes, too big for what it should be "
                              f"(at most {max_size})")
        return self.pread(0, self.size)

    def pieces(self, start: int, end: int, what: str = "") -> Iterator[tuple[int, bytes]]:
        """Bytes ``[start, end)`` as ``(offset, bytes)`` pieces of at most :data:`PIECE`,
        fetched ahead with up to :data:`IN_FLIGHT` requests at once; memory held is bounded by
        their sizes, not by the span's."""
        if end > self.size:
            raise CorruptionError(f"{self.url}: {what}data ends at byte {self.size}, before "
                                  f"byte {end}; the file is truncated")
        offsets = list(range(start, end, PIECE))
        if len(offsets) > 1 and self._copy is None:
            from . import fetch  # remote reads only: off start-up

            if fetch.opener(self.fs) is not None:
                try:
                    yield from fetch.stream(self.url, self.fs, self.path, start, end, PIECE,
                                            call, what)
                    self._ranges = True
                    return
                except fetch.RangesIgnored:
                    pass  # read by pieces: the first finds out and copies the object once
                except FileNotFoundError:
                    raise FormatError(f"{self.url}: the object went away while it was read"
                                      ) from None
        if len(offsets) <= 1 or not self._ranges:
            for at in offsets:  # one at a time until ranges are known to work
                yield at, self.pread(at, min(PIECE, end - at), what)
            return
        from concurrent.futures import ThreadPoolExecutor  # remote reads only: off start-up

        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="ckpt-range") as pool:
            ahead: list[Future[bytes]] = []
            nxt = 0
            try:
                for pos in offsets:
                    while nxt < len(offsets) and len(ahead) < IN_FLIGHT:
                        at = offsets[nxt]
                        ahead.append(pool.submit(self.pread, at, min(PIECE, end - at), what))
                        nxt += 1
                    yield pos, ahead.pop(0).result()
            finally:
                for f in ahead:
                    f.cancel()


def _fresh(fs: Any, path: str) -> None:
    """Drop what the file system cached of ``path`` (s3fs keeps listings): another writer may
    have changed it since, and a stale listing would name an older checkpoint."""
    invalidate = getattr(fs, "invalidate_cache", None)
    if invalidate is not None:
        try:
            invalidate(path)
        except Exception:  # a cache that cannot be dropped is only a cache
            pass


# Opened objects by (URL, options): a tensor's span names its object by URL, and streaming it
# later needs the same file system and options. Reading a checkpoint again looks objects up
# afresh (:func:`forget_under`).
_open: OrderedDict[tuple[str, str], RemoteFile] = OrderedDict()
_open_lock = threading.Lock()


def _key(url: str) -> tuple[str, str]:
    return url, json.dumps(_options_for(url), sort_keys=True, default=repr)


def open_file(url: str) -> RemoteFile:
    """The :class:`RemoteFile` at ``url`` with the current options, kept for later lookups."""
    key = _key(url)
    with _open_lock:
        found = _open.get(key)
        if found is not None:
            _open.move_to_end(key)
            return found
    opened = RemoteFile(url)
    with _open_lock:
        _open[key] = opened
        while len(_open) > _MAX_OPEN:
            _open.popitem(last=False)
    return opened


def forget(url: str) -> None:
    """Drop what :func:`open_file` remembers of ``url`` (after writing it)."""
    with _open_lock:
        for key in [k for k in _open if k[0] == url]:
            del _open[key]


def forget_under(url: str) -> None:
    """Drop what :func:`open_file` remembers of ``url`` and the objects beside or under it,
    so that a new read sees their current sizes (not within :func:`lookups_kept`)."""
    if _lookups_kept.get():
        return
    scope = scope_of(url)
    with _open_lock:
        for key in [k for k in _open if _covers(scope, k[0])]:
            del _open[key]


_lookups_kept: contextvars.ContextVar[bool] = contextvars.ContextVar("lookups_kept",
                                                                     default=False)


@contextlib.contextmanager
def lookups_kept() -> Iterator[None]:
    """Within: reading a checkpoint keeps the objects as they were first looked up. For one
    command that finds a checkpoint's format and then reads it, moments apart: looked up
    afresh, an object from a server that ignores ranges would be downloaded twice."""
    token = _lookups_kept.set(True)
    try:
        yield
    finally:
        _lookups_kept.reset(token)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    _fresh(fs, path)
    if protocol(url) in READ_ONLY:
        # fsspec's HTTP exists() answers False for a server it cannot reach; a lookup says why.
        try:
            call(url, "looking it up", fs.info, path)
        except FileNotFoundError:
            return False
        return True
    return bool(call(url, "looking it up", fs.exists, path))


def listing(url: str) -> dict[str, int]:
    """``{name: size}`` of the objects directly under the prefix ``url`` (empty when there are
    none)."""
    fs, path = filesystem(url)
    path = path.rstrip("/")
    _fresh(fs, path)
    try:
        entries = call(url, "listing", fs.ls, path, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for e in entries:
        if e.get("type") != "directory":
            out[str(e["name"]).rstrip("/").rpartition("/")[2]] = int(e.get("size") or 0)
    return out


def is_prefix_dir(url: str) -> bool:
    """Whether ``url`` names a prefix ("directory") with objects under it."""
    fs, path = filesystem(url)
    _fresh(fs, path.rstrip("/"))
    return bool(call(url, "looking it up", fs.isdir, path.rstrip("/")))


def upload(local_path: str, url: str, *, block: int = 64 << 20) -> None:
    """Copy the local file to ``url`` as one object: a single request, or a multipart upload
    for big files, completed only once every byte is sent. Anything that stops it (an error,
    Ctrl-C, SIGTERM), while sending or while completing, aborts the upload, so no partial
    object and no open multipart upload is left behind."""
    if protocol(url) in READ_ONLY:
        raise UsageError(f"{url}: {protocol(url)}:// is read-only")
    fs, path = filesystem(url)
    with open(local_path, "rb") as src:
        try:
            out = call(url, "opening for writing", fs.open, path, "wb", block_size=block)
        except FileNotFoundError:
            raise FormatError(f"{url}: cannot write there (no such bucket or container)"
                              ) from None
        try:
            while data := src.read(block):
                call(url, "upload", out.write, data)
            call(url, "upload", out.close)
        except FileNotFoundError:
            _abort(out, fs, path)
            raise FormatError(f"{url}: cannot write there (no such bucket or container)"
                              ) from None
        except BaseException:
            _abort(out, fs, path)
            raise
    forget(url)


# Files a reader opens first to find the others: uploaded after everything they name.
_INDEXES = (".index", ".index.json", "converter-index.json", "config.json")


def upload_all(pairs: list[tuple[str, str]], *, replace: bool = False,
               stale: list[str] | None = None) -> list[str]:
    """Upload each ``(local file, URL)``: data first, then the index files that name it, a TF
    ``checkpoint`` state file last, so that a reader never finds an index naming objects that
    are not there yet. With ``replace``, the index objects being replaced are removed before
    any data is sent, so an interruption leaves no checkpoint rather than an old index over
    new data; a TF state file is not (it names the run's other checkpoints too, and one naming
    an index that is gone is refused by readers, not followed elsewhere); ``stale`` objects
    (an earlier output's shards) are removed once the new output is complete. If an upload
    fails or is interrupted, the objects this call created are removed again. Returns the URLs
    in upload order."""
    def order(pair: tuple[str, str]) -> tuple[int, str]:
        leaf = name(pair[1])
        return (2 if leaf == "checkpoint" else 1 if leaf.endswith(_INDEXES) else 0, pair[1])

    ordered = sorted(pairs, key=order)
    existed = {url for _, url in ordered if exists(url)}
    if replace:
        for _, url in ordered:
            if url in existed and name(url).endswith(_INDEXES):
                remove(url)
                existed.discard(url)
    done: list[str] = []
    try:
        for local_file, url in ordered:
            upload(local_file, url)
            done.append(url)
    except BaseException:
        for url in done:
            if url not in existed:
                with contextlib.suppress(Exception):
                    remove(url)
        raise
    for url in stale or ():
        with contextlib.suppress(FileNotFoundError):
            remove(url)
    return done


def _abort(out: Any, fs: Any, path: str) -> None:
    discard = getattr(out, "discard", None)
    try:
        if discard is not None:
            discard()  # S3: aborts the multipart upload; nothing was committed
            out.closed = True  # else its finaliser would try to complete the upload
        else:
            out.close()  # file systems without multipart: remove what close() committed
            fs.rm(path)
    except Exception:  # the interruption is what the caller reports
        pass


def remove(url: str) -> None:
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        call(url, "removing it", fs.rm, path)
    forget(url)


def key_problem(root: str, path: str, max_depth: int = 32) -> str | None:
    """Why an object under ``root`` cannot be placed under a local directory: object keys are
    strings the bucket's writer chose, so ``..``, ``.`` or empty parts (``a//b``, a leading
    ``/``) are refused as archive members are."""
    if path == root:
        return None
    if not path.startswith(root + "/"):
        return f"object key {path!r} is not under {root!r}"
    tail = path[len(root) + 1:]
    parts = tail.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in tail:
        return f"object key {path!r} points outside {root!r}"
    if len(parts) > max_depth:
        return f"object key {path[:80]!r}... is nested more than {max_depth} levels deep"
    return None


def stage(url: str, into: str) -> str:
    """Download the object, or every object under the prefix, at ``url`` into the local
    directory ``into``; returns the local path that stands for ``url``. For formats that are
    read from local files only."""
    fs, root = filesystem(url)  # check(): no '.', '..' or empty parts in the URL
    root = root.rstrip("/")
    _fresh(fs, root)
    leaf = name(url)
    local_path = os.path.join(into, "object", leaf)
    try:
        if call(url, "looking it up", fs.isfile, root):
            os.makedirs(os.path.dirname(local_path), exist_ok=True)
            call(url, "download", fs.get_file, root, local_path)
            return local_path
        found = call(url, "listing", fs.find, root)
    except FileNotFoundError:
        raise FormatError(f"{url}: no such object or prefix") from None
    if not found:
        raise FormatError(f"{url}: no such object or prefix")
    for path in found:
        problem = key_problem(root, path)
        if problem is not None:
            raise FormatError(f"{url}: {problem}")
        target = os.path.join(local_path, *path[len(root) + 1:].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            call(url, f"download of {name(path)}", fs.get_file, path, target)
        except FileNotFoundError:
            raise FormatError(f"{url}: {name(path)} went away while it was read") from None
    return local_path


class RangeReader(io.RawIOBase):
    """A read-only, seekable file object over a :class:`RemoteFile`, for libraries that want
    one (zipfile, h5py). Small reads are served from blocks read ahead, so parsing a zip
    directory or an HDF5 file's metadata costs a request per block, not per call.

    A miss fetches at least ``block`` bytes; misses that follow one another through the
    object double that, up to ``ahead`` (a library walking its metadata in file order), and a
    miss elsewhere starts again at ``block`` (metadata interleaved with large data, where
    reading far ahead would fetch the data). Fetched ranges are kept, least recently used
    first out, up to ``keep`` bytes; a read of ``ahead`` bytes or more is fetched as it is and
    not kept.
    """

    def __init__(self, obj: RemoteFile, block: int = 64 << 10, *, ahead: int | None = None,
                 keep: int | None = None) -> None:
        super().__init__()
        self.obj = obj
        self.pos = 0
        self.BLOCK = block
        self._ahead = max(block, ahead or block)
        self._keep = max(block, keep or block)
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, bytes] = OrderedDict()  # disjoint ranges by start
        self._starts: list[int] = []  # their starts, sorted
        self._held = 0
        self._next = -1  # where the last miss's fetch ended
        self._size = block  # what the next sequential miss fetches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.obj.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self.obj.url}: seek before the start")
        self.pos = base + offset
        return self.pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self.obj.size - self.pos)
        if n <= 0:
            return 0
        at = 0
        for part in self.parts(self.pos, n):
            view[at:at + len(part)] = part
            at += len(part)
        self.pos += n
        return n

    def read_at(self, offset: int, n: int, ahead: bool = True) -> bytes:
        """Bytes ``[offset, offset + n)`` (fewer where the object ends); ``ahead=False``
        fetches no more than asked for (a scan that knows where the data it skips lies)."""
        return b"".join(self.parts(offset, n, ahead))

    def parts(self, offset: int, n: int, ahead: bool = True) -> Iterator[memoryview]:
        """:meth:`read_at` as consecutive pieces: kept ranges where they cover it, fetched
        ones between them."""
        end = min(offset + n, self.obj.size)
        cur = offset
        while cur < end:
            with self._lock:
                i = bisect.bisect_right(self._starts, cur) - 1
                start = self._starts[i] if i >= 0 else -1
                block = self._blocks.get(start, b"")
                if start + len(block) > cur:
                    self._blocks.move_to_end(start)
                else:  # the next kept range bounds what is fetched, so ranges stay disjoint
                    after = self._starts[i + 1] if i + 1 < len(self._starts) else self.obj.size
                    block = b""
            if block:
                take = memoryview(block)[cur - start:end - start]
                yield take
                cur += len(take)
                continue
            want = min(after, end) - cur
            if want >= self._ahead:  # a large read: fetched as it is, not kept
                for _, data in self.obj.pieces(cur, cur + want):
                    yield memoryview(data)
                    cur += len(data)
                continue
            if ahead and after > end:
                want = min(after - cur, max(want, self._readahead(cur)))
            data = self.obj.pread(cur, want)
            self._put(cur, data)
            take = memoryview(data)[:end - cur]
            yield take
            cur += len(take)

    def _readahead(self, at: int) -> int:
        sequential = self._next <= at <= self._next + self._size
        self._size = min(self._size * 2, self._ahead) if sequential else self.BLOCK
        self._next = at + self._size
        return self._size

    def _put(self, start: int, data: bytes) -> None:
        with self._lock:
            if start in self._blocks:
                return  # fetched meanwhile by another thread
            self._blocks[start] = data
            bisect.insort(self._starts, start)
            self._held += len(data)
            while self._held > self._keep and len(self._blocks) > 1:
                old, dropped = self._blocks.popitem(last=False)
                del self._starts[bisect.bisect_left(self._starts, old)]
                self._held -= len(dropped)


class RangeBuffer:
    """``buf[a:b]`` (bytes) and ``len(buf)`` over a :class:`RemoteFile`, where readers slice a
    memory map of a local file."""

    def __init__(self, obj: RemoteFile) -> None:
        self.obj = obj
        self._reader = RangeReader(obj, 4 << 10)  # headers: a few hundred bytes each

    def __len__(self) -> int:
        return self.obj.size

    def __getitem__(self, cut: slice) -> bytes:
        start, stop, step = cut.indices(self.obj.size)
        if step != 1:
            raise ValueError("only contiguous slices")
        if stop <= start:
            return b""
        self._reader.seek(start)
        return self._reader.read(stop - start) or b""
