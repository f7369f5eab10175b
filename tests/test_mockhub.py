"""The mock hub itself: recording, dedupe, injected faults, metahub, control API."""

from __future__ import annotations

import time

import httpx
import pytest

from adapter.testing.mockhub import Fault, MockHub

BUNDLE = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"resource": {"resourceType": "Patient"},
                     "request": {"method": "POST", "url": "Patient"}}]}


@pytest.fixture
def hub():
    with MockHub() as h:
        yield h


def post(hub: MockHub, key: str, fault: str | None = None, timeout: float = 5.0, path: str = "/fhir"):
    headers = {"Idempotency-Key": key, "Content-Type": "application/fhir+json"}
    if fault:
        headers["X-Mock-Fault"] = fault
    return httpx.post(hub.url + path, json=BUNDLE, headers=headers, timeout=timeout)


def test_fault_spec_parsing() -> None:
    assert Fault.parse("503,retry-after=2") == Fault(status=503, retry_after="2")
    assert Fault.parse("delay=1.5") == Fault(delay=1.5)
    assert Fault.parse("drop-after") == Fault(drop_after=True)
    assert Fault.from_json({"status": 500, "delay": 0.1}) == Fault(status=500, delay=0.1)
    with pytest.raises(ValueError):
        Fault.parse("explode")


def test_records_once_per_idempotency_key(hub: MockHub) -> None:
    r = post(hub, "k1")
    assert r.status_code == 200 and r.json()["type"] == "transaction-response"
    assert post(hub, "k1").status_code == 200
    post(hub, "k2")
    assert hub.state.keys() == ["k1", "k2"] and hub.state.request_keys() == ["k1", "k1", "k2"]
    listed = httpx.get(hub.url + "/_mock/received").json()
    assert listed["count"] == 2 and listed["items"][0]["bundle"] == BUNDLE
    assert httpx.get(hub.url + "/_mock/requests").json()["count"] == 3


def test_rejects_non_bundles(hub: MockHub) -> None:
    r = httpx.post(hub.fhir_url, content=b"not json")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert httpx.post(hub.fhir_url, json={"resourceType": "Patient"}).status_code == 400
    assert hub.state.keys() == []


def test_per_request_faults(hub: MockHub) -> None:
    r = post(hub, "k", "503,retry-after=3")
    assert r.status_code == 503 and r.headers["Retry-After"] == "3"
    assert post(hub, "k", "500").status_code == 500
    with pytest.raises(httpx.ReadTimeout):
        post(hub, "slow", "delay=1", timeout=0.2)
    with pytest.raises(httpx.RemoteProtocolError):
        post(hub, "dropped", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        post(hub, "drop-after", "drop-after")
    time.sleep(1.0)  # the slow request finishes server-side and is recorded
    assert sorted(hub.state.keys()) == ["drop-after", "slow"]
    by_query = httpx.post(hub.fhir_url + "/Bundle?fault=429", json=BUNDLE, headers={"Idempotency-Key": "q"})
    assert by_query.status_code == 429
    bad = post(hub, "k", "explode")
    assert bad.status_code == 400 and "unknown fault" in bad.json()["issue"][0]["diagnostics"]
    assert sorted(hub.state.keys()) == ["drop-after", "slow"]
    stored = post(hub, "as-bundle", path="/fhir/Bundle")
    assert stored.status_code == 201 and stored.json()["id"] == "mock-3"


def test_fault_script_applies_one_fault_per_request(hub: MockHub) -> None:
    r = httpx.post(hub.url + "/_mock/faults", json=["503,retry-after=1", {"status": 429}])
    assert r.json() == {"queued": 2}
    assert [post(hub, "k").status_code for _ in range(3)] == [503, 429, 200]
    assert httpx.post(hub.url + "/_mock/faults", json=["nonsense"]).status_code == 400


def test_always_mode_and_reset(hub: MockHub) -> None:
    httpx.put(hub.url + "/_mock/always", json={"status": 503})
    assert post(hub, "k").status_code == 503
    httpx.put(hub.url + "/_mock/always", json={})
    assert post(hub, "k").status_code == 200
    httpx.post(hub.url + "/_mock/reset")
    assert hub.state.keys() == [] and hub.state.requests == []


def test_mhd_endpoint_unwraps_the_binary(hub: MockHub) -> None:
    from adapter.forwarding.mhd import provide_document_bundle

    wrapped = provide_document_bundle(BUNDLE, idempotency_key="k")
    r = httpx.post(hub.mhd_url, json=wrapped, headers={"Idempotency-Key": "k"})
    assert r.status_code == 200
    assert hub.state.received[0].kind == "mhd" and hub.state.received[0].bundle == BUNDLE
    assert httpx.post(hub.mhd_url, json=BUNDLE).status_code == 400


def test_toy_metahub_locator(hub: MockHub) -> None:
    assert httpx.post(hub.metahub_url, json={"ssin": "1"}).json() == {"hubs": [], "consentActive": True}
    httpx.put(hub.url + "/_mock/metahub", json={
        "default": {"hubs": ["cozo"], "consentActive": True},
        "persons": {"85073003328": {"hubs": [], "consentActive": False}},
    })
    assert httpx.post(hub.metahub_url, json={"ssin": "85073003328"}).json()["consentActive"] is False
    assert httpx.post(hub.metahub_url, json={"ssin": "2"}).json()["hubs"] == ["cozo"]
    assert hub.state.metahub_calls == 3


def test_restart_on_the_same_port_keeps_the_memory() -> None:
    with MockHub() as first:
        post(first, "before")
        port, state = first.port, first.state
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/fhir", json=BUNDLE, timeout=1)
    with MockHub(port=port, state=state) as second:
        post(second, "after")
        assert second.state.keys() == ["before", "after"]
