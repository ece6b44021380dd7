"""Telling a storage server that could not be reached or that failed from one that answered.

fsspec, s3fs, botocore and aiohttp each wrap a refused connection, a host name that does not
resolve, a timeout or an HTTP 5xx answer in their own exceptions (fsspec's HTTP file system even
in FileNotFoundError). What is behind them is found by walking the exceptions' causes, and
their classes are told apart by name, so that none of those libraries is imported here (they
may not be installed).

Messages name the server as ``HOST:PORT`` only: the rest of a request's URL may carry a
signature in its query string, and nothing the call was given is repeated.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit


def failure(url: str, exc: BaseException, endpoints: Iterable[object] = (),
            context: bool = True) -> str | None:
    """The message for ``exc`` if the server behind ``url`` could not be reached or failed
    (HTTP 5xx), else None (a missing object, a refusal, a bad request: the server answered).
    ``endpoints`` are URLs that name the server where the error does not (an endpoint option);
    with ``context=False`` only the causes ``exc`` names count, not what was being handled when
    it was raised (a retry that then succeeded)."""
    links = _chain(exc, context)
    reason = _reason(links)
    if reason is not None:
        server = _server(links, endpoints)
        at = f" at {server}" if server else ""
        if reason == "timed out":  # reached, maybe, and then silent: a slow or stalled server
            return f"{url}: the storage server{at} did not answer in time (timed out)"
        return f"{url}: cannot reach the storage server{at} ({reason})"
    status = next((s for e in links if (s := _status(e)) is not None), None)
    if status is not None and status >= 500:
        from http import HTTPStatus

        try:
            return f"{url}: the storage server failed (HTTP {status} {HTTPStatus(status).phrase})"
        except ValueError:  # a status without a name
            return f"{url}: the storage server failed (HTTP {status})"
    return None


def _chain(exc: BaseException, context: bool) -> list[BaseException]:
    """``exc`` and the exceptions behind it: causes, what was being handled (``context``) and
    the OS error a client library keeps aside (aiohttp's ``os_error``, botocore's ``error``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 16:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        kwargs = getattr(e, "kwargs", None)
        todo += [e.__cause__, e.__context__ if context else None, getattr(e, "os_error", None),
                 kwargs.get("error") if isinstance(kwargs, dict) else None]
    return seen


def _named(e: BaseException, *parts: str) -> bool:
    return any(part in c.__name__ for c in type(e).__mro__ for part in parts)


def _reason(links: list[BaseException]) -> str | None:
    """Why the server could not be reached, the most telling first; None where it was."""
    if any(isinstance(e, ssl.SSLError) or _named(e, "SSL", "Certificate") for e in links):
        detail = next((str(d) for x in links if isinstance(x, ssl.SSLError)
                       for d in (getattr(x, "verify_message", None),
                                 getattr(x, "reason", None)) if d), None)
        return f"TLS failed: {detail}" if detail else "TLS failed"
    for kinds, reason in (((socket.gaierror,), "the host name does not resolve"),
                          ((ConnectionRefusedError,), "connection refused"),
                          ((TimeoutError, socket.timeout), "timed out"),
                          ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError),
                           "connection reset")):
        if any(isinstance(e, kinds) for e in links):
            return reason
    if any(_named(e, "TimeoutError", "Timeout") for e in links):  # asyncio's before 3.11
        return "timed out"
    if any(isinstance(e, ConnectionError) or _named(e, "ConnectionError", "ConnectionClosed",
                                                      "Disconnected") for e in links):
        return "connection lost"
    return None


def _status(e: BaseException) -> int | None:
    """The HTTP status an exception carries, if any: botocore's ClientError (a response
    dict), aiohttp's ClientResponseError (``status``), a requests or httpx response."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        found = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    elif response is not None:
        found = getattr(response, "status_code", None)
    else:
        found = getattr(e, "status", None)
    return found if isinstance(found, int) and 100 <= found < 600 else None


def _server(links: list[BaseException], endpoints: Iterable[object]) -> str | None:
    """``HOST:PORT`` of the server: from the error (aiohttp's ``host`` and ``port``,
    botocore's ``endpoint_url``), else the first of ``endpoints`` that names one."""
    for e in links:
        host, port = getattr(e, "host", None), getattr(e, "port", None)
        if isinstance(host, str) and isinstance(port, int):
            return f"{host}:{port}"
    kwargs = [getattr(e, "kwargs", None) for e in links]
    for endpoint in [k.get("endpoint_url") for k in kwargs if isinstance(k, dict)] + \
            list(endpoints):
        if isinstance(endpoint, str) and "://" in endpoint:
            parts = urlsplit(endpoint)
            try:
                port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
            except ValueError:  # a port that is not a number
                continue
            if parts.hostname:
                return f"{parts.hostname}:{port}" if port else parts.hostname
    return None
