"""What becare could not check never counts as checked.

A rule or an invariant that raises is an ``error`` issue (code ``exception``) naming it and
saying it is becare's fault, not the data's: ``becare validate`` exits 1 with that issue,
``$validate`` answers 200 with it, and ``POST /fhir`` answers 500 with a reference id (never 202,
and nothing is stored). An episode registry that cannot be queried is a 503 for ``POST /fhir``
(and exit code 2 on the command line), never an acceptance that records nothing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.cli.main import main
from adapter.forwarding.routing import Router
from adapter.forwarding.settings import settings_from_dict
from adapter.outbox.store import Outbox
from adapter.registry import EpisodeRegistry, RegistryError
from adapter.rules import check_rulebook, checks
from adapter.rules import engine as rules_engine
from adapter.rules.checks import RegistryUnavailable
from adapter.service.app import create_app
from adapter.service.config import RateLimit, ServiceConfig
from adapter.validation import Validator
from adapter.validation import engine as engine_module
from adapter.validation.api import ValidationOptions
from adapter.validation.invariants import InvariantChecker

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
JSON = "application/fhir+json"
RULE = "IC-TEAM-1"  # an error-level rule that runs on every care team
INVARIANT = "bdl-1"  # evaluated on every Bundle


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.fixture
def broken_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The function registered for RULE raises (same name, so the catalog still pairs it)."""
    name = checks.RULE_FUNCTIONS[RULE].__name__

    def boom(ctx: Any) -> Any:
        raise RuntimeError("a bug in the rule")

    boom.__name__ = name
    monkeypatch.setitem(checks.RULE_FUNCTIONS, RULE, boom)
    rules_engine.compile_catalog.cache_clear()
    yield RULE
    rules_engine.compile_catalog.cache_clear()  # compiled again, unpatched, on next use


@pytest.fixture
def broken_invariant(monkeypatch: pytest.MonkeyPatch) -> str:
    """Evaluating INVARIANT raises (whichever way it would be evaluated: guard, native, compiled
    or FHIRPath)."""
    real = InvariantChecker._plan

    def boom(node: Any) -> bool:
        raise ZeroDivisionError("a bug in the evaluator")

    def plan(self: InvariantChecker, constraint: dict[str, Any]) -> Any:
        p = real(self, constraint)
        if p.key == INVARIANT:
            return dataclasses.replace(p, guard=None, native=boom, compiled=None)
        return p

    monkeypatch.setattr(InvariantChecker, "_plan", plan)
    # a validator keeps the plans its walkers made per element; during this test each walk plans
    # afresh, so a validator made before it (the module's) plans with the broken evaluation too
    monkeypatch.setattr(Validator, "invariant_plans", lambda self: {})
    return INVARIANT


def _exception_issues(issues: list[Any]) -> list[Any]:
    return [i for i in issues if i.is_error and i.code == "exception"]


def _oo_exceptions(oo: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in oo["issue"] if i["severity"] in ("error", "fatal") and i["code"] == "exception"]


# -- the validator ---------------------------------------------------------------------------------


def test_sample_is_valid_without_faults(validator: Validator) -> None:
    report = validator.validate_bytes(SAMPLE.read_bytes(), JSON, ValidationOptions())
    assert not report.has_errors, [i for i in report.issues if i.is_error]
    assert _exception_issues(report.issues) == []


def test_a_rule_that_raises_is_an_error_naming_it(validator: Validator, broken_rule: str) -> None:
    report = validator.validate_bytes(SAMPLE.read_bytes(), JSON, ValidationOptions(lang="nl"))
    assert report.has_errors
    [issue] = _exception_issues(report.issues)
    assert issue.severity == "error" and issue.rule == broken_rule and issue.source == "rulebook"
    assert broken_rule in issue.message and "RuntimeError" in issue.message
    assert "Interne fout" in issue.message and "becare" in issue.message  # in the caller's language


def test_a_rule_failing_over_a_wrong_shape_is_the_shape_error_not_a_fault(validator: Validator) -> None:
    """Found by test_validation_fuzz: an extension url that is an object made IC-CM-3's FHIRPath
    raise. A rule reads the whole input, so a structure error anywhere explains its failure, as it
    does an invariant's: the input stays invalid, by the shape error, reported once."""
    bundle = json.loads((ROOT / "samples" / "valid" / "brussels-case-management.json").read_text())
    episode = bundle["entry"][13]["resource"]
    assert episode["resourceType"] == "EpisodeOfCare"
    episode["extension"][2]["url"] = {"a": True, "resourceType": []}
    report = validator.validate(bundle, ValidationOptions())
    assert _exception_issues(report.issues) == []
    [shape] = [i for i in report.issues if i.is_error]
    assert shape.source == "structure" and shape.expression == "Bundle.entry[13].resource.extension[2].url"


def test_an_invariant_that_raises_is_an_error_naming_it(
    validator: Validator, broken_invariant: str
) -> None:
    report = validator.validate_bytes(SAMPLE.read_bytes(), JSON, ValidationOptions())
    assert report.has_errors
    [issue] = _exception_issues(report.issues)
    assert issue.severity == "error" and issue.expression == "Bundle" and issue.source == "invariant"
    assert broken_invariant in issue.message and "Internal error" in issue.message
    assert "not in the data" in issue.message


def test_registry_unavailable_is_not_a_rule_failure() -> None:
    class Down:
        def role_of(self, *args: Any) -> Any:
            raise RegistryError("cannot query the registry database: gone")

    bundle = json.loads(SAMPLE.read_text())
    with pytest.raises(RegistryUnavailable):
        check_rulebook(bundle, region=None, lang="en", registry=Down())


# -- the command line ------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["validate", "--no-progress", "--format", "json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_cli_rule_failure_exits_1_with_the_issue(
    capsys: pytest.CaptureFixture[str], broken_rule: str
) -> None:
    code, oo, err = _cli(capsys, str(SAMPLE))
    assert code == 1
    issues = _oo_exceptions(oo)
    assert len(issues) == 1 and broken_rule in issues[0]["details"]["text"]
    assert "Traceback" not in err


def test_cli_invariant_failure_exits_1_with_the_issue(
    capsys: pytest.CaptureFixture[str], broken_invariant: str
) -> None:
    code, oo, err = _cli(capsys, str(SAMPLE))
    assert code == 1
    issues = _oo_exceptions(oo)
    assert len(issues) == 1 and broken_invariant in issues[0]["details"]["text"]
    assert "Traceback" not in err


def test_cli_a_crash_of_the_validator_is_reported_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class CrashingWalker:  # the walker may be compiled (adapter/native): replaced whole
        def __init__(self, *args: Any) -> None:
            pass

        def validate_resource(self, *args: Any, **kwargs: Any) -> None:
            raise KeyError("walker bug")

    monkeypatch.setattr(engine_module, "Walker", CrashingWalker)
    code, oo, err = _cli(capsys, str(SAMPLE))
    assert code == 2  # could not check
    [issue] = _oo_exceptions(oo)
    assert issue["severity"] == "fatal" and "Internal error" in issue["details"]["text"]
    assert "Traceback" not in err


def test_cli_registry_that_cannot_be_queried_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(self: EpisodeRegistry, *args: Any, **kwargs: Any) -> Any:
        raise RegistryError("cannot query the registry database: unable to open database file")

    monkeypatch.setattr(EpisodeRegistry, "active_roles", gone)
    code, oo, err = _cli(capsys, "--registry", f"sqlite:///{tmp_path / 'r.db'}", str(SAMPLE))
    assert code == 2
    assert any("registry" in i["details"]["text"] for i in oo["issue"] if i["severity"] == "fatal")
    assert "Traceback" not in err


# -- the service -----------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield box
    box.close()


@pytest.fixture
def router() -> Router:
    return Router(settings_from_dict({"destinations": {"hub": {"url": "http://127.0.0.1:9/fhir"}},
                                      "routing": {"default": "hub"}}))


def _app(validator: Validator, outbox: Outbox, router: Router, registry: Any = None) -> Any:
    config = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1), request_timeout=0)
    return create_app(config, validator=validator, outbox=outbox, router=router, registry=registry)


def _post(client: TestClient, path: str) -> Any:
    return client.post(path, content=SAMPLE.read_bytes(), headers={"Content-Type": JSON})


def _assert_internal_500(r: Any, outbox: Outbox) -> None:
    assert r.status_code == 500, r.text[:500]
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    [issue] = _oo_exceptions(oo)
    assert "reference" in issue["details"]["text"]
    assert outbox.list() == []  # nothing accepted


def test_service_rule_failure(
    validator: Validator, outbox: Outbox, router: Router, broken_rule: str
) -> None:
    with TestClient(_app(validator, outbox, router), raise_server_exceptions=False) as client:
        r = _post(client, "/fhir/$validate")
        assert r.status_code == 200
        issues = _oo_exceptions(r.json())
        assert len(issues) == 1 and broken_rule in issues[0]["details"]["text"]
        _assert_internal_500(_post(client, "/fhir"), outbox)


def test_service_invariant_failure(
    validator: Validator, outbox: Outbox, router: Router, broken_invariant: str
) -> None:
    with TestClient(_app(validator, outbox, router), raise_server_exceptions=False) as client:
        r = _post(client, "/fhir/$validate")
        assert r.status_code == 200
        issues = _oo_exceptions(r.json())
        assert len(issues) == 1 and broken_invariant in issues[0]["details"]["text"]
        _assert_internal_500(_post(client, "/fhir"), outbox)


def test_service_accepts_the_sample_when_nothing_fails(
    validator: Validator, outbox: Outbox, router: Router, tmp_path: Path
) -> None:
    registry = EpisodeRegistry(f"sqlite:///{tmp_path / 'registry.db'}", salt="test")
    try:
        with TestClient(_app(validator, outbox, router, registry), raise_server_exceptions=False) as client:
            r = _post(client, "/fhir")
            assert r.status_code == 202, r.text[:500]
        assert len(outbox.list()) == 1
    finally:
        registry.close()


def test_service_registry_database_gone_is_503(
    validator: Validator, outbox: Outbox, router: Router, tmp_path: Path
) -> None:
    folder = tmp_path / "registry"
    folder.mkdir()
    registry = EpisodeRegistry(f"sqlite:///{folder / 'registry.db'}", salt="test")
    shutil.rmtree(folder)
    registry.close()  # no pooled connection keeps the deleted file alive
    with TestClient(_app(validator, outbox, router, registry), raise_server_exceptions=False) as client:
        r = _post(client, "/fhir")
        assert r.status_code == 503, r.text[:500]
        assert r.headers.get("Retry-After")
        assert r.json()["resourceType"] == "OperationOutcome"
        assert outbox.list() == []


def test_service_registry_failing_at_claim_is_503(
    validator: Validator, outbox: Outbox, router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queried fine at validation, gone when the roles are claimed: still not accepted."""
    registry = EpisodeRegistry(f"sqlite:///{tmp_path / 'registry.db'}", salt="test")

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise RegistryError("cannot query the registry database: disk I/O error")

    monkeypatch.setattr(registry, "record", gone)
    try:
        with TestClient(_app(validator, outbox, router, registry), raise_server_exceptions=False) as client:
            r = _post(client, "/fhir")
            assert r.status_code == 503, r.text[:500]
            assert outbox.list() == []
    finally:
        registry.close()
