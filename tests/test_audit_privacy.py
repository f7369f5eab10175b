"""The service's audit trail never keeps an SSIN in clear, whichever store holds it.

The audit ``what`` names the validated content (``Patient/<id>``, ``Bundle?identifier=...``),
and an id or identifier can be an SSIN. The outbox masked what it stored; the in-memory store
of a service without forwarding did not. Both are driven here through the real app and the
real validator, and the outbox's audit table is read back column by column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from adapter.outbox.store import Outbox
from adapter.service.app import create_app
from adapter.service.config import ApiKey, AuthConfig, RateLimit, ServiceConfig, hash_key
from adapter.validation import Validator

SSIN = "85073003328"
SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
KEYS = (
    ApiKey(id="vendor", sha256=hash_key("key-v")),
    ApiKey(id="auditor", sha256=hash_key("key-a"), scopes=frozenset({"audit"})),
)
CONFIG = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1), auth=AuthConfig(api_keys=KEYS))


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def _contents() -> list[dict[str, Any]]:
    """Content whose audit 'what' would carry the SSIN: a Patient with the SSIN as its id, a
    Bundle identified by it (typed with dots, too)."""
    patient = {
        "resourceType": "Patient",
        "id": SSIN,
        "identifier": [{"system": SSIN_SYSTEM, "value": SSIN}],
        "name": [{"family": "Peeters", "given": ["Jan"]}],
    }
    return [
        patient,
        {
            "resourceType": "Bundle",
            "type": "collection",
            "identifier": {"system": "urn:x", "value": SSIN},
            "entry": [{"fullUrl": "urn:uuid:0d7b6a3e-2f0e-4a43-9e4d-6d3f1e2b9a01", "resource": patient}],
        },
        {
            "resourceType": "Bundle",
            "type": "collection",
            "identifier": {"system": "urn:x", "value": "85.07.30-033.28"},
        },
    ]


def _validate_all(client: TestClient) -> str:
    for content in _contents():
        r = client.post(
            "/fhir/$validate",
            content=json.dumps(content).encode(),
            headers={"Content-Type": "application/fhir+json", "X-API-Key": "key-v"},
        )
        assert r.status_code == 200, r.text
    audit = client.get("/audit", headers={"X-API-Key": "key-a"})
    assert audit.status_code == 200
    whats = [
        e["resource"]["entity"][0]["what"]["identifier"]["value"]
        for e in audit.json()["entry"]
        if e["resource"].get("entity")
    ]
    assert "Patient/***********" in whats and "Bundle?identifier=urn:x|***********" in whats  # named, masked
    return audit.text


@pytest.fixture
def memory_client(validator: Validator) -> Iterator[TestClient]:
    with TestClient(create_app(CONFIG, validator=validator)) as client:
        yield client


def test_in_memory_audit_masks_ssins(memory_client: TestClient) -> None:
    text = _validate_all(memory_client)
    assert SSIN not in text and "85.07.30-033.28" not in text and "Peeters" not in text


def test_outbox_audit_columns_hold_no_ssin(validator: Validator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    box = Outbox(url)
    try:
        with TestClient(create_app(CONFIG, validator=validator, outbox=box)) as client:
            text = _validate_all(client)
    finally:
        box.close()
    assert SSIN not in text
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("select who, what, detail from audit_events")).all()
    finally:
        engine.dispose()
    assert len(rows) == 3
    values = [v for row in rows for v in row if v is not None]
    assert not [v for v in values if SSIN in v or "85.07.30-033.28" in v or "Peeters" in v]
