"""A mock hub for tests and demos: a tiny FHIR/MHD endpoint plus a toy metahub locator.

It records what it receives (deduplicated by ``Idempotency-Key``, as a careful receiver would;
every raw request is logged too), and injects faults per request (``X-Mock-Fault`` header or
``fault`` query parameter) or from a script consumed one fault per request:

    500 | 503,retry-after=2 | delay=3 | drop | drop-after | 429

``drop`` closes the connection mid-reply without recording; ``drop-after`` records, then drops
(the sender cannot know it arrived).

Like a plain FHIR server it can also ignore ``Idempotency-Key`` (``honour_idempotency_key =
False``, ``--ignore-idempotency-key``): then every POST is stored, duplicates included, and only
what a FHIR server offers prevents them: ``If-None-Exist`` on ``POST /fhir/Bundle`` (conditional
create), and searches ``GET /fhir/Bundle?identifier=`` (Bundles stored as such; a transaction
posted to the base is not one) and ``GET /mhd/DocumentReference?identifier=`` (ITI-67). Copies
per ``Bundle.identifier`` are counted (``MockHubState.copies()`` / ``duplicates()``,
``GET /_mock/counts``) so a test can assert that nothing arrived twice.

Serve it with ``python -m adapter.testing.mockhub``. Control API under ``/_mock`` (received,
requests, lookups, counts, faults, mode, metahub, reset).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send


@dataclass
class Fault:
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    drop_after: bool = False

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``503,retry-after=2`` / ``delay=1.5`` / ``drop`` / ``drop-after`` / ``500,delay=1``."""
        fault = cls()
        for part in (p.strip().lower() for p in spec.split(",") if p.strip()):
            name, _, value = part.partition("=")
            if name.isdigit():
                fault.status = int(name)
            elif name == "status":
                fault.status = int(value)
            elif name == "retry-after":
                fault.retry_after = value
            elif name == "delay":
                fault.delay = float(value)
            elif name == "drop":
                fault.drop = True
            elif name == "drop-after":
                fault.drop_after = True
            else:
                raise ValueError(f"unknown fault {part!r}")
        return fault

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Fault:
        if isinstance(data, str):
            return cls.parse(data)
        return cls(
            status=data.get("status"),
            retry_after=None if data.get("retry_after") is None else str(data["retry_after"]),
            delay=float(data.get("delay", 0.0)),
            drop=bool(data.get("drop", False)),
            drop_after=bool(data.get("drop_after", False)),
        )


@dataclass
class Received:
    """One recorded request. Only the raw bytes are kept: a hub holding thousands of decoded
    bundles makes every garbage collection walk millions of objects, which slowed the hub down
    as a benchmark went on. ``body`` and ``bundle`` are decoded when first read."""

    key: str
    path: str
    at: float
    raw: bytes
    kind: str  # "fhir-rest" or "mhd"
    identifier: tuple[str, str] | None = None  # the becare Bundle's (system, value)
    docrefs: tuple[tuple[str, str], ...] = ()  # mhd: the DocumentReference's identifiers
    id: str = ""  # the id the hub gave it

    @property
    def stored_as_bundle(self) -> bool:
        """Stored as a Bundle resource (searchable at /Bundle), not a transaction's entries."""
        return self.kind == "fhir-rest" and self.path.endswith("/Bundle")

    @functools.cached_property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @functools.cached_property
    def bundle(self) -> dict[str, Any] | None:
        """The becare Bundle (unwrapped from the ITI-65 Binary for mhd)."""
        return _unwrap(self.body) if self.kind == "mhd" else self.body


def _unwrap(provide: dict[str, Any]) -> dict[str, Any] | None:
    for entry in provide.get("entry") or []:
        res = (entry or {}).get("resource") or {}
        if res.get("resourceType") == "Binary" and res.get("data"):
            return json.loads(base64.b64decode(res["data"]))
    return None


@dataclass
class MockHubState:
    """Everything the hub knows; shared with the test that started it (in-process queries)."""

    received: list[Received] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: deque[Fault] = field(default_factory=deque)
    always: Fault | None = None  # a fault applied to every request (hub "broken" mode)
    metahub_default: dict[str, Any] = field(default_factory=lambda: {"hubs": [], "consentActive": True})
    metahub_persons: dict[str, dict[str, Any]] = field(default_factory=dict)
    metahub_calls: int = 0
    # False: a plain FHIR server, storing every POST (duplicates too) whatever its Idempotency-Key
    honour_idempotency_key: bool = True
    lookups: list[dict[str, Any]] = field(default_factory=list)  # searches answered
    _keys: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_faults(self, faults: list[Fault | str | dict[str, Any]]) -> None:
        with self._lock:
            for f in faults:
                self.script.append(f if isinstance(f, Fault) else Fault.from_json(f))

    def next_fault(self, explicit: str | None) -> Fault | None:
        if explicit:
            return Fault.parse(explicit)
        with self._lock:
            if self.script:
                return self.script.popleft()
            return self.always

    def log_request(self, key: str, path: str, fault: Fault | None) -> None:
        with self._lock:
            self.requests.append({"key": key, "path": path, "at": time.time(),
                                  "fault": asdict(fault) if fault else None})

    def record(self, item: Received, *, if_none_exist: str | None = None) -> list[Received]:
        """Store ``item`` unless the receiver already has it; returns what it already has (empty
        when stored). Once per Idempotency-Key when the hub honours the key; with
        ``if_none_exist`` (an ``identifier=`` query) the Bundles it matches stop it, atomically."""
        with self._lock:
            if self.honour_idempotency_key and item.key in self._keys:
                return [self.received[self._keys[item.key]]]
            if if_none_exist is not None:
                found = self._search_locked("Bundle", if_none_exist)
                if found:
                    return found
            self._keys.setdefault(item.key, len(self.received))
            item.id = f"mock-{len(self.received) + 1}"
            self.received.append(item)
            return []

    def search(self, resource: str, query: str) -> list[Received]:
        """What ``GET /fhir/Bundle?{query}`` (resource ``Bundle``) or ``GET
        /mhd/DocumentReference?{query}`` (``DocumentReference``) matches: ``identifier=`` only."""
        with self._lock:
            return self._search_locked(resource, query)

    def _search_locked(self, resource: str, query: str) -> list[Received]:
        tokens = parse_qs(query).get("identifier") or []
        if not tokens:
            return []
        wanted = [_token(t) for t in tokens]
        if resource == "Bundle":
            return [r for r in self.received if r.stored_as_bundle and r.identifier is not None
                    and any(_matches(w, r.identifier) for w in wanted)]
        return [r for r in self.received if any(_matches(w, i) for w in wanted for i in r.docrefs)]

    def copies(self) -> Counter[str]:
        """How many copies of each bundle the hub holds, by ``system|value`` of its identifier."""
        with self._lock:
            return Counter(f"{r.identifier[0]}|{r.identifier[1]}" for r in self.received if r.identifier)

    def duplicates(self) -> dict[str, int]:
        """The bundles held more than once (what a careful sender never causes)."""
        return {ident: n for ident, n in self.copies().items() if n > 1}

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.requests.clear()
            self.lookups.clear()
            self.script.clear()
            self._keys.clear()
            self.always = None
            self.metahub_calls = 0

    def keys(self) -> list[str]:
        with self._lock:
            return [r.key for r in self.received]

    def request_keys(self) -> list[str]:
        with self._lock:
            return [r["key"] for r in self.requests]


def _token(text: str) -> tuple[str | None, str]:
    """A FHIR token search value: (system, value); system None when no ``|`` (any system),
    "" for ``|value`` (no system). FHIR's escapes (``\\|``, ``\\,``, ``\\$``, ``\\\\``) are undone."""
    parts: list[str] = [""]
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            parts[-1] += next(chars, "")
        elif ch == "|" and len(parts) == 1:
            parts.append("")
        else:
            parts[-1] += ch
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _matches(wanted: tuple[str | None, str], have: tuple[str, str]) -> bool:
    system, value = wanted
    return value == have[1] and (system is None or system == have[0])


def _identifiers(resource: dict[str, Any] | None) -> list[tuple[str, str]]:
    out = []
    for ident in [resource.get("masterIdentifier"), *(resource.get("identifier") or [])] if resource else []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            out.append((str(ident.get("system") or ""), ident["value"]))
    return out


def _searchset(matches: list[Received], resource: str, count_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matches)}
    if not count_only:
        out["entry"] = [{"fullUrl": f"{resource}/{r.id}", "search": {"mode": "match"},
                         "resource": {"resourceType": resource, "id": r.id}} for r in matches]
    return out


class _Dropped(Exception):
    """Raised inside a started reply so the server closes the connection (a dropped connection)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, _Dropped):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def _outcome(status: int, message: str, code: str = "exception") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}]}


def _transaction_response(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for i, entry in enumerate(bundle.get("entry") or []):
        rtype = ((entry or {}).get("resource") or {}).get("resourceType", "Resource")
        entries.append({"response": {"status": "201 Created", "location": f"{rtype}/mock-{i}/_history/1"}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


_INTAKE = {
    "/fhir": "fhir-rest", "/fhir/": "fhir-rest", "/fhir/Bundle": "fhir-rest", "/mhd": "mhd", "/mhd/": "mhd",
}
_SEARCH = {"/fhir/Bundle": "Bundle", "/mhd/DocumentReference": "DocumentReference"}
FHIR_JSON = b"application/fhir+json"


async def _reply(send: Send, status: int, body: Any, headers: dict[str, str] | None = None,
                 ctype: bytes = FHIR_JSON) -> None:
    data = orjson.dumps(body)
    raw_headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


async def _drop(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", FHIR_JSON), (b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"resourceType":', "more_body": True})
    raise _Dropped("connection dropped on purpose")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Dropped("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class MockHubApp:
    """The hub's ASGI app. Bundle intake is answered here directly: under a benchmark the hub
    shares the machine with the system measured, and FastAPI's stack cost it more than the
    work; the control API (``/_mock``, the metahub locator) is an ordinary FastAPI app."""

    def __init__(self, state: MockHubState, control: FastAPI) -> None:
        self.state = state
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        kind = _INTAKE.get(path) if scope["type"] == "http" else None
        if kind is not None and scope["method"] == "POST":
            await self._intake(scope, receive, send, kind)
            return
        if scope["type"] == "http" and scope["method"] == "GET" and path in _SEARCH:
            await self._search(scope, send, _SEARCH[path])
            return
        await self.control(scope, receive, send)

    async def _search(self, scope: Scope, send: Send, resource: str) -> None:
        """A FHIR search by identifier, as a plain FHIR server answers it."""
        state = self.state
        query = scope.get("query_string", b"").decode("latin-1")
        fault = state.always
        with state._lock:
            state.lookups.append({"path": scope["path"], "query": query, "at": time.time(),
                                  "fault": asdict(fault) if fault else None})
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.status:
            await _reply(send, fault.status, _outcome(fault.status, f"injected fault {fault.status}"))
            return
        if "identifier" not in parse_qs(query):
            await _reply(send, 400, _outcome(400, "this mock only searches by identifier", "not-supported"))
            return
        matches = state.search(resource, query)
        count_only = parse_qs(query).get("_summary") == ["count"]
        await _reply(send, 200, _searchset(matches, resource, count_only))

    async def _intake(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        state = self.state
        body = await _read_body(receive)
        headers = dict(scope["headers"])
        spec = headers.get(b"x-mock-fault", b"").decode("latin-1")
        if not spec and scope.get("query_string"):
            spec = parse_qs(scope["query_string"].decode("latin-1")).get("fault", [""])[0]
        try:
            fault = state.next_fault(spec or None)
        except ValueError as exc:
            await _reply(send, 400, _outcome(400, str(exc), "invalid"))
            return
        given = headers.get(b"idempotency-key")
        key = given.decode("latin-1") if given else "sha256:" + hashlib.sha256(body).hexdigest()
        path = scope["path"]
        state.log_request(key, path, fault)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.drop:
            await _drop(send)
        if fault and fault.status:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            await _reply(send, fault.status, _outcome(fault.status, f"injected fault {fault.status}"), extra)
            return
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _reply(send, 400, _outcome(400, "body is not JSON", "structure"))
            return
        if not isinstance(parsed, dict) or parsed.get("resourceType") != "Bundle":
            await _reply(send, 400, _outcome(400, "expected a Bundle", "invalid"))
            return
        docrefs: tuple[tuple[str, str], ...] = ()
        if kind == "mhd":
            inner = _unwrap(parsed)
            if inner is None:
                await _reply(send, 400, _outcome(400, "ITI-65 bundle without Binary", "invalid"))
                return
            docrefs = tuple(i for e in parsed.get("entry") or [] for i in _identifiers(
                (e or {}).get("resource") if ((e or {}).get("resource") or {}).get("resourceType")
                == "DocumentReference" else None))
        else:
            inner = parsed
        ident = (inner or {}).get("identifier")
        identifier = (str(ident.get("system") or ""), ident["value"]) \
            if isinstance(ident, dict) and isinstance(ident.get("value"), str) else None
        condition = None
        if path.endswith("/Bundle"):
            condition = headers.get(b"if-none-exist", b"").decode("latin-1") or None
        item = Received(key, path, time.time(), body, kind, identifier, docrefs)
        existing = state.record(item, if_none_exist=condition)
        if fault and fault.drop_after:
            await _drop(send)
        if existing and condition is not None:
            if len(existing) > 1:
                await _reply(send, 412, _outcome(412, "If-None-Exist matched several Bundles", "duplicate"))
                return
            await _reply(send, 200, {**parsed, "id": existing[0].id})  # conditional create: kept
            return
        if path.endswith("/Bundle"):
            await _reply(send, 201 if not existing else 200, {**parsed, "id": (existing or [item])[0].id})
            return
        await _reply(send, 200, _transaction_response(parsed))


def create_app(state: MockHubState | None = None) -> MockHubApp:
    state = state or MockHubState()
    app = FastAPI(title="becare mock hub", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = state

    @app.post("/metahub/locate")
    async def locate(request: Request) -> Response:
        fault = state.next_fault(request.headers.get("x-mock-fault"))
        if fault and fault.status:
            return JSONResponse({"error": "injected"}, status_code=fault.status)
        try:
            ssin = (await request.json()).get("ssin")
        except (ValueError, AttributeError):
            return JSONResponse({"error": "expected {\"ssin\": ...}"}, status_code=400)
        with state._lock:
            state.metahub_calls += 1
            answer = state.metahub_persons.get(str(ssin), state.metahub_default)
        return JSONResponse(answer)

    @app.get("/_mock/received")
    async def received(bundles: bool = True) -> dict[str, Any]:
        items = [
            {"key": r.key, "path": r.path, "at": r.at, "kind": r.kind,
             **({"bundle": r.bundle} if bundles else {})}
            for r in list(state.received)
        ]
        return {"count": len(items), "items": items}

    @app.get("/_mock/requests")
    async def requests_() -> dict[str, Any]:
        return {"count": len(state.requests), "items": list(state.requests)}

    @app.get("/_mock/lookups")
    async def lookups() -> dict[str, Any]:
        return {"count": len(state.lookups), "items": list(state.lookups)}

    @app.get("/_mock/counts")
    async def counts() -> dict[str, Any]:
        """Stored copies per Bundle.identifier: ``duplicates`` must stay empty."""
        return {"received": len(state.received), "requests": len(state.requests),
                "lookups": len(state.lookups), "copies": dict(state.copies()),
                "duplicates": state.duplicates()}

    @app.put("/_mock/mode")
    async def mode(request: Request) -> dict[str, Any]:
        body = await request.json()
        if "honour_idempotency_key" in body:
            state.honour_idempotency_key = bool(body["honour_idempotency_key"])
        return {"honour_idempotency_key": state.honour_idempotency_key}

    @app.post("/_mock/faults")
    async def faults(request: Request) -> dict[str, Any]:
        body = await request.json()
        items = body if isinstance(body, list) else body.get("faults", [])
        try:
            state.add_faults(items)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)  # type: ignore[return-value]
        return {"queued": len(state.script)}

    @app.put("/_mock/always")
    async def always(request: Request) -> dict[str, Any]:
        body = await request.json()
        state.always = Fault.from_json(body) if body else None
        return {"always": asdict(state.always) if state.always else None}

    @app.put("/_mock/metahub")
    async def metahub(request: Request) -> dict[str, Any]:
        body = await request.json()
        if "default" in body:
            state.metahub_default = body["default"]
        state.metahub_persons.update(body.get("persons", {}))
        return {"ok": True}

    @app.post("/_mock/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    @app.get("/_mock/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    return MockHubApp(state, app)


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket. ``IPPROTO_TCP`` must be explicit: asyncio enables TCP_NODELAY on
    accepted connections only then, and without it every keep-alive reply waits ~40 ms (Nagle)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class MockHub:
    """Run the mock hub with uvicorn in a thread on loopback: ``with MockHub() as hub: hub.fhir_url``.

    Restart on the same port with ``MockHub(port=old.port, state=old.state)`` to simulate a hub
    that was down and came back with its memory.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state: MockHubState | None = None,
        *,
        tls: dict[str, str] | None = None,
    ) -> None:
        """``tls``: ``{"certfile", "keyfile"}`` to serve HTTPS, plus ``"client_ca"`` to require a
        client certificate signed by that CA (mutual TLS)."""
        self.host = host
        self.state = state or MockHubState()
        self.app = create_app(self.state)
        self._sock = listen_socket(host, port)
        self.port = self._sock.getsockname()[1]
        self.scheme = "https" if tls else "http"
        ssl_options: dict[str, object] = {}
        if tls:
            ssl_options = {"ssl_certfile": tls["certfile"], "ssl_keyfile": tls["keyfile"]}
            if tls.get("client_ca"):
                ssl_options.update(ssl_ca_certs=tls["client_ca"], ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off", timeout_keep_alive=30, **ssl_options)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def fhir_url(self) -> str:
        return f"{self.url}/fhir"

    @property
    def mhd_url(self) -> str:
        return f"{self.url}/mhd"

    @property
    def metahub_url(self) -> str:
        return f"{self.url}/metahub/locate"

    def start(self, timeout: float = 10.0) -> MockHub:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"mockhub-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("mock hub did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> MockHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter.testing.mockhub",
                                     description="becare mock hub (FHIR + MHD + toy metahub)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--script", help="JSON file: a list of faults applied one per request")
    parser.add_argument("--ignore-idempotency-key", action="store_true",
                        help="store every POST, duplicates too (a plain FHIR server: only If-None-Exist and "
                             "searches by identifier prevent duplicates)")
    args = parser.parse_args(argv)
    state = MockHubState(honour_idempotency_key=not args.ignore_idempotency_key)
    if args.script:
        try:
            with open(args.script, encoding="utf-8") as fh:
                state.add_faults(json.load(fh))
        except (OSError, ValueError, TypeError) as exc:
            parser.error(f"cannot load fault script: {exc}")
    try:
        sock = listen_socket(args.host, args.port)
    except OSError as exc:
        parser.error(f"cannot bind {args.host}:{args.port}: {exc}")
    port = sock.getsockname()[1]
    print(f"mock hub on http://{args.host}:{port} (FHIR /fhir, MHD /mhd, metahub /metahub/locate)",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(state), host=args.host, port=port,
                                           log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
