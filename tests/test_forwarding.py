"""Forwarding units: region, settings, routing, backoff, and the HTTP clients (respx)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import ssl
from pathlib import Path

import httpx
import pytest
import respx

from adapter.forwarding import (
    ConfigError,
    Forwarder,
    RouteDecision,
    Router,
    RoutingError,
    bundle_region,
    load_settings,
    person_ssin,
    region_for_postal_code,
)
from adapter.forwarding.backoff import full_jitter, parse_retry_after, retry_delay
from adapter.forwarding.destinations import (
    DeliveryResult,
    FhirRestDestination,
    MhdDestination,
    classify,
    header_key,
    ssl_verify,
)
from adapter.forwarding.metahub import MetahubError, parse_answer
from adapter.forwarding.mhd import PROVIDE_BUNDLE_PROFILE, provide_document_bundle, unwrap
from adapter.forwarding.settings import AuthConfig, DestinationConfig, settings_from_dict
from adapter.outbox import Outbox, idempotency_key
from adapter.rules import UnknownRegionError, check_rulebook

# Delivery and the metahub client run on our stdlib transport (adapter/forwarding/transport.py),
# not httpcore: respx answers at the httpx client (metahub) or as the destination's transport.
mock_http = respx.mock(using="httpx")

ROOT = Path(__file__).resolve().parent.parent
SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
SSIN = "85073003328"


def care_bundle(postal: str | None = "9000", *, ssin: str | None = SSIN, region_ext: str | None = None,
                btype: str = "transaction", ident: str = "b-1") -> dict:
    patient: dict = {"resourceType": "Patient", "id": "p1"}
    if ssin:
        patient["identifier"] = [{"system": SSIN_SYSTEM, "value": ssin}]
    if postal:
        patient["address"] = [{"use": "work", "postalCode": "1000"}, {"use": "home", "postalCode": postal}]
    episode: dict = {"resourceType": "EpisodeOfCare", "status": "active",
                     "patient": {"reference": "urn:uuid:p1"}}
    if region_ext:
        episode["extension"] = [{"url": "https://becare.dev/fhir/StructureDefinition/ext-region",
                                 "valueCoding": {"code": region_ext}}]
    return {
        "resourceType": "Bundle", "type": btype, "identifier": {"system": "urn:test", "value": ident},
        "entry": [
            {"fullUrl": "urn:uuid:other", "resource": {"resourceType": "Patient", "id": "other",
                                                       "address": [{"postalCode": "4700"}]}},
            {"fullUrl": "urn:uuid:p1", "resource": patient},
            {"fullUrl": "urn:uuid:e1", "resource": episode},
        ],
    }


# -- region ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "region"),
    [
        ("1000", "brussels"), ("1299", "brussels"), ("1300", "wallonia"), ("1499", "wallonia"),
        ("1500", "flanders"), ("3999", "flanders"), ("4000", "wallonia"), ("4699", "wallonia"),
        ("4700", "german-speaking"), ("4791", "german-speaking"), ("4792", "wallonia"), ("7999", "wallonia"),
        ("8000", "flanders"), ("9999", "flanders"), ("0999", None), ("B-9000", "flanders"), ("90000", None),
        ("", None), (None, None), ("abcd", None),
    ],
)
def test_region_for_postal_code_follows_the_contract(code: str | None, region: str | None) -> None:
    assert region_for_postal_code(code) == region


def test_bundle_region_order_explicit_then_extension_then_postal_code() -> None:
    assert bundle_region(care_bundle("9000")) == "flanders"  # home address of the episode's patient
    assert bundle_region(care_bundle("9000", region_ext="wallonia")) == "wallonia"
    assert bundle_region(care_bundle("9000", region_ext="wallonia"), "brussels") == "brussels"
    assert bundle_region(care_bundle(None)) is None
    assert person_ssin(care_bundle()) == SSIN
    assert person_ssin(care_bundle(ssin=None)) is None


def test_region_reading_follows_the_contract_on_the_edges() -> None:
    """Another Patient never lends its postal code; an address abroad or marked ``old`` is not
    where the person lives; an ext-region from another code system is not our region."""
    assert bundle_region(care_bundle(None)) is None  # the other Patient lives in 4700
    abroad = care_bundle("9000")
    abroad["entry"][1]["resource"]["address"][1]["country"] = "NL"
    assert bundle_region(abroad) == "brussels"  # the work address in Belgium is the next one
    moved = care_bundle("9000")
    moved["entry"][1]["resource"]["address"][1]["use"] = "old"
    assert bundle_region(moved) == "brussels"
    foreign = care_bundle("9000", region_ext="wallonia")
    foreign["entry"][2]["resource"]["extension"][0]["valueCoding"]["system"] = "urn:other"
    assert bundle_region(foreign) == "flanders"
    assert bundle_region(care_bundle("B-4700")) == "german-speaking"
    assert bundle_region(care_bundle("9000"), "Wallonie") == "wallonia"  # names in our languages
    with pytest.raises(UnknownRegionError):
        bundle_region(care_bundle(), "atlantis")
    spaced = care_bundle(ssin="85.07.30-033.28")
    assert person_ssin(spaced) == SSIN


def test_routing_and_rulebook_agree_on_every_sample() -> None:
    samples = sorted((ROOT / "samples").rglob("*.json"))
    assert len(samples) > 20
    for path in samples:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        expected = check_rulebook(bundle, region=None, lang="en").region
        assert bundle_region(bundle) == expected, path.name
        without_ext = json.loads(json.dumps(bundle))
        for entry in without_ext.get("entry", []):
            entry["resource"].pop("extension", None)
        assert bundle_region(without_ext) == check_rulebook(without_ext, region=None, lang="en").region


def test_router_rejects_an_unknown_region_as_the_callers_mistake() -> None:
    with pytest.raises(RoutingError) as err:
        Router(routed_settings()).route(care_bundle(), region="atlantis")
    assert err.value.code == "invalid" and err.value.problems
    assert err.value.problems[0].pointer == "region" and "atlantis" in err.value.message


# -- settings ----------------------------------------------------------------------------------
def test_forward_to_alone_makes_one_fhir_rest_destination() -> None:
    s = load_settings(None, forward_to="http://127.0.0.1:9/fhir/", db_url="sqlite:///x.db")
    assert list(s.destinations) == ["forward-to"]
    assert s.destinations["forward-to"].kind == "fhir-rest"
    assert s.destinations["forward-to"].url == "http://127.0.0.1:9/fhir"
    assert s.db_url == "sqlite:///x.db"
    assert Router(s).route(care_bundle()) == RouteDecision(("forward-to",), "default", "flanders")


def test_no_config_means_no_forwarding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BECARE_CONFIG", raising=False)
    s = load_settings(None, forward_to=None, db_url=None)
    assert not s.forwarding_enabled and s.db_url == "sqlite:///becare.db"
    decision = Router(s).route(care_bundle())
    assert decision.destinations == () and "not configured" in (decision.reason or "")


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for serial, who in ((2, "client"), (3, "server")):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(f"becare {who}")).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(serial)
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1)))
        if who == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        files[f"{who}_cert"] = folder / f"{who}.pem"
        files[f"{who}_key"] = folder / f"{who}.key"
        files[f"{who}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{who}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files["cert"], files["key"] = files["client_cert"], files["client_key"]
    return files


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    return make_tls_files(tmp_path)


def test_the_documented_example_config_loads(tmp_path: Path, tls_files: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "config-example.yaml").read_text()
    text = (text.replace("/etc/becare/tls/client.pem", str(tls_files["cert"]))
            .replace("/etc/becare/tls/client.key", str(tls_files["key"]))
            .replace("/etc/becare/tls/ca.pem", str(tls_files["ca"]))
            .replace("/etc/becare/ehealth/organisation.p12", str(tls_files["cert"])))
    path = tmp_path / "becare.yaml"
    path.write_text(text)
    monkeypatch.setenv("BECARE_CONFIG", str(path))
    monkeypatch.setenv("FLANDERS_TOKEN", "secret-token")
    s = load_settings(None, forward_to=None, db_url=None)
    assert s.source == str(path)
    assert set(s.destinations) == {"flanders-platform", "wallonia-platform", "brussels-hub",
                                   "hub-cozo", "hub-vzn", "hub-rsw", "hub-abrumet"}
    assert s.destinations["brussels-hub"].kind == "mhd"
    assert s.routing.region_targets("german-speaking") == ["wallonia-platform", "hub-rsw"]
    assert s.metahub is not None and s.metahub.hubs == {"abrumet": "brussels-hub", "vzn": "hub-vzn"}
    # one hub per region, each signing with the organisation's one eHealth identity
    hubs = {n: d for n, d in s.destinations.items() if d.kind == "kmehr-hub"}
    assert {d.hub.name for d in hubs.values() if d.hub} == {"CoZo", "VZN", "RSW", "Abrumet"}
    assert all(d.ehealth == s.ehealth and "PLACEHOLDER" in d.url for d in hubs.values())
    assert {d.hub.version for d in hubs.values() if d.hub} == {"3.2", "3.5"}
    assert s.destinations["flanders-platform"].auth.token() == "secret-token"
    ctx = ssl_verify(s.destinations["wallonia-platform"].auth)
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "test ca"),),)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"destinations": {"a": {"url": "ftp://x"}}}, "destinations.a.url: must be an http(s) URL"),
        ({"destinations": {"a": {"kind": "kmehr", "url": "http://x"}}}, "unknown kind 'kmehr'"),
        ({"destinations": {"a": {"url": "http://x", "colour": 1}}}, "destinations.a.colour: Extra inputs"),
        ({"routing": {"default": "nowhere"}}, "routing.default: unknown destination 'nowhere'"),
        ({"destinations": {"a": {"url": "http://x"}}, "routing": {"by_region": {"mars": "a"}}},
         "unknown region 'mars'"),
        ({"destinations": {"a": {"url": "http://x", "auth": {"client_cert": "/nonexistent.pem"}}}},
         "client_cert: file not found"),
        ({"metahub": {"url": "http://m", "hubs": {"cozo": "b"}}}, "metahub.hubs.cozo: unknown destination"),
        ({"outbox": {"workers": -1}}, "outbox.workers"),
        ({"frobnicate": True}, "frobnicate: Extra inputs"),
    ],
)
def test_bad_config_is_a_clear_error(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(config, source="test.yaml")
    assert err.value.message.startswith("test.yaml: ")
    assert message in err.value.message


def test_config_file_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("destinations: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="--forward-to"):
        load_settings(None, forward_to="not a url")
    bad.write_text("destinations:\n  a: {url: 'http://x', auth: {bearer_token_env: NOPE_UNSET}}\n")
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    s = load_settings(bad)
    with pytest.raises(ConfigError, match="NOPE_UNSET"):
        s.destinations["a"].auth.token()


# -- routing -----------------------------------------------------------------------------------
def routed_settings(**extra: object):
    return settings_from_dict({
        "destinations": {"fl": {"url": "http://fl.example"}, "wa": {"url": "http://wa.example"},
                         "hub": {"kind": "mhd", "url": "http://hub.example"}},
        "routing": {"by_region": {"flanders": "fl", "wallonia": "wa"}, "default": ["hub"]},
        **extra,
    })


def test_delivery_process_default_follows_cores_database_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapter.forwarding.settings import OutboxConfig

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    auto = OutboxConfig()
    assert auto.process is None
    assert auto.delivery_process("sqlite:///becare.db") and auto.delivery_process("postgresql://u@h/db")
    for memory in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?cache=shared"):
        assert not auto.delivery_process(memory), memory  # a child could not see that database
    assert not OutboxConfig(workers=0).delivery_process("sqlite:///becare.db")  # delivered elsewhere
    assert OutboxConfig(process=True, workers=0).delivery_process("sqlite:///becare.db")
    assert not OutboxConfig(process=False).delivery_process("sqlite:///becare.db")
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert not auto.delivery_process("sqlite:///becare.db")  # one core: threads lose nothing


def test_router_by_region_explicit_and_default() -> None:
    router = Router(routed_settings())
    assert router.route(care_bundle("9000")).destinations == ("fl",)
    assert router.route(care_bundle("9000"), region="wallonia").destinations == ("wa",)
    assert router.route(care_bundle("1000")).to_json() == {
        "destinations": ["hub"], "via": "default", "region": "brussels", "reason": None, "blocked": False}
    assert router.route(care_bundle("9000"), destination="hub").via == "explicit"
    with pytest.raises(RoutingError) as err:
        router.route(care_bundle(), destination="mars")
    assert err.value.code == "invalid"


def test_router_without_a_match_says_why() -> None:
    s = settings_from_dict({"destinations": {"fl": {"url": "http://fl.example"}},
                            "routing": {"by_region": {"flanders": "fl"}}})
    decision = Router(s).route(care_bundle("1000"))
    assert decision.destinations == ()
    assert decision.reason == "no destination is configured for region brussels"


@mock_http
def test_metahub_consent_gate_and_hub_location() -> None:
    s = routed_settings(metahub={"url": "http://metahub.example/locate", "hubs": {"abrumet": "hub"}})
    route = mock_http.post("http://metahub.example/locate")
    router = Router(s)

    route.mock(return_value=httpx.Response(200, json={"hubs": ["abrumet", "unknown"], "consentActive": True}))
    decision = router.route(care_bundle("9000"))
    assert decision.destinations == ("fl", "hub") and decision.via == "region+metahub"
    assert json.loads(route.calls.last.request.content) == {"ssin": SSIN}

    route.mock(return_value=httpx.Response(200, json={"hubs": ["abrumet"], "consentActive": False}))
    decision = router.route(care_bundle("9000"))
    assert decision.blocked and decision.destinations == ()
    assert "consent is not active" in (decision.reason or "")

    decision = router.route(care_bundle("9000", ssin=None))
    assert decision.blocked and "no SSIN" in (decision.reason or "")

    route.mock(return_value=httpx.Response(503))
    with pytest.raises(RoutingError) as err:
        router.route(care_bundle("9000"))
    assert err.value.code == "unavailable"
    route.mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(RoutingError):
        router.route(care_bundle("9000"))


def test_metahub_answer_validation() -> None:
    assert parse_answer({"hubs": ["a"], "consentActive": True}).hubs == ("a",)
    for bad in ([], {"hubs": "a", "consentActive": True}, {"hubs": []}, {"hubs": [], "consentActive": "yes"}):
        with pytest.raises(MetahubError):
            parse_answer(bad)


# -- backoff -----------------------------------------------------------------------------------
def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        draws = [full_jitter(attempt, base=0.5, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # really spread, not a constant


def test_retry_after_parsing_and_precedence() -> None:
    assert parse_retry_after("7") == 7.0
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert retry_delay(1, retry_after=12.0, base=1, cap=5, retry_after_max=3600) == 12.0
    assert retry_delay(1, retry_after=99999.0, base=1, cap=5, retry_after_max=600) == 600.0
    assert 0 <= retry_delay(3, retry_after=None, base=1, cap=5, retry_after_max=600) <= 4


# -- HTTP clients ------------------------------------------------------------------------------
def test_classification() -> None:
    assert [classify(s) for s in (200, 201, 204)] == ["delivered"] * 3
    assert [classify(s) for s in (408, 429, 500, 502, 503, 504)] == ["retry"] * 6
    assert [classify(s) for s in (301, 400, 401, 403, 404, 409, 412, 422)] == ["dead"] * 8


def rest(url: str = "http://fhir.example/base", **cfg: object) -> FhirRestDestination:
    return FhirRestDestination("t", DestinationConfig(url=url, **cfg), transport=mocked())


def mocked() -> httpx.MockTransport:
    """Destinations send through their transport: respx's routes answer there."""
    return httpx.MockTransport(mock_http.handler)


@mock_http
def test_fhir_rest_posts_the_transaction_with_headers() -> None:
    route = mock_http.post("http://fhir.example/base").mock(return_value=httpx.Response(200, json={}))
    dest = rest(auth=AuthConfig(bearer_token="tok"), headers={"X-Partner": "becare"})
    b = care_bundle()
    result = dest.deliver(b, idempotency_key=idempotency_key(b), delivery_id="d-1")
    assert result == DeliveryResult("delivered", http_status=200)
    req = route.calls.last.request
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.headers["Content-Type"] == "application/fhir+json"
    assert req.headers["Idempotency-Key"] == header_key("urn:test|b-1")
    assert req.headers["Idempotency-Key"] == hashlib.sha256(b"urn:test|b-1").hexdigest()
    assert req.headers["X-Request-ID"] == "d-1" and req.headers["X-Partner"] == "becare"
    assert json.loads(req.content) == b


@mock_http
def test_fhir_rest_collection_goes_to_bundle_endpoint() -> None:
    route = mock_http.post("http://fhir.example/base/Bundle").mock(return_value=httpx.Response(201))
    b = care_bundle(btype="collection")
    assert rest().deliver(b, idempotency_key="k", delivery_id="d").outcome == "delivered"
    assert route.called


@mock_http
@pytest.mark.parametrize(
    ("response", "outcome", "retry_after"),
    [
        (httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": f"bad SSIN {SSIN}"}]}), "dead", None),
        (httpx.Response(404), "dead", None),
        (httpx.Response(408), "retry", None),
        (httpx.Response(429, headers={"Retry-After": "5"}), "retry", 5.0),
        (httpx.Response(500), "retry", None),
        (httpx.Response(503, headers={"Retry-After": "2"}), "retry", 2.0),
    ],
)
def test_fhir_rest_error_replies(response: httpx.Response, outcome: str, retry_after: float | None) -> None:
    mock_http.post("http://fhir.example/base").mock(return_value=response)
    result = rest().deliver(care_bundle(), idempotency_key="k", delivery_id="d")
    assert result.outcome == outcome and result.http_status == response.status_code
    assert result.retry_after == retry_after
    assert result.error and result.error.startswith(f"HTTP {response.status_code}")
    assert SSIN not in result.error


@mock_http
def test_fhir_rest_network_failures_are_retried() -> None:
    route = mock_http.post("http://fhir.example/base")
    route.mock(side_effect=httpx.ConnectError("refused"))
    result = rest().deliver(care_bundle(), idempotency_key="k", delivery_id="d")
    assert result.outcome == "retry" and "ConnectError" in (result.error or "") and result.http_status is None
    route.mock(side_effect=httpx.ReadTimeout("slow"))
    result = rest(timeout=3).deliver(care_bundle(), idempotency_key="k", delivery_id="d")
    assert result.outcome == "retry" and "timeout" in (result.error or "")


@mock_http
def test_mhd_wraps_the_bundle_as_iti65() -> None:
    route = mock_http.post("http://mhd.example/fhir").mock(return_value=httpx.Response(200, json={}))
    config = DestinationConfig(kind="mhd", url="http://mhd.example/fhir", source_id="urn:oid:1.2.3")
    dest = MhdDestination("m", config, transport=mocked())
    b = care_bundle()
    assert dest.deliver(b, idempotency_key="urn:test|b-1", delivery_id="d").outcome == "delivered"
    sent = json.loads(route.calls.last.request.content)
    assert sent["type"] == "transaction" and sent["meta"]["profile"] == [PROVIDE_BUNDLE_PROFILE]
    types = [e["resource"]["resourceType"] for e in sent["entry"]]
    assert types == ["List", "DocumentReference", "Binary"]
    ss, docref, binary = (e["resource"] for e in sent["entry"])
    assert ss["code"]["coding"][0]["code"] == "submissionset"
    assert ss["extension"][0]["valueIdentifier"]["value"] == "urn:oid:1.2.3"
    assert ss["entry"][0]["item"]["reference"] == sent["entry"][1]["fullUrl"]
    att = docref["content"][0]["attachment"]
    assert att["url"] == sent["entry"][2]["fullUrl"]
    data = base64.b64decode(binary["data"])
    assert att["size"] == len(data) and base64.b64decode(att["hash"]) == hashlib.sha1(data).digest()
    assert json.loads(data) == b and unwrap(sent) == b
    assert docref["subject"]["identifier"]["value"] == SSIN
    assert all(e["request"]["method"] == "POST" for e in sent["entry"])


def test_mhd_ids_are_stable_across_retries() -> None:
    b = care_bundle()
    one = provide_document_bundle(b, idempotency_key="k")
    two = provide_document_bundle(b, idempotency_key="k")
    assert [e["fullUrl"] for e in one["entry"]] == [e["fullUrl"] for e in two["entry"]]
    other = provide_document_bundle(b, idempotency_key="k2")
    assert one["entry"][0]["fullUrl"] != other["entry"][0]["fullUrl"]


# -- forwarder with fake destinations ----------------------------------------------------------
class Scripted:
    """A destination answering from a list of results, recording what it was given."""

    kind = "fake"

    def __init__(self, *results: DeliveryResult) -> None:
        self.name = "fake"
        self.results = list(results)
        self.calls: list[str] = []

    def deliver(self, bundle: dict, *, idempotency_key: str, delivery_id: str, raw: str | None = None):
        self.calls.append(idempotency_key)
        return self.results.pop(0) if self.results else DeliveryResult("delivered", 200)

    def close(self) -> None:
        pass


def test_forwarder_retries_then_delivers_then_dead_letters(tmp_path: Path) -> None:
    box = Outbox(f"sqlite:///{tmp_path / 'o.db'}", max_attempts=2)
    fake = Scripted(DeliveryResult("retry", 503, "HTTP 503", retry_after=0.0))
    fw = Forwarder(box, {"fake": fake}, backoff_base=0.01, backoff_cap=0.01)
    d1 = box.enqueue(care_bundle(ident="1"), route=RouteDecision(("fake",), "default"), idempotency_key="k1",
                     client=None)
    assert fw.drain(5)
    got = box.get(d1.id)
    assert got is not None and got.status == "delivered" and [a.outcome for a in got.attempt_log] == [
        "retry", "delivered"]
    assert got.attempt_log[0].http_status == 503 and fake.calls == ["k1", "k1"]

    fake.results = [DeliveryResult("retry", 500, "HTTP 500", 0.0)] * 2
    d2 = box.enqueue(care_bundle(ident="2"), route=RouteDecision(("fake",), "default"), idempotency_key="k2",
                     client=None)
    assert fw.drain(5)
    got = box.get(d2.id)
    assert got is not None and got.status == "dead" and got.attempts == 2

    d3 = box.enqueue(care_bundle(ident="3"), route=RouteDecision(("gone",), "default"), idempotency_key="k3",
                     client=None)
    assert fw.drain(5)
    got = box.get(d3.id)
    assert got is not None and got.status == "dead" and "not configured" in (got.last_error or "")
    assert fw.stats["delivered"] == 1 and fw.stats["dead"] == 2
    box.close()


def test_forwarder_survives_a_crashing_destination(tmp_path: Path) -> None:
    class Boom(Scripted):
        def deliver(self, *a: object, **k: object):
            raise RuntimeError(f"bug with {SSIN}")

    box = Outbox(f"sqlite:///{tmp_path / 'o.db'}", max_attempts=1)
    route = RouteDecision(("boom",), "default")
    d = box.enqueue(care_bundle(), route=route, idempotency_key="k", client=None)
    fw = Forwarder(box, {"boom": Boom()})
    assert fw.drain(5)
    got = box.get(d.id)
    assert got is not None and got.status == "dead" and "internal error" in (got.last_error or "")
    assert SSIN not in (got.last_error or "")


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Basic"}}]},
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Basic", "type": "x"}}]},
        {"resourceType": "Bundle", "type": "batch", "zzz": {"type": "transaction"}},
        {"resourceType": "Bundle", "signature": {"type": "transaction"}},
    ],
)
def test_bundle_type_read_from_stored_text_matches_the_json(bundle: dict) -> None:
    from adapter.forwarding.destinations import bundle_type
    from adapter.outbox.keys import canonical_json

    assert bundle_type(canonical_json(bundle).encode()) == bundle.get("type")
