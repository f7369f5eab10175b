"""The rulebook as written (CONTRACT section 4): consents that count, assessments that are
assessments, planned means dated, triggers carry a code, unresolved team members, and the
validation date (``today``) from every entry point: check_rulebook, ValidationOptions, the
command line, the service and the pytest plugin."""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.rules import check_rulebook, load_catalog
from adapter.rules import checks as rule_checks
from adapter.rules.situation import parse_end_date

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BECARE = "https://becare.dev/fhir"
EXT_TRIGGER = BECARE + "/StructureDefinition/ext-case-management-trigger"
TRIGGER_CS = BECARE + "/CodeSystem/case-management-trigger"
BELRAI = "https://api-int.ehealth.fgov.be/belrai/v1/evaluations/"
SCORE_CS = "https://www.ehealth.fgov.be/standards/fhir/core-clinical/CodeSystem/be-cs-score"
CC = "valid/brussels-care-coordination.json"  # episode from 2024-03-01, consent from 2024-02-28
CM = "valid/wallonia-case-management.json"  # episode from 2024-05-01, consent from 2024-05-01
JUNE = dt.date(2025, 6, 1)
JULY = dt.date(2025, 7, 1)


def load(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def first(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    return resources(bundle, rtype)[0]


def consent(bundle: dict[str, Any], category: str) -> dict[str, Any]:
    return next(c for c in resources(bundle, "Consent") if category in json.dumps(c["category"]))


def full_url(bundle: dict[str, Any], res: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is res)


def rules(bundle: dict[str, Any], today: dt.date | None = None, region: str | None = None) -> list[str]:
    result = check_rulebook(bundle, region=region, lang="en", today=today)
    return sorted({i.rule for i in result.issues if i.rule and i.severity in ("error", "warning")})


def issues_of(bundle: dict[str, Any], rule_id: str, **kw: Any) -> list[Any]:
    return [i for i in check_rulebook(bundle, region=None, lang="en", **kw).issues if i.rule == rule_id]


def expiring(name: str = CC, category: str = "care-coordinator-agreement", end: str = "2025-06-30") -> dict:
    """A valid sample whose agreement ends on ``end`` while the episode goes on."""
    bundle = load(name)
    consent(bundle, category)["provision"]["period"]["end"] = end
    return bundle


# --- IC-CC-3 / IC-CM-2: which consent counts -------------------------------------------------------


class TestConsentCounts:
    def test_valid_samples_hold_for_any_validation_date(self) -> None:
        for name in (CC, CM):
            for today in (dt.date(2024, 1, 1), JUNE, dt.date(2040, 1, 1)):
                assert rules(load(name), today) == [], (name, today)

    @pytest.mark.parametrize(
        "name,category,rule_id",
        [(CC, "care-coordinator-agreement", "IC-CC-3"), (CM, "case-management", "IC-CM-2")],
    )
    def test_a_consent_that_ran_out_before_the_episode_began_does_not_count(
        self, name: str, category: str, rule_id: str
    ) -> None:
        bundle = load(name)
        start = dt.date.fromisoformat(first(bundle, "EpisodeOfCare")["period"]["start"])
        consent(bundle, category)["provision"]["period"] = {
            "start": "2020-01-01",
            "end": (start - dt.timedelta(days=1)).isoformat(),
        }
        assert rule_id in rules(bundle, JUNE)
        consent(bundle, category)["provision"]["period"]["end"] = "2030-01-01"
        assert rule_id not in rules(bundle, JUNE)

    @pytest.mark.parametrize(
        "name,category,rule_id",
        [(CC, "care-coordinator-agreement", "IC-CC-3"), (CM, "case-management", "IC-CM-2")],
    )
    def test_the_period_is_judged_up_to_the_validation_date(
        self, name: str, category: str, rule_id: str
    ) -> None:
        bundle = expiring(name, category)
        assert rule_id not in rules(bundle, JUNE)  # in force until the end of June
        assert rule_id not in rules(bundle, dt.date(2025, 6, 30))
        assert rule_id in rules(bundle, JULY)  # ran out while the episode goes on
        issue = issues_of(bundle, rule_id, today=JULY)[0]
        assert issue.severity == "error" and issue.expression.endswith(".resource")

    def test_a_finished_episode_needs_the_consent_up_to_its_end_only(self) -> None:
        bundle = expiring(end="2024-12-31")
        episode = first(bundle, "EpisodeOfCare")
        episode["period"]["end"] = "2024-12-31"
        episode["status"] = "finished"
        assert "IC-CC-3" not in rules(bundle, JULY)
        episode["period"]["end"] = "2025-01-31"  # the consent ran out a month before the end
        assert "IC-CC-3" in rules(bundle, JULY)

    def test_a_consent_given_after_the_episode_began_does_not_cover_it(self) -> None:
        bundle = load(CC)
        consent(bundle, "care-coordinator-agreement")["provision"]["period"] = {"start": "2024-03-02"}
        assert "IC-CC-3" in rules(bundle, JUNE)

    def test_a_partial_end_date_covers_its_whole_month(self) -> None:
        bundle = expiring(end="2025-06")
        assert "IC-CC-3" not in rules(bundle, dt.date(2025, 6, 30))
        assert "IC-CC-3" in rules(bundle, JULY)
        assert parse_end_date("2025") == dt.date(2025, 12, 31)
        assert parse_end_date("2024-02") == dt.date(2024, 2, 29)
        assert parse_end_date("2024-12") == dt.date(2024, 12, 31)
        assert parse_end_date("2024-12-03T10:00:00+01:00") == dt.date(2024, 12, 3)

    def test_a_consent_without_a_period_counts(self) -> None:
        bundle = load(CC)
        del consent(bundle, "care-coordinator-agreement")["provision"]["period"]
        assert rules(bundle, JULY) == []

    def test_only_an_active_consent_counts(self) -> None:
        bundle = load(CC)
        consent(bundle, "care-coordinator-agreement")["status"] = "inactive"
        assert "IC-CC-3" in rules(bundle, JUNE)

    def test_another_persons_consent_does_not_count(self) -> None:
        bundle = load(CC)
        consent(bundle, "care-coordinator-agreement")["patient"] = {"reference": "Patient/someone-else"}
        assert "IC-CC-3" in rules(bundle, JUNE)

    @pytest.mark.parametrize("name,rule_id", [(CC, "IC-CC-3"), (CM, "IC-CM-2")])
    def test_when_the_patient_cannot_be_resolved_no_other_consent_stands_in(
        self, name: str, rule_id: str
    ) -> None:
        bundle = load(name)
        episode = first(bundle, "EpisodeOfCare")
        episode["patient"] = {"display": "the person"}  # no reference, no identifier: unknown
        assert rule_id in rules(bundle, JUNE)

    def test_the_same_person_named_differently_still_counts(self) -> None:
        """An unresolved patient reference is the same person as the same reference elsewhere."""
        bundle = load(CC)
        first(bundle, "EpisodeOfCare")["patient"] = {"reference": "https://ehr.example/fhir/Patient/p-1"}
        consent(bundle, "care-coordinator-agreement")["patient"] = {
            "reference": "https://ehr.example/fhir/Patient/p-1"
        }
        assert "IC-CC-3" not in rules(bundle, JUNE)


# --- IC-CC-5: an assessment, not any reference ------------------------------------------------------


class TestAssessment:
    def plan_refers_to(self, bundle: dict[str, Any], *refs: dict[str, Any]) -> list[str]:
        first(bundle, "CarePlan")["supportingInfo"] = list(refs)
        return rules(bundle, JUNE)

    def test_the_valid_sample_refers_to_a_belrai_observation(self) -> None:
        assert rules(load(CC), JUNE) == []

    def test_any_reference_is_not_enough(self) -> None:
        bundle = load(CC)
        goal = first(bundle, "Goal")
        assert self.plan_refers_to(bundle, {"reference": full_url(bundle, goal)}) == ["IC-CC-5"]
        consent_url = full_url(bundle, consent(bundle, "data-sharing"))
        assert self.plan_refers_to(bundle, {"reference": consent_url}) == ["IC-CC-5"]

    def test_an_observation_of_no_instrument_is_not_an_assessment(self) -> None:
        bundle = load(CC)
        obs = first(bundle, "Observation")
        obs["code"] = {"text": "Blood pressure"}
        obs["identifier"] = obs["identifier"][:1]  # no BelRAI evaluation id either
        assert rules(bundle, JUNE) == ["IC-CC-5"]

    def test_instruments_of_the_mapping_table_count(self) -> None:
        bundle = load(CC)
        obs = first(bundle, "Observation")
        obs["identifier"] = obs["identifier"][:1]
        obs["code"] = {"coding": [{"system": SCORE_CS, "code": "WECKX"}], "text": "Katz"}
        assert rules(bundle, JUNE) == []
        obs["code"] = {"text": "BelRAI Palliative Care"}  # an instrument without a code: its text
        assert rules(bundle, JUNE) == []
        obs["code"] = {"text": "anything"}
        obs["identifier"].append({"system": BELRAI, "value": "EV-1"})  # a BelRAI evaluation
        assert rules(bundle, JUNE) == []

    def test_an_entered_in_error_assessment_does_not_count(self) -> None:
        bundle = load(CC)
        first(bundle, "Observation")["status"] = "entered-in-error"
        assert rules(bundle, JUNE) == ["IC-CC-5"]

    def test_a_questionnaire_response_counts(self) -> None:
        assert rules(load("rules/IC-CC-5/keeps-questionnaire-response.json"), JUNE) == []
        bundle = load(CC)
        plan = first(bundle, "CarePlan")
        plan["contained"] = [{"resourceType": "QuestionnaireResponse", "id": "qr", "status": "completed"}]
        assert self.plan_refers_to(bundle, {"reference": "#qr"}) == []

    def test_a_diagnostic_report_of_an_assessment_counts(self) -> None:
        bundle = load(CC)
        obs = first(bundle, "Observation")
        report = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "Home care report"},
            "result": [{"reference": full_url(bundle, obs)}],
        }
        url = "urn:uuid:0b7f6bb4-2a8e-4f55-9d0e-6f2b1d3c4e5f"
        bundle["entry"].append({"fullUrl": url, "resource": report})
        assert self.plan_refers_to(bundle, {"reference": url}) == []
        report["result"] = []
        assert self.plan_refers_to(bundle, {"reference": url}) == ["IC-CC-5"]
        report["code"] = {"coding": [{"system": SCORE_CS, "code": "GARS"}]}
        assert self.plan_refers_to(bundle, {"reference": url}) == []

    def test_references_outside_the_input(self) -> None:
        bundle = load(CC)
        outside = "https://other-ehr.example/fhir/"
        assert self.plan_refers_to(bundle, {"reference": outside + "QuestionnaireResponse/1"}) == []
        assert self.plan_refers_to(bundle, {"reference": "x", "type": "QuestionnaireResponse"}) == []
        assert self.plan_refers_to(bundle, {"identifier": {"system": BELRAI, "value": "EV-9"}}) == []
        assert self.plan_refers_to(bundle, {"reference": outside + "Observation/1"}) == ["IC-CC-5"]
        assert self.plan_refers_to(bundle, {"display": "the assessment"}) == ["IC-CC-5"]


# --- IC-CC-6: planned = open and dated --------------------------------------------------------------


def reassessment(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in resources(bundle, "Task") if "reassessment" in json.dumps(t["code"]))


@pytest.mark.parametrize("name", ["rules/IC-CC-6/breaks-no-date.json", "rules/IC-CC-6/breaks.json"])
def test_reassessment_samples(name: str) -> None:
    assert rules(load(name), JUNE, region="german-speaking") == ["IC-CC-6"]


def test_a_planned_reassessment_is_open_and_dated() -> None:
    bundle = load(CC)
    task = reassessment(bundle)
    assert rules(bundle, JUNE) == []
    task.pop("restriction")
    assert rules(bundle, JUNE) == ["IC-CC-6"]  # open but without a date
    task["executionPeriod"] = {"start": "2025-03-01"}
    assert rules(bundle, JUNE) == []
    task["status"] = "completed"
    assert rules(bundle, JUNE) == ["IC-CC-6"]


# --- IC-CM-3: a trigger carries a code of case-management-trigger -----------------------------------


def with_triggers(*extensions: dict[str, Any]) -> dict[str, Any]:
    bundle = load(CM)
    episode = first(bundle, "EpisodeOfCare")
    episode["extension"] = [x for x in episode["extension"] if x["url"] != EXT_TRIGGER] + list(extensions)
    return bundle


@pytest.mark.parametrize(
    "extension",
    [
        {"url": EXT_TRIGGER},
        {"url": EXT_TRIGGER, "valueCodeableConcept": {"text": "complex situation"}},
        {"url": EXT_TRIGGER, "valueCodeableConcept": {"coding": [{"system": "x", "code": "person-request"}]}},
        {"url": EXT_TRIGGER, "valueCodeableConcept": {"coding": [{"system": TRIGGER_CS, "code": "bored"}]}},
        {"url": EXT_TRIGGER, "valueCodeableConcept": {"coding": [{"system": TRIGGER_CS}]}},
        {"url": EXT_TRIGGER, "valueCoding": {"system": TRIGGER_CS, "code": "person-request"}},
    ],
    ids=["empty", "text-only", "other-system", "unknown-code", "no-code", "not-a-codeableconcept"],
)
def test_an_extension_without_a_trigger_code_is_no_trigger(extension: dict[str, Any]) -> None:
    assert "IC-CM-3" in rules(with_triggers(extension), JUNE)
    assert "IC-CM-3" in rules(load("rules/IC-CM-3/breaks-empty.json"), JUNE)


@pytest.mark.parametrize("code", ["unstable-complex-situation", "person-request", "self-endangerment"])
def test_one_coded_trigger_is_enough(code: str) -> None:
    coded = {"url": EXT_TRIGGER, "valueCodeableConcept": {"coding": [{"system": TRIGGER_CS, "code": code}]}}
    assert "IC-CM-3" not in rules(with_triggers({"url": EXT_TRIGGER}, coded), JUNE)


def test_the_rule_knows_exactly_the_codes_of_the_code_system() -> None:
    system = json.loads((ROOT / "profiles/becare/CodeSystem-case-management-trigger.json").read_text())
    expression = load_catalog().rule("IC-CM-3").logic["fhirpath"]
    listed = expression.split(" in (", 1)[1].split(")", 1)[0]
    assert sorted(c.strip(" '") for c in listed.split("|")) == sorted(c["code"] for c in system["concept"])


# --- IC-TEAM-2: an unresolved participant is unknown, the rest is judged ---------------------------


def team_bundle(*extra_members: dict[str, Any], name: str = "rules/IC-TEAM-2/breaks.json") -> dict:
    bundle = load(name)
    team = first(bundle, "CareTeam")
    for member in extra_members:
        team["participant"].append(member)
    return bundle


def participant(member: dict[str, Any], role: str = "team-member") -> dict[str, Any]:
    coding = {"system": BECARE + "/CodeSystem/care-role", "code": role}
    return {"role": [{"coding": [coding]}], "member": member}


def test_an_unresolved_member_does_not_switch_the_rule_off() -> None:
    bundle = team_bundle(participant({"reference": "https://other-ehr.example/fhir/Practitioner/77"}))
    [issue] = issues_of(bundle, "IC-TEAM-2")
    assert issue.severity == "warning" and issue.message_id == "IC-TEAM-2.unresolved"
    assert "1 known discipline(s)" in issue.message
    assert "1 participant(s) could not be resolved" in issue.message
    fr = check_rulebook(bundle, region=None, lang="fr").issues
    assert any(i.rule == "IC-TEAM-2" and "n'ont pas pu être résolus" in i.message for i in fr)


def test_unresolved_members_that_are_not_professionals_are_not_unknown() -> None:
    bundle = team_bundle(
        participant({"reference": "Patient/elsewhere"}),
        participant({"reference": "urn:uuid:5d7e9a43-0000-4000-8000-000000000001"}, "informal-caregiver"),
        participant({"reference": "x", "type": "RelatedPerson"}),
    )
    [issue] = issues_of(bundle, "IC-TEAM-2")
    assert issue.message_id == "IC-TEAM-2"  # the plain finding: nobody unknown could be a professional


def test_a_team_of_two_disciplines_stays_fine_with_an_unresolved_member() -> None:
    assert issues_of(load("rules/IC-TEAM-2/keeps-unresolved.json"), "IC-TEAM-2") == []
    bundle = team_bundle(participant({"reference": "PractitionerRole/far"}), name=CC)
    assert issues_of(bundle, "IC-TEAM-2") == []


def test_unknown_members_are_counted_once() -> None:
    ref = {"reference": "https://other-ehr.example/fhir/PractitionerRole/77"}
    by_identifier = participant({"identifier": {"value": "1"}})
    bundle = team_bundle(participant(ref), participant(dict(ref)), by_identifier)
    [issue] = issues_of(bundle, "IC-TEAM-2")
    assert "2 participant(s) could not be resolved" in issue.message


# --- today: the validation date, passed in and read -------------------------------------------------


def test_no_rule_reads_the_clock() -> None:
    """Every date-dependent rule judges against ``RuleContext.today``, never the clock."""
    source = inspect.getsource(rule_checks)
    assert "date.today()" not in source and "datetime.now" not in source
    assert "ctx.today" in source


def test_check_rulebook_defaults_to_the_current_date() -> None:
    bundle = expiring(end=(dt.date.today() - dt.timedelta(days=1)).isoformat())
    assert "IC-CC-3" in rules(bundle)
    bundle = expiring(end=(dt.date.today() + dt.timedelta(days=1)).isoformat())
    assert "IC-CC-3" not in rules(bundle)


def test_validation_options_carry_the_date_to_the_rules() -> None:
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

    validator = Validator()
    bundle = expiring()
    before = validator.validate(copy.deepcopy(bundle), ValidationOptions(today=JUNE))
    after = validator.validate(copy.deepcopy(bundle), ValidationOptions(today=JULY))
    assert "IC-CC-3" not in {i.rule for i in before.issues}
    assert "IC-CC-3" in {i.rule for i in after.issues if i.severity == "error"}


def test_cli_today_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adapter.cli.main import main

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(expiring()), encoding="utf-8")
    args = ["validate", str(path), "--format", "json", "--no-progress"]
    assert main([*args, "--today", "2025-06-01"]) == 0
    capsys.readouterr()
    assert main([*args, "--today", "2025-07-01"]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert "IC-CC-3" in json.dumps(outcome)
    for bad in ("2025-13-01", "01/07/2025", "2025-7-1", "tomorrow"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--today", bad])
        assert exc.value.code == 2
        assert "--today" in capsys.readouterr().err


def test_service_today_parameter() -> None:
    from fastapi.testclient import TestClient

    from adapter.service.app import create_app
    from adapter.service.config import RateLimit, ServiceConfig
    from adapter.validation.engine import Validator

    app = create_app(ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1)), validator=Validator())
    body = json.dumps(expiring()).encode()
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    with TestClient(app, raise_server_exceptions=False) as client:

        def codes(**params: str) -> Any:
            r = client.post("/fhir/$validate", content=body, headers=headers, params=params)
            return r.status_code, json.dumps(r.json())

        status, june = codes(today="2025-06-01")
        assert status == 200 and "IC-CC-3" not in june
        status, july = codes(today="2025-07-01")
        assert status == 200 and "IC-CC-3" in july
        status, text = codes(today="July")
        assert status == 400 and "YYYY-MM-DD" in text
        # what is accepted for forwarding is judged on the service's own date
        r = client.post("/fhir", content=body, headers=headers, params={"today": "2025-06-01"})
        assert r.status_code == 400 and "$validate only" in json.dumps(r.json())


def test_plugin_today_option_and_fixture(pytester: pytest.Pytester) -> None:
    (pytester.path / "bundle.json").write_text(json.dumps(expiring()), encoding="utf-8")
    pytester.makepyfile(
        test_dated="""
        import datetime as dt
        from adapter.testing import assert_invalid

        def test_date(becare_today, becare_options):
            assert becare_today == dt.date(2025, 7, 1)
            assert becare_options.today == becare_today

        def test_rules_judge_that_date():
            assert_invalid("bundle.json", "IC-CC-3")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--becare-today", "2025-07-01")
    result.assert_outcomes(passed=2)
    assert "today=2025-07-01" in result.stdout.str()
    pytester.makeini("[pytest]\nbecare_today = 2025-07-01\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    bad = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--becare-today", "soon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
