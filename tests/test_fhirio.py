"""adapter.fhirio: parsing FHIR JSON/XML into the internal form, writing it back, locating."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapter.fhirio import (
    DEFAULT_LIMITS,
    Limits,
    ParseError,
    parse,
    parse_file,
    to_json,
    to_xml,
)
from adapter.fhirio import locate as locate_mod
from adapter.fhirio.model import core_model
from tests.shared_ref import reference_dir

DATA = Path(__file__).parent / "data" / "fhirio"
SUITE = reference_dir() / "fhir-test-cases" / "validator"
SUITE_JSON = sorted(SUITE.glob("*.json")) + sorted(SUITE.glob("ab/*.json"))
SUITE_XML = sorted(SUITE.glob("*.xml"))
# Test-suite files that are malformed JSON on purpose.
BAD_JSON = {"bad-json-close-1.json", "bad-json-close-2.json", "bad-json-close-3.json"}
# Invalid FHIR that XML cannot carry unchanged (JSON types or shapes XML has no way to express):
# a number inside "_valueInteger", an empty array, an object where an array belongs, a DSTU2
# "fhir_comments" array, an R5-only element (maxValueDuration) whose number becomes text.
LOSSY_INVALID = {
    "Observation-ex-pain.json",
    "empty-array.json",
    "synthea.json",
    "json-comments.json",
    "toplevel-maxvalueduration-profile.json",
    "toplevel-minvalueduration-profile.json",
}


def strict(value: Any) -> Any:
    """Comparable form that tells 1.50 from 1.5, and 1 from True (1 and Decimal(1) read the same)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, Decimal)):
        return ("number", str(value))
    return value


def normalise_div(value: Any) -> Any:
    """Narratives compared as canonical XML (XML parsing normalises CRLF and entity spelling)."""
    if isinstance(value, dict):
        out = {k: normalise_div(v) for k, v in value.items()}
        if isinstance(out.get("div"), str):
            out["div"] = etree.tostring(etree.fromstring(out["div"].replace("\r\n", "\n")), method="c14n")
        return out
    if isinstance(value, list):
        return [normalise_div(v) for v in value]
    return value


def roundtrip_xml(resource: dict[str, Any]) -> dict[str, Any]:
    doc = parse(to_xml(resource))
    assert doc.format == "xml"
    assert doc.issues == []
    return doc.resource


# -- JSON reading ------------------------------------------------------------------------------


def test_json_bundle_parses_with_decimals_and_types() -> None:
    doc = parse_file(DATA / "bundle-25.json")
    assert doc.format == "json" and doc.issues == []
    bundle = doc.resource
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 25
    goal = bundle["entry"][13]["resource"]
    assert goal["resourceType"] == "Goal"
    value = goal["target"][0]["detailQuantity"]["value"]
    assert isinstance(value, Decimal) and str(value) == "72.50"
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["component"][0]["valueInteger"] == 3 and type(obs["component"][0]["valueInteger"]) is int
    assert obs["component"][1]["valueBoolean"] is True


def test_decimals_written_exactly_as_parsed() -> None:
    text = '{"resourceType":"Parameters","parameter":[{"name":"q","valueQuantity":{"value":1.50}},'
    text += '{"name":"a","valueDecimal":0.000100},{"name":"b","valueInteger":7},'
    text += '{"name":"c","valueDecimal":3.14159265358979323846264338327950288},'
    text += '{"name":"d","valueDecimal":-1.0E+5}]}'
    resource = parse(text).resource
    out = to_json(resource, pretty=False)
    for literal in (
        '"value":1.50',
        '"valueDecimal":0.000100',
        '"valueInteger":7',
        "3.14159265358979323846264338327950288",
    ):
        assert literal in out
    assert '"valueDecimal":-1.0E+5' in out
    assert type(resource["parameter"][2]["valueInteger"]) is int
    xml = to_xml(resource)
    assert 'value="1.50"' in xml and 'value="0.000100"' in xml
    assert strict(parse(xml).resource) == strict(resource)


def test_to_json_refuses_non_finite_decimals() -> None:
    with pytest.raises(ValueError):
        to_json({"resourceType": "Basic", "x": Decimal("NaN")})


def test_duplicate_keys_reported_with_path_and_position() -> None:
    text = '{\n  "resourceType": "Patient",\n  "active": true,\n  "name": [{"family": "A", "family": "B"}],\n'
    text += '  "active": false\n}'
    doc = parse(text)
    assert doc.resource["active"] is False  # last wins, as in every JSON reader
    assert doc.resource["name"][0]["family"] == "B"
    found = {(i.expression, i.line, i.col) for i in doc.issues}
    assert found == {("Patient.name[0].family", 4, 28), ("Patient.active", 5, 3)}
    assert all(i.severity == "error" and "Duplicate JSON property" in i.message for i in doc.issues)


def test_no_duplicates_no_issue() -> None:
    doc = parse('{"resourceType": "Patient", "name": [{"family": "A"}, {"family": "A"}]}')
    assert doc.issues == []


# -- parse errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt", "code", "fragment"),
    [
        (b"hello world", None, "invalid", "starts with 'h'"),
        (b"", None, "invalid", "empty"),
        (b"   \n  ", None, "invalid", "empty"),
        (b'[{"resourceType": "Patient"}]', None, "structure", "JSON array"),
        (b'[{"resourceType": "Patient"}]', "application/fhir+json", "structure", "array"),
        (b'"Patient"', "json", "structure", "not an object"),
        (b'{"id": "x"}', None, "structure", "no 'resourceType'"),
        (b'{"resourceType": 7}', None, "structure", "no 'resourceType'"),
        (b'{"resourceType": "Pateint"}', None, "structure", "Unknown resource type 'Pateint'"),
        (b'{"resourceType": "DomainResource"}', None, "structure", "Unknown resource type"),
        (b'{"resourceType": "Patient",}', None, "invalid", "Invalid JSON"),
        (b'{"resourceType": "Observation", "valueDecimal": NaN}', None, "invalid", "NaN"),
        (b"\xff\xfe{", "json", "invalid", "utf-16"),
        (b'{"resourceType": "Patient", "x": "\xff"}', None, "invalid", "UTF-8"),
        (b"<Pateint xmlns='http://hl7.org/fhir'/>", None, "structure", "Unknown resource type"),
        (b"<Patient/>", None, "structure", "no namespace"),
        (b"<Patient xmlns='http://hl7.org/fhir/'/>", None, "structure", "namespace"),
        (
            b"<Patient xmlns='http://hl7.org/fhir'><active value='true'></Patient>",
            None,
            "invalid",
            "Invalid XML",
        ),
        (b"<Patient xmlns='http://hl7.org/fhir'/>", "application/pdf", "invalid", "Unsupported content type"),
    ],
)
def test_parse_errors(data: bytes, fmt: str | None, code: str, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(data, fmt)
    assert info.value.code == code
    assert fragment in info.value.message


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ParseError) as info:
        parse_file(SUITE / "bad-json-close-3.json")
    assert info.value.code == "invalid"
    assert (info.value.line, info.value.col) == (16, 9)


def test_unknown_type_error_points_at_resource_type() -> None:
    with pytest.raises(ParseError) as info:
        parse('{\n  "id": "1",\n  "resourceType": "Foo"\n}')
    assert (info.value.line, info.value.col) == (3, 3)


def test_xml_syntax_error_has_position() -> None:
    with pytest.raises(ParseError) as info:
        parse("<Patient xmlns='http://hl7.org/fhir'>\n  <active value='true'>\n</Patient>")
    assert info.value.code == "invalid" and info.value.line == 3


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!-- a comment first -->
<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<!doctype Patient><Patient/>"])
def test_doctype_rejected_fast_and_never_expanded(payload: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(ParseError) as info:
        parse(payload)
    assert time.perf_counter() - start < 0.5
    assert info.value.code == "security"
    assert "DOCTYPE" in info.value.message


def test_doctype_rejected_in_text_and_utf16_input() -> None:
    for payload in (EXTERNAL_ENTITY.decode(), EXTERNAL_ENTITY.decode().encode("utf-16")):
        with pytest.raises(ParseError) as info:
            parse(payload)
        assert info.value.code == "security"


def _deep_json(depth: int, array: bool) -> str:
    inner = "[" * depth + "]" * depth if array else '{"a":' * depth + "1" + "}" * depth
    return '{"resourceType": "Basic", "x": ' + inner + "}"


@pytest.mark.parametrize("array", [True, False])
def test_deep_json_rejected(array: bool) -> None:
    with pytest.raises(ParseError) as info:
        parse(_deep_json(200, array))
    assert info.value.code == "too-costly"
    assert info.value.line == 1 and info.value.col is not None


def test_very_deep_json_rejected_without_recursion_error() -> None:
    with pytest.raises(ParseError) as info:
        parse(_deep_json(100_000, True))
    assert info.value.code == "too-costly"


def test_depth_limit_is_configurable() -> None:
    assert parse(_deep_json(50, False)).resource["resourceType"] == "Basic"
    with pytest.raises(ParseError):
        parse(_deep_json(50, False), limits=Limits(max_depth=20))


@pytest.mark.parametrize("depth", [200, 300, 5000])
def test_deep_xml_rejected(depth: int) -> None:
    inner = "<extension url='u'>" * depth + "</extension>" * depth
    payload = f"<Basic xmlns='http://hl7.org/fhir'>{inner}</Basic>"
    with pytest.raises(ParseError) as info:
        parse(payload)
    assert info.value.code == "too-costly"


def test_deep_xhtml_counts_towards_depth() -> None:
    div = "<div xmlns='http://www.w3.org/1999/xhtml'>" + "<span>" * 120 + "</span>" * 120 + "</div>"
    payload = f"<Patient xmlns='http://hl7.org/fhir'><text><status value='generated'/>{div}</text></Patient>"
    with pytest.raises(ParseError) as info:
        parse(payload)
    assert info.value.code == "too-costly"


def test_oversized_input_rejected(tmp_path: Path) -> None:
    filler = "x" * (11 * 1024 * 1024)
    as_json = '{"resourceType": "Basic", "x": "' + filler + '"}'
    as_xml = f"<Basic xmlns='http://hl7.org/fhir'><!-- {filler} --></Basic>"
    for payload in (as_json, as_json.encode(), as_xml.encode()):
        with pytest.raises(ParseError) as info:
            parse(payload)
        assert info.value.code == "too-costly"
    path = tmp_path / "big.json"
    path.write_text(as_json)
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert info.value.code == "too-costly"
    assert DEFAULT_LIMITS.max_bytes == 10 * 1024 * 1024
    with pytest.raises(ParseError):
        parse('{"resourceType": "Basic"}', limits=Limits(max_bytes=10))


# -- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        None,
        "json",
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/json",
        "*/*",
    ],
)
def test_json_content_types(fmt: str | None) -> None:
    assert parse(b'{"resourceType": "Patient"}', fmt).format == "json"


@pytest.mark.parametrize(
    "fmt", [None, "xml", "application/fhir+xml", "text/xml", "application/xml;charset=UTF-8"]
)
def test_xml_content_types(fmt: str | None) -> None:
    assert parse(b"<Patient xmlns='http://hl7.org/fhir'/>", fmt).format == "xml"


def test_bom_and_encodings_tolerated() -> None:
    assert parse(b'\xef\xbb\xbf  {"resourceType": "Patient"}').format == "json"
    assert parse('\ufeff{"resourceType": "Patient"}').format == "json"
    assert parse(b"\xef\xbb\xbf<Patient xmlns='http://hl7.org/fhir'/>").format == "xml"
    xml = "<?xml version='1.0' encoding='ISO-8859-1'?>"
    xml += "<Patient xmlns='http://hl7.org/fhir'><name><family value='Müller'/></name></Patient>"
    assert parse(xml).resource["name"][0]["family"] == "Müller"  # text input: declaration ignored
    assert parse(xml.encode("latin-1")).resource["name"][0]["family"] == "Müller"
    utf16 = xml.replace("ISO-8859-1", "UTF-16").encode("utf-16")
    assert parse(utf16).resource["name"][0]["family"] == "Müller"
    assert (
        parse('{"resourceType": "Patient", "name": [{"family": "Müller"}]}'.encode("utf-16")).resource[
            "name"
        ][0]["family"]
        == "Müller"
    )


# -- XML reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["patient-twin", "bundle-twin"])
def test_xml_converts_to_its_json_twin(name: str) -> None:
    from_xml = parse_file(DATA / f"{name}.xml")
    from_json = parse_file(DATA / f"{name}.json")
    assert from_xml.issues == [] and from_json.issues == []
    assert strict(from_xml.resource) == strict(from_json.resource)
    assert strict(roundtrip_xml(from_json.resource)) == strict(from_json.resource)


def test_xml_primitive_array_padding() -> None:
    patient = parse_file(DATA / "patient-twin.xml").resource
    assert patient["name"][0]["given"] == ["Anna", None, "Marie"]
    assert patient["name"][0]["_given"][0] is None
    assert patient["name"][0]["_given"][2] == {"id": "g3"}


def test_xml_unknown_content_kept_or_reported() -> None:
    payload = """<Patient xmlns="http://hl7.org/fhir" xmlns:x="urn:x">
  <active value="yes" colour="red"/>
  <nickname value="Bob"/>
  <nickname value="Bobby"/>
  <x:secret value="1"/>
  <gender value="male">text</gender>
  <contact><unknownPart><a value="1"/></unknownPart></contact>
  <extension><url value="http://x"/></extension>
</Patient>"""
    doc = parse(payload)
    res = doc.resource
    assert res["active"] == "yes"  # not a boolean: kept as text for the validator to report
    assert res["nickname"] == ["Bob", "Bobby"]
    assert res["{urn:x}secret"] == "1"
    assert res["contact"] == [{"unknownPart": {"a": "1"}}]
    messages = [i.message for i in doc.issues]
    assert any("Unknown attribute 'colour'" in m for m in messages)
    assert any("Text content is not allowed" in m for m in messages)
    assert any("'url' must be an XML attribute" in m for m in messages)
    colour = next(i for i in doc.issues if "colour" in i.message)
    assert colour.line == 2 and colour.expression == "Patient.active"


def test_xml_repeated_single_element_reported() -> None:
    doc = parse(
        "<Patient xmlns='http://hl7.org/fhir'><gender value='male'/><gender value='female'/></Patient>"
    )
    assert doc.resource["gender"] == "male"
    assert [i.expression for i in doc.issues] == ["Patient.gender"]


def test_xml_primitive_types() -> None:
    payload = """<Observation xmlns="http://hl7.org/fhir">
  <status value="final"/><code><text value="t"/></code>
  <valueSampledData><origin><value value="0.50"/></origin><period value="1.0"/><dimensions value="3"/>
  <data value="1 2 3"/></valueSampledData>
</Observation>"""
    res = parse(payload).resource
    sd = res["valueSampledData"]
    assert strict(sd) == strict(
        {"origin": {"value": Decimal("0.50")}, "period": Decimal("1.0"), "dimensions": 3, "data": "1 2 3"}
    )
    assert str(sd["origin"]["value"]) == "0.50"


def test_xml_test_suite_files_parse_and_are_stable() -> None:
    assert len(SUITE_XML) >= 9
    for path in SUITE_XML:
        doc = parse_file(path)
        assert doc.format == "xml" and doc.issues == [], path.name
        assert doc.resource["resourceType"] == "StructureDefinition"
        again = roundtrip_xml(doc.resource)
        assert strict(again) == strict(doc.resource), path.name
        assert strict(parse(to_json(again)).resource) == strict(doc.resource), path.name


def test_xml_twins_in_test_suite_where_names_match() -> None:
    twins = [(p, p.with_suffix(".json")) for p in SUITE_XML if p.with_suffix(".json").exists()]
    for xml_path, json_path in twins:  # none in the current R4 subset; kept for future files
        assert strict(parse_file(xml_path).resource) == strict(parse_file(json_path).resource)


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUITE_JSON, ids=lambda p: p.name)
def test_test_suite_json_roundtrip(path: Path) -> None:
    if path.name in BAD_JSON:
        with pytest.raises(ParseError) as info:
            parse_file(path)
        assert info.value.code == "invalid" and info.value.line is not None
        return
    doc = parse_file(path)
    assert doc.format == "json"
    again = parse(to_json(doc.resource)).resource
    assert strict(again) == strict(doc.resource)
    via_xml = parse(to_xml(doc.resource))
    if path.name in LOSSY_INVALID:
        assert via_xml.resource["resourceType"] == doc.resource["resourceType"]
        return
    assert via_xml.issues == []
    assert strict(normalise_div(via_xml.resource)) == strict(normalise_div(doc.resource))


def test_bundle_roundtrip_json_xml_json() -> None:
    doc = parse_file(DATA / "bundle-25.json")
    xml = to_xml(doc.resource)
    assert strict(roundtrip_xml(doc.resource)) == strict(doc.resource)
    assert to_json(parse(xml).resource) == to_json(doc.resource) or strict(parse(xml).resource) == strict(
        doc.resource
    )


def test_to_xml_uses_definition_order_and_attributes() -> None:
    patient = {
        "managingOrganization": {"reference": "Organization/1"},
        "birthDate": "2000-01-01",
        "name": [{"given": ["A"], "family": "B", "id": "n"}],
        "extension": [{"valueString": "v", "url": "http://x"}],
        "id": "p",
        "resourceType": "Patient",
    }
    xml = to_xml(patient, pretty=False)
    assert xml == (
        '<Patient xmlns="http://hl7.org/fhir"><id value="p"/>'
        '<extension url="http://x"><valueString value="v"/></extension>'
        '<name id="n"><family value="B"/><given value="A"/></name><birthDate value="2000-01-01"/>'
        '<managingOrganization><reference value="Organization/1"/></managingOrganization></Patient>'
    )


def test_to_xml_keeps_narrative_whitespace_when_pretty() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">\n<p>a  <b>b</b> </p><ul><li>x</li></ul></div>'
    res = {"resourceType": "Basic", "text": {"status": "generated", "div": div}, "code": {"text": "c"}}
    assert parse(to_xml(res)).resource["text"]["div"] == div


def test_to_xml_rejects_bad_narrative() -> None:
    with pytest.raises(ValueError):
        to_xml({"resourceType": "Basic", "text": {"status": "generated", "div": "<div>&nbsp;</div>"}})


# -- locate ----------------------------------------------------------------------------------------

LOCATE_JSON = """{
  "resourceType": "Bundle",
  "type": "collection",
  "entry": [
    {"resource": {"resourceType": "Patient", "id": "a"}},
    {"resource": {"resourceType": "Patient", "id": "b"}},
    {"resource": {"resourceType": "Patient", "id": "c"}},
    {
      "resource": {
        "resourceType": "CareTeam",
        "participant": [
          {"member": {"reference": "Patient/a"}},
          {
            "role": [{"text": "x"}],
            "member": {"reference": "Patient/b"}
          }
        ]
      }
    },
    {
      "resource": {
        "resourceType": "Patient",
        "name": [{"family": "F", "given": ["A", "B"], "_given": [null, {"extension": [{"url": "u"}]}]}],
        "birthDate": "2000-01-01",
        "_birthDate": {"extension": [{"url": "v", "valueString": "w"}]}
      }
    },
    {"resource": {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1}}}
  ]
}"""


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Bundle", (1, 1)),
        ("Bundle.type", (3, 3)),
        ("Bundle.entry[3]", (8, 5)),
        ("Bundle.entry[3].resource.participant[1].member", (15, 13)),
        ("Bundle.entry[3].resource.ofType(CareTeam).participant[1].member.reference", (15, 24)),
        ("Bundle.entry[4].resource.name[0].given[1]", (23, 49)),
        ("Bundle.entry[4].resource.name[0].given[1].extension[0]", (23, 87)),
        ("Bundle.entry[4].resource.name[0]._given[1]", (23, 72)),
        ("Bundle.entry[4].resource.birthDate.extension[0].value", (25, 51)),
        ("Bundle.entry[5].resource.value", (28, 69)),
        ("Bundle.entry[5].resource.valueQuantity.value", (28, 87)),
        ("Bundle.entry[3].resource.participant[1].period", (13, 11)),  # missing: deepest ancestor
        ("Bundle.entry[9].resource", (4, 3)),
    ],
)
def test_locate_json(expression: str, expected: tuple[int, int]) -> None:
    assert parse(LOCATE_JSON).locate(expression) == expected


def test_locate_other_root_is_none() -> None:
    assert parse(LOCATE_JSON).locate("Patient.name") is None


def test_locate_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = locate_mod.tokenize_json

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(locate_mod, "tokenize_json", counting)
    doc = parse(LOCATE_JSON)
    assert not doc.located and calls == []
    assert doc.locate("Bundle.entry[1]") == (6, 5)
    assert doc.locate("Bundle.entry[2]") == (7, 5)
    # read along the paths asked for: the whole-text tokenizer never runs without duplicate keys
    assert doc.located and calls == []
    dup = parse(LOCATE_JSON.replace('"type": "collection"', '"type": "collection", "type": "batch"'))
    assert calls == [1]  # a duplicate key: tokenized once, to say where it is
    assert dup.locate("Bundle.entry[1]") == (6, 5) and calls == [1]  # and that index is reused


def test_locate_xml() -> None:
    xml = to_xml(parse(LOCATE_JSON).resource)
    lines = xml.splitlines()
    doc = parse(xml)
    assert not doc.located

    def where(needle: str, nth: int = 0) -> tuple[int, int]:
        hits = [(n + 1, line.index(needle) + 1) for n, line in enumerate(lines) if needle in line]
        return hits[nth]

    assert doc.locate("Bundle") == (1, 1)
    assert doc.locate("Bundle.entry[3].resource.participant[1].member") == where("<member>", 1)
    assert doc.locate("Bundle.entry[4].resource.name[0].given[1]") == where("<given", 1)
    assert doc.locate("Bundle.entry[4].resource.name[0].given[1].extension[0]") == where("<extension", 0)
    assert doc.locate("Bundle.entry[4].resource.birthDate.extension[0]") == where("<extension", 1)
    assert doc.locate("Bundle.entry[5].resource.value") == where("<valueQuantity>")
    assert doc.locate("Bundle.entry[3].resource.participant[1].period") == where("<participant>", 1)
    assert doc.located


def test_locate_xml_on_one_line_and_multiline_tags() -> None:
    xml = '<Patient xmlns="http://hl7.org/fhir"><name><given value="a"/><given\n value="b"/></name></Patient>'
    doc = parse(xml)
    assert doc.locate("Patient.name[0].given[0]") == (1, 44)
    assert doc.locate("Patient.name[0].given[1]") == (1, 62)  # the tag starts on line 1, ends on 2


# -- XML positions: columns as JSON counts them ------------------------------------------------------

# CRLF line ends, tab indentation, characters of 2 and 4 UTF-8 bytes (one of them outside the
# BMP), a comment before the root, comments holding look-alike tags and a CDATA section holding
# markup, all in front of the elements located below.
TRICKY_XML = "\r\n".join(
    [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!-- <name><given value="decoy"/></name> é -->',
        '<Patient xmlns="http://hl7.org/fhir">',
        '\t<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">'
        "<![CDATA[<p>x</p>]]><p>é</p></div></text>",
        '\t<name><text value="Zoë 𝄞"/><!-- <given/> --><given value="Ødegård"/>'
        '<given id="g2" value="Åse"/></name>',
        '\t<gender value="bogus"/>',
        "</Patient>",
    ]
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Patient", (3, 1)),
        ("Patient.text.div", (4, 35)),
        ("Patient.name[0].given[0]", (5, 46)),  # 50 if bytes were counted, 47 in UTF-16 units
        ("Patient.name[0].given[1]", (5, 70)),
        ("Patient.gender", (6, 2)),
        # primitives' attributes are located at the attribute name, as JSON locates the key
        ("Patient.name[0].given[0].value", (5, 53)),
        ("Patient.name[0].given[1].id", (5, 77)),
        ("Patient.name[0].given[1].value", (5, 85)),
        ("Patient.gender.value", (6, 10)),
        ("Patient.gender.extension[0]", (6, 2)),  # missing: the deepest existing element
    ],
)
@pytest.mark.parametrize("encoding", ["str", "utf-8", "utf-8-sig", "utf-16"])
def test_locate_xml_columns_in_characters(expression: str, expected: tuple[int, int], encoding: str) -> None:
    text = TRICKY_XML if encoding != "utf-16" else TRICKY_XML.replace('"UTF-8"', '"UTF-16"')
    data: str | bytes = text if encoding == "str" else text.encode(encoding)
    assert parse(data).locate(expression) == expected


def test_locate_xml_counts_like_json() -> None:
    """The same content laid out the same way is located at the same columns in both formats."""
    as_json = '{"resourceType": "Patient",\r\n\t"gender": "x", "name": [{"text": "Zoë 𝄞", "family": "F"}]}'
    as_xml = '<Patient xmlns="http://hl7.org/fhir">\r\n\t<gender value="x"/><name><text value="Zoë 𝄞"/>'
    as_xml += '<family value="F"/></name></Patient>'
    j, x = parse(as_json.encode()), parse(as_xml.encode())
    assert j.locate("Patient.gender") == x.locate("Patient.gender") == (2, 2)
    assert j.locate("Patient.name[0].family")[1] == as_json.splitlines()[1].index('"family"') + 1
    assert x.locate("Patient.name[0].family")[1] == as_xml.splitlines()[1].index("<family") + 1


def test_locate_xml_uses_the_text_as_sent() -> None:
    # Text input loses its encoding declaration before lxml sees it; columns must not shift.
    head = '<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">'
    doc = parse(head + '<gender value="x"/></Patient>')
    assert doc.locate("Patient.gender") == (1, len(head) + 1)
    # Bytes in a declared single-byte encoding are decoded as lxml decoded them.
    latin = "<?xml version='1.0' encoding='ISO-8859-1'?>\n<Patient xmlns='http://hl7.org/fhir'>"
    latin += "<name><family value='Müller'/><given value='Zoë'/></name></Patient>"
    assert parse(latin.encode("latin-1")).locate("Patient.name[0].given[0]") == (2, 68)


def test_locate_xml_multiline_start_tag_attribute() -> None:
    xml = '<Patient xmlns="http://hl7.org/fhir"><name><given\n\tid="a"\r\n  value="b"/></name></Patient>'
    doc = parse(xml)
    assert doc.locate("Patient.name[0].given[0]") == (1, 44)
    assert doc.locate("Patient.name[0].given[0].id") == (2, 2)
    assert doc.locate("Patient.name[0].given[0].value") == (3, 3)


def test_locate_xml_falls_back_to_the_line_when_text_and_tree_differ() -> None:
    from adapter.fhirio.xmllocate import XmlLocator

    root = etree.fromstring(b'<Patient xmlns="http://hl7.org/fhir">\n  <gender value="x"/>\n</Patient>')
    # one start tag more in the text than in the tree: the n-th tag is not the n-th element
    locator = XmlLocator(
        root, '<Extra/><Patient xmlns="http://hl7.org/fhir">\n  <gender value="x"/>\n</Patient>'
    )
    assert locator.locate("Patient.gender") == (2, 3)
    assert locator.locate("Patient.gender.value") == (2, 11)


def test_xml_parse_findings_have_line_and_column(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapter.fhirio import xmllocate

    built: list[int] = []
    real = xmllocate.XmlLocator

    def counting(*args: Any) -> Any:
        built.append(1)
        return real(*args)

    monkeypatch.setattr(xmllocate, "XmlLocator", counting)
    payload = (
        '<Patient xmlns="http://hl7.org/fhir" xmlns:x="urn:x">\r\n'
        '\t<!-- <active value="no" colour="blue"/> -->\r\n'
        '\t<active value="yes"\r\n\t        colour="rød" x:note="n"/>\r\n'
        '  <gender value="male">text</gender>'
        '<contact><name><use><value value="x"/></use></name></contact>\r\n'
        "</Patient>"
    )
    doc = parse(payload.encode())
    found = {(i.message.split(" on ")[0], i.line, i.col) for i in doc.issues}
    assert ("Unknown attribute 'colour'", 4, 10) in found  # the attribute, on the tag's 2nd line
    assert ("Unknown attribute '{urn:x}note'", 4, 23) in found  # written x:note
    assert ("Text content is not allowed in FHIR elements (use the value attribute)", 5, 3) in found
    assert all(i.line is not None and i.col is not None for i in doc.issues)
    # the index built for the findings is the one later locate() calls use
    assert doc.located and doc.locate("Patient.contact[0].name") == (5, 46)
    assert built == [1]
    assert not parse(TRICKY_XML.replace("bogus", "male").replace("<![CDATA[<p>x</p>]]>", "")).located
    assert built == [1]  # no finding, no index


@pytest.mark.parametrize(
    ("payload", "code", "position"),
    [
        ("<?xml version='1.0'?>\n<!-- é --><Patient/>", "structure", (2, 11)),
        ("<!-- é --> <Pateint xmlns='http://hl7.org/fhir'/>", "structure", (1, 12)),
        (  # lxml's own column (just after the bad end tag), in characters too: 39 in bytes
            "<Patient xmlns='http://hl7.org/fhir'>\n\t<name><text value='Zoë 𝄞'></name>\n</Patient>",
            "invalid",
            (2, 35),
        ),
        ("<?xml version='1.0'?>\n<!-- é -->  <!DOCTYPE Patient><Patient/>", "security", (2, 13)),
    ],
)
def test_xml_parse_errors_have_line_and_column(payload: str, code: str, position: tuple[int, int]) -> None:
    for data in (payload, payload.encode()):
        with pytest.raises(ParseError) as info:
            parse(data)
        assert info.value.code == code
        assert (info.value.line, info.value.col) == position


def test_too_deep_xml_error_has_line_and_column() -> None:
    payload = "<Basic xmlns='http://hl7.org/fhir'>\n" + "\t<extension url='é'>" * 30 + "</extension>" * 30
    payload += "</Basic>"
    with pytest.raises(ParseError) as info:
        parse(payload, limits=Limits(max_depth=10))
    assert info.value.code == "too-costly"
    assert (info.value.line, info.value.col) == (2, 1 + 20 * 9 + 1)  # the 10th nested extension


def test_document_from_dict_has_no_positions() -> None:
    from adapter.fhirio import Document

    assert Document({"resourceType": "Patient"}, "json").locate("Patient") is None


# -- model and cost ----------------------------------------------------------------------------------


def test_resource_types_come_from_core_definitions() -> None:
    types = core_model().resource_types
    assert len(types) == 146
    assert {"Patient", "CareTeam", "EpisodeOfCare", "Bundle", "Parameters"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource"} & types
