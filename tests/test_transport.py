"""The stdlib transport under the delivery client, against real servers on loopback.

A scripted raw HTTP/1.1 server (one thread per connection, counting connections) plays the
awkward hubs: one that closes kept-alive connections, one that drops a reply half-way, one that
answers too slowly, in chunks, gzipped, or far too much. The mock hub plays the normal one.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapter.forwarding.destinations import FhirRestDestination, make_transport, proxy_for
from adapter.forwarding.settings import AuthConfig, DestinationConfig
from adapter.forwarding.transport import StdlibTransport
from adapter.testing.mockhub import MockHub

Reply = Callable[[socket.socket, bytes], bool]  # sends the reply; True keeps the connection


class ScriptedServer:
    """Reads one request at a time and lets ``reply`` answer it."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/fhir"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                try:
                    if not self.reply(conn, body):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def scripted() -> Iterator[Callable[[Reply], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(reply: Reply) -> ScriptedServer:
        servers.append(ScriptedServer(reply))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def ok(conn: socket.socket, body: bytes, extra: bytes = b"") -> bool:
    payload = b'{"resourceType":"Bundle","type":"transaction-response"}'
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: "
                 + str(len(payload)).encode() + b"\r\n" + extra + b"\r\n" + payload)
    return True


def client(timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(transport=StdlibTransport(), timeout=timeout)


def test_posts_and_reuses_one_kept_alive_connection(scripted: Callable[[Reply], ScriptedServer]) -> None:
    server = scripted(ok)
    with client() as c:
        for i in range(5):
            r = c.post(server.url, content=b'{"n":%d}' % i, headers={"Idempotency-Key": f"k{i}"})
            assert r.status_code == 200 and r.json()["type"] == "transaction-response"
            assert r.reason_phrase == "OK" and r.http_version == "HTTP/1.1"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /fhir HTTP/1.1\r\n") and first.endswith(b'{"n":0}')
    assert b"\r\nIdempotency-Key: k0\r\n" in first and b"\r\nHost: 127.0.0.1:" in first
    assert first.count(b"\r\nHost:") == 1 and first.lower().count(b"\r\naccept-encoding:") == 1


def test_a_connection_the_server_closed_is_replaced(scripted: Callable[[Reply], ScriptedServer]) -> None:
    def close_after_reply(conn: socket.socket, body: bytes) -> bool:
        ok(conn, body)
        return False  # the server hangs up without saying "Connection: close"

    server = scripted(close_after_reply)
    with client() as c:
        for _ in range(3):
            time.sleep(0.05)  # the close has reached us: the idle connection reads as closed
            assert c.post(server.url, content=b"{}").status_code == 200
    assert server.connections == 3 and len(server.requests) == 3


def test_a_close_racing_the_next_request_is_retried_once_on_a_fresh_connection(
    scripted: Callable[[Reply], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closed the kept-alive connection as we wrote to it: the request could not go
    out whole (the receiver cannot have it), so it goes once more on a fresh connection."""
    server = scripted(lambda conn, body: ok(conn, body) and False)
    monkeypatch.setattr("adapter.forwarding.transport._still_open", lambda conn: True)  # a race
    big = b"{" + b" " * (8 * 1024 * 1024) + b"}"  # far more than the socket takes before the reset
    with client() as c:
        assert c.post(server.url, content=b"{}").status_code == 200
        time.sleep(0.05)
        assert c.post(server.url, content=big).status_code == 200
    assert server.connections == 2 and len(server.requests) == 2  # the dead one never arrived whole


def _reply_then_hang_up_after_reading(count: list[int]) -> Reply:
    """Answers the first request; reads the second whole, then closes without a reply byte (a
    hub that stored it and crashed, or a proxy that lost the reply); answers the rest."""

    def reply(conn: socket.socket, body: bytes) -> bool:
        count.append(1)
        if len(count) == 2:
            return False
        return ok(conn, body)

    return reply


def test_a_post_sent_whole_whose_reply_is_lost_is_not_sent_again(
    scripted: Callable[[Reply], ScriptedServer],
) -> None:
    """Issue "never half-accepts": the old transport re-sent this POST on a fresh connection,
    so a receiver that had stored it got it twice. Now it is an unknown outcome."""
    server = scripted(_reply_then_hang_up_after_reading([]))
    with client() as c:
        assert c.post(server.url, content=b'{"n":1}').status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="outcome unknown"):
            c.post(server.url, content=b'{"n":2}', headers={"Idempotency-Key": "k2"})
    assert len(server.requests) == 2 and server.connections == 1  # sent once, never again
    assert server.requests[1].endswith(b'{"n":2}')


def test_a_lookup_whose_reply_is_lost_on_a_kept_connection_is_asked_again(
    scripted: Callable[[Reply], ScriptedServer],
) -> None:
    """A GET changes nothing at the receiver: asking again on a fresh connection is safe."""
    server = scripted(_reply_then_hang_up_after_reading([]))
    with client() as c:
        assert c.post(server.url, content=b"{}").status_code == 200
        assert c.get(server.url + "/Bundle?identifier=x").status_code == 200
    assert len(server.requests) == 3 and server.connections == 2


def test_the_delivery_of_a_post_whose_reply_is_lost_is_an_unknown_outcome(
    scripted: Callable[[Reply], ScriptedServer],
) -> None:
    server = scripted(_reply_then_hang_up_after_reading([]))
    dest = FhirRestDestination("hub", DestinationConfig(kind="fhir-rest", url=server.url))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert dest.deliver(bundle, idempotency_key="k1", delivery_id="d1").outcome == "delivered"
    result = dest.deliver(bundle, idempotency_key="k2", delivery_id="d2")
    dest.close()
    assert result.outcome == "retry" and result.unknown
    assert "outcome unknown" in (result.error or "") and len(server.requests) == 2


def test_connection_close_header_is_honoured(scripted: Callable[[Reply], ScriptedServer]) -> None:
    server = scripted(lambda conn, body: ok(conn, body, b"Connection: close\r\n") and False)
    with client() as c:
        assert c.post(server.url, content=b"{}").status_code == 200
        assert c.post(server.url, content=b"{}").status_code == 200
    assert server.connections == 2


def test_a_reply_dropped_half_way_is_an_error_not_a_200(scripted: Callable[[Reply], ScriptedServer]) -> None:
    def drop(conn: socket.socket, body: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n{\"resourceType\":")
        return False

    server = scripted(drop)
    with client() as c, pytest.raises(httpx.RemoteProtocolError, match="mid-reply"):
        c.post(server.url, content=b"{}")
    dest = FhirRestDestination("hub", DestinationConfig(kind="fhir-rest", url=server.url))
    result = dest.deliver({"resourceType": "Bundle", "type": "transaction"}, idempotency_key="k",
                          delivery_id="d")
    assert result.outcome == "retry" and "RemoteProtocolError" in (result.error or "")
    dest.close()


def test_a_connection_closed_before_any_reply_is_a_protocol_error(
    scripted: Callable[[Reply], ScriptedServer],
) -> None:
    server = scripted(lambda conn, body: False)
    with client() as c, pytest.raises(httpx.RemoteProtocolError):
        c.post(server.url, content=b"{}")
    assert server.connections == 1  # a fresh connection is not retried


def test_a_slow_reply_times_out(scripted: Callable[[Reply], ScriptedServer]) -> None:
    def slow(conn: socket.socket, body: bytes) -> bool:
        time.sleep(1.0)
        return ok(conn, body)

    server = scripted(slow)
    started = time.monotonic()
    with client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.post(server.url, content=b"{}")
    assert time.monotonic() - started < 0.9


def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with client() as c, pytest.raises(httpx.ConnectError):
            c.post(f"http://127.0.0.1:{port}/fhir", content=b"{}")


def test_chunked_and_gzipped_replies_are_decoded(scripted: Callable[[Reply], ScriptedServer]) -> None:
    text = b'{"resourceType":"OperationOutcome","issue":[]}'
    packed = gzip.compress(text)

    def chunked_gzip(conn: socket.socket, body: bytes) -> bool:
        half = len(packed) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (packed[:half], packed[half:]))
        conn.sendall(b"HTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Encoding: gzip\r\n\r\n" + chunks + b"0\r\n\r\n")
        return True

    server = scripted(chunked_gzip)
    with client() as c:
        r = c.post(server.url, content=b"{}")
        assert r.status_code == 422 and r.reason_phrase == "Unprocessable Entity"
        assert r.content == text
        assert c.post(server.url, content=b"{}").content == text
    assert server.connections == 1


def test_an_oversized_reply_is_refused(scripted: Callable[[Reply], ScriptedServer]) -> None:
    def huge(conn: socket.socket, body: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b" " * 2000)
        return True

    server = scripted(huge)
    with (
        httpx.Client(transport=StdlibTransport(max_response_bytes=1000)) as c,
        pytest.raises(httpx.RemoteProtocolError, match="larger than 1000"),
    ):
        c.post(server.url, content=b"{}")


def test_delivery_client_uses_it_and_the_mock_hub_records_once() -> None:
    with MockHub() as hub:
        dest = FhirRestDestination("hub", DestinationConfig(kind="fhir-rest", url=hub.fhir_url))
        assert isinstance(dest.transport, StdlibTransport)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
        for _ in range(3):
            assert dest.deliver(bundle, idempotency_key="same", delivery_id="d1").outcome == "delivered"
        dest.close()
        assert len(hub.state.received) == 1 and len(hub.state.requests) == 3


def test_a_proxy_in_the_environment_keeps_httpx_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy the delivery goes through httpx's transport, which speaks to proxies."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    assert proxy_for("https://hub.example/fhir") == "http://proxy.example:3128"
    assert proxy_for("https://internal.example/fhir") is None and proxy_for("http://hub.example/") is None
    proxied = make_transport(AuthConfig(), "https://hub.example/fhir")
    bypassed = make_transport(AuthConfig(), "https://internal.example/fhir")
    assert isinstance(proxied, httpx.HTTPTransport) and isinstance(bypassed, StdlibTransport)
    proxied.close()
    bypassed.close()


def test_delivery_through_a_proxy_reaches_it_in_absolute_form(
    scripted: Callable[[Reply], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = scripted(ok)  # plays the forward proxy: it answers for the hub
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    dest = FhirRestDestination("hub", DestinationConfig(kind="fhir-rest", url="http://hub.invalid/fhir"))
    result = dest.deliver({"resourceType": "Bundle", "type": "transaction"}, idempotency_key="k",
                          delivery_id="d")
    dest.close()
    assert result.outcome == "delivered"
    assert proxy.requests[0].startswith(b"POST http://hub.invalid/fhir HTTP/1.1\r\n")


def test_close_closes_idle_connections(scripted: Callable[[Reply], ScriptedServer]) -> None:
    server = scripted(ok)
    transport = StdlibTransport()
    with httpx.Client(transport=transport) as c:
        assert c.post(server.url, content=b"{}").status_code == 200
    assert transport._idle == {}
    with httpx.Client(transport=StdlibTransport()) as c:  # a new one works after the old closed
        assert c.post(server.url, content=b"{}").status_code == 200


def test_tls_verification_follows_the_auth_settings(tmp_path: Path) -> None:
    """A hub with a certificate from a private CA: refused by default, accepted with that CA as
    ``ca_bundle``, and with ``verify: false`` (a test platform's self-made certificate)."""
    from tests.test_forwarding import make_tls_files

    tls = make_tls_files(tmp_path)
    bundle = {"resourceType": "Bundle", "type": "transaction"}
    with MockHub(tls={"certfile": str(tls["server_cert"]), "keyfile": str(tls["server_key"])}) as hub:
        for auth, outcome in ((AuthConfig(), "retry"), (AuthConfig(ca_bundle=str(tls["ca"])), "delivered"),
                              (AuthConfig(verify=False), "delivered")):
            config = DestinationConfig(kind="fhir-rest", url=hub.fhir_url, auth=auth)
            dest = FhirRestDestination("hub", config)
            result = dest.deliver(bundle, idempotency_key=f"k-{outcome}-{auth.verify}", delivery_id="d")
            dest.close()
            assert result.outcome == outcome, (auth, result)
            if outcome == "retry":
                assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
