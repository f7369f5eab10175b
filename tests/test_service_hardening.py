"""Service hardening: answers a client can read, a config checked like the rest of the file, no
secrets in it, the client address behind proxies, the app split into routers, and becare's
FHIRPath fixes and XML parsers kept to becare.

The 413 tests talk raw HTTP to the real ``becare serve`` (adapter.testing.service), the way the
clients that send the whole body before reading the reply (most Java and .NET ones) do.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from adapter.service.app import create_app
from adapter.service.config import (
    ConfigError,
    RateLimit,
    ServiceConfig,
    hash_key,
    load_service_config,
    service_config_from_mapping,
)
from adapter.service.deps import client_ip
from adapter.service.drain import DrainMiddleware
from adapter.testing.service import BecareService
from tests.test_service_fakes import FakeValidator

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1024 * 1024
OVERSIZED = 8 * LIMIT


# -- a raw HTTP/1.1 client ----------------------------------------------------------------------------
def _request_head(port: int, path: str, *, length: int | None, extra: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/fhir+json",
             "Accept: application/fhir+json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _body(size: int) -> bytes:
    head, tail = b'{"resourceType":"Bundle","type":"collection","id":"', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def _chunked(body: bytes, chunk: int = 64 * 1024) -> bytes:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


class _Reader:
    """Reads responses off a socket (Content-Length framed, as becare answers)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server before a whole response arrived")
        self.buf += data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self, timeout: float) -> bool:
        """True when the server closes the connection (cleanly) within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False


def _is_too_large(status: int, body: bytes) -> None:
    assert status == 413, body[:300]
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
    assert str(LIMIT) in outcome["issue"][0]["details"]["text"]


@pytest.fixture(scope="module")
def small_limit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = (
        "service:\n"
        f"  max_body_bytes: {LIMIT}\n"
        "  rate_limit: {per_second: 10000, burst: 10000}\n"
    )
    service = BecareService(tmp_path_factory.mktemp("hardening"), config=config).start()
    try:
        yield service
    finally:
        service.stop()


# -- 413 that arrives ------------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("connection", ["close", "keep-alive"])
def test_oversized_body_sent_whole_before_reading_gets_413(
    small_limit: Any, framing: str, connection: str
) -> None:
    """The client writes the whole 8 MiB body, and only then reads: it must find the 413 and its
    OperationOutcome, not a connection reset (with ``Connection: close``, today's uvicorn closes
    the socket with the body unread, and the kernel resets it)."""
    body = _body(OVERSIZED)
    length = len(body) if framing == "content-length" else None
    with socket.create_connection(("127.0.0.1", small_limit.port), timeout=60) as sock:
        sock.sendall(_request_head(small_limit.port, "/fhir/$validate", length=length,
                                   extra={"Connection": connection}))
        sock.sendall(body if length is not None else _chunked(body))
        reader = _Reader(sock)
        status, headers, answer = reader.response()
        _is_too_large(status, answer)
        if connection == "close":
            assert reader.closed(timeout=10)
        else:  # the body was drained: the connection serves the next request
            assert headers.get("connection") != "close"
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{small_limit.port}\r\n\r\n".encode())
            status, _headers, answer = reader.response()
            assert status == 200 and json.loads(answer) == {"status": "ok"}


def test_expect_100_continue_gets_the_413_instead_of_continue(small_limit: Any) -> None:
    """A client that asks first is told 413 at once, is never invited to send the body, and the
    connection is closed so that it is not reused with a body still owed."""
    with socket.create_connection(("127.0.0.1", small_limit.port), timeout=30) as sock:
        sock.sendall(_request_head(small_limit.port, "/fhir", length=OVERSIZED,
                                   extra={"Expect": "100-continue"}))
        reader = _Reader(sock)
        status, headers, answer = reader.response()
        _is_too_large(status, answer)
        assert headers.get("connection") == "close"
        assert reader.closed(timeout=5)


def test_expect_100_continue_with_chunked_body_is_drained(small_limit: Any) -> None:
    """No length declared: the client is told to continue, sends everything, then reads the 413."""
    with socket.create_connection(("127.0.0.1", small_limit.port), timeout=60) as sock:
        sock.sendall(_request_head(small_limit.port, "/fhir/$validate", length=None,
                                   extra={"Expect": "100-continue", "Connection": "close"}))
        reader = _Reader(sock)
        status, _headers, _ = reader.response()
        assert status == 100
        sock.sendall(_chunked(_body(OVERSIZED)))
        status, _headers, answer = reader.response()
        _is_too_large(status, answer)
        assert reader.closed(timeout=10)


# -- the drain, unit by unit ---------------------------------------------------------------------------
def _run_drain(
    app: Any, *, chunks: int, chunk: int, drain_bytes: int, headers: list[tuple[bytes, bytes]]
) -> Any:
    """Drive DrainMiddleware with an ASGI receive that hands out ``chunks`` body chunks."""
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"x" * chunk, "more_body": received < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/fhir", "headers": headers}
    asyncio.run(DrainMiddleware(app, drain_bytes=drain_bytes)(scope, receive, send))
    return sent, received


async def _answer_at_once(scope: Any, receive: Any, send: Any) -> None:
    """An app that refuses before reading anything (as 401, 415, 429 and a declared 413 do)."""
    await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"no", "more_body": False})


def test_drain_reads_the_unread_body_before_answering() -> None:
    sent, received = _run_drain(_answer_at_once, chunks=10, chunk=1000, drain_bytes=1_000_000,
                                headers=[(b"content-length", b"10000")])
    assert received == 10  # every chunk was read before the answer went out
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert (b"connection", b"close") not in sent[0]["headers"]


def test_drain_is_bounded_and_then_closes() -> None:
    sent, received = _run_drain(_answer_at_once, chunks=10, chunk=1000, drain_bytes=1000,
                                headers=[(b"content-length", b"10000")])
    assert received == 0  # the declared body is beyond the bound: not even started
    assert (b"connection", b"close") in sent[0]["headers"]
    sent, received = _run_drain(_answer_at_once, chunks=100, chunk=1000, drain_bytes=5000,
                                headers=[(b"transfer-encoding", b"chunked")])
    assert received <= 7 and (b"connection", b"close") in sent[0]["headers"]
    assert sent[1]["body"] == b"no"


def test_drain_never_invites_a_body_that_was_not_asked_for() -> None:
    sent, received = _run_drain(_answer_at_once, chunks=10, chunk=1000, drain_bytes=1_000_000,
                                headers=[(b"content-length", b"10000"), (b"expect", b"100-continue")])
    assert received == 0  # receive() would make the server send "100 Continue"
    assert (b"connection", b"close") in sent[0]["headers"]


# -- the service section of the config --------------------------------------------------------------
def test_string_false_reads_as_false(tmp_path: Path) -> None:
    assert service_config_from_mapping({"trust_forwarded_for": "false"}).trust_forwarded_for is False
    assert service_config_from_mapping({"trust_forwarded_for": "true"}).trust_forwarded_for is True
    cfg = tmp_path / "becare.yaml"
    cfg.write_text('service:\n  trust_forwarded_for: "false"\n', encoding="utf-8")
    assert load_service_config(cfg).trust_forwarded_for is False
    with pytest.raises(ConfigError, match=r"service\.trust_forwarded_for"):
        service_config_from_mapping({"trust_forwarded_for": "perhaps"})


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"max_body_bytes": 0}, "service.max_body_bytes"),
        ({"max_body_bytes": -5}, "service.max_body_bytes"),
        ({"max_body_bytes": 2**40}, "service.max_body_bytes"),
        ({"max_body_bytes": 1.5}, "service.max_body_bytes"),
        ({"request_timeout": -1}, "service.request_timeout"),
        ({"request_timeout": 10**6}, "service.request_timeout"),
        ({"drain_bytes": -1}, "service.drain_bytes"),
        ({"rate_limit": {"per_second": -1}}, "service.rate_limit.per_second"),
        ({"rate_limit": {"burst": 0}}, "service.rate_limit.burst"),
        ({"auth": {"jwt": {"leeway": -3}}}, "service.auth.jwt.leeway"),
        ({"trust_forwarded_for": True, "trusted_proxies": 0}, "service.trusted_proxies"),
        ({"trust_forwarded_for": True, "trusted_proxies": ["10.0.0.0/8", "proxy.example"]},
         "service.trusted_proxies"),
        ({"trusted_proxies": 2}, "trust_forwarded_for"),
        ({"auth": {"api_keys": [{"id": "a", "key_sha256": "abc"}]}},
         r"service.auth.api_keys\[0\].key_sha256"),
        ({"auth": {"api_keys": [{"id": "a", "key_env": "not a name"}]}},
         r"service.auth.api_keys\[0\].key_env"),
    ],
)
def test_values_out_of_range_are_refused(section: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        service_config_from_mapping(section)


@pytest.mark.parametrize(
    ("section", "where", "key"),
    [
        ({"max_body_byte": 10}, "service", "max_body_byte"),
        ({"rate_limit": {"per_sec": 1}}, "service.rate_limit", "per_sec"),
        ({"auth": {"apikeys": []}}, "service.auth", "apikeys"),
        ({"auth": {"jwt": {"aud": "x"}}}, "service.auth.jwt", "aud"),
        ({"auth": {"api_keys": [{"id": "a", "key_sha256": hash_key("k"), "scope": ["read"]}]}},
         "service.auth.api_keys[0]", "scope"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(section: dict[str, Any], where: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        service_config_from_mapping(section)
    assert f"{where}: unknown key '{key}'" in str(info.value)


def test_plaintext_secrets_are_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError) as info:
        service_config_from_mapping({"auth": {"api_keys": [{"id": "vendor", "key": "s3cr3t-api-key"}]}})
    text = str(info.value)
    assert "key_env" in text and "key_sha256" in text and "service.auth.api_keys[0]" in text
    assert "s3cr3t-api-key" not in text  # the secret is not echoed into logs
    with pytest.raises(ConfigError) as info:
        service_config_from_mapping({"auth": {"jwt": {"hs256_secret": "x" * 40 + "-jwt-secret"}}})
    text = str(info.value)
    assert "hs256_secret_env" in text and "-jwt-secret" not in text


def test_serve_refuses_a_plaintext_key(tmp_path: Path) -> None:
    cfg = tmp_path / "becare.yaml"
    cfg.write_text("service:\n  auth:\n    api_keys:\n      - {id: a, key: hunter2hunter2}\n",
                   encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "BECARE_CONFIG"}
    out = subprocess.run(  # a subprocess: were the key accepted, the service would start and stay up
        [sys.executable, "-m", "adapter.cli.main", "serve", "--config", str(cfg), "--port", "1"],
        capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.returncode == 2
    assert "key_env" in out.stderr and "key_sha256" in out.stderr and "hunter2" not in out.stderr


def test_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BECARE_TEST_KEY", "the-key")
    monkeypatch.setenv("BECARE_TEST_JWT", "j" * 40)
    cfg = service_config_from_mapping({"auth": {
        "api_keys": [{"id": "a", "key_env": "BECARE_TEST_KEY"},
                     {"id": "b", "key_sha256": hash_key("b").upper()}],
        "jwt": {"hs256_secret_env": "BECARE_TEST_JWT"},
    }})
    assert [k.sha256 for k in cfg.auth.api_keys] == [hash_key("the-key"), hash_key("b")]
    assert cfg.auth.jwt.hs256_secret == "j" * 40
    with pytest.raises(ConfigError, match="give key_sha256 or key_env"):
        service_config_from_mapping({"auth": {"api_keys": [
            {"id": "a", "key_env": "BECARE_TEST_KEY", "key_sha256": hash_key("x")}]}})


def test_the_documented_service_section_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "issuer.pem").write_bytes(pem)
    text = (ROOT / "docs" / "config-example.yaml").read_text(encoding="utf-8")
    text = text.replace("/etc/becare/issuer.pem", "issuer.pem")  # relative to the config file
    (tmp_path / "becare.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("BECARE_KEY_VENDOR_A", "vendor-a-key")
    monkeypatch.setenv("BECARE_JWT_SECRET", "s" * 40)
    cfg = load_service_config(tmp_path / "becare.yaml")
    assert [k.id for k in cfg.auth.api_keys] == ["vendor-a", "auditor"]
    assert cfg.auth.jwt.public_keys == (pem.decode(),) and cfg.drain_bytes == 64 * LIMIT


# -- the client address behind proxies -----------------------------------------------------------------
def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


def test_client_is_the_rightmost_untrusted_forwarded_for_entry() -> None:
    one = ServiceConfig(trust_forwarded_for=True)
    assert client_ip(_request("10.0.0.2", "6.6.6.6, 203.0.113.7"), one) == "203.0.113.7"
    assert client_ip(_request("10.0.0.2", "203.0.113.7"), one) == "203.0.113.7"
    assert client_ip(_request("10.0.0.2", "6.6.6.6", "203.0.113.7"), one) == "203.0.113.7"  # two headers
    assert client_ip(_request("10.0.0.2"), one) == "10.0.0.2"
    two = ServiceConfig(trust_forwarded_for=True, trusted_proxies=2)
    assert client_ip(_request("10.0.0.3", "6.6.6.6, 203.0.113.7, 10.0.0.2"), two) == "203.0.113.7"
    assert client_ip(_request("10.0.0.3", "203.0.113.7"), two) == "203.0.113.7"  # fewer entries than hops
    untrusted = ServiceConfig()
    assert client_ip(_request("198.51.100.4", "6.6.6.6, 203.0.113.7"), untrusted) == "198.51.100.4"


def test_client_behind_listed_proxy_networks() -> None:
    cfg = service_config_from_mapping(
        {"trust_forwarded_for": True, "trusted_proxies": ["10.0.0.0/8", "192.0.2.1"]}
    )
    assert client_ip(_request("10.0.0.3", "6.6.6.6, 203.0.113.7, 192.0.2.1, 10.1.1.1"), cfg) == "203.0.113.7"
    assert client_ip(_request("10.0.0.3", "10.9.9.9"), cfg) == "10.9.9.9"  # only proxies: the left-most
    # a peer that is not one of the proxies wrote the header itself: it is ignored
    assert client_ip(_request("198.51.100.4", "203.0.113.7"), cfg) == "198.51.100.4"


class _Quick:
    def validate_bytes(self, *_args: Any) -> Any:
        raise RuntimeError("not used")


def test_spoofed_leftmost_entries_share_the_clients_rate_limit() -> None:
    """The left-most X-Forwarded-For entry is the client's to choose: were it the key, a client
    could take a fresh rate-limit bucket per request."""
    config = ServiceConfig(rate_limit=RateLimit(per_second=0.001, burst=1), trust_forwarded_for=True)
    app = create_app(config, validator=_Quick())
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.get("/deliveries/x", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.7"})
        second = client.get("/deliveries/x", headers={"X-Forwarded-For": "2.2.2.2, 203.0.113.7"})
        other = client.get("/deliveries/x", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.8"})
    assert first.status_code == 404
    assert second.status_code == 429 and "Retry-After" in second.headers
    assert other.status_code == 404


# -- the app in routers --------------------------------------------------------------------------------
def test_endpoints_live_in_one_router_per_group() -> None:
    from fastapi.routing import APIRoute

    app = create_app(ServiceConfig(), validator=_Quick())
    groups = {
        "/fhir/$validate": "validate", "/fhir/Bundle/$validate": "validate", "/fhir": "accept",
        "/fhir/Bundle": "accept", "/fhir/$map": "mapping", "/deliveries/{delivery_id}": "deliveries",
        "/audit": "audit", "/fhir/metadata": "operations", "/healthz": "operations", "/readyz": "operations",
        "/metrics": "operations",
    }
    from adapter.service.routes import ROUTERS

    routes = {r.path: r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)}
    for path, group in groups.items():
        assert routes[path].endpoint.__module__ == f"adapter.service.routes.{group}", path
    assert set(groups) <= set(app.openapi()["paths"])  # and the app serves them all


def test_each_app_sees_its_own_state() -> None:
    """``create_app`` stays the injectable factory: two apps, two states, no globals between them."""

    class Down:
        def ping(self) -> bool:
            return False

    up = create_app(ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1)), validator=FakeValidator())
    down = create_app(ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1)), validator=FakeValidator(),
                      outbox=Down())
    with TestClient(up) as a, TestClient(down) as b:
        for client in (a, b):
            state = client.app.state.becare  # type: ignore[attr-defined]
            assert state.warm.wait(10)
        assert a.get("/readyz").json()["checks"]["database"] == "ok"
        assert b.get("/readyz").json()["checks"]["database"] == "unreachable"


# -- becare's FHIRPath fixes stay in becare ---------------------------------------------------------------
_ISOLATION = r"""
import json, sys
import fhirpathpy
from fhirpathpy.models import models

PATIENT = {"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"id": "b1"}}
EXPRESSIONS = ["1.0", "(1.0).type().name", "@2015-02-04.type().name", "Patient.birthDate.count()", "-(2)"]

def plain():
    out = {}
    for e in EXPRESSIONS:
        out[e] = repr(fhirpathpy.evaluate(json.loads(json.dumps(PATIENT)), e, model=models["r4"]))
    return out

before = plain()
import adapter
from adapter.fhirpath.engine import FhirPathEngine
from adapter.testing import assert_valid
assert_valid(sys.argv[1])  # the whole validator: invariants, rules, narratives
engine = FhirPathEngine()
ours = {e: repr(engine.evaluate(e, json.loads(json.dumps(PATIENT)))) for e in EXPRESSIONS}
print(json.dumps({"before": before, "after": plain(), "ours": ours}))
"""


def test_fhirpathpy_is_its_own_after_becare_ran() -> None:
    sample = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
    out = subprocess.run([sys.executable, "-c", _ISOLATION, str(sample)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"]
    # fhirpathpy's own answers (what becare's fixes change) ...
    assert seen["after"]["1.0"] == "[1]"
    assert seen["after"]["@2015-02-04.type().name"] == "['DateTime']"
    assert seen["after"]["Patient.birthDate.count()"] == "[2]"
    # ... and becare's
    assert seen["ours"]["1.0"] == "[Decimal('1.0')]"
    assert seen["ours"]["(1.0).type().name"] == "['Decimal']"
    assert seen["ours"]["@2015-02-04.type().name"] == "['Date']"
    assert seen["ours"]["Patient.birthDate.count()"] == "[1]"


def test_no_fhirpathpy_global_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    import fhirpathpy.engine as fp
    from fhirpathpy.engine import nodes

    from adapter.fhirpath import patches
    from adapter.fhirpath.engine import FhirPathEngine

    # what a plain fhirpathpy.evaluate without a model leaves there (restored after the test)
    monkeypatch.setattr(nodes.TypeInfo, "model", None)
    patient = {"resourceType": "Patient", "name": [{"family": "Peeters"}]}
    typed = "name.is(HumanName) and name.ofType(HumanName).exists()"
    assert FhirPathEngine().evaluate(typed, patient) == [True]
    assert nodes.TypeInfo.model is None  # becare passes its model along; it does not set fhirpathpy's
    FhirPathEngine().evaluate("@2015-02-04.type().name | (1.0).type().name", {"resourceType": "Basic"})
    assert fp.evaluators["NumberLiteral"].__module__ == "fhirpathpy.engine.evaluators"
    assert fp.make_param.__module__ == "fhirpathpy.engine" and fp.make_param is not patches.ENGINE.make_param
    assert fp.do_eval is not patches.do_eval and patches.do_eval.__globals__ is vars(patches.ENGINE)
    assert nodes.TypeInfo.type_to_class_with_check_string["date"] is nodes.FP_DateTime
    assert nodes.TypeInfo.create_by_value_in_namespace.__module__ == "fhirpathpy.engine.nodes"
    # every evaluator of becare's table runs in the private engine, never in fhirpathpy's
    for kind, fn in patches.EVALUATORS.items():
        assert fn.__globals__ is not vars(sys.modules["fhirpathpy.engine.evaluators"]), kind


# -- XML parsers: one per thread ---------------------------------------------------------------------------
def _narratives() -> list[str]:
    ns = 'xmlns="http://www.w3.org/1999/xhtml"'
    out = []
    for i in range(24):
        out.append(f'<div {ns}><p class="c{i}">row {i} &amp; more</p><img src="#i{i}" alt="x"/></div>')
        out.append(f'<div {ns}><a href="javascript:go({i})">x</a><script>{i}</script></div>')
        out.append(f'<div {ns}><p style="x" onclick="y">{i}</p></div>')
        out.append(f'<div {ns}><p>unclosed {i}</div>')
    return out


def _in_threads(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[k] = work()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    return results


def test_narratives_parse_in_16_threads_each_with_its_own_parser() -> None:
    from adapter.fhirpath import xhtml

    narratives = _narratives()
    expected = [xhtml.narrative_problems(n) for n in narratives]
    assert all(expected[1::4]) and all(expected[3::4]) and not any(expected[0::4])

    def work() -> tuple[Any, Any, list[list[str]]]:
        first = xhtml._parser()
        problems = [xhtml.narrative_problems(n) for n in narratives * 10]
        return first, xhtml._parser(), problems

    results = _in_threads(16, work)
    assert all(problems == expected * 10 for _a, _b, problems in results)
    assert all(a is b for a, b, _ in results)  # one parser per thread, reused ...
    assert len({id(a) for a, _b, _ in results}) == 16  # ... never shared between threads


def test_fhir_xml_parses_in_16_threads_each_with_its_own_parser() -> None:
    from adapter.fhirio import xmlparse
    from adapter.fhirio.errors import Limits

    fhir = 'xmlns="http://hl7.org/fhir"'
    docs = [f'<Patient {fhir}><id value="p{i}"/><!-- c --><active value="true"/></Patient>'.encode()
            for i in range(50)]

    def work() -> tuple[Any, Any, list[str]]:
        first = xmlparse._parser()
        ids = [xmlparse.parse_tree(d, Limits())[0].get("value") for d in docs * 10]
        return first, xmlparse._parser(), ids

    results = _in_threads(16, work)
    assert all(ids == [f"p{i}" for i in range(50)] * 10 for _a, _b, ids in results)
    assert all(a is b for a, b, _ in results)
    assert len({id(a) for a, _b, _ in results}) == 16
