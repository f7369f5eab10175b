"""The FastAPI service through TestClient: endpoints, negotiation, limits, errors, auth, audit.

The validator is a fake with real parsing (tests/test_service_fakes.py); the outbox and router are the
real ones on a temporary SQLite file, so acceptance is tested down to the stored row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from adapter.fhirio import parse, to_xml
from adapter.forwarding.routing import Router
from adapter.forwarding.settings import settings_from_dict
from adapter.outbox.store import Outbox
from adapter.service.app import create_app
from adapter.service.capability import PROFILE_IDS, profile_url
from adapter.service.config import (
    ApiKey,
    AuthConfig,
    JwtConfig,
    RateLimit,
    ServiceConfig,
    hash_key,
)
from tests.test_service_fakes import FakeValidator, RecordingRegistry, bundle

JSON = "application/fhir+json"
XML = "application/fhir+xml"
SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret-42"
NO_LIMIT = RateLimit(per_second=0, burst=1)


def _config(**kw: Any) -> ServiceConfig:
    kw.setdefault("rate_limit", NO_LIMIT)
    return ServiceConfig(**kw)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield box
    box.close()


@pytest.fixture
def router() -> Router:
    return Router(settings_from_dict({"destinations": {"hub": {"url": "http://127.0.0.1:9/fhir"}},
                                      "routing": {"default": "hub"}}))


class _client:
    """TestClient that also waits for the warm-up, then forgets the warm-up's validator call."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = TestClient(app, raise_server_exceptions=False)

    def __enter__(self) -> TestClient:
        self.client.__enter__()
        state = self.app.state.becare
        deadline = time.monotonic() + 10
        while not state.warm.is_set() and not state.warm_error and time.monotonic() < deadline:
            time.sleep(0.01)
        calls = getattr(state.validator, "calls", None)
        if calls is not None:
            calls.clear()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)


@pytest.fixture
def service(outbox: Outbox, router: Router) -> Iterator[tuple[TestClient, FakeValidator, RecordingRegistry]]:
    validator = FakeValidator()
    registry = RecordingRegistry()
    app = create_app(_config(), validator=validator, outbox=outbox, router=router, registry=registry)
    with _client(app) as client:
        yield client, validator, registry


def _post(client: TestClient, path: str, body: Any, ctype: str = JSON, **kw: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": ctype, **kw.pop("headers", {})}
    return client.post(path, content=data, headers=headers, **kw)


def _texts(oo: dict[str, Any]) -> list[str]:
    return [i["details"]["text"] for i in oo["issue"]]


def _severities(oo: dict[str, Any]) -> list[str]:
    return [i["severity"] for i in oo["issue"]]


# -- $validate -------------------------------------------------------------------------------------
def test_validate_valid_and_invalid_both_200(service: Any) -> None:
    client, _, _ = service
    for path in ("/fhir/$validate", "/fhir/Bundle/$validate"):
        ok = _post(client, path, bundle())
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith(JSON)
        assert "error" not in _severities(ok.json())
        bad = _post(client, path, bundle(valid=False))
        assert bad.status_code == 200
        oo = bad.json()
        assert oo["resourceType"] == "OperationOutcome"
        assert "error" in _severities(oo)
        assert any(i.get("expression") == ["Bundle.type"] for i in oo["issue"] if i["severity"] == "error")


def test_validate_parameters_form_unwraps_resource_and_profiles(service: Any) -> None:
    client, validator, _ = service
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": bundle(valid=False)},
            {"name": "profile", "valueUri": "https://becare.dev/fhir/StructureDefinition/becare-bundle"},
        ],
    }
    r = _post(client, "/fhir/$validate", params)
    assert r.status_code == 200
    inner, options = validator.calls[-1]
    assert inner["resourceType"] == "Bundle"
    assert options.profiles == ("https://becare.dev/fhir/StructureDefinition/becare-bundle",)
    assert "error" in _severities(r.json())  # the inner bundle's findings, not the Parameters'


def test_parameters_with_profile_but_no_resource_is_400(service: Any) -> None:
    client, _, _ = service
    params = {"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": "urn:x"}]}
    r = _post(client, "/fhir/$validate", params)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_language_region_and_q_values_reach_the_validator(service: Any) -> None:
    client, validator, _ = service
    r = _post(client, "/fhir/$validate?region=wallonia", bundle(valid=False),
              headers={"Accept-Language": "de;q=0.4, nl-BE;q=0.9, en;q=0.1"})
    assert r.status_code == 200
    _, options = validator.calls[-1]
    assert options.lang == "nl"
    assert options.region == "wallonia"
    assert any(t.startswith("[nl]") for t in _texts(r.json()))


def test_unknown_region_is_400_in_the_callers_language(service: Any) -> None:
    client, validator, _ = service
    r = _post(client, "/fhir/$validate?region=atlantis", bundle(), headers={"Accept-Language": "fr"})
    assert r.status_code == 400
    assert "Région inconnue" in _texts(r.json())[0]
    assert validator.calls == []


def test_xml_in_xml_out_and_format_overrides(service: Any) -> None:
    client, _, _ = service
    xml = to_xml(bundle(valid=False)).encode()
    r = _post(client, "/fhir/$validate", xml, ctype=XML)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(XML)
    oo = parse(r.content, "xml").resource
    assert oo["resourceType"] == "OperationOutcome"
    assert "error" in _severities(oo)
    # Accept beats the body's format; _format beats Accept
    r = _post(client, "/fhir/$validate", xml, ctype=XML, headers={"Accept": "application/fhir+json"})
    assert r.headers["content-type"].startswith(JSON)
    r = _post(client, "/fhir/$validate?_format=xml", bundle(), headers={"Accept": JSON})
    assert r.headers["content-type"].startswith(XML)
    r = _post(client, "/fhir/$validate?_format=application/fhir+xml", bundle())
    assert r.headers["content-type"].startswith(XML)


def test_bad_format_parameter_is_400(service: Any) -> None:
    client, _, _ = service
    r = _post(client, "/fhir/$validate?_format=html", bundle())
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported"


def test_unsupported_media_type_is_415(service: Any) -> None:
    client, validator, _ = service
    r = _post(client, "/fhir/$validate", b"hello", ctype="text/plain", headers={"Accept-Language": "nl"})
    assert r.status_code == 415
    assert "Niet-ondersteund mediatype text/plain" in _texts(r.json())[0]
    assert validator.calls == []


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        (b"{not json", JSON, 400, "invalid"),
        (b"\x00\xff\xfe garbage", JSON, 400, "invalid"),
        (b"[" * 5000 + b"]" * 5000, JSON, 413, "too-costly"),
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, JSON, 413, "too-costly"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><Bundle xmlns="http://hl7.org/fhir">&e;</Bundle>',
         XML, 400, "security"),
        (b"<Bundle xmlns='http://hl7.org/fhir'><type value='x'/>", XML, 400, "invalid"),
    ],
)
def test_unparseable_input_gets_a_4xx_outcome(service: Any, body: bytes, ctype: str, status: int,
                                              code: str) -> None:
    client, _, _ = service
    started = time.perf_counter()
    r = _post(client, "/fhir/$validate", body, ctype=ctype, headers={"Accept": JSON})
    assert time.perf_counter() - started < 2.0
    assert r.status_code == status, r.text
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["severity"] == "fatal"
    assert oo["issue"][0]["code"] == code
    assert "Traceback" not in r.text


def test_empty_body_is_400(service: Any) -> None:
    client, _, _ = service
    r = _post(client, "/fhir/$validate", b"")
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "required"


def test_oversize_body_is_413_before_parsing(outbox: Outbox, router: Router) -> None:
    validator = FakeValidator()
    app = create_app(_config(max_body_bytes=2000), validator=validator, outbox=outbox, router=router)
    with _client(app) as client:
        big = json.dumps({**bundle(), "padding": "x" * 5000}).encode()
        r = _post(client, "/fhir/$validate", big)
        assert r.status_code == 413
        assert "2000" in _texts(r.json())[0]

        def chunks() -> Iterator[bytes]:  # no Content-Length: caught while streaming
            for _ in range(10):
                yield b" " * 500

        r = client.post("/fhir/$validate", content=chunks(), headers={"Content-Type": JSON})
        assert r.status_code == 413
        assert validator.calls == []
        small = _post(client, "/fhir/$validate", bundle())
        assert small.status_code == 200


# -- acceptance ------------------------------------------------------------------------------------
def test_accept_valid_bundle_202_location_and_status(service: Any, outbox: Outbox) -> None:
    client, _, registry = service
    r = _post(client, "/fhir", bundle("acc-1"))
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    delivery_id = r.headers["x-delivery-id"]
    assert location == f"/deliveries/{delivery_id}"
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert any(i.get("diagnostics") == delivery_id for i in oo["issue"])
    stored = outbox.get(delivery_id)
    assert stored is not None and stored.status == "pending"
    assert outbox.payload(delivery_id)["identifier"]["value"] == "acc-1"
    status = client.get(location)
    assert status.status_code == 200
    body = status.json()
    assert body["id"] == delivery_id and body["status"] == "pending"
    assert "attemptLog" in body and "payload" not in body
    assert registry.recorded and registry.recorded[0][1] == "ip:testclient"


def test_accept_is_idempotent_by_bundle_identifier(service: Any, outbox: Outbox) -> None:
    client, _, _ = service
    first = _post(client, "/fhir/Bundle", bundle("same"))
    again = _post(client, "/fhir/Bundle", bundle("same"))
    assert first.status_code == again.status_code == 202
    assert first.headers["x-delivery-id"] == again.headers["x-delivery-id"]
    assert sum(outbox.counts().values()) == 1


def test_changed_bundle_under_an_accepted_identifier_is_409_not_dropped(service: Any, outbox: Outbox) -> None:
    client, _, _ = service
    first = _post(client, "/fhir", bundle("reused"))
    assert first.status_code == 202
    changed = bundle("reused", family="Janssens")
    again = _post(client, "/fhir", changed, headers={"Accept-Language": "nl"})
    assert again.status_code == 409, again.text
    oo = again.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["code"] == "conflict"
    assert first.headers["x-delivery-id"] in again.text and "eigen identifier" in again.text
    assert sum(outbox.counts().values()) == 1
    assert outbox.payload(first.headers["x-delivery-id"]) == bundle("reused")


def test_invalid_bundle_is_422_and_never_stored(service: Any, outbox: Outbox) -> None:
    client, _, registry = service
    r = _post(client, "/fhir", bundle("bad", valid=False), headers={"Accept-Language": "fr"})
    assert r.status_code == 422
    oo = r.json()
    assert "error" in _severities(oo)
    assert any("n'a pas été accepté" in t for t in _texts(oo))
    assert "location" not in r.headers
    assert sum(outbox.counts().values()) == 0
    assert registry.recorded == []


def test_accept_non_bundle_is_400(service: Any, outbox: Outbox) -> None:
    client, _, _ = service
    r = _post(client, "/fhir", {"resourceType": "Patient", "id": "p"})
    assert r.status_code == 400
    assert "Patient" in _texts(r.json())[0]
    assert sum(outbox.counts().values()) == 0


def test_unknown_explicit_destination_is_400(service: Any, outbox: Outbox) -> None:
    client, _, _ = service
    r = _post(client, "/fhir?destination=nowhere", bundle("dest"))
    assert r.status_code == 400
    assert "nowhere" in _texts(r.json())[0]
    assert sum(outbox.counts().values()) == 0


def test_unknown_delivery_is_404_outcome(service: Any) -> None:
    client, _, _ = service
    r = client.get("/deliveries/does-not-exist")
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-found"


def test_validate_only_service_refuses_acceptance_with_503() -> None:
    app = create_app(_config(), validator=FakeValidator())
    with _client(app) as client:
        r = _post(client, "/fhir", bundle())
        assert r.status_code == 503
        assert r.json()["resourceType"] == "OperationOutcome"


# -- discovery, health, metrics --------------------------------------------------------------------
def test_metadata_lists_profiles_and_operations(service: Any) -> None:
    client, _, _ = service
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    profiles = {p for res in cs["rest"][0]["resource"] for p in res["supportedProfile"]}
    assert profiles == {profile_url(p) for p in PROFILE_IDS}
    assert all(p.startswith("https://becare.dev/fhir/StructureDefinition/becare-") for p in profiles)
    assert {op["name"] for op in cs["rest"][0]["operation"]} == {"validate", "map"}
    xml = client.get("/fhir/metadata?_format=xml")
    assert xml.headers["content-type"].startswith(XML)
    assert parse(xml.content, "xml").resource["resourceType"] == "CapabilityStatement"


def test_health_ready_and_openapi(service: Any) -> None:
    client, _, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "validator": "ok"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/fhir/$validate" in paths and "/fhir" in paths


def test_readyz_503_when_database_unreachable(outbox: Outbox, router: Router) -> None:
    class DownOutbox:
        def ping(self) -> bool:
            return False

        def counts(self) -> dict[str, int]:
            raise RuntimeError("down")

    app = create_app(_config(), validator=FakeValidator(), outbox=DownOutbox(), router=router,
                     audit_store=outbox)
    with _client(app) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] == "unreachable"
        assert client.get("/metrics").status_code == 200  # a scrape survives the database


def test_readyz_reports_a_validator_that_failed_to_load() -> None:
    app = create_app(_config(), validator=FakeValidator(fail=RuntimeError("profiles missing")))
    with _client(app) as client:
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["checks"]["validator"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["validator"] == "failed"


def test_metrics_count_requests_verdicts_and_deliveries(service: Any) -> None:
    client, _, _ = service
    _post(client, "/fhir/$validate", bundle())
    _post(client, "/fhir/$validate", bundle(valid=False))
    _post(client, "/fhir/$validate", b"{oops")
    _post(client, "/fhir", bundle("m-1"))
    text = client.get("/metrics").text
    assert 'becare_validations_total{verdict="valid"} 2.0' in text  # one $validate, one accept
    assert 'becare_validations_total{verdict="invalid"} 1.0' in text
    assert 'becare_validations_total{verdict="unparseable"} 1.0' in text
    assert 'becare_deliveries{status="pending"} 1.0' in text
    assert 'becare_http_requests_total{method="POST",route="/fhir/$validate",status="200"} 2.0' in text
    assert 'becare_http_request_seconds_count{route="/fhir"}' in text


# -- errors never leak -----------------------------------------------------------------------------
def test_internal_error_is_500_outcome_without_traceback(outbox: Outbox, router: Router,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    secret = "db password hunter2 at /srv/secret.py line 42"
    validator = FakeValidator()
    app = create_app(_config(), validator=validator, outbox=outbox, router=router)
    with _client(app) as client:
        validator.fail = RuntimeError(secret)
        r = _post(client, "/fhir/$validate", bundle(), headers={"Accept-Language": "de"})
    assert r.status_code == 500
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert "Interner Fehler" in _texts(oo)[0]
    assert "hunter2" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert any("unhandled error" in rec.getMessage() for rec in caplog.records)


def test_slow_request_times_out_with_503(outbox: Outbox, router: Router) -> None:
    validator = FakeValidator()
    app = create_app(_config(request_timeout=0.3), validator=validator, outbox=outbox, router=router)
    with _client(app) as client:
        validator.delay = 1.0
        started = time.perf_counter()
        r = _post(client, "/fhir/$validate", bundle())
        assert time.perf_counter() - started < 0.9
        assert r.status_code == 503
        assert r.json()["issue"][0]["code"] == "timeout"


def test_unknown_route_and_wrong_method_are_outcomes(service: Any) -> None:
    client, _, _ = service
    r = client.get("/nope", headers={"Accept-Language": "fr"})
    assert r.status_code == 404
    assert "Introuvable" in _texts(r.json())[0]
    r = client.get("/fhir/$validate")
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.get("/audit?_count=lots")
    assert r.status_code in (400, 403)
    assert r.json()["resourceType"] == "OperationOutcome"


# -- rate limit ------------------------------------------------------------------------------------
def test_rate_limit_429_with_retry_after(outbox: Outbox, router: Router) -> None:
    app = create_app(ServiceConfig(rate_limit=RateLimit(per_second=0.5, burst=2)), validator=FakeValidator(),
                     outbox=outbox, router=router)
    with _client(app) as client:
        codes = [_post(client, "/fhir/$validate", bundle()).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = _post(client, "/fhir/$validate", bundle())
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["issue"][0]["code"] == "throttled"
        assert client.get("/healthz").status_code == 200  # health is never throttled


# -- authentication and audit ----------------------------------------------------------------------
def _auth_config(**jwt_kw: Any) -> ServiceConfig:
    keys = (
        ApiKey(id="vendor-a", sha256=hash_key("key-a")),
        ApiKey(id="auditor", sha256=hash_key("key-audit"), scopes=frozenset({"audit"})),
    )
    return _config(auth=AuthConfig(api_keys=keys, jwt=JwtConfig(**jwt_kw)))


def test_api_keys_401_403_and_audit_trail(outbox: Outbox, router: Router) -> None:
    app = create_app(_auth_config(), validator=FakeValidator(), outbox=outbox, router=router)
    with _client(app) as client:
        r = _post(client, "/fhir/$validate", bundle())
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["issue"][0]["code"] == "login"
        assert _post(client, "/fhir/$validate", bundle(), headers={"X-API-Key": "wrong"}).status_code == 401
        ok = _post(client, "/fhir/$validate", bundle(), headers={"X-API-Key": "key-a"})
        assert ok.status_code == 200
        acc = _post(client, "/fhir", bundle("aud-1"), headers={"Authorization": "ApiKey key-a"})
        assert acc.status_code == 202
        _post(client, "/fhir", bundle("aud-2", valid=False), headers={"X-API-Key": "key-a"})
        # the vendor key cannot read the audit trail; the auditor key cannot submit
        assert client.get("/audit", headers={"X-API-Key": "key-a"}).status_code == 403
        assert _post(client, "/fhir", bundle(), headers={"X-API-Key": "key-audit"}).status_code == 403
        audit = client.get("/audit", headers={"X-API-Key": "key-audit"})
        assert audit.status_code == 200
        events = [e["resource"] for e in audit.json()["entry"]]
        assert all(e["resourceType"] == "AuditEvent" for e in events)
        actions = [(e["subtype"][0]["code"], e["agent"][0]["who"]["display"], e["outcome"]) for e in events]
        assert ("validate", "key:vendor-a", "0") in actions
        assert ("accept", "key:vendor-a", "0") in actions
        assert ("accept", "key:vendor-a", "4") in actions  # the rejected one
        assert "Peeters" not in audit.text and "85073003328" not in audit.text
        xml = client.get("/audit?_format=xml", headers={"X-API-Key": "key-audit"})
        assert parse(xml.content, "xml").resource["resourceType"] == "Bundle"


def test_audit_needs_authentication_configured(service: Any) -> None:
    client, _, _ = service
    r = client.get("/audit")
    assert r.status_code == 403


def _token(key: Any, alg: str, **claims: Any) -> str:
    payload = {"sub": "platform-x", "exp": datetime.now(UTC) + timedelta(minutes=5), **claims}
    return jwt.encode(payload, key, algorithm=alg)


def test_jwt_hs256_checked_against_the_secret(outbox: Outbox, router: Router) -> None:
    app = create_app(_auth_config(hs256_secret=SECRET, audience="becare"), validator=FakeValidator(),
                     outbox=outbox, router=router)
    with _client(app) as client:
        def call(token: str) -> int:
            return call_with(client, token)

        assert call(_token(SECRET, "HS256", aud="becare")) == 200
        assert call(_token(SECRET, "HS256", aud="other")) == 401
        assert call(_token("x" * 40, "HS256", aud="becare")) == 401
        expired = _token(SECRET, "HS256", aud="becare", exp=datetime.now(UTC) - timedelta(hours=1))
        assert call(expired) == 401
        unsigned = jwt.encode({"sub": "x", "aud": "becare", "exp": 4102444800}, None, algorithm="none")
        assert call(unsigned) == 401
        assert call("not.a.token") == 401
        scoped = _token(SECRET, "HS256", aud="becare", scope="read")
        assert call(scoped) == 403


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_jwt_public_keys_rs256_es256(outbox: Outbox, router: Router, kind: str) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    alg = "RS256" if kind == "rsa" else "ES256"
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    other = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    app = create_app(_auth_config(public_keys=(pem,)), validator=FakeValidator(), outbox=outbox,
                     router=router)
    with _client(app) as client:
        assert call_with(client, _token(private, alg)) == 200
        assert call_with(client, _token(other, alg)) == 401
        # HS256 "signed" with the public key text must not pass (algorithm confusion)
        assert call_with(client, _hs256_with_key_text(pem)) == 401


def call_with(client: TestClient, token: str) -> int:
    r = _post(client, "/fhir/$validate", bundle(), headers={"Authorization": f"Bearer {token}"})
    return int(r.status_code)


def _hs256_with_key_text(pem: str) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "attacker", "exp": 4102444800}).encode())
    sig = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# -- $map ------------------------------------------------------------------------------------------
def test_map_with_injected_mapper_and_problems(outbox: Outbox, router: Router) -> None:
    class Problem:
        def __init__(self, pointer: str, message: str) -> None:
            self.pointer, self.message = pointer, message

    class DocumentError(Exception):
        def __init__(self) -> None:
            super().__init__("bad")
            self.problems = [Problem("/person/ssin", "required field is missing")]

    def mapper(data: bytes, fmt: str | None) -> dict[str, Any]:
        doc = json.loads(data) if fmt == "json" else {}
        if "person" not in doc:
            raise DocumentError()
        return bundle(doc["person"])

    app = create_app(_config(), validator=FakeValidator(), outbox=outbox, router=router, mapper=mapper)
    with _client(app) as client:
        ok = client.post("/fhir/$map", content=b'{"person": "p-1"}',
                         headers={"Content-Type": "application/json"})
        assert ok.status_code == 200
        assert ok.json()["identifier"]["value"] == "p-1"
        xml = client.post("/fhir/$map?_format=xml", content=b'{"person": "p-1"}',
                          headers={"Content-Type": "application/json"})
        assert parse(xml.content, "xml").resource["resourceType"] == "Bundle"
        bad = client.post("/fhir/$map", content=b"{}", headers={"Content-Type": "application/json"})
        assert bad.status_code == 422
        issue = bad.json()["issue"][0]
        assert issue["expression"] == ["/person/ssin"] and issue["severity"] == "error"
