"""The real ``becare serve`` in a subprocess, on a free loopback port, with SQLite in a tmp folder.

A subprocess rather than an in-process app: it is exactly what a vendor deploys (command line,
config loading, logging, outbox workers), and it cannot share module state or loggers with the
test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

JSON = "application/fhir+json"
XML = "application/fhir+xml"

# Fast polling and short back-off so retries after an injected fault land within a test's patience.
_TEST_CONFIG = (
    "service:\n"
    "  rate_limit: {per_second: 10000, burst: 10000}\n"
    "outbox:\n"
    "  poll_interval: 0.1\n"
    "  backoff_base: 0.2\n"
    "  backoff_cap: 2\n"
    "  sqlite_synchronous: NORMAL\n"
)


class ServiceStartError(RuntimeError):
    """``becare serve`` exited or never became ready; the message carries the end of its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _package_root() -> str:
    import adapter

    return str(Path(adapter.__file__).resolve().parents[1])


class BecareService:
    """A running service: ``base_url``, an ``httpx.Client`` (``client``) and request helpers."""

    def __init__(self, workdir: Path, *, forward_to: str | None = None, config: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.forward_to = forward_to
        self.config_text = config if config is not None else _TEST_CONFIG
        self.log_path = self.workdir / "serve.log"
        self.db_url = f"sqlite:///{self.workdir / 'becare.db'}"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("the service is not started")
        return self._client

    def start(self, timeout: float = 120.0, attempts: int = 3) -> BecareService:
        """Start and wait for ``/readyz``; a port taken between probe and bind is retried."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "becare.yaml"
        config_path.write_text(self.config_text, encoding="utf-8")
        for attempt in range(attempts):
            self.port = _free_port()
            self._spawn(config_path)
            try:
                self._wait_ready(timeout)
                return self
            except ServiceStartError:
                code = self.process.poll() if self.process else None
                self.stop()
                if code != 2 or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, config_path: Path) -> None:
        env = {**os.environ}
        env.pop("BECARE_CONFIG", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
        argv = [
            sys.executable,
            "-m",
            "adapter.cli.main",
            "serve",
            "--port",
            str(self.port),
            "--config",
            str(config_path),
            "--db",
            self.db_url,
            "--log-level",
            "warning",
        ]
        if self.forward_to:
            argv += ["--forward-to", self.forward_to]
        with self.log_path.open("ab") as log:
            # its own process group, so ``kill()`` takes the delivery child down with it
            self.process = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._client = httpx.Client(base_url=self.base_url, timeout=30)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise ServiceStartError(f"becare serve exited; log:\n{self.log_tail()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServiceStartError(f"becare serve not ready after {timeout:g}s; log:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the service and its delivery process at once: a crash, not a shutdown."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    # -- requests ------------------------------------------------------------------------------------
    def _send(
        self,
        path: str,
        body: Any,
        region: str | None,
        lang: str | None,
        headers: dict[str, str],
        today: Any = None,
    ) -> httpx.Response:
        content, ctype = _body(body)
        hdrs = {
            "Content-Type": ctype,
            "Accept": JSON,
            **({"Accept-Language": lang} if lang else {}),
            **headers,
        }
        params = ({"region": region} if region else {}) | ({"today": str(today)} if today else {})
        return self.client.post(path, content=content, headers=hdrs, params=params or None)

    def submit(
        self,
        body: Any,
        *,
        region: str | None = None,
        lang: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """``POST /fhir``: 202 with ``X-Delivery-Id`` when accepted, 422 with the outcome when not."""
        return self._send("/fhir", body, region, lang, headers or {})

    def validate(
        self,
        body: Any,
        *,
        region: str | None = None,
        lang: str | None = None,
        headers: dict[str, str] | None = None,
        today: Any = None,
    ) -> httpx.Response:
        """``POST /fhir/$validate``: 200 with an OperationOutcome, valid or not. ``today`` (a date
        or ``YYYY-MM-DD``; default ``--becare-today``) is the date the rules judge against."""
        from adapter.testing import defaults

        day = today or defaults.current.today
        return self._send("/fhir/$validate", body, region, lang, headers or {}, day)

    def delivery(self, delivery_id: str) -> dict[str, Any]:
        resp = self.client.get(f"/deliveries/{delivery_id}")
        resp.raise_for_status()
        return dict(resp.json())

    def wait_delivered(self, delivery_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``/deliveries/{id}`` until ``delivered``; fail on ``dead`` or at the deadline."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            status = self.delivery(delivery_id)
            if status.get("status") == "delivered":
                return status
            if status.get("status") in ("dead", "blocked") or time.monotonic() > deadline:
                raise AssertionError(f"delivery {delivery_id} not delivered: {json.dumps(status)[:800]}")
            time.sleep(0.1)


def _body(body: Any) -> tuple[bytes, str]:
    """Bytes and content type for a dict, JSON/XML text or bytes, or a file path."""
    if isinstance(body, dict):
        return json.dumps(body).encode("utf-8"), JSON
    if isinstance(body, str) and body.lstrip()[:1] in ("{", "<"):
        body = body.encode("utf-8")
    elif isinstance(body, str | os.PathLike):
        path = Path(body)
        return path.read_bytes(), XML if path.suffix.lower() == ".xml" else JSON
    if isinstance(body, bytes | bytearray):
        return bytes(body), XML if bytes(body).lstrip()[:1] == b"<" else JSON
    raise TypeError(f"cannot send a {type(body).__name__}: give a dict, JSON or XML text, bytes or a path")
