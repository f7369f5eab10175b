"""Mapped bundles meet the full validator (profiles + rulebook) in every region.

Guarded only by the import of the validator facade: once it exists these tests must pass, not
skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

api = pytest.importorskip("adapter.validation.api")

from adapter.mapping import load_document, to_bundle, validate  # noqa: E402
from tests.test_mapping_properties import documents  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "mappings" / "examples").iterdir())
REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")


@pytest.fixture(scope="module")
def validator() -> Any:
    return api.Validator()


def describe(issues: list[Any]) -> str:
    return "\n".join(f"{i.severity} {i.rule or ''} {i.expression}: {i.message}" for i in issues)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_maps_to_a_bundle_without_error_nor_warning(
    validator: Any, path: Path, region: str
) -> None:
    """Profiles, invariants (dom-6: every resource has a narrative) and the rulebook in every region."""
    bundle = to_bundle(load_document(path.read_bytes()))
    report = validator.validate(bundle, api.ValidationOptions(region=region))
    found = [i for i in report.issues if i.severity in ("fatal", "error", "warning")]
    assert not found, describe(found)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_map_without_structural_error(validator: Any, data: dict[str, Any]) -> None:
    """Profiles and structure only: generated documents may break the rulebook on purpose."""
    bundle = to_bundle(validate(data))
    report = validator.validate(bundle, api.ValidationOptions(rulebook=False))
    errors = [i for i in report.issues if i.is_error]
    assert not errors, describe(errors)
    narrative = [i for i in report.issues if "dom-6" in i.message or "txt-" in i.message]
    assert not narrative, describe(narrative)


SAMPLES = sorted((ROOT / "samples" / "valid").glob("*.json"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_valid_sample_remapped_is_still_valid(validator: Any, path: Path) -> None:
    """Bundle -> document -> Bundle: the re-mapped bundle passes in the sample's region too,
    with no error nor warning."""
    import json

    from adapter.mapping import to_document

    region = next(r for r in REGIONS if path.name.startswith(r))
    sample = json.loads(path.read_text(encoding="utf-8"))
    bundle = to_bundle(to_document(sample))
    report = validator.validate(bundle, api.ValidationOptions(region=region))
    found = [i for i in report.issues if i.severity in ("fatal", "error", "warning")]
    assert not found, describe(found)
