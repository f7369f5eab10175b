"""A vendor's integration tests against the real becare service and the recording mock hub.

tests/test_plugin.py copies this file into a scratch project (as ``test_service.py``) next to a
``bundles/`` folder and runs it in a subprocess. The last test fails on purpose.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapter.testing.hub import HubHandle
    from adapter.testing.service import BecareService

BUNDLES = Path(__file__).parent / "bundles"
VALID = BUNDLES / "valid" / "flanders-care-coordination.json"
OTHER_VALID = BUNDLES / "valid" / "wallonia-case-management.json"
BROKEN_TEAM = BUNDLES / "broken" / "team-without-person.json"


def _ssin(bundle: dict[str, Any]) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return str(patient["identifier"][0]["value"])


def test_accepted_bundle_reaches_the_hub(becare_service: BecareService, mock_hub: HubHandle) -> None:
    sent = json.loads(VALID.read_text(encoding="utf-8"))
    resp = becare_service.submit(sent)
    assert resp.status_code == 202, resp.text
    status = becare_service.wait_delivered(resp.headers["X-Delivery-Id"])
    [arrived] = mock_hub.wait_for(delivery=status)
    assert _ssin(arrived.bundle) == _ssin(sent)
    assert len(arrived.bundle["entry"]) == len(sent["entry"])


def test_invalid_bundle_gets_422_and_is_not_forwarded(
    becare_service: BecareService, mock_hub: HubHandle
) -> None:
    resp = becare_service.submit(BROKEN_TEAM, lang="fr")
    assert resp.status_code == 422
    codes = [c["code"] for i in resp.json()["issue"] for c in i.get("details", {}).get("coding", [])]
    assert "IC-TEAM-1" in codes
    time.sleep(1.0)  # give a wrong forwarder every chance
    assert mock_hub.received() == []


def test_hub_outage_is_retried(becare_service: BecareService, mock_hub: HubHandle) -> None:
    mock_hub.fail_next("503,retry-after=0", "500")
    resp = becare_service.submit(OTHER_VALID)
    assert resp.status_code == 202, resp.text
    status = becare_service.wait_delivered(resp.headers["X-Delivery-Id"])
    assert status["attempts"] == 3
    assert len(mock_hub.wait_for(delivery=status)) == 1
    faults = [r["fault"]["status"] for r in mock_hub.state.requests if r["fault"]]
    assert faults == [503, 500]


def test_validate_endpoint(becare_service: BecareService) -> None:
    resp = becare_service.validate(BROKEN_TEAM)
    assert resp.status_code == 200
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_vendor_expects_broken_bundle_accepted(becare_service: BecareService) -> None:
    assert becare_service.submit(BROKEN_TEAM).status_code == 202  # fails on purpose: it gets 422
