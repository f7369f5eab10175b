"""An httpx transport on the standard library's ``http.client``, for the delivery hot path.

Why: delivering one 25 KB bundle cost ~1.7 ms of CPU through httpx's default transport
(httpcore + h11, pure Python) against ~0.5 ms through ``http.client``; with the hub, the outbox
and the accepting service sharing two cores, that difference decides whether delivery keeps up.
It speaks httpx's transport interface, so destinations build ``httpx.Request`` objects, read
``httpx.Response`` ones, and tests swap in ``httpx.MockTransport`` (with respx's router).

What it does, and no more: HTTP/1.1 over TCP or TLS (the caller's SSL context, so CA bundles and
mutual-TLS client certificates apply), keep-alive connections reused per origin, the connect,
write and read timeouts httpx passes in the request, failures mapped to the httpx exceptions the
destinations already classify. A pooled connection the server has closed meanwhile is noticed
before use; one that fails while the request is still being written is retried once on a fresh
connection (the receiver cannot have a request it did not get whole).

Once the whole request went out, a failure is an attempt with an unknown outcome: the receiver
may have processed it and lost only its reply. A POST is then never sent again here (that would
be sending blindly twice); the failure surfaces as a read-side error (``ReadTimeout``,
``ReadError``, ``RemoteProtocolError``) and the destination resolves it the way its receiver
allows (an idempotency key it honours, a conditional create, or a lookup before any re-send).
Only requests idempotent by method (GET, HEAD, PUT, DELETE, OPTIONS: the lookups) are retried
on a fresh connection after a complete send.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from typing import Any

import httpx

MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # a hub's reply to a transaction is a few KB
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

Origin = tuple[str, str, int]
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class _NotSent(Exception):
    """The connection failed while the request was being written: the receiver has not got it."""


class _SentNoReply(Exception):
    """The connection failed after the whole request was sent, before a reply came back."""


class StdlibTransport(httpx.BaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 32,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._max_response_bytes = max_response_bytes
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- the pool ----------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _checkout(self, origin: Origin) -> http.client.HTTPConnection | None:
        """An idle connection still open at the far end, or None."""
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if _still_open(conn):
                    return conn
                conn.close()
        return None

    def _checkin(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def _connect(
        self, origin: Origin, request: httpx.Request, timeout: float | None
    ) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"connect timeout: {exc}", request=request) from exc
        except (OSError, ssl.CertificateError) as exc:  # refused, unreachable, TLS handshake
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # -- one exchange ------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        body = request.read()
        for attempt in (0, 1):
            conn = self._checkout(origin)
            reused = conn is not None
            if conn is None:
                conn = self._connect(origin, request, timeouts.get("connect"))
            try:
                response, keep = self._exchange(conn, request, body, timeouts)
            except _NotSent as exc:
                conn.close()
                cause = exc.__cause__ or exc
                if reused and attempt == 0:
                    continue  # the server closed the kept-alive connection as we wrote to it
                raise httpx.WriteError(_describe(cause), request=request) from cause
            except _SentNoReply as exc:
                conn.close()
                cause = exc.__cause__ or exc
                if reused and attempt == 0 and request.method in IDEMPOTENT_METHODS:
                    continue  # a lookup: asking twice changes nothing
                raise httpx.RemoteProtocolError(
                    f"{_describe(cause)} (after the whole request was sent: outcome unknown)", request=request
                ) from cause
            except BaseException:
                conn.close()
                raise
            if keep:
                self._checkin(origin, conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self, conn: http.client.HTTPConnection, request: httpx.Request, body: bytes, timeouts: dict[str, Any]
    ) -> tuple[httpx.Response, bool]:
        sock = conn.sock
        assert sock is not None
        try:
            sock.settimeout(timeouts.get("write"))
            conn.putrequest(request.method, request.url.raw_path.decode("ascii"),
                            skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders(body or None)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"write timeout: {exc}", request=request) from exc
        except ValueError as exc:  # an illegal header name or value
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except _STALE as exc:
            raise _NotSent() from exc
        except OSError as exc:
            raise httpx.WriteError(_describe(exc), request=request) from exc
        # From here on the receiver may have the whole request: nothing below sends it again.
        try:
            sock.settimeout(timeouts.get("read"))
            reply = conn.getresponse()
            content = self._read_body(reply, request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"read timeout: {exc}", request=request) from exc
        except _STALE as exc:
            raise _SentNoReply() from exc
        except http.client.HTTPException as exc:  # truncated body, bad status line, huge header
            raise httpx.RemoteProtocolError(_describe(exc), request=request) from exc
        except OSError as exc:
            raise httpx.ReadError(_describe(exc), request=request) from exc
        response = httpx.Response(
            reply.status,
            headers=reply.getheaders(),
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reply.reason.encode("latin-1")},
        )
        return response, not reply.will_close

    def _read_body(self, reply: http.client.HTTPResponse, request: httpx.Request) -> bytes:
        """The whole reply body, refusing a truncated one: ``read(n)`` on a reply with a
        Content-Length returns short data silently when the peer hangs up, and a dropped reply
        must never pass for a 200."""
        limit = self._max_response_bytes
        if reply.length is not None and not reply.chunked:
            if reply.length > limit:
                raise _too_large(limit, request)
            return reply.read()  # raises IncompleteRead when the connection ends early
        content = reply.read(limit + 1)  # chunked (truncation raises) or ended by close
        if len(content) > limit:
            raise _too_large(limit, request)
        return content


def _too_large(limit: int, request: httpx.Request) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"reply larger than {limit} bytes", request=request)


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle HTTP/1.1 connection has nothing to read; readable means the peer closed it."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed mid-reply ({len(exc.partial)} bytes read)"
    return str(exc) or type(exc).__name__

