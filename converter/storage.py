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

import contextlib
import contextvars
import json
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .errors import ConverterWarning, CorruptionError, FormatError, UsageError

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


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names remote storage; ``file://`` URLs name local paths (see
    :func:`local`), and so does everything without a scheme."""
    s = os.fspath(text)
    return isinstance(s, str) and bool(_URL.match(s)) and not s.startswith("file://")


def local(text: str | os.PathLike[str]) -> str:
    """``text`` as a local path: a ``file://`` URL loses its scheme."""
    s = os.fspath(text)
    return s[len("file://"):] if isinstance(s, str) and s.startswith("file://") else s


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


# Options given for a URL, kept for the objects under it that are opened later: a lazy
# tensor read after read() returned still needs the credentials read() was given.
_scoped: dict[str, Mapping[str, Any]] = {}


@contextlib.contextmanager
def options(opts: Mapping[str, Any] | None, scope: str | None = None) -> Iterator[None]:
    """Use ``opts`` as fsspec ``storage_options`` for the URLs opened inside the block, and,
    with ``scope`` (a URL), for every URL under ``scope``'s parent opened later."""
    if not opts:
        yield
        return
    if scope is not None:
        _scoped[parent(scope) or scope] = dict(opts)
    token = _options.set({**(_options.get() or {}), **opts})
    try:
        yield
    finally:
        _options.reset(token)


def _options_for(url: str) -> Mapping[str, Any]:
    current = _options.get()
    if current is not None:
        return current
    best = max((k for k in _scoped if url == k or url.startswith(k.rstrip("/") + "/")),
               key=len, default=None)
    return _scoped[best] if best is not None else {}


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
        return url_to_fs(url, **_options_for(url))
    except ImportError:
        package = PACKAGES.get(protocol(url))
        hint = f"pip install {package}" if package else "install its fsspec implementation"
        raise UsageError(f"{url}: {protocol(url)}:// needs a package that is not installed "
                         f"({hint})") from None
    except (ValueError, TypeError) as exc:  # unknown protocol, a bad option
        raise UsageError(f"{url}: cannot open ({_quiet(exc)})") from None


def _quiet(exc: BaseException) -> str:
    """An fsspec or botocore error in one line, without what the call was given."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def parent(url: str) -> str:
    return url.rstrip("/").rpartition("/")[0]


def name(url: str) -> str:
    return url.rstrip("/").rpartition("/")[2]


class RemoteFile:
    """One object on remote storage, read by ranges. ``size`` is known once the object was
    found; a missing object raises FormatError naming it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            raise FormatError(f"{url}: no such object") from None
        except OSError as exc:
            raise FormatError(f"{url}: cannot open ({_quiet(exc)})") from None
        if info.get("type") == "directory":
            raise FormatError(f"{url}: a directory (prefix), not an object")
        size = info.get("size")
        if not isinstance(size, int) or size < 0:
            raise FormatError(f"{url}: the storage does not say how big it is")
        self.size = size
        self.whole = False  # the server was seen to ignore range requests

    def pread(self, offset: int, n: int, what: str = "") -> bytes:
        """Exactly ``n`` bytes at ``offset``; CorruptionError where the object ends first."""
        if n <= 0:
            return b""
        if offset + n > self.size:
            raise CorruptionError(f"{self.url}: {what}data at {offset}+{n} runs past the end of "
                                  f"the file ({self.size} bytes); the file is truncated")
        try:
            data = self.fs.cat_file(self.path, start=offset, end=offset + n)
        except FileNotFoundError:
            raise FormatError(f"{self.url}: the object went away while it was read") from None
        except OSError as exc:
            raise FormatError(f"{self.url}: read failed ({_quiet(exc)})") from None
        if len(data) == self.size > n:  # a server that ignores Range sends it all
            if not self.whole:
                self.whole = True
                warnings.warn(f"{self.url}: the server ignores range requests; every read "
                              "fetches the whole object", ConverterWarning, stacklevel=2)
            data = data[offset:offset + n]
        if len(data) != n:
            raise CorruptionError(f"{self.url}: {what}data at {offset}+{n}: {len(data)} bytes "
                                  "came back; the file is truncated")
        return data

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
        if len(offsets) <= 1:
            if end > start:
                yield start, self.pread(start, end - start, what)
            return
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


_open: OrderedDict[str, RemoteFile] = OrderedDict()
_open_lock = threading.Lock()


def open_file(url: str) -> RemoteFile:
    """The :class:`RemoteFile` at ``url``, kept for later lookups by URL (a tensor's span names
    its object by URL, and streaming it later needs the same file system and options)."""
    with _open_lock:
        found = _open.get(url)
        if found is not None:
            _open.move_to_end(url)
            return found
    opened = RemoteFile(url)
    with _open_lock:
        _open[url] = opened
        while len(_open) > _MAX_OPEN:
            _open.popitem(last=False)
    return opened


def forget(url: str) -> None:
    """Drop what :func:`open_file` remembers of ``url`` (after writing it)."""
    with _open_lock:
        _open.pop(url, None)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    try:
        return bool(fs.exists(path))
    except OSError as exc:
        raise FormatError(f"{url}: cannot look it up ({_quiet(exc)})") from None


def listing(url: str) -> dict[str, int]:
    """``{name: size}`` of the objects directly under the prefix ``url`` (empty when there are
    none)."""
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path.rstrip("/"), detail=True)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise FormatError(f"{url}: cannot list ({_quiet(exc)})") from None
    out = {}
    for e in entries:
        if e.get("type") != "directory":
            out[str(e["name"]).rstrip("/").rpartition("/")[2]] = int(e.get("size") or 0)
    return out


def is_prefix_dir(url: str) -> bool:
    """Whether ``url`` names a prefix ("directory") with objects under it."""
    fs, path = filesystem(url)
    try:
        return bool(fs.isdir(path.rstrip("/")))
    except OSError as exc:
        raise FormatError(f"{url}: cannot look it up ({_quiet(exc)})") from None


def upload(local_path: str, url: str, *, block: int = 64 << 20) -> None:
    """Copy the local file to ``url`` as one object: a single request, or a multipart upload
    for big files, completed only once every byte is sent. Anything that stops it (an error,
    Ctrl-C, SIGTERM) aborts the upload, so no partial object and no open multipart upload is
    left behind."""
    if protocol(url) in READ_ONLY:
        raise UsageError(f"{url}: {protocol(url)}:// is read-only")
    fs, path = filesystem(url)
    with open(local_path, "rb") as src:
        try:
            out = fs.open(path, "wb", block_size=block)
        except OSError as exc:
            raise FormatError(f"{url}: cannot write ({_quiet(exc)})") from None
        try:
            while data := src.read(block):
                out.write(data)
        except BaseException:
            _abort(out, fs, path)
            raise
        try:
            out.close()
        except OSError as exc:
            raise FormatError(f"{url}: upload failed ({_quiet(exc)})") from None
    forget(url)


# Files a reader opens first to find the others: uploaded after everything they name.
_INDEXES = (".index", ".index.json", "converter-index.json", "config.json")


def upload_all(pairs: list[tuple[str, str]]) -> list[str]:
    """Upload each ``(local file, URL)``: data first, then the index files that name it, a TF
    ``checkpoint`` state file last, so that a reader never finds an index naming objects that
    are not there yet. Returns the URLs in upload order."""
    def order(pair: tuple[str, str]) -> tuple[int, str]:
        leaf = name(pair[1])
        return (2 if leaf == "checkpoint" else 1 if leaf.endswith(_INDEXES) else 0, pair[1])

    done = []
    for local_file, url in sorted(pairs, key=order):
        upload(local_file, url)
        done.append(url)
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
        fs.rm(path)
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
    import os.path

    fs, root = filesystem(url)
    root = root.rstrip("/")
    leaf = name(url) or "object"
    try:
        if fs.isfile(root):
            local_path = os.path.join(into, leaf)
            fs.get_file(root, local_path)
            return local_path
        found = fs.find(root)
    except OSError as exc:
        raise FormatError(f"{url}: cannot read ({_quiet(exc)})") from None
    if not found:
        raise FormatError(f"{url}: no such object or prefix")
    base = os.path.join(into, leaf)
    for path in found:
        problem = key_problem(root, path)
        if problem is not None:
            raise FormatError(f"{url}: {problem}")
        target = os.path.join(base, *path[len(root) + 1:].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            fs.get_file(path, target)
        except OSError as exc:
            raise FormatError(f"{url}: cannot read {name(path)} ({_quiet(exc)})") from None
    return base
