"""Internal narrative hyperlinks (``<a href="#x">``) must resolve inside the resource."""

from __future__ import annotations

import json

import pytest

from adapter.conformance import default_store
from adapter.fhirio import to_xml
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator

DIV = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(default_store())


def patient(div: str, **extra: object) -> dict:
    return {"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": DIV.format(div)},
            **extra}


def link_errors(validator: Validator, resource: dict, fmt: str) -> list[str]:
    data = json.dumps(resource).encode() if fmt == "json" else to_xml(resource).encode()
    ctype = "application/fhir+json" if fmt == "json" else "application/fhir+xml"
    report = validator.validate_bytes(data, ctype, ValidationOptions(rulebook=False))
    return [i.message for i in report.issues if i.severity == "error" and "Hyperlink" in i.message]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(
    "resource",
    [
        patient('<a name="top">Top</a> <a href="#top">back to top</a>'),
        patient('<p id="details">x</p><a href="#details">details</a>'),
        patient('<a href="#n1">the name</a>', name=[{"id": "n1", "family": "Peeters"}]),
        patient('<a href="#org">GP</a>',
                contained=[{"resourceType": "Organization", "id": "org", "name": "GP"}],
                managingOrganization={"reference": "#org"}),
        patient('<a href="#">top</a> <a href="https://example.org/x#y">elsewhere</a>'),
    ],
    ids=["anchor-name", "element-id-in-div", "element-id", "contained", "top-and-external"],
)
def test_links_that_resolve_pass(validator: Validator, resource: dict, fmt: str) -> None:
    assert link_errors(validator, resource, fmt) == []


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_link_to_nowhere_is_an_error(validator: Validator, fmt: str) -> None:
    resource = patient('<a name="list">List</a> <a href="#list/missing">the appointment</a>')
    assert link_errors(validator, resource, fmt) == [
        "Hyperlink '#list/missing' for 'the appointment' does not resolve: no element of the resource "
        "and no anchor of its narrative has that id"
    ]
