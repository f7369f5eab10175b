"""End to end: the real ``becare serve`` (a separate process, its delivery child included) and the
mock eHealth platform (STS, ETK depot, four hubs) on loopback.

What a vendor sees: POST a bundle for a person in Ghent, get a 202, and the Flemish hub ends with
exactly one signed, encrypted careplan transaction, blocked deliveries when consent or the
therapeutic link is missing, retries after hub faults, and no second put after a crash between
the put and its reply.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapter.forwarding.region import person_ssin
from adapter.kmehr import from_kmehr, schemas
from adapter.testing.ehealth.server import MockEHealthServer
from adapter.testing.service import BecareService

ROOT = Path(__file__).resolve().parent.parent
PASSWORD_ENV = "BECARE_TEST_EHEALTH_P12_PASSWORD"
SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"

pytestmark = pytest.mark.slow


def ghent_bundle(ssin: str | None = None) -> dict[str, Any]:
    """The Flemish care-coordination sample, for a person living in Ghent (9000)."""
    bundle = json.loads((ROOT / "samples" / "valid" / "flanders-care-coordination.json").read_text())
    bundle = copy.deepcopy(bundle)
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Patient":
            for address in res.get("address", []):
                address["postalCode"] = "9000"
                address["city"] = "Gent"
            if ssin:
                for ident in res["identifier"]:
                    if ident.get("system", "").endswith("/ssin"):
                        ident["value"] = ssin
    if ssin and "identifier" in bundle:
        bundle["identifier"]["value"] = f"{bundle['identifier'].get('value', 'b')}-{ssin[-4:]}"
    return bundle


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Platform:
    """The mock eHealth platform and its control API, as a test sees them."""

    def __init__(self, server: MockEHealthServer) -> None:
        self.server = server
        self.info = server.info()
        self.control = httpx.Client(base_url=f"{server.url}/_control", timeout=10)

    def consent(self, hub: str, inss: str, active: bool = True) -> None:
        self.control.put(f"/hubs/{hub}/consent/{inss}", json={"active": active}).raise_for_status()

    def link(self, hub: str, inss: str) -> None:
        party = {"ID-CBE": self.info["pki"]["org_cbe"]}
        self.control.put(f"/hubs/{hub}/therapeutic-links/{inss}",
                         json={"links": [{"hcparty": party}]}).raise_for_status()

    def faults(self, hub: str, *faults: str) -> None:
        self.control.post(f"/hubs/{hub}/faults", json={"faults": list(faults)}).raise_for_status()

    def transactions(self, hub: str) -> list[dict[str, Any]]:
        return list(self.control.get(f"/hubs/{hub}/transactions").json()["items"])

    def operations(self, hub: str) -> list[str]:
        return [r["operation"] for r in self.control.get(f"/hubs/{hub}/requests").json()["items"]]

    def requests(self, hub: str) -> list[dict[str, Any]]:
        return list(self.control.get(f"/hubs/{hub}/requests").json()["items"])

    def config(self, *, lease_seconds: float = 60.0) -> str:
        info = self.info
        hubs = {name: h for name, h in info["hubs"].items()}
        destinations = {
            f"hub-{name}": {
                "kind": "kmehr-hub", "url": h["url"], "timeout": 10,
                "hub": {"version": h["version"], "id": f"1999000{i}000", "name": f"{name} hub",
                        "etk": h["etk"]},
            }
            for i, (name, h) in enumerate(hubs.items())
        }
        config = {
            "service": {"rate_limit": {"per_second": 10000, "burst": 10000}},
            "outbox": {"poll_interval": 0.1, "backoff_base": 0.2, "backoff_cap": 1, "max_attempts": 6,
                       "sqlite_synchronous": "NORMAL", "lease_seconds": lease_seconds},
            "ehealth": {"certificate": info["pki"]["org_p12"], "password_env": PASSWORD_ENV,
                        "sts_url": info["sts"], "etk_url": info["etk"], "timeout": 10,
                        "organisation": {"cbe": info["pki"]["org_cbe"], "name": "Zorgorganisatie Gent"}},
            "destinations": destinations,
            "routing": {"by_region": {region: f"hub-{region}" for region in hubs}},
        }
        return json.dumps(config)  # JSON is YAML

    def close(self) -> None:
        self.control.close()


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    with MockEHealthServer(tmp_path / "ehealth") as server:
        p = Platform(server)
        monkeypatch.setenv(PASSWORD_ENV, p.info["pki"]["password"])
        yield p
        p.close()


@pytest.fixture
def service(tmp_path: Path, platform: Platform) -> Iterator[BecareService]:
    svc = BecareService(tmp_path / "becare", config=platform.config()).start()
    yield svc
    svc.stop()


def submit(svc: BecareService, bundle: dict[str, Any]) -> str:
    resp = svc.submit(bundle)
    assert resp.status_code == 202, resp.text
    return str(resp.headers["X-Delivery-Id"])


def wait_status(svc: BecareService, delivery_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    return dict(wait_for(lambda: (d := svc.delivery(delivery_id))["status"] == status and d,
                         timeout, f"delivery {delivery_id} {status}"))


def test_a_bundle_for_a_person_in_ghent_is_one_signed_careplan_at_the_flemish_hub(
    platform: Platform, service: BecareService
) -> None:
    bundle = ghent_bundle()
    inss = person_ssin(bundle)
    assert inss
    platform.consent("flanders", inss)
    platform.link("flanders", inss)

    delivery_id = submit(service, bundle)
    status = service.wait_delivered(delivery_id)
    assert status["destination"] == "hub-flanders" and status["region"] == "flanders"

    stored = platform.transactions("flanders")
    assert len(stored) == 1
    assert stored[0]["cds"] == ["careplan"]
    assert stored[0]["local_ids"] == [f"becare-{delivery_id}.1"]
    # signed by the organisation's certificate: the mock verified it and names the caller
    puts = [r for r in platform.requests("flanders") if r["operation"] == "PutTransaction"]
    assert len(puts) == 1 and puts[0]["status"] == 200
    assert f"CBE={platform.info['pki']['org_cbe']}" in puts[0]["caller"]
    assert platform.operations("flanders")[:2] == ["GetPatientConsent", "GetTherapeuticLink"]
    # no other hub got anything
    for other in ("wallonia", "brussels", "german-speaking"):
        assert platform.transactions(other) == []

    # what the hub holds, decrypted by the mock, is valid KMEHR of the hub's version and gives
    # back the bundle that was submitted
    hub = platform.server.hubs["flanders"]
    [held] = hub.stored(inss)
    message = etree.fromstring(held.message)
    kmehr_version = schemas.KMEHR_FOR_HUB[hub.hub_version]
    assert schemas.problems("kmehr", kmehr_version, message) == []
    [back] = from_kmehr(message)
    assert back == bundle


def test_without_consent_or_therapeutic_link_nothing_is_put_and_the_delivery_is_blocked(
    platform: Platform, service: BecareService
) -> None:
    no_consent = ghent_bundle("79021802145")
    no_link = ghent_bundle("85073003328")
    platform.consent("flanders", "85073003328")

    first = wait_status(service, submit(service, no_consent), "blocked")
    second = wait_status(service, submit(service, no_link), "blocked")
    assert "consent" in first["reason"] and "nothing was put" in first["reason"]
    assert "therapeutic link" in second["reason"]
    # the caller reads the same reason as an OperationOutcome on GET /deliveries/{id}
    assert second["outcome"]["resourceType"] == "OperationOutcome"
    assert second["outcome"]["issue"][0]["code"] == "business-rule"
    assert "therapeutic link" in second["outcome"]["issue"][0]["diagnostics"]
    assert "79021802145" not in first["reason"] + json.dumps(first["attemptLog"])
    assert "85073003328" not in second["reason"] + json.dumps(second["attemptLog"])
    assert "PutTransaction" not in platform.operations("flanders")
    assert platform.transactions("flanders") == []

    # once the link exists, the operator replays the blocked delivery and it goes through
    platform.link("flanders", "85073003328")
    replay = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "outbox", "retry", second["id"], "--db", service.db_url],
        capture_output=True, text=True, timeout=60, cwd=service.workdir,
    )
    assert replay.returncode == 0, replay.stderr
    service.wait_delivered(second["id"])
    assert len(platform.transactions("flanders")) == 1


def test_after_hub_faults_the_bundle_is_retried_and_stored_once(
    platform: Platform, service: BecareService
) -> None:
    bundle = ghent_bundle()
    inss = person_ssin(bundle)
    assert inss
    platform.consent("flanders", inss)
    platform.link("flanders", inss)
    platform.faults("flanders", "503,retry-after=1,op=PutTransaction", "fault=soap:Server,op=PutTransaction",
                    "drop,op=PutTransaction")

    delivery_id = submit(service, bundle)
    status = service.wait_delivered(delivery_id, timeout=60)
    outcomes = [a["outcome"] for a in status["attemptLog"]]
    assert outcomes[-1] == "delivered" and outcomes.count("retry") == 3
    assert len(platform.transactions("flanders")) == 1


def test_a_crash_between_the_put_and_its_reply_does_not_send_twice(
    tmp_path: Path, platform: Platform
) -> None:
    bundle = ghent_bundle()
    inss = person_ssin(bundle)
    assert inss
    platform.consent("flanders", inss)
    platform.link("flanders", inss)
    # the hub stores the transaction, then holds its reply: the sender is killed meanwhile
    platform.faults("flanders", "delay=8,op=PutTransaction")
    svc = BecareService(tmp_path / "becare", config=platform.config(lease_seconds=2)).start()
    try:
        delivery_id = submit(svc, bundle)
        wait_for(lambda: platform.transactions("flanders"), 30, "the hub to store the transaction")
        svc.kill()
        time.sleep(0.5)
        assert platform.transactions("flanders")  # the hub has it; the sender never heard back

        svc.start()
        status = svc.wait_delivered(delivery_id, timeout=60)
        assert status["attemptLog"][-1]["outcome"] == "delivered"
        assert any(a["outcome"] == "lease-expired" for a in status["attemptLog"])
    finally:
        svc.stop()
    time.sleep(8.5)  # let the held reply finish, so the hub's log is complete
    operations = platform.operations("flanders")
    assert operations.count("PutTransaction") == 1
    assert "GetTransactionList" in operations
    assert len(platform.transactions("flanders")) == 1
