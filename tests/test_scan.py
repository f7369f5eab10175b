"""The one-pass scan (adapter.fhirio.scan) finds what the bundle check's reference scan and the
rulebook's identifier scan each found on their own, in the same order, with the same paths.

The two reference scans below are the specifications, written the plain way: every
``reference`` string except under ``contained`` and ``_`` companions (and not inside a
``reference`` that is not a string); every object with a ``system`` under an ``identifier``
key except under ``text``, ``contained`` and ``_`` companions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.fhirio.scan import Scans, scan
from adapter.rules import check_rulebook

ROOT = Path(__file__).resolve().parents[1]


def references_spec(node: Any, path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not isinstance(node, dict):
        return out
    for key, child in node.items():
        if key == "reference":
            if isinstance(child, str):
                out.append((child, f"{path}.reference"))
        elif key == "contained" or key.startswith("_"):
            continue
        elif isinstance(child, dict):
            out += references_spec(child, f"{path}.{key}")
        elif isinstance(child, list):
            for i, item in enumerate(child):
                out += references_spec(item, f"{path}.{key}[{i}]")
    return out


def identifiers_spec(node: Any, path: str, under: bool = False) -> list[tuple[dict[str, Any], str]]:
    out: list[tuple[dict[str, Any], str]] = []
    if not isinstance(node, dict):
        return out
    if under and "system" in node:
        out.append((node, path))
    for key, child in node.items():
        if key in ("text", "contained") or key.startswith("_"):
            continue
        if isinstance(child, dict):
            out += identifiers_spec(child, f"{path}.{key}", key == "identifier")
        elif isinstance(child, list):
            for i, item in enumerate(child):
                out += identifiers_spec(item, f"{path}.{key}[{i}]", key == "identifier")
    return out


KEYS = st.sampled_from(
    ["reference", "identifier", "system", "value", "text", "contained", "_value", "subject", "extension", ""]
)
LEAVES = st.one_of(st.text(max_size=3), st.integers(), st.none(), st.booleans())
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, TREES, max_size=5))
def test_scan_finds_what_each_scan_found(tree: dict[str, Any]) -> None:
    found = scan(tree, "Patient")
    assert found.references == references_spec(tree, "Patient")
    assert [(id(i), p) for i, p in found.identifiers] == [
        (id(i), p) for i, p in identifiers_spec(tree, "Patient")
    ]


def test_scan_of_a_realistic_resource() -> None:
    task = {
        "resourceType": "Task",
        "text": {"status": "generated", "extension": [{"valueReference": {"reference": "Patient/n"}}]},
        "identifier": [{"system": "urn:a", "value": "1"}, {"value": "no system"}],
        "for": {"reference": "Patient/p", "identifier": {"system": "urn:ssin", "value": "2"}},
        "owner": {"reference": {"not": "a string"}, "identifier": {"system": "urn:b"}},
        "contained": [{"resourceType": "Patient", "identifier": [{"system": "urn:c"}]}],
        "_status": {"extension": [{"valueReference": {"reference": "Patient/q"}}]},
    }
    found = scan(task, "Bundle.entry[0].resource")
    assert found.references == [
        ("Patient/n", "Bundle.entry[0].resource.text.extension[0].valueReference.reference"),
        ("Patient/p", "Bundle.entry[0].resource.for.reference"),
    ]
    assert [p for _i, p in found.identifiers] == [
        "Bundle.entry[0].resource.identifier[0]",
        "Bundle.entry[0].resource.for.identifier",
        "Bundle.entry[0].resource.owner.identifier",
    ]
    assert scan("not an object", "X") == scan({}, "X")


def test_scans_are_kept_per_resource_and_path() -> None:
    scans = Scans()
    a, b = {"subject": {"reference": "Patient/1"}}, {"subject": {"reference": "Patient/1"}}
    first = scans.of(a, "Bundle.entry[0].resource")
    assert scans.of(a, "Bundle.entry[0].resource") is first
    assert scans.of(b, "Bundle.entry[0].resource") is not first  # an equal, other object
    assert scans.of(a, "Bundle.entry[1].resource").references == [
        ("Patient/1", "Bundle.entry[1].resource.subject.reference")
    ]


def test_rulebook_finds_the_same_with_or_without_the_validations_scans() -> None:
    sample = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
    bundle = json.loads(sample.read_text(encoding="utf-8"))
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = "12345678901"  # wrong check digits
    alone = check_rulebook(bundle, region=None, lang="en")
    scans = Scans()
    for i, entry in enumerate(bundle["entry"]):
        scans.of(entry["resource"], f"Bundle.entry[{i}].resource")  # as the bundle check does first
    shared = check_rulebook(bundle, region=None, lang="en", scans=scans)
    assert [(i.expression, i.message_id) for i in shared.issues] == [
        (i.expression, i.message_id) for i in alone.issues
    ]
    assert ("Bundle.entry[0].resource.identifier[0].value", "IC-ID-1.ssin") in [
        (i.expression, i.message_id) for i in shared.issues
    ]


def test_a_scan_of_a_tree_deeper_than_the_interpreter_allows_raises_recursion_error() -> None:
    """As the interpreted scan did; compiled, it would otherwise overflow the C stack."""
    node: dict = {"reference": "Patient/1"}
    for _ in range(100_000):
        node = {"item": [node]}
    with pytest.raises(RecursionError):
        scan(node, "Bundle")
    shallow: dict = {"reference": "Patient/1"}
    for _ in range(500):
        shallow = {"item": [shallow]}
    assert scan(shallow, "Bundle").references[0][0] == "Patient/1"
