"""One loopback HTTP server playing the eHealth platform for tests and demos: the STS (``/sts``),
the ETK depot (``/etk``) and one mock hub per region (``/hub/<name>``), plus a JSON control API.

A plain ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive): handlers are synchronous and a handler
can drop the connection mid-request (after reading the whole request, with no reply byte sent),
which a hub fault script needs. Each hub has its own ETK key pair, published in the ETK depot
under ``("CBE", <hub cbe>, "")``.

Control API (JSON in and out; ``<name>`` is a hub name):

    GET  /_control/health                          {"ok": true}
    GET  /_control/info                            urls, hub names/versions/CBEs, PKI paths
    GET  /_control/hubs/<name>/transactions[?inss=] stored transactions (ids, LOCAL ids, cds ...)
    GET  /_control/hubs/<name>/requests            every request: operation, caller, status, fault
    PUT  /_control/hubs/<name>/consent/<inss>      {"active": true, "types": [...], "signdate",
                                                    "revokedate"}
    PUT  /_control/hubs/<name>/therapeutic-links/<inss>
                                                   {"links": [{"hcparty": {"ID-HCPARTY": "..."},
                                                    "active": true, "type": "gpconsultation"}]}
                                                   (replaces the patient's links)
    POST /_control/hubs/<name>/faults              {"faults": ["503,retry-after=2", "drop-after",
                                                    {"kind": "delay", "delay": 2}, ...]}
    POST /_control/hubs/<name>/reset               forget transactions, fixtures, faults, requests
    POST /_control/reset                           reset every hub

Run it alone: ``python -m adapter.testing.ehealth.server --port N --dir DIR`` writes the PKI
(``org.p12`` ...) and ``server.json`` into DIR and prints one line ``ready <url>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from adapter.testing.ehealth.hub import DropConnection, HubFault, MockHub

# name -> hubservices version; the regions' real versions are not documented here: a mix, so
# both XSD sets get exercised
DEFAULT_HUBS: dict[str, str] = {
    "flanders": "3.5",
    "wallonia": "3.5",
    "brussels": "3.2",
    "german-speaking": "3.2",
}
MAX_BODY = 32 * 1024 * 1024


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    app: MockEHealthServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY each keep-alive reply
        # waits for the client's delayed ACK (~40 ms)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY or "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            self.close_connection = True
            self._send(
                411 if length >= 0 else 400, {"Content-Type": "text/plain"}, b"Content-Length required"
            )
            return
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items()}
        try:
            status, out_headers, data = self.server.app.route(
                method, parts.path, parse_qs(parts.query), body, headers
            )
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception as exc:  # a bug in a double: say so instead of hanging the client
            traceback.print_exc()
            status, out_headers, data = 500, {"Content-Type": "text/plain"}, f"mock error: {exc!r}".encode()
        if (self.headers.get("Connection") or "").lower() == "close":
            self.close_connection = True
        self._send(status, out_headers, data)

    def _send(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data, default=str).encode()


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)) if value else None


class MockEHealthServer:
    """``with MockEHealthServer(tmp_path) as eh: eh.hub_url("flanders")``.

    Generates a test PKI into ``directory`` (``adapter.testing.ehealth.pki``), then serves the
    STS, the ETK depot and the hubs. ``secure=False`` builds hubs that skip WS-Security (only
    for tests of the message level)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        hubs: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        password: str = "test-password",
        default_consent: bool = False,
        require_consent: bool = True,
        secure: bool = True,
        sts_lifetime: float = 3600.0,
    ) -> None:
        from adapter.rules.identifiers import make_cbe
        from adapter.testing.ehealth.pki import make_key, make_pki

        self.directory = Path(directory)
        self.pki = make_pki(self.directory, password=password)
        pki = self.pki
        self.clock = clock
        self.sts: Any = None
        self.etk: Any = None
        self.hubs: dict[str, MockHub] = {}
        self.hub_cbe: dict[str, str] = {}
        self.hub_etk: dict[str, tuple[Any, Any]] = {}
        etks: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        for i, (name, version) in enumerate((hubs or DEFAULT_HUBS).items()):
            if i == 0:
                cbe, key, cert = pki.hub_cbe, pki.hub_key, pki.hub_cert
            elif i == 1:
                cbe, key, cert = pki.hub2_cbe, pki.hub2_key, pki.hub2_cert
            else:
                cbe = make_cbe(8_100_000 + i)
                key = make_key()
                cert = pki.issue(key, pki.org_name(cbe), usage="encrypt")
            self.hub_cbe[name] = cbe
            self.hub_etk[name] = (key, cert)
            etks[("CBE", cbe, "")] = (key, cert)
            self.hubs[name] = MockHub(
                hub_version=version,
                sts_certificates=[pki.sts_cert] if secure else None,
                decrypt_key=key,
                decrypt_cert=cert,
                clock=clock,
                name=name,
                hub_nihii=f"1999{i + 1:04d}000",
                default_consent=default_consent,
                require_consent=require_consent,
            )
        try:
            from adapter.testing.ehealth.sts import MockSts

            self.sts = MockSts(
                pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert], lifetime=sts_lifetime, clock=clock
            )
        except ImportError:  # pragma: no cover - the STS double is part of becare
            self.sts = None
        try:
            from adapter.testing.ehealth.etk import MockEtkDepot

            self.etk = MockEtkDepot(etks)
        except ImportError:  # pragma: no cover
            self.etk = None
        self._httpd = _HttpServer((host, port), _Handler, bind_and_activate=True)
        self._httpd.app = self
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sts_url(self) -> str:
        return f"{self.url}/sts"

    @property
    def etk_url(self) -> str:
        return f"{self.url}/etk"

    def hub_url(self, name: str) -> str:
        return f"{self.url}/hub/{name}"

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "sts": self.sts_url,
            "etk": self.etk_url,
            "hubs": {
                n: {
                    "url": self.hub_url(n),
                    "version": h.hub_version,
                    "cbe": self.hub_cbe[n],
                    "etk": {"type": "CBE", "value": self.hub_cbe[n], "application_id": ""},
                }
                for n, h in self.hubs.items()
            },
            "pki": {
                "directory": str(self.directory),
                "org_p12": str(self.pki.org_p12),
                "expired_p12": str(self.pki.expired_p12),
                "password": self.pki.password,
                "org_cbe": self.pki.org_cbe,
            },
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MockEHealthServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mock-ehealth-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> MockEHealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing -----------------------------------------------------------------------------------
    def route(
        self, method: str, path: str, query: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/_control/"):
            try:
                return self.control(method, path[len("/_control/") :].strip("/"), query, body)
            except (ValueError, TypeError, KeyError) as exc:
                return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        if method != "POST":
            return 405, {"Content-Type": "text/plain", "Allow": "POST"}, b"POST only"
        if path == "/sts" and self.sts is not None:
            status, data = self.sts.handle(body, headers)
            return status, {"Content-Type": "text/xml; charset=utf-8"}, data
        if path == "/etk" and self.etk is not None:
            status, data = self.etk.handle(body, headers)
            return status, {"Content-Type": "text/xml; charset=utf-8"}, data
        if path.startswith("/hub/"):
            hub = self.hubs.get(path[len("/hub/") :].strip("/"))
            if hub is not None:
                return hub.handle(body, headers)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _hub(self, name: str) -> MockHub:
        hub = self.hubs.get(unquote(name))
        if hub is None:
            raise KeyError(f"no hub {name!r}")
        return hub

    def control(
        self, method: str, path: str, query: Mapping[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        data = json.loads(body) if body.strip() else {}
        parts = [unquote(p) for p in path.split("/")]
        if parts == ["health"]:
            return _json(200, {"ok": True})
        if parts == ["info"]:
            return _json(200, self.info())
        if parts == ["reset"] and method == "POST":
            for hub in self.hubs.values():
                hub.reset()
            return _json(200, {"ok": True})
        if len(parts) >= 3 and parts[0] == "hubs":
            hub = self._hub(parts[1])
            what = parts[2]
            if what == "transactions" and method == "GET":
                inss = (query.get("inss") or [None])[0]
                items = [s.summary() for s in hub.stored(inss)]
                return _json(200, {"count": len(items), "items": items})
            if what == "requests" and method == "GET":
                items = hub.request_log()
                return _json(200, {"count": len(items), "items": items})
            if what == "faults" and method == "POST":
                faults = data if isinstance(data, list) else data.get("faults", [])
                return _json(200, {"queued": hub.queue_faults(HubFault.from_json(f) for f in faults)})
            if what == "reset" and method == "POST":
                hub.reset()
                return _json(200, {"ok": True})
            if what == "consent" and len(parts) == 4 and method == "PUT":
                hub.set_consent(
                    parts[3],
                    bool(data.get("active", True)),
                    types=data.get("types") or ("retrospective",),
                    signdate=_day(data.get("signdate")),
                    revokedate=_day(data.get("revokedate")),
                )
                return _json(200, {"ok": True})
            if what == "therapeutic-links" and len(parts) == 4 and method == "PUT":
                hub.set_therapeutic_link(parts[3], None)
                for link in data.get("links", []):
                    hub.set_therapeutic_link(
                        parts[3],
                        link["hcparty"],
                        bool(link.get("active", True)),
                        type=link.get("type", "gpconsultation"),
                        startdate=_day(link.get("startdate")),
                        enddate=_day(link.get("enddate")),
                    )
                return _json(200, {"ok": True})
        return _json(404, {"error": f"no control route {method} /_control/{path}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapter.testing.ehealth.server",
        description="becare mock eHealth platform: STS + ETK depot + hubs",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True, help="where to write the generated PKI and server.json")
    parser.add_argument("--password", default="test-password", help="password of the generated .p12 files")
    parser.add_argument(
        "--consent",
        choices=("yes", "no"),
        default="no",
        help="consent of a patient without a fixture (default: no)",
    )
    args = parser.parse_args(argv)
    try:
        server = MockEHealthServer(
            args.dir,
            host=args.host,
            port=args.port,
            password=args.password,
            default_consent=args.consent == "yes",
        )
    except OSError as exc:
        parser.error(f"cannot start: {exc}")
    (Path(args.dir) / "server.json").write_text(json.dumps(server.info(), indent=2), encoding="utf-8")
    signal.signal(signal.SIGTERM, _exit)  # no lock taken in the handler: it only raises
    server.start()
    print(f"ready {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
