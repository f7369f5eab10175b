"""The app with the real validator and mapper (in-process, TestClient): findings, languages,
profiles from a Parameters, XML, and ``$map``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.fhirio import parse, to_xml
from adapter.service.app import create_app
from adapter.service.config import RateLimit, ServiceConfig
from adapter.validation import Validator
from tests.test_service_fakes import bundle

ROOT = Path(__file__).resolve().parents[1]
JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1)), validator=Validator())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _errors(oo: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in oo["issue"] if i["severity"] in ("error", "fatal")]


def _post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=data, headers={"Content-Type": JSON, **headers})


def test_valid_bundle_has_no_errors(client: TestClient) -> None:
    r = _post(client, "/fhir/$validate", bundle())
    assert r.status_code == 200
    assert _errors(r.json()) == []


def test_invalid_code_is_reported_with_its_path(client: TestClient) -> None:
    b = bundle()
    b["entry"][0]["resource"]["gender"] = "robot"
    r = _post(client, "/fhir/$validate", to_xml(b).encode(), **{"Content-Type": "application/fhir+xml"})
    assert r.status_code == 200
    oo = parse(r.content, "xml").resource
    assert any(i.get("expression") == ["Bundle.entry[0].resource.gender"] for i in _errors(oo))


def test_parameters_profile_is_applied(client: TestClient) -> None:
    episode = {"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": "Patient/1"}}
    plain = _post(client, "/fhir/$validate", episode)
    assert _errors(plain.json()) == []
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": episode},
        {"name": "profile", "valueCanonical": "https://becare.dev/fhir/StructureDefinition/becare-episodeofcare"},
    ]}
    profiled = _post(client, "/fhir/$validate", params)
    assert profiled.status_code == 200
    assert any("EpisodeOfCare.type" in i["details"]["text"] for i in _errors(profiled.json()))


def test_map_a_care_situation_document(client: TestClient) -> None:
    example = ROOT / "mappings" / "examples" / "care-coordination-remunerated-wallonia.json"
    r = client.post("/fhir/$map", content=example.read_bytes(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert out["resourceType"] == "Bundle" and out["type"] == "transaction"
    assert any(e["resource"]["resourceType"] == "EpisodeOfCare" for e in out["entry"])
    bad = client.post("/fhir/$map", content=b'{"person": 3}', headers={"Content-Type": "application/json"})
    assert bad.status_code == 422
    assert bad.json()["resourceType"] == "OperationOutcome"
