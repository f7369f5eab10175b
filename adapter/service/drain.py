"""Answers a client can read: the request body is drained before an early answer is sent.

Many HTTP clients (most Java and .NET ones) send the whole request body before they read the
reply. When becare answers before reading the body (413 for a body over ``max_body_bytes``, but
also 401, 403, 415, 429) and the connection is then closed with body bytes still unread, the
kernel resets the connection and the client sees "connection reset" instead of the
OperationOutcome. So when a handler answers without having consumed the body, the answer is held
back while the rest of the body is read and thrown away, up to ``drain_bytes`` and
``DRAIN_SECONDS``; after that the answer goes out and the connection stays usable. A body beyond
that bound is not waited for: the answer carries ``Connection: close`` (a client still sending
may then see a reset).

A client that sent ``Expect: 100-continue`` and was never told to continue is not drained: it
has not sent the body and will not; the answer closes the connection so that it is not reused
with a body still owed.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("becare.service")

DRAIN_SECONDS = 15.0


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length, or None (chunked, absent, unusable)."""
    raw = _header(scope, b"content-length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _has_body(scope: Scope) -> bool:
    declared = _declared_length(scope)
    if declared is not None:
        return declared > 0
    return b"chunked" in (_header(scope, b"transfer-encoding") or b"").lower()


class DrainMiddleware:
    """Pure ASGI: holds an answer given before the request body was read, drains, then sends it."""

    def __init__(self, app: ASGIApp, *, drain_bytes: int, seconds: float = DRAIN_SECONDS) -> None:
        self.app = app
        self.drain_bytes = drain_bytes
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body = _BodyState(receive)
        held: list[Message] | None = None

        async def send_or_hold(message: Message) -> None:
            nonlocal held
            if held is not None:
                held.append(message)
            elif message["type"] == "http.response.start" and not body.finished:
                held = [message]
            else:
                await send(message)

        await self.app(scope, body.receive, send_or_hold)
        if held is None:
            return
        if not await self._drain(scope, body):
            start = dict(held[0])
            start["headers"] = [
                *[(k, v) for k, v in start.get("headers", ()) if k.lower() != b"connection"],
                (b"connection", b"close"),
            ]
            held[0] = start
        for message in held:
            await send(message)

    async def _drain(self, scope: Scope, body: _BodyState) -> bool:
        """Read and drop the rest of the body; True when all of it was read within the bounds."""
        expects = (_header(scope, b"expect") or b"").strip().lower() == b"100-continue"
        if expects and not body.asked:
            return False  # never told to continue: the body is not coming
        declared = _declared_length(scope)
        budget = body.received + self.drain_bytes
        if declared is not None and declared > budget:
            return False
        try:
            async with asyncio.timeout(self.seconds):
                while not body.finished:
                    if body.received > budget:
                        return False
                    await body.receive()
        except TimeoutError:
            log.info("request body still arriving after %gs: answering and closing", self.seconds)
            return False
        return body.received <= budget


class _BodyState:
    """The app's view of the request body: how much of it was received, and whether all."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.received = 0
        self.finished = False  # the whole body was received (or the client is gone)
        self.asked = False  # the body was asked for: a 100 Continue, if expected, went out

    async def receive(self) -> Message:
        self.asked = True
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.finished = self.finished or not message.get("more_body", False)
        else:
            self.finished = True
        return message
