"""IC-ONE-1/2 across concurrent callers: the service claims a person's coordinator role under
the registry's lock before it accepts, so two submissions that were both valid when validated
cannot both be accepted.

The race is forced, not hoped for: a barrier holds each request after its validation until the
other one has been validated too. Real parts throughout: the service under uvicorn on
loopback, the real validator, a SQLite outbox and episode registry.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from adapter.outbox import Outbox
from adapter.registry import EpisodeRegistry
from adapter.service.app import create_app
from adapter.service.config import RateLimit, ServiceConfig
from adapter.validation import Validator

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "rules"


class BarrierValidator:
    """The real validator; ``validate_bytes`` (the request's validation) waits for the other
    request to be validated too, so both pass IC-ONE-1 against an empty registry."""

    def __init__(self, inner: Validator, parties: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=30)
        self.armed = False  # the service warms its validator at start-up: not a request

    def validate_bytes(self, *args: Any, **kwargs: Any) -> Any:
        report = self.inner.validate_bytes(*args, **kwargs)
        if self.armed:
            self.barrier.wait()
        return report

    def validate(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.validate(*args, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.fixture
def serve(tmp_path: Path, validator: Validator) -> Iterator[Any]:
    servers: list[uvicorn.Server] = []

    def start(app_validator: Any) -> tuple[str, Outbox]:
        outbox = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
        registry = EpisodeRegistry(f"sqlite:///{tmp_path / 'registry.db'}", salt="test-salt")
        config = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1))
        app = create_app(config, validator=app_validator, outbox=outbox, registry=registry)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.02)
        servers.append(server)
        base = f"http://127.0.0.1:{port}"
        while httpx.get(f"{base}/readyz").status_code != 200:  # warmed up (a validation of its own)
            assert time.monotonic() < deadline, "service not ready"
            time.sleep(0.05)
        return base, outbox

    yield start
    for server in servers:
        server.should_exit = True


def _post(base: str, name: str, results: dict[str, httpx.Response]) -> None:
    body = (SAMPLES / name).read_bytes()
    results[name] = httpx.post(
        f"{base}/fhir?region=flanders",
        content=body,
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("rule", "first", "second"),
    [
        ("IC-ONE-1", "IC-ONE-1/prior.json", "IC-ONE-1/breaks.json"),
        ("IC-ONE-2", "IC-ONE-2/prior.json", "IC-ONE-2/breaks.json"),
    ],
)
def test_two_concurrent_coordinators_one_is_accepted(
    serve: Any, validator: Validator, rule: str, first: str, second: str
) -> None:
    gated = BarrierValidator(validator, parties=2)
    base, outbox = serve(gated)
    gated.armed = True
    results: dict[str, httpx.Response] = {}
    threads = [threading.Thread(target=_post, args=(base, n, results)) for n in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [202, 422], {n: (r.status_code, r.text[:300]) for n, r in results.items()}
    rejected = next(r for r in results.values() if r.status_code == 422).json()
    rules = {
        c.get("code")
        for i in rejected["issue"]
        if i["severity"] == "error"
        for c in (i.get("details") or {}).get("coding", ())
    }
    assert rule in rules
    assert sum(outbox.counts().values()) == 1  # only the accepted one was stored


def test_sequential_submissions_are_judged_at_validation(serve: Any, validator: Validator) -> None:
    base, outbox = serve(validator)
    results: dict[str, httpx.Response] = {}
    _post(base, "IC-ONE-1/prior.json", results)
    _post(base, "IC-ONE-1/breaks.json", results)
    assert results["IC-ONE-1/prior.json"].status_code == 202
    second = results["IC-ONE-1/breaks.json"]
    assert second.status_code == 422
    assert "IC-ONE-1" in json.dumps(second.json())
    # resubmitting the accepted bundle is not a conflict with itself
    again: dict[str, httpx.Response] = {}
    _post(base, "IC-ONE-1/prior.json", again)
    assert again["IC-ONE-1/prior.json"].status_code == 202
    assert sum(outbox.counts().values()) == 1
