"""The GITB validation service's pure parts: reading requests (every input name and embedding
method, the namespace trap, the headers a test bed sends), the TAR (checked against the current
gitb_vs.xsd with lxml, counters against items), the module definition and the WSDL."""

from __future__ import annotations

import base64
import datetime as dt
import json
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from adapter.gitb import envelope, inputs, messages, module, soap, tar, wsdl
from adapter.gitb.inputs import ContentError, Input, decode_content, interpret, read_inputs
from adapter.gitb.ns import CORE, SOAP11, TR, VS, WSA, XSI
from adapter.gitb.uris import allowed
from adapter.validation import Validator
from adapter.validation.api import ValidationOptions
from adapter.validation.issues import Issue, Suppressed

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "profiles" / "gitb" / "schema"
BREAKS = ROOT / "samples" / "rules" / "IC-TEAM-1" / "breaks.json"
NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)
BUNDLE = '{"resourceType":"Bundle","type":"collection"}'


@cache
def vs_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "gitb_vs.xsd")))


def assert_valid(element: etree._Element) -> None:
    schema = vs_schema()
    doc = etree.fromstring(etree.tostring(element))
    assert schema.validate(doc), schema.error_log.filter_from_errors()[:3]


# -- building requests as a test bed does ------------------------------------------------------------
def _input(
    name: str,
    value: str | None,
    embedding: str | None = "STRING",
    *,
    qualified: bool = False,
    items: tuple[str, ...] = (),
    **attrs: str,
) -> str:
    tag = "vs:input" if qualified else "input"
    emb = f' embeddingMethod="{embedding}"' if embedding else ""
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    inner = "".join(
        f'<core:item type="string" embeddingMethod="STRING"><core:value>{i}</core:value></core:item>'
        for i in items
    )
    if value is not None:
        inner += f"<core:value><![CDATA[{value}]]></core:value>"
    return f'<{tag} name="{name}"{emb}{extra}>{inner}</{tag}>'


def request(*parts: str, header: str = "", session: bool = True) -> bytes:
    sid = "<sessionId>0f8f5da0-0000-4adb-9b5a-000000000001</sessionId>" if session else ""
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:vs="{VS}" xmlns:core="{CORE}">'
        f"<soapenv:Header>{header}</soapenv:Header>"
        f"<soapenv:Body><vs:ValidateRequest>{sid}{''.join(parts)}</vs:ValidateRequest></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def parsed(*parts: str, **kw: str) -> inputs.GitbRequest:
    return interpret(read_inputs(envelope.read_request(request(*parts, **kw)).payload))


TESTBED_HEADERS = (
    f'<wsa:To xmlns:wsa="{WSA}" soapenv:mustUnderstand="1">http://becare/gitb/validation</wsa:To>'
    f'<wsa:Action xmlns:wsa="{WSA}">http://gitb.com/ValidationService/validate</wsa:Action>'
    f'<wsa:MessageID xmlns:wsa="{WSA}">urn:uuid:42</wsa:MessageID>'
    f'<wsa:ReplyTo xmlns:wsa="{WSA}"><wsa:Address>http://itb/log</wsa:Address></wsa:ReplyTo>'
    '<gitb:TestSessionIdentifier xmlns:gitb="http://www.gitb.com">s-1</gitb:TestSessionIdentifier>'
    '<gitb:TestCaseIdentifier xmlns:gitb="http://www.gitb.com">tc</gitb:TestCaseIdentifier>'
    '<gitb:TestStepIdentifier xmlns:gitb="http://www.gitb.com">v1</gitb:TestStepIdentifier>'
    '<gitb:TestEngineVersion xmlns:gitb="http://www.gitb.com">1.29.4</gitb:TestEngineVersion>'
)


# -- envelope ----------------------------------------------------------------------------------------
def test_testbed_headers_are_tolerated_and_message_id_read() -> None:
    req = envelope.read_request(request(_input("contentToValidate", BUNDLE), header=TESTBED_HEADERS))
    assert req.operation == "validate"
    assert req.message_id == "urn:uuid:42" and req.addressing_ns == WSA


def _body(payload: str) -> bytes:
    return f'<e:Envelope xmlns:e="{SOAP11}"><e:Body>{payload}</e:Body></e:Envelope>'.encode()


def test_get_module_definition_request() -> None:
    req = envelope.read_request(_body(f'<v:GetModuleDefinitionRequest xmlns:v="{VS}"/>'))
    assert req.operation == "getModuleDefinition" and req.message_id is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "well-formed"),
        (b"<a/>", "SOAP envelope"),
        (_body(""), "empty"),
        (_body(f'<v:LogRequest xmlns:v="{VS}"/>'), "LogRequest"),
        (_body("<validate/>"), "validate"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "DOCTYPE"),
    ],
)
def test_what_is_not_a_gitb_request(body: bytes, reason: str) -> None:
    with pytest.raises(envelope.NotGitb) as exc:
        envelope.read_request(body)
    assert reason in exc.value.reason and not exc.value.version_mismatch


def test_soap12_is_a_version_mismatch() -> None:
    body = b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
    with pytest.raises(envelope.NotGitb) as exc:
        envelope.read_request(body)
    assert exc.value.version_mismatch


# -- the namespace trap ------------------------------------------------------------------------------
def test_unqualified_inputs_are_read_and_the_sample_request_is_schema_valid() -> None:
    data = request(_input("contentToValidate", BUNDLE), _input("locale", "fr"))
    payload = envelope.read_request(data).payload
    assert vs_schema().validate(etree.fromstring(etree.tostring(payload)))
    names = [i.name for i in read_inputs(payload)]
    assert names == ["contentToValidate", "locale"]


def test_qualified_inputs_break_the_schema_but_are_still_read() -> None:
    data = request(_input("contentToValidate", BUNDLE, qualified=True))
    payload = envelope.read_request(data).payload
    assert not vs_schema().validate(etree.fromstring(etree.tostring(payload)))
    assert parsed(_input("contentToValidate", BUNDLE, qualified=True)).content is not None


def test_report_and_module_are_unqualified_and_tar_content_qualified() -> None:
    report = tar.build_tar(tar.TarContext(issues=[], now=NOW))
    response = soap.validation_response(report)
    assert response[0].tag == "report"
    assert all(child.tag.startswith(f"{{{TR}}}") for child in response[0])
    moved = etree.fromstring(etree.tostring(response))
    moved[0].tag = f"{{{VS}}}report"  # the trap the other way round: the schema refuses it
    assert not vs_schema().validate(moved)
    definition = module.module_definition("1.0")
    assert definition[0].tag == "module"


# -- inputs ------------------------------------------------------------------------------------------
def test_string_embedding() -> None:
    req = parsed(_input("contentToValidate", BUNDLE))
    assert req.content is not None and req.content.kind == "string" and not req.problems
    assert decode_content(req.content) == (BUNDLE.encode(), BUNDLE)


def test_base64_embedding_with_its_encoding() -> None:
    text = '{"resourceType":"Patient","name":[{"family":"Dubois-Hévé"}]}'
    value = base64.b64encode(text.encode("latin-1")).decode()
    req = parsed(_input("contentToValidate", value, "BASE64", encoding="ISO-8859-1"))
    assert req.content is not None and req.content.kind == "base64"
    data, shown = decode_content(req.content)
    assert shown == text and data == text.encode("utf-8")


def test_base64_is_the_schema_default_when_the_attribute_is_absent() -> None:
    value = base64.b64encode(BUNDLE.encode()).decode()
    req = parsed(_input("contentToValidate", value, None))
    assert req.content is not None and req.content.kind == "base64"
    assert decode_content(req.content)[1] == BUNDLE
    plain = parsed(_input("contentToValidate", BUNDLE, None))  # not base64, reads as JSON
    assert plain.content is not None and plain.content.kind == "string"


def test_bad_base64_is_a_content_error() -> None:
    req = parsed(_input("contentToValidate", "not base64 at all!", "BASE64"))
    assert req.content is not None
    with pytest.raises(ContentError) as exc:
        decode_content(req.content)
    assert exc.value.problem.key == "bad-base64"


def test_xml_keeps_its_bytes_and_declaration() -> None:
    xml = '<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>'
    raw = xml.encode("latin-1")
    req = parsed(_input("contentToValidate", base64.b64encode(raw).decode(), "BASE64", encoding="ISO-8859-1"))
    assert req.content is not None
    assert decode_content(req.content)[0] == raw


@pytest.mark.parametrize("method", ["URI", "URL", "uri"])
def test_uri_embedding_from_the_embedding_method_input(method: str) -> None:
    req = parsed(
        _input("contentToValidate", " https://fhir.example.be/Bundle/1 "), _input("embeddingMethod", method)
    )
    assert req.content is not None and req.content.kind == "uri"
    assert req.content.text == "https://fhir.example.be/Bundle/1"


def test_uri_attribute() -> None:
    req = parsed(_input("contentToValidate", "https://fhir.example.be/Bundle/1", "URI"))
    assert req.content is not None and req.content.kind == "uri"


def test_embedding_method_input_overrides_the_attribute() -> None:
    req = parsed(_input("contentToValidate", BUNDLE, "BASE64"), _input("embeddingMethod", "STRING"))
    assert req.content is not None and req.content.kind == "string"
    bad = parsed(_input("contentToValidate", BUNDLE), _input("embeddingMethod", "FILE"))
    assert [p.key for p in bad.problems] == ["bad-choice"] and bad.problems[0].values[
        "name"
    ] == "embeddingMethod"


def test_all_options_by_their_names() -> None:
    req = parsed(
        _input("contentToValidate", BUNDLE),
        _input("validationType", "profiles"),
        _input("locale", "fr-BE"),
        _input("addInputToReport", "false", type="boolean"),
        _input(
            "profiles",
            "https://a/StructureDefinition/x, https://b/StructureDefinition/y|1.0 https://a/StructureDefinition/x",
        ),
        _input("contentType", "application/fhir+json"),
        _input("region", "wallonia"),
        _input("failOn", "Warning"),
        _input("today", "2025-06-01"),
        _input("somethingElse", "ignored"),
    )
    assert not req.problems
    assert req.validation_type == "profiles" and not req.rulebook
    assert req.lang == "fr" and req.add_input is False
    assert req.profiles == ("https://a/StructureDefinition/x", "https://b/StructureDefinition/y|1.0")
    assert req.content_format == "json" and req.region == "wallonia" and req.effective_region == "wallonia"
    assert req.fail_on == "warning" and req.today == dt.date(2025, 6, 1)


def test_defaults() -> None:
    req = parsed(_input("contentToValidate", BUNDLE))
    assert (req.validation_type, req.rulebook, req.lang, req.add_input, req.fail_on) == (
        "full",
        True,
        None,
        True,
        "error",
    )
    assert req.profiles == () and req.region is None and req.today is None


@pytest.mark.parametrize(
    ("locale", "lang"),
    [("fr", "fr"), ("fr-BE", "fr"), ("nl_BE", "nl"), ("de-be", "de"), ("EN", "en"), ("it", None), ("", None)],
)
def test_locale(locale: str, lang: str | None) -> None:
    assert parsed(_input("contentToValidate", BUNDLE), _input("locale", locale)).lang == lang


def test_profiles_as_a_list_and_include_content_alias() -> None:
    req = parsed(
        _input("contentToValidate", BUNDLE),
        _input("profiles", None, type="list", items=("https://a/x", "https://b/y")),
        _input("includeContentInReport", "FALSE"),
    )
    assert req.profiles == ("https://a/x", "https://b/y") and req.add_input is False


def test_region_validation_type_fixes_the_region_and_a_contradiction_is_refused() -> None:
    req = parsed(_input("contentToValidate", BUNDLE), _input("validationType", "German-Speaking"))
    assert (
        req.validation_type == "german-speaking"
        and req.effective_region == "german-speaking"
        and req.rulebook
    )
    bad = parsed(
        _input("contentToValidate", BUNDLE),
        _input("validationType", "flanders"),
        _input("region", "brussels"),
    )
    assert [p.key for p in bad.problems] == ["region-conflict"]


def test_ehealth_payload_and_resource_type() -> None:
    req = parsed(_input("resource", "Bundle"), _input("payload", BUNDLE))
    assert not req.problems and req.expected_type == "Bundle"
    assert req.content is not None and req.content.input_name == "payload"
    assert inputs.expected_type_mismatch({"resourceType": "Bundle"}, req.expected_type) is None
    assert inputs.expected_type_mismatch({"resourceType": "Patient"}, req.expected_type) == "Patient"


def test_resource_carrying_the_content_itself() -> None:
    req = parsed(_input("resource", BUNDLE))
    assert not req.problems and req.content is not None and req.content.input_name == "resource"
    assert req.expected_type is None


@pytest.mark.parametrize(
    ("parts", "keys"),
    [
        ((), ["no-content"]),
        ((_input("locale", "fr"),), ["no-content"]),
        ((_input("contentToValidate", BUNDLE), _input("payload", BUNDLE)), ["content-repeated"]),
        (
            (_input("contentToValidate", BUNDLE), _input("validationType", "schematron")),
            ["bad-validation-type"],
        ),
        ((_input("contentToValidate", BUNDLE), _input("failOn", "fatal")), ["bad-choice"]),
        ((_input("contentToValidate", BUNDLE), _input("region", "paris")), ["bad-choice"]),
        ((_input("contentToValidate", BUNDLE), _input("addInputToReport", "maybe")), ["bad-choice"]),
        ((_input("contentToValidate", BUNDLE), _input("contentType", "text/csv")), ["bad-choice"]),
        ((_input("contentToValidate", BUNDLE), _input("today", "1 June")), ["bad-today"]),
        ((_input("contentToValidate", BUNDLE), _input("resource", "not a type")), ["bad-resource-type"]),
        (
            (_input("contentToValidate", BUNDLE), _input("locale", "fr"), _input("locale", "nl")),
            ["input-repeated"],
        ),
        ((_input("contentToValidate", None, items=("a",)),), ["input-not-text"]),
    ],
)
def test_unusable_inputs_are_problems(parts: tuple[str, ...], keys: list[str]) -> None:
    assert [p.key for p in parsed(*parts).problems] == keys


def test_a_request_without_session_id_is_read() -> None:
    assert parsed(_input("contentToValidate", BUNDLE), session=False).content is not None


def test_scalar_inputs_do_not_take_the_base64_default() -> None:
    # "true" is valid base64; a boolean sent without an embeddingMethod attribute means true
    req = parsed(_input("contentToValidate", BUNDLE), _input("addInputToReport", "false", None))
    assert req.add_input is False and not req.problems
    encoded = base64.b64encode(b"nl").decode()
    assert parsed(_input("contentToValidate", BUNDLE), _input("locale", encoded, "BASE64")).lang == "nl"


def test_input_reader_keeps_attributes() -> None:
    payload = envelope.read_request(
        request(
            _input("contentToValidate", "eA==", "BASE64", encoding="UTF-8", mimeType="application/fhir+json")
        )
    ).payload
    assert read_inputs(payload) == (
        Input("contentToValidate", "eA==", "BASE64", "UTF-8", "application/fhir+json", ()),
    )


# -- URIs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://fhir.example.be/fhir/Bundle/1", True),
        ("https://FHIR.example.be:443/fhir/Bundle/1", True),
        ("https://fhir.example.be/fhir", False),  # the prefix ends with /: only below it
        ("https://fhir.example.be/fhirx/Bundle/1", False),
        ("https://fhir.example.be/other", False),
        ("http://fhir.example.be/fhir/Bundle/1", False),
        ("https://fhir.example.be:8443/fhir/Bundle/1", False),
        ("https://fhir.example.be.evil.org/fhir/Bundle/1", False),
        ("https://user:pw@fhir.example.be/fhir/Bundle/1", False),
        ("file:///etc/passwd", False),
        ("http://127.0.0.1:9000/x", True),
        ("http://127.0.0.1:9001/x", False),
        ("not a url", False),
    ],
)
def test_uri_allow_list(url: str, ok: bool) -> None:
    assert allowed(url, ("https://fhir.example.be/fhir/", "http://127.0.0.1:9000")) is ok


def test_empty_allow_list_allows_nothing() -> None:
    assert not allowed("https://fhir.example.be/fhir/Bundle/1", ())


# -- the TAR -----------------------------------------------------------------------------------------
def _issue(severity: str, line: int | None = 3, **kw: object) -> Issue:
    base: dict[str, object] = {
        "severity": severity,
        "code": "business-rule",
        "expression": "Bundle.entry[0].resource",
        "message": f"a {severity}",
        "line": line,
        "col": 5,
    }
    base.update(kw)
    return Issue(**base)  # type: ignore[arg-type]


def _counts(report: etree._Element) -> tuple[int, int, int]:
    counters = report.find(f"{{{TR}}}counters")
    assert counters is not None
    return tuple(
        int(counters.findtext(f"{{{TR}}}{n}") or -1) for n in ("nrOfErrors", "nrOfWarnings", "nrOfAssertions")
    )  # type: ignore[return-value]


def _items(report: etree._Element) -> list[etree._Element]:
    reports = report.find(f"{{{TR}}}reports")
    return [] if reports is None else list(reports)


def _context(report: etree._Element) -> dict[str, etree._Element]:
    context = report.find(f"{{{TR}}}context")
    assert context is not None and context.get("type") == "map"
    return {item.get("name"): item for item in context}


def test_tar_from_a_real_validation_is_schema_valid_with_matching_counters() -> None:
    text = BREAKS.read_text(encoding="utf-8")
    report = Validator().validate_bytes(
        text.encode(), None, ValidationOptions(lang="fr", today=dt.date(2025, 6, 1))
    )
    element = tar.build_tar(
        tar.TarContext(
            issues=report.issues,
            now=NOW,
            content=text,
            content_mime="application/fhir+json",
            outcome=report.outcome(),
            provenance=report.provenance,
            profile_id="full",
            service_version="0.1.0",
        )
    )
    assert_valid(soap.validation_response(element))
    items = _items(element)
    levels = [etree.QName(i).localname for i in items]
    assert _counts(element) == (levels.count("error"), levels.count("warning"), levels.count("info"))
    assert element.findtext(f"{{{TR}}}result") == "FAILURE"
    team = [i for i in items if i.findtext(f"{{{TR}}}assertionID") == "IC-TEAM-1"]
    assert team and etree.QName(team[0]).localname == "error"
    assert team[0].get(f"{{{XSI}}}type") == "tr:BAR"
    assert team[0].findtext(f"{{{TR}}}location", "").startswith("content:")
    assert team[0].findtext(f"{{{TR}}}test") == "Bundle.entry[11].resource"
    assert "équipe" in team[0].findtext(f"{{{TR}}}description", "")
    ctx = _context(element)
    assert ctx["content"].findtext(f"{{{CORE}}}value") == text
    assert int(ctx["errorCount"].findtext(f"{{{CORE}}}value") or -1) == _counts(element)[0]
    assert ctx["severity"].findtext(f"{{{CORE}}}value") == "error"
    oo = json.loads(ctx["operationOutcome"].findtext(f"{{{CORE}}}value") or "{}")
    assert oo["resourceType"] == "OperationOutcome"
    assert ctx["provenance"].get("type") == "map"
    validator = next(i for i in ctx["provenance"] if i.get("name") == "validator")
    assert {i.get("name") for i in validator} == {"name", "version"}


def test_location_line_col_links_into_the_content_item() -> None:
    line, col = 12, 7
    issue = _issue("error", line=line, col=col)
    assert tar.location(issue) == f"content:{line}:{col}"
    assert tar.location(_issue("error", line=None)) == "Bundle.entry[0].resource"


@pytest.mark.parametrize(
    ("severities", "fail_on", "result"),
    [
        ([], "error", "SUCCESS"),
        (["information"], "error", "SUCCESS"),
        (["warning", "information"], "error", "WARNING"),
        (["error", "warning"], "error", "FAILURE"),
        (["fatal"], "error", "FAILURE"),
        (["warning"], "warning", "FAILURE"),
        (["information"], "warning", "SUCCESS"),
        (["information"], "information", "FAILURE"),
    ],
)
def test_result_and_fail_on(severities: list[str], fail_on: str, result: str) -> None:
    issues = [_issue(s, line=n + 1) for n, s in enumerate(severities)]
    element = tar.build_tar(tar.TarContext(issues=issues, now=NOW, fail_on=fail_on))
    assert element.findtext(f"{{{TR}}}result") == result
    assert_valid(soap.validation_response(element))
    errors = sum(s in ("fatal", "error") for s in severities)
    assert _counts(element) == (errors, severities.count("warning"), severities.count("information"))
    assert len(_items(element)) == len(severities)


def test_success_without_items_has_no_reports_element_and_no_content_when_not_asked() -> None:
    element = tar.build_tar(tar.TarContext(issues=[], now=NOW))
    assert element.find(f"{{{TR}}}reports") is None
    assert "content" not in _context(element)
    assert _context(element)["severity"].findtext(f"{{{CORE}}}value") == "information"


def test_suppressed_issue_says_so_and_assertion_falls_back_to_message_id() -> None:
    mark = Suppressed(severity="error", reason="known gap", entry=2, until="2025-12-31")
    issue = _issue("information", rule=None, message_id="becare-x", suppressed=mark)
    element = tar.build_tar(tar.TarContext(issues=[issue], now=NOW))
    item = _items(element)[0]
    assert etree.QName(item).localname == "info"
    assert "suppressed error; suppression 2: known gap; until 2025-12-31" in item.findtext(
        f"{{{TR}}}description", ""
    )
    assert item.findtext(f"{{{TR}}}assertionID") == "becare-x"


def test_text_xml_cannot_carry_goes_base64_and_messages_are_cleaned() -> None:
    content = '{"resourceType":"Patient","id":"a\x01b"}'
    element = tar.build_tar(
        tar.TarContext(issues=[_issue("error", message="bad \x0b char")], now=NOW, content=content)
    )
    assert_valid(soap.validation_response(element))
    item = _context(element)["content"]
    assert item.get("embeddingMethod") == "BASE64"
    assert base64.b64decode(item.findtext(f"{{{CORE}}}value") or "").decode() == content
    assert "\ufffd" in _items(element)[0].findtext(f"{{{TR}}}description", "")


def test_response_envelope_answers_ws_addressing() -> None:
    element = tar.build_tar(tar.TarContext(issues=[], now=NOW))
    body = soap.response_envelope(
        soap.validation_response(element), operation="validate", relates_to="urn:uuid:42", addressing_ns=WSA
    )
    root = etree.fromstring(body)
    header = root.find(f"{{{SOAP11}}}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA}}}RelatesTo") == "urn:uuid:42"
    assert header.findtext(f"{{{WSA}}}Action") == "http://gitb.com/ValidationService/validateResponse"
    plain = etree.fromstring(soap.response_envelope(soap.validation_response(element), operation="validate"))
    assert plain.find(f"{{{SOAP11}}}Header") is None


def test_fault_envelope() -> None:
    root = etree.fromstring(soap.fault_envelope("nope", code="Client"))
    fault = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert (
        fault is not None
        and fault.findtext("faultcode") == "soap:Client"
        and fault.findtext("faultstring") == "nope"
    )


# -- module definition and WSDL ----------------------------------------------------------------------
def test_module_definition_is_schema_valid_and_declares_every_input_name() -> None:
    definition = module.module_definition("0.1.0")
    assert_valid(definition)
    params = {p.get("name"): p for p in definition.iter(f"{{{CORE}}}param")}
    assert set(params) >= {
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
        "today",
        "payload",
        "resource",
    }
    # optional, so that fhir-itb test cases sending only `payload` are not refused by the test bed
    assert params["contentToValidate"].get("use") == "O"
    for name in module.VALIDATION_TYPES:
        assert name in (params["validationType"].get("desc") or "")


def test_wsdl_points_at_the_endpoint_and_its_imports_resolve_there() -> None:
    endpoint = "https://becare.example.be/gitb/validation"
    root = etree.fromstring(wsdl.wsdl_text(endpoint))
    ns = {
        "w": "http://schemas.xmlsoap.org/wsdl/",
        "s": "http://schemas.xmlsoap.org/wsdl/soap/",
        "x": "http://www.w3.org/2001/XMLSchema",
    }
    assert root.xpath(
        "//w:service[@name='ValidationService']/w:port[@name='ValidationServicePort']/s:address/@location",
        namespaces=ns,
    ) == [endpoint]
    locations = root.xpath("//x:import/@schemaLocation", namespaces=ns)
    assert locations == [f"{endpoint}?xsd=gitb_vs.xsd"]
    for name in wsdl.SCHEMAS:
        text = wsdl.xsd_text(name, endpoint)
        assert text is not None
        for location in etree.fromstring(text).xpath("//x:import/@schemaLocation", namespaces=ns):
            assert location.startswith(f"{endpoint}?xsd=") and location.split("=", 1)[1] in wsdl.SCHEMAS
    assert wsdl.xsd_text("gitb_tdl.xsd", endpoint) is None
    assert wsdl.xsd_text("../../etc/passwd", endpoint) is None


def test_vendored_schemas_are_the_published_ones() -> None:
    import hashlib

    sources = (ROOT / "profiles" / "gitb" / "SOURCES.md").read_text(encoding="utf-8")
    for path in [*SCHEMA_DIR.glob("*.xsd"), ROOT / "profiles" / "gitb" / "wsdl" / "gitb_vs.wsdl"]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() in sources, path.name


# -- messages ----------------------------------------------------------------------------------------
def test_every_message_in_four_languages() -> None:
    for key in messages.keys():  # noqa: SIM118 (a function, not a dict)
        assert messages.languages_of(key) == {"en", "fr", "nl", "de"}, key


def test_the_documented_test_case_is_valid_tdl() -> None:
    """docs/gitb.md's example verify step, checked against the current gitb_tdl.xsd."""
    import re

    text = (ROOT / "docs" / "gitb.md").read_text(encoding="utf-8")
    example = re.search(r"```xml\n(.*?)```", text, re.S)
    assert example is not None
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "gitb_tdl.xsd")))
    doc = etree.fromstring(example.group(1).encode())
    assert schema.validate(doc), schema.error_log.filter_from_errors()[:3]
    verify = doc.find("{http://www.gitb.com/tdl/v1/}steps/{http://www.gitb.com/tdl/v1/}verify")
    assert verify is not None
    names = {i.get("name") for i in verify.iter("{http://www.gitb.com/tdl/v1/}input")}
    declared = {p.name for p in module.INPUTS}
    assert names and names <= declared
