"""A vendor's validation tests, as a vendor would write them with the becare plugin.

tests/test_plugin.py copies this file into a scratch project (as ``test_validation.py``) next to
a ``bundles/`` folder and runs pytest on it. Some tests fail on purpose: that is how the plugin's
failure report is checked. The file is not named ``test_*.py`` so the repository's own run skips it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapter.fhirio import to_xml
from adapter.testing import assert_invalid, assert_valid, becare_files

if TYPE_CHECKING:
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

BUNDLES = Path(__file__).parent / "bundles"
BROKEN_TEAM = BUNDLES / "broken" / "team-without-person.json"
COORDINATOR_OUTSIDE_TEAM = BUNDLES / "broken" / "coordinator-outside-team.json"


@pytest.mark.parametrize("path", becare_files(BUNDLES / "valid"))
def test_generated_bundle_is_valid(path: Path) -> None:
    assert_valid(path)


def test_team_without_person_fails() -> None:  # fails on purpose: IC-TEAM-1
    assert_valid(BROKEN_TEAM)


def test_team_without_person_is_caught_for_the_right_reason() -> None:
    assert_invalid(BROKEN_TEAM, "IC-TEAM-1")


def test_a_known_gap_can_be_tolerated() -> None:
    assert_valid(BROKEN_TEAM, allow=["IC-TEAM-1"])


def test_xml_text_is_accepted() -> None:
    bundle = json.loads((BUNDLES / "valid" / "flanders-care-coordination.json").read_text(encoding="utf-8"))
    assert_valid(to_xml(bundle))


def test_patient_dict_with_a_bad_code_fails() -> None:  # fails on purpose: terminology
    assert_valid({"resourceType": "Patient", "gender": "robot"})


def test_truncated_json_fails_cleanly() -> None:  # fails on purpose: fatal parse issue
    assert_valid(b'{"resourceType": "Bundle",\n  "type": ')


def test_coordinator_outside_team_depends_on_region() -> None:  # fails unless --becare-region wallonia
    assert_valid(COORDINATOR_OUTSIDE_TEAM)


def test_validator_fixture(becare_validator: Validator, becare_options: ValidationOptions) -> None:
    report = becare_validator.validate({"resourceType": "Patient", "gender": "female"}, becare_options)
    assert not report.has_errors
    assert becare_options.lang in ("en", "fr", "nl", "de")
