"""The episode registry on a real PostgreSQL server (started by the fixture; fails, never skips).

The backend-neutral tests of tests/test_registry.py run here again, unchanged, with ``db_url``
pointing at a fresh PostgreSQL database; below them, what only a server with concurrent
connections can show.
"""

from __future__ import annotations

import json
import threading

import pytest

from adapter.registry import EpisodeRegistry, Recorded
from adapter.rules import check_rulebook
from tests import conftest_pg
from tests.test_registry import (
    episode,
    load,
    ssin_of,
    stored_text,
    test_active_roles_at_a_date,
    test_concurrent_conflicting_records_never_both_pass,
    test_one_case_manager_and_missing_ssin,
    test_one_coordinator_across_submissions,
    test_one_coordinator_however_the_person_is_named,
    test_record_stores_hashed_roles_only,
    test_rerecording_an_episode_replaces_it,
    test_rows_stored_in_clear_before_are_hashed_when_the_registry_opens,
    test_salt_from_environment,
    test_ssins_named_by_reference_are_stored_only_hashed,
    test_the_same_holder_however_named_is_not_a_second_coordinator,
)

pytestmark = pytest.mark.postgres
pg_url = conftest_pg.pg_url
pg_db = conftest_pg.pg_db

__all__ = [  # the shared behaviour, collected again in this module with db_url below
    "test_active_roles_at_a_date",
    "test_concurrent_conflicting_records_never_both_pass",
    "test_one_case_manager_and_missing_ssin",
    "test_one_coordinator_across_submissions",
    "test_one_coordinator_however_the_person_is_named",
    "test_record_stores_hashed_roles_only",
    "test_rerecording_an_episode_replaces_it",
    "test_rows_stored_in_clear_before_are_hashed_when_the_registry_opens",
    "test_salt_from_environment",
    "test_ssins_named_by_reference_are_stored_only_hashed",
    "test_the_same_holder_however_named_is_not_a_second_coordinator",
]


@pytest.fixture
def db_url(pg_db: str) -> str:
    return pg_db


def test_plain_postgresql_url_and_driver_normalisation(pg_db: str) -> None:
    reg = EpisodeRegistry(pg_db.replace("postgresql+psycopg://", "postgresql://"), salt="x")
    assert reg.dialect == "postgresql" and reg.url.startswith("postgresql+psycopg://")
    assert reg.record(load("valid/flanders-care-coordination.json")).stored == 1


def test_long_identifiers_and_references_are_stored(db_url: str) -> None:
    """FHIR puts no length on identifiers or references; PostgreSQL would refuse a VARCHAR overflow."""
    bundle = load("rules/IC-ONE-1/breaks.json")
    episode(bundle)["identifier"][0]["value"] = "E" * 700
    episode(bundle)["careManager"] = {"reference": "https://hub.example/fhir/Practitioner/" + "p" * 400}
    reg = EpisodeRegistry(db_url, salt="x")
    assert reg.record(bundle, source="s" * 300).stored == 1
    [role] = reg.active_roles(reg.person_key(ssin_of(bundle)), "care-coordinator")
    assert role.episode_key.endswith("E" * 700) and role.holder is not None and len(role.holder) > 400


def test_another_callers_coordinator_is_flagged_and_reported(db_url: str) -> None:
    reg = EpisodeRegistry(db_url, salt="x")
    assert reg.record(load("rules/IC-ONE-1/prior.json"), source="platform-a") == Recorded(1)
    breaks = load("rules/IC-ONE-1/breaks.json")
    issues = check_rulebook(breaks, region=None, lang="en", registry=reg).issues
    assert [(i.rule, i.severity) for i in issues] == [("IC-ONE-1", "error")]
    result = reg.record(breaks, source="platform-b", exclusive=True)
    assert result.stored == 0 and [c.other.source for c in result.conflicts] == ["platform-a"]
    assert result.conflicts[0].other.episode_key.endswith("|CC-OTHER-7")
    assert len(reg.active_roles(reg.person_key(ssin_of(breaks)), "care-coordinator")) == 1
    # once the first has ended, the second is the only one and is stored
    prior = load("rules/IC-ONE-1/prior.json")
    episode(prior)["status"] = "finished"
    reg.record(prior, source="platform-a")
    assert reg.record(breaks, source="platform-b", exclusive=True) == Recorded(1)
    assert "41041710283" not in stored_text(db_url)


def test_concurrent_rerecords_of_one_episode_keep_one_row(db_url: str) -> None:
    """Replacing an episode is delete-then-insert; two at once must not leave two rows."""
    regs = [EpisodeRegistry(db_url, salt="x") for _ in range(4)]
    bundle = load("valid/flanders-care-coordination.json")
    barrier = threading.Barrier(len(regs))
    errors: list[BaseException] = []

    def again(reg: EpisodeRegistry) -> None:
        for _ in range(10):
            barrier.wait(timeout=30)
            try:
                reg.record(json.loads(json.dumps(bundle)))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=again, args=(r,)) for r in regs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(regs[0].active_roles(regs[0].person_key(ssin_of(bundle)), "care-coordinator")) == 1


def test_schema_creation_races_on_an_empty_database(db_url: str) -> None:
    """Several service processes starting at once on a new database all come up."""
    made: list[EpisodeRegistry] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait(timeout=30)
        try:
            made.append(EpisodeRegistry(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(made) == 6
    assert len({reg.person_key("85073003328") for reg in made}) == 1  # one stored salt for all
