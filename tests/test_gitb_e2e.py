"""The real ``becare serve`` as a GITB validation service, driven by a zeep client built from the
service's own ``?wsdl``, as the interoperability test bed does: the module definition, valid and
invalid care bundles (rule ids, ``content:LINE:COL`` locations, fr and nl messages, identical to
``$validate``), the test bed's and eHealth's input names, URI fetching behind the allow-list,
authentication, the body limit, audit, and the Fault for what is not a GITB request."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import zeep
from lxml import etree
from zeep.transports import Transport

from adapter.testing.service import BecareService

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
BREAKS_TEAM = ROOT / "samples" / "rules" / "IC-TEAM-1" / "breaks.json"
BREAKS_PLAN = ROOT / "samples" / "rules" / "IC-PLAN-1" / "breaks.json"
RULE_SYSTEM = "https://becare.dev/fhir/CodeSystem/rule"
CORE = "{http://www.gitb.com/core/v1/}"
KEY = "gitb-test-key-3f9a7c1e5b"
AUDITOR_KEY = "gitb-test-auditor-8d2e4a6c"
TODAY = "2025-06-01"
MAX_BODY = 1024 * 1024


# -- a content server for embeddingMethod=URI --------------------------------------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok/bundle.json":
            body = VALID.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/ok/away":  # a redirect out of the allowed prefix
            self.send_response(302)
            self.send_header("Location", "/private/bundle.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, files: str) -> Iterator[BecareService]:
    config = (
        "service:\n"
        f"  max_body_bytes: {MAX_BODY}\n"
        "  rate_limit: {per_second: 10000, burst: 10000}\n"
        "  auth:\n"
        "    api_keys:\n"
        f"      - {{id: testbed, key_sha256: '{_sha(KEY)}', scopes: [validate]}}\n"
        f"      - {{id: auditor, key_sha256: '{_sha(AUDITOR_KEY)}', scopes: [audit]}}\n"
        "  gitb:\n"
        f"    fetch_allow: ['{files}/ok/']\n"
        "    fetch_timeout: 5\n"
        "outbox:\n"
        "  poll_interval: 0.1\n"
    )
    svc = BecareService(tmp_path_factory.mktemp("gitb"), config=config).start()
    try:
        yield svc
    finally:
        svc.stop()


def _client(service: BecareService, key: str | None = KEY) -> zeep.Client:
    session = requests.Session()
    if key:
        session.headers["X-API-Key"] = key
    return zeep.Client(f"{service.base_url}/gitb/validation?wsdl", transport=Transport(session=session))


@pytest.fixture(scope="module")
def client(service: BecareService) -> zeep.Client:
    return _client(service)


def _inputs(client: zeep.Client, **values: str) -> list[Any]:
    any_content = client.get_type(f"{CORE}AnyContent")
    out = []
    for name, value in values.items():
        embedding = "STRING"
        if isinstance(value, tuple):
            value, embedding = value
        out.append(any_content(name=name, embeddingMethod=embedding, value=value))
    return out


def validate(client: zeep.Client, **values: Any) -> Any:
    return client.service.validate(sessionId="session-1", input=_inputs(client, **values))


def items(tar: Any) -> list[tuple[str, Any]]:
    """(level, BAR) pairs in report order."""
    if tar.reports is None:
        return []
    return [(level, bar) for entry in tar.reports._value_1 for level, bar in entry.items()]


def context(tar: Any) -> dict[str, Any]:
    return {item.name: item for item in tar.context.item}


def assert_counters_match(tar: Any) -> None:
    levels = [level for level, _ in items(tar)]
    counters = tar.counters
    assert (counters.nrOfErrors, counters.nrOfWarnings, counters.nrOfAssertions) == (
        levels.count("error"),
        levels.count("warning"),
        levels.count("info"),
    )
    ctx = context(tar)
    assert int(ctx["errorCount"].value) == counters.nrOfErrors
    assert int(ctx["warningCount"].value) == counters.nrOfWarnings
    assert int(ctx["informationCount"].value) == counters.nrOfAssertions


def dollar_validate(service: BecareService, path: Path, lang: str) -> dict[str, Any]:
    resp = service.validate(path, lang=lang, headers={"X-API-Key": KEY}, today=TODAY)
    assert resp.status_code == 200, resp.text[:300]
    return dict(resp.json())


# -- the description ---------------------------------------------------------------------------------
def test_wsdl_and_its_schemas_are_served_with_the_service_address(service: BecareService) -> None:
    resp = httpx.get(f"{service.base_url}/gitb/validation?wsdl")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(resp.content)
    ns = {"w": "http://schemas.xmlsoap.org/wsdl/", "s": "http://schemas.xmlsoap.org/wsdl/soap/"}
    assert root.xpath("//w:service[@name='ValidationService']//s:address/@location", namespaces=ns) == [
        f"{service.base_url}/gitb/validation"
    ]
    for name in ("gitb_vs.xsd", "gitb_tr.xsd", "gitb_core.xsd"):
        assert httpx.get(f"{service.base_url}/gitb/validation", params={"xsd": name}).status_code == 200
    assert httpx.get(f"{service.base_url}/gitb/validation", params={"xsd": "gitb_tdl.xsd"}).status_code == 404


def test_module_definition_declares_the_inputs(client: zeep.Client) -> None:
    module = client.service.getModuleDefinition()
    assert module.id == "becare" and module.metadata.version
    names = {p.name for p in module.inputs.param}
    assert {
        "contentToValidate",
        "embeddingMethod",
        "validationType",
        "locale",
        "addInputToReport",
        "includeContentInReport",
        "profiles",
        "contentType",
        "region",
        "failOn",
        "payload",
        "resource",
    } <= names


# -- validating --------------------------------------------------------------------------------------
def test_valid_care_bundle(client: zeep.Client) -> None:
    text = VALID.read_text(encoding="utf-8")
    tar = validate(client, contentToValidate=text, today=TODAY)
    levels = [level for level, _ in items(tar)]
    assert "error" not in levels
    assert tar.result == ("WARNING" if "warning" in levels else "SUCCESS")
    assert_counters_match(tar)
    ctx = context(tar)
    assert ctx["content"].value == text and ctx["content"].mimeType == "application/fhir+json"
    assert ctx["severity"].value in ("warning", "information")
    assert json.loads(ctx["operationOutcome"].value)["resourceType"] == "OperationOutcome"
    provenance = {i.name: i for i in ctx["provenance"].item}
    assert {"validator", "rulebook", "packages", "region"} <= set(provenance)
    assert provenance["region"].value == "flanders"
    assert tar.overview.validationServiceName == "becare" and tar.overview.profileID == "full"


def _oo_findings(oo: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(rule or message id, FHIRPath, message, content:LINE:COL) of every issue of $validate."""
    out = set()
    for issue in oo["issue"]:
        ext = {e["url"].rsplit("-", 1)[-1]: e for e in issue.get("extension", ())}
        rule = next(
            (c["code"] for c in issue["details"].get("coding", ()) if c["system"] == RULE_SYSTEM), None
        )
        ident = rule or ext.get("id", {}).get("valueString")
        line = ext.get("line", {}).get("valueInteger")
        col = ext.get("col", {}).get("valueInteger")
        where = f"content:{line}:{col}" if line is not None else (issue.get("expression") or [""])[0]
        out.add((ident, (issue.get("expression") or [""])[0], issue["details"]["text"], where))
    return out


def _tar_findings(tar: Any) -> set[tuple[str, str, str, str]]:
    return {(bar.assertionID, bar.test or "", bar.description, bar.location) for _, bar in items(tar)}


@pytest.mark.parametrize(
    ("path", "rule", "lang", "words"),
    [
        (BREAKS_TEAM, "IC-TEAM-1", "fr", "L'équipe de soins"),
        (BREAKS_TEAM, "IC-TEAM-1", "nl", "Het zorgteam"),
        (BREAKS_PLAN, "IC-PLAN-1", "nl", "doel"),
        (BREAKS_PLAN, "IC-PLAN-1", "fr", "objectif"),
    ],
)
def test_invalid_care_bundle_in_the_requested_language(
    service: BecareService, client: zeep.Client, path: Path, rule: str, lang: str, words: str
) -> None:
    text = path.read_text(encoding="utf-8")
    locale = {"fr": "fr-BE", "nl": "nl_BE"}[lang]
    tar = validate(client, contentToValidate=text, locale=locale, today=TODAY)
    assert tar.result == "FAILURE"
    assert_counters_match(tar)
    broken = [bar for level, bar in items(tar) if level == "error" and bar.assertionID == rule]
    assert len(broken) == 1
    bar = broken[0]
    assert words in bar.description
    assert re.fullmatch(r"content:\d+:\d+", bar.location)
    line, col = (int(n) for n in bar.location.split(":")[1:])
    assert text.splitlines()[line - 1][col - 1 :].startswith('"resource": {')  # the resource that breaks it
    assert bar.test.startswith("Bundle.entry[")
    # the same verdict, word for word, as $validate
    assert _tar_findings(tar) == _oo_findings(dollar_validate(service, path, lang))


def test_base64_embedding_gives_the_same_report(client: zeep.Client) -> None:
    import base64

    text = BREAKS_TEAM.read_text(encoding="utf-8")
    plain = validate(client, contentToValidate=text, today=TODAY)
    encoded = validate(
        client, contentToValidate=(base64.b64encode(text.encode()).decode(), "BASE64"), today=TODAY
    )
    assert _tar_findings(plain) == _tar_findings(encoded) and encoded.result == "FAILURE"
    assert context(encoded)["content"].value == text


def test_fail_on_warning_and_no_content_in_report(client: zeep.Client) -> None:
    tar = validate(
        client,
        contentToValidate=VALID.read_text(encoding="utf-8"),
        failOn="warning",
        addInputToReport="false",
        today=TODAY,
    )
    assert "content" not in context(tar)
    has_warning = any(level == "warning" for level, _ in items(tar))
    assert tar.result == ("FAILURE" if has_warning else "SUCCESS")


def test_validation_type_profiles_leaves_the_rulebook_out(client: zeep.Client) -> None:
    text = BREAKS_TEAM.read_text(encoding="utf-8")
    full = {bar.assertionID for _, bar in items(validate(client, contentToValidate=text, today=TODAY))}
    plain = validate(client, contentToValidate=text, validationType="profiles", today=TODAY)
    assert "IC-TEAM-1" in full
    assert not any(str(bar.assertionID).startswith("IC-") for _, bar in items(plain))
    assert plain.overview.profileID == "profiles"


# -- the test bed's own input names ------------------------------------------------------------------
def test_ehealth_payload_and_resource(client: zeep.Client) -> None:
    text = VALID.read_text(encoding="utf-8")
    ok = validate(client, resource="Bundle", payload=text, today=TODAY)
    assert ok.result in ("SUCCESS", "WARNING")
    wrong = validate(client, resource="Patient", payload=text, today=TODAY)
    assert wrong.result == "FAILURE"
    assert [bar.assertionID for level, bar in items(wrong) if level == "error"] == [
        "becare-gitb-wrong-resource-type"
    ]
    itself = validate(client, resource=text, today=TODAY)
    assert _tar_findings(itself) == _tar_findings(ok)


def test_embedding_method_input_overrides_the_attribute(client: zeep.Client) -> None:
    text = VALID.read_text(encoding="utf-8")
    tar = validate(client, contentToValidate=(text, "BASE64"), embeddingMethod="STRING", today=TODAY)
    assert tar.result in ("SUCCESS", "WARNING")


def test_missing_content_is_a_failure_not_a_success(client: zeep.Client) -> None:
    tar = validate(client, locale="de")
    assert tar.result == "FAILURE" and tar.counters.nrOfErrors == 1
    level, bar = items(tar)[0]
    assert level == "error" and bar.assertionID == "becare-gitb-no-content"
    assert "contentToValidate" in bar.description and "Inhalt" in bar.description


def test_unparseable_content_is_a_failure_with_its_position(client: zeep.Client) -> None:
    tar = validate(client, contentToValidate='{"resourceType": "Bundle",\n  "type": }')
    assert tar.result == "FAILURE"
    ((level, bar),) = items(tar)
    assert level == "error" and bar.assertionID == "becare-unparseable"
    assert bar.location.startswith("content:2:")


# -- URIs --------------------------------------------------------------------------------------------
def test_uri_fetched_when_allowed(client: zeep.Client, files: str) -> None:
    fetched = validate(
        client, contentToValidate=f"{files}/ok/bundle.json", embeddingMethod="URI", today=TODAY
    )
    sent = validate(client, contentToValidate=VALID.read_text(encoding="utf-8"), today=TODAY)
    assert fetched.result == sent.result and _tar_findings(fetched) == _tar_findings(sent)
    assert context(fetched)["content"].value == VALID.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/private/bundle.json", "/ok/away"])
def test_uri_refused_when_not_allowed(client: zeep.Client, files: str, path: str) -> None:
    tar = validate(client, contentToValidate=(f"{files}{path}", "URI"), locale="fr")
    assert tar.result == "FAILURE" and tar.counters.nrOfErrors == 1
    ((_level, bar),) = items(tar)
    assert bar.assertionID == "becare-gitb-uri-not-allowed"
    assert "service.gitb.fetch_allow" in bar.description and "n'a pas été récupérée" in bar.description


def test_uri_of_another_host_is_never_fetched(client: zeep.Client) -> None:
    tar = validate(
        client, contentToValidate="http://169.254.169.254/latest/meta-data/", embeddingMethod="URL"
    )
    assert tar.result == "FAILURE"
    assert [bar.assertionID for _, bar in items(tar)] == ["becare-gitb-uri-not-allowed"]


# -- the gate: credentials, body limit, audit, faults ------------------------------------------------
def test_credentials_are_required(service: BecareService) -> None:
    for key in (None, "wrong-key"):
        anonymous = _client(service, key)  # the WSDL itself needs no credentials
        with pytest.raises(zeep.exceptions.Fault) as exc:
            validate(anonymous, contentToValidate=VALID.read_text(encoding="utf-8"))
        assert "Authentication required" in str(exc.value.message)
    resp = httpx.post(
        f"{service.base_url}/gitb/validation",
        content=b"<x/>",
        headers={"Content-Type": "text/xml", "Accept-Language": "nl"},
    )
    assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
    assert b"Fault" in resp.content and "Authenticatie" in resp.text


def test_the_audit_scope_cannot_validate(service: BecareService) -> None:
    with pytest.raises(zeep.exceptions.Fault) as exc:
        validate(_client(service, AUDITOR_KEY), contentToValidate=VALID.read_text(encoding="utf-8"))
    assert "validate" in str(exc.value.message)
    resp = httpx.post(
        f"{service.base_url}/gitb/validation",
        content=b"<x/>",
        headers={"Content-Type": "text/xml", "X-API-Key": AUDITOR_KEY},
    )
    assert resp.status_code == 403


def test_body_limit(service: BecareService, client: zeep.Client) -> None:
    text = VALID.read_text(encoding="utf-8")
    padded = text.replace('"resourceType"', " " * (MAX_BODY + 10) + '"resourceType"', 1)
    with pytest.raises(zeep.exceptions.Fault) as exc:
        validate(client, contentToValidate=padded)
    assert str(MAX_BODY) in str(exc.value.message)
    resp = httpx.post(
        f"{service.base_url}/gitb/validation",
        content=b" " * (MAX_BODY + 1),
        headers={"Content-Type": "text/xml", "X-API-Key": KEY},
    )
    assert resp.status_code == 413 and b"Fault" in resp.content


def test_validations_are_audited(service: BecareService, client: zeep.Client) -> None:
    validate(client, contentToValidate=BREAKS_TEAM.read_text(encoding="utf-8"), today=TODAY)
    resp = service.client.get("/audit", headers={"X-API-Key": AUDITOR_KEY, "Accept": "application/fhir+json"})
    assert resp.status_code == 200
    assert "invalid (gitb)" in resp.text and "key:testbed" in resp.text


def test_what_is_not_a_gitb_request_gets_a_fault(service: BecareService) -> None:
    resp = httpx.post(
        f"{service.base_url}/gitb/validation",
        content=b'{"resourceType": "Bundle"}',
        headers={"Content-Type": "text/xml", "X-API-Key": KEY},
    )
    assert resp.status_code == 500 and resp.headers["content-type"].startswith("text/xml")
    fault = etree.fromstring(resp.content).find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Body/{http://schemas.xmlsoap.org/soap/envelope/}Fault"
    )
    assert fault is not None and fault.findtext("faultcode") == "soap:Client"
    assert "Not a GITB validation service request" in (fault.findtext("faultstring") or "")


def test_the_reference_sample_request_gets_a_schema_valid_report(service: BecareService) -> None:
    """The pack's sample ``validate`` request, sent as written: headers from the test bed, an
    Immunization, and a validationType becare does not have (``be-vaccination``), which must not
    pass as a success."""
    from tests.shared_ref import reference_dir

    sample = reference_dir() / "gitb" / "samples" / "validate-request.soap.xml"
    resp = httpx.post(
        f"{service.base_url}/gitb/validation",
        content=sample.read_bytes(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', "X-API-Key": KEY},
    )
    assert resp.status_code == 200, resp.text[:300]
    body = etree.fromstring(resp.content).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    assert body is not None
    payload = etree.fromstring(etree.tostring(body[0]))
    schema = etree.XMLSchema(etree.parse(str(ROOT / "profiles" / "gitb" / "schema" / "gitb_vs.xsd")))
    assert schema.validate(payload), schema.error_log.filter_from_errors()[:3]
    ns = {"tr": "http://www.gitb.com/tr/v1/"}
    assert payload.xpath("report/tr:result/text()", namespaces=ns) == ["FAILURE"]
    assert "becare-gitb-bad-validation-type" in payload.xpath("report//tr:assertionID/text()", namespaces=ns)
