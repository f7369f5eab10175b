"""End to end: the real ``becare serve`` (a subprocess with uvicorn on a free loopback port, the
real validator) forwarding to the real mock hub (uvicorn in a thread).

Valid bundles arrive exactly once; invalid ones get 422 and never reach the hub; hostile input
gets a 4xx OperationOutcome quickly; the server's log never shows an SSIN or a name.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.fhirio import to_xml
from adapter.testing.mockhub import MockHub
from tests.test_service_fakes import bundle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
JSON = "application/fhir+json"
XML = "application/fhir+xml"
BODY_LIMIT = 300_000
SSIN = "85073003328"
FAMILY = "Vandenbroucke"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    base: str
    hub: MockHub
    client: httpx.Client
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("serve")
    config = work / "becare.yaml"
    config.write_text(
        f"service:\n  max_body_bytes: {BODY_LIMIT}\n  rate_limit: {{per_second: 1000, burst: 1000}}\n"
        "outbox:\n  poll_interval: 0.1\n  backoff_base: 0.1\n",
        encoding="utf-8",
    )
    log = work / "serve.log"
    with MockHub() as hub:
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("BECARE_CONFIG", None)
        with log.open("wb") as log_fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "adapter.cli.main", "serve", "--port", str(port),
                 "--config", str(config), "--forward-to", hub.fhir_url,
                 "--db", f"sqlite:///{work / 'becare.db'}"],
                cwd=work, env=env, stdout=log_fh, stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=30)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, log.read_text(errors="replace")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "service did not become ready"
                time.sleep(0.2)
            yield Running(base, hub, client, log, process)
        finally:
            client.close()
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _post(r: Running, path: str, body: Any, ctype: str = JSON, **headers: str) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return r.client.post(path, content=data, headers={"Content-Type": ctype, **headers})


def _received_keys(r: Running) -> list[str]:
    return [(x.bundle or {}).get("identifier", {}).get("value") for x in r.hub.state.received]


def test_valid_bundles_arrive_exactly_once(running: Running) -> None:
    ids = [f"e2e-{i}" for i in range(5)]
    delivery_ids = []
    for ident in ids:
        resp = _post(running, "/fhir", bundle(ident, ssin=SSIN, family=FAMILY))
        assert resp.status_code == 202, resp.text
        assert resp.headers["location"].startswith("/deliveries/")
        delivery_ids.append(resp.headers["x-delivery-id"])
    again = _post(running, "/fhir/Bundle", bundle(ids[0], ssin=SSIN, family=FAMILY))  # a resend
    assert again.status_code == 202 and again.headers["x-delivery-id"] == delivery_ids[0]

    deadline = time.monotonic() + 30
    while sorted(k for k in _received_keys(running) if k in ids) != sorted(ids):
        assert time.monotonic() < deadline, _received_keys(running)
        time.sleep(0.1)
    for did in delivery_ids:
        status = running.client.get(f"/deliveries/{did}").json()
        while status["status"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = running.client.get(f"/deliveries/{did}").json()
        assert status["status"] == "delivered" and status["attempts"] >= 1
    time.sleep(0.5)  # nothing more trickles in
    received = [k for k in _received_keys(running) if k in ids]
    assert sorted(received) == sorted(ids)


def test_decimals_reach_the_hub_exactly_as_written(running: Running) -> None:
    """A FHIR decimal's precision is significant: 1.50 must arrive as the JSON number 1.50, not
    as 1.5 and not as the string "1.50" (which the hub would refuse as invalid FHIR)."""
    sent = bundle("e2e-decimal", ssin=SSIN, family=FAMILY)
    sent["entry"].append({
        "fullUrl": "urn:uuid:0d7b6a3e-2f0e-4a43-9e4d-6d3f1e2b9a02",
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                     "valueQuantity": {"value": "__DECIMAL__", "unit": "kg"}},
        "request": {"method": "POST", "url": "Observation"},
    })
    body = json.dumps(sent).replace('"__DECIMAL__"', "71.50").encode()
    resp = _post(running, "/fhir", body)
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 30
    while "e2e-decimal" not in _received_keys(running):
        assert time.monotonic() < deadline, _received_keys(running)
        time.sleep(0.1)
    arrived = next(x for x in running.hub.state.received
                   if (x.bundle or {}).get("identifier", {}).get("value") == "e2e-decimal")
    assert b'"valueQuantity":{"unit":"kg","value":71.50}' in arrived.raw


def test_invalid_bundles_get_422_and_are_never_forwarded(running: Running) -> None:
    bad = bundle("e2e-invalid")
    bad["entry"][0]["resource"]["gender"] = "robot"
    resp = _post(running, "/fhir", bad, **{"Accept-Language": "fr"})
    assert resp.status_code == 422
    oo = resp.json()
    errors = [i for i in oo["issue"] if i["severity"] == "error"]
    assert any(i.get("expression") == ["Bundle.entry[0].resource.gender"] for i in errors)
    assert "location" not in resp.headers
    no_type = _post(running, "/fhir", bundle("e2e-no-type", valid=False))
    assert no_type.status_code == 422
    time.sleep(1.0)  # give a (wrong) forwarder every chance
    assert "e2e-invalid" not in _received_keys(running)
    assert "e2e-no-type" not in _received_keys(running)


def test_validate_json_and_xml_over_http(running: Running) -> None:
    ok = _post(running, "/fhir/$validate", bundle("v-1"))
    assert ok.status_code == 200
    assert not [i for i in ok.json()["issue"] if i["severity"] in ("error", "fatal")]
    bad = bundle("v-2")
    bad["entry"][0]["resource"]["gender"] = "robot"
    resp = _post(running, "/fhir/$validate", to_xml(bad).encode(), ctype=XML)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(XML)
    assert b"administrative-gender" in resp.content
    assert b"<OperationOutcome" in resp.content


@pytest.mark.parametrize(
    ("name", "body", "ctype", "status"),
    [
        ("garbage", b"\x89PNG\r\n\x1a\n\x00\x00 not fhir at all", JSON, 400),
        ("truncated", b'{"resourceType": "Bundle", "type": "transa', JSON, 400),
        ("oversize", b'{"resourceType":"Bundle","x":"' + b"a" * (BODY_LIMIT + 10) + b'"}', JSON, 413),
        ("deep-json", b'{"a":' * 20000 + b"1" + b"}" * 20000, JSON, 413),
        ("deep-array", b"[" * 50000 + b"]" * 50000, JSON, 413),
        ("entities", b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
         b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><Bundle xmlns="http://hl7.org/fhir">'
         b"<type value='&lol2;'/></Bundle>", XML, 400),
        ("external-entity", b'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b'<Bundle xmlns="http://hl7.org/fhir"><type value="&x;"/></Bundle>', XML, 400),
        ("deep-xml", b'<Bundle xmlns="http://hl7.org/fhir">' + b"<a>" * 5000 + b"</a>" * 5000 + b"</Bundle>",
         XML, 413),
        ("media-type", b"resourceType=Bundle", "application/x-www-form-urlencoded", 415),
    ],
)
def test_hostile_input_gets_a_quick_4xx_outcome(running: Running, name: str, body: bytes, ctype: str,
                                                status: int) -> None:
    for path in ("/fhir/$validate", "/fhir"):
        started = time.perf_counter()
        resp = _post(running, path, body, ctype=ctype, Accept=JSON)
        elapsed = time.perf_counter() - started
        assert resp.status_code == status, (name, resp.text[:300])
        assert elapsed < 2.0, (name, elapsed)
        oo = resp.json()
        assert oo["resourceType"] == "OperationOutcome"
        assert "Traceback" not in resp.text and "root:" not in resp.text
    assert running.client.get("/healthz").status_code == 200  # still standing


def test_metadata_metrics_and_clean_logs(running: Running) -> None:
    cs = running.client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    metrics = running.client.get("/metrics").text
    assert "becare_validations_total" in metrics and "becare_deliveries" in metrics
    # the server log: requests were logged, personal data never
    _post(running, "/fhir/$validate", {"resourceType": "Patient", "name": [{"family": FAMILY}],
                                       "identifier": [{"value": SSIN}], "gender": "robot"})
    time.sleep(0.3)
    text = running.log.read_text(errors="replace")
    assert "POST /fhir" in text
    assert SSIN not in text and FAMILY not in text
