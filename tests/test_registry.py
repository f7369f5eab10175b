"""The episode registry: hashed persons, roles per accepted bundle, IC-ONE-1/2 across submissions.

The tests taking ``db_url`` are the registry's behaviour; tests/test_registry_pg.py runs the very
same functions again on a real PostgreSQL server by overriding that fixture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from adapter.registry import EpisodeRegistry, Recorded, RegistryError
from adapter.rules import check_rulebook

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh, empty registry database (SQLite here, PostgreSQL in test_registry_pg)."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def stored_text(url: str) -> str:
    """Every value of every registry table, as text: what a database dump would show."""
    engine = sqlalchemy.create_engine(EpisodeRegistry(url).url)
    try:
        with engine.connect() as conn:
            tables = sqlalchemy.inspect(conn).get_table_names()
            assert {"becare_episode_role", "becare_registry_meta"} <= set(tables)
            rows = [conn.exec_driver_sql(f"select * from {t}").all() for t in sorted(tables)]
    finally:
        engine.dispose()
    return "\n".join(repr(tuple(row)) for table in rows for row in table)


def load(rel: str) -> dict[str, Any]:
    return json.loads((SAMPLES / rel).read_text(encoding="utf-8"))


def ssin_of(bundle: dict[str, Any]) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return patient["identifier"][0]["value"]


def episode(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare")


def for_person(name: str, ssin: str, round_no: int) -> dict[str, Any]:
    """A copy of an IC-ONE-1 sample about another person, with its own episode identifier."""
    bundle = load(f"rules/IC-ONE-1/{name}.json")
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"][0]["value"] = ssin
    episode(bundle)["identifier"][0]["value"] += f"-{round_no}"
    return bundle


def test_record_stores_hashed_roles_only(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BECARE_REGISTRY_SALT", raising=False)
    reg = EpisodeRegistry(db_url)
    bundle = load("rules/IC-REG-1/keeps-flanders.json")  # care coordination and case management
    assert reg.record(bundle, source="test").stored == 2
    ssin = ssin_of(bundle)
    key = reg.person_key(ssin)
    assert len(key) == 64 and ssin not in key
    dump = stored_text(db_url)
    salt = next(line for line in dump.splitlines() if line.startswith("('salt',"))[10:-2]
    assert len(salt) == 64 and key == hashlib.sha256(f"{salt}:{ssin}".encode()).hexdigest()
    assert key in dump and ssin not in dump  # hashed with the stored salt, never in clear
    cc = reg.active_roles(key, "care-coordinator")
    cm = reg.active_roles(key, "case-manager")
    assert len(cc) == 1 and len(cm) == 1
    assert cc[0].holder.startswith("nihdi:") and cc[0].start == dt.date(2024, 3, 1)
    assert cm[0].episode_key.endswith("|CM-101-1") and cm[0].source == "test"
    reg.close()
    if db_url.startswith("sqlite:///"):
        assert ssin.encode() not in Path(db_url[10:]).read_bytes()  # nor anywhere in the file
    # the per-database salt persists: a new registry on the same database finds the same person
    again = EpisodeRegistry(db_url)
    assert again.person_key(ssin) == key
    assert EpisodeRegistry("sqlite://").person_key(ssin) != key


def test_salt_from_environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BECARE_REGISTRY_SALT", "s3cret")
    a, b = EpisodeRegistry(db_url), EpisodeRegistry("sqlite://")
    assert a.person_key("85073003328") == b.person_key("85.07.30-033.28")
    assert "s3cret" not in stored_text(db_url)


def test_rerecording_an_episode_replaces_it(db_url: str) -> None:
    reg = EpisodeRegistry(db_url, salt="x")
    bundle = load("valid/flanders-care-coordination.json")
    reg.record(bundle)
    reg.record(bundle)
    key = reg.person_key(ssin_of(bundle))
    assert len(reg.active_roles(key, "care-coordinator")) == 1
    ep = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare")
    ep["status"] = "finished"
    ep["period"]["end"] = "2024-12-31"
    reg.record(bundle)
    assert reg.active_roles(key, "care-coordinator") == []


def test_active_roles_at_a_date(db_url: str) -> None:
    reg = EpisodeRegistry(db_url, salt="x")
    bundle = load("valid/flanders-care-coordination.json")
    reg.record(bundle)
    key = reg.person_key(ssin_of(bundle))
    assert reg.active_roles(key, "care-coordinator", at=dt.date(2024, 6, 1))
    assert reg.active_roles(key, "care-coordinator", at=dt.date(2023, 6, 1)) == []


def test_one_coordinator_across_submissions(db_url: str) -> None:
    reg = EpisodeRegistry(db_url, salt="x")
    reg.record(load("rules/IC-ONE-1/prior.json"))
    bundle = load("rules/IC-ONE-1/breaks.json")
    issues = [i for i in check_rulebook(bundle, region=None, lang="de", registry=reg).issues if i.rule]
    assert [(i.rule, i.severity) for i in issues] == [("IC-ONE-1", "error")]
    assert "CC-OTHER-7" in issues[0].message and issues[0].message.startswith("Die Person hat bereits")
    # once the other episode has ended, the new one is fine
    prior = load("rules/IC-ONE-1/prior.json")
    ep = next(e["resource"] for e in prior["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare")
    ep["status"] = "finished"
    reg.record(prior)
    assert check_rulebook(bundle, region=None, lang="de", registry=reg).issues == []


def test_one_case_manager_and_missing_ssin(db_url: str) -> None:
    reg = EpisodeRegistry(db_url, salt="x")
    reg.record(load("rules/IC-ONE-2/prior.json"))
    bundle = load("rules/IC-ONE-2/breaks.json")
    assert [i.rule for i in check_rulebook(bundle, region=None, lang="en", registry=reg).issues] == [
        "IC-ONE-2"
    ]
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"] = []
    issues = check_rulebook(bundle, region=None, lang="en", registry=reg).issues
    assert [(i.rule, i.severity, i.message_id) for i in issues] == [
        ("IC-ONE-2", "information", "IC-ONE-2.no-ssin")
    ]


@pytest.mark.parametrize("exclusive", [True, False])
def test_concurrent_conflicting_records_never_both_pass(
    db_url: str, exclusive: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Two callers record different coordinators for one person at the same instant, each on its
    own connection pool (as two service processes would): exactly one is told it is the only
    one. Without the per-person lock both reads see an empty registry and both pass. A double
    role stored anyway (not ``exclusive``) is logged, by episode, never by SSIN."""
    caplog.set_level(logging.WARNING, logger="becare.registry")
    regs = [EpisodeRegistry(db_url, salt="x") for _ in range(2)]
    rounds = 25
    results: dict[int, list[Recorded | BaseException]] = {i: [] for i in range(rounds)}
    barrier = threading.Barrier(2)

    def caller(which: int, name: str) -> None:
        for i in range(rounds):
            bundle = for_person(name, f"{85073000000 + i:011d}", i)
            barrier.wait(timeout=30)
            try:
                results[i].append(regs[which].record(bundle, source=name, exclusive=exclusive))
            except BaseException as exc:  # surfaced by the assertions below
                results[i].append(exc)

    threads = [
        threading.Thread(target=caller, args=(0, "prior")),
        threading.Thread(target=caller, args=(1, "breaks")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(rounds):
        pair = results[i]
        assert all(isinstance(r, Recorded) for r in pair), pair
        clean = [r for r in pair if isinstance(r, Recorded) and not r.conflicts]
        assert len(clean) == 1, f"round {i}: {pair}"
        stored = regs[0].active_roles(regs[0].person_key(f"{85073000000 + i:011d}"), "care-coordinator")
        assert len(stored) == (1 if exclusive else 2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "becare.registry"]
    assert len(warnings) == (0 if exclusive else rounds)
    assert all("CC-" in w and "8507300" not in w for w in warnings)


def test_in_memory_registry_is_one_database_for_all_threads() -> None:
    """The service records from a thread pool: ``sqlite://`` must not mean one database per thread."""
    reg = EpisodeRegistry("sqlite://", salt="x")
    bundle = load("valid/flanders-care-coordination.json")
    worker = threading.Thread(target=reg.record, args=(bundle,))
    worker.start()
    worker.join()
    assert len(reg.active_roles(reg.person_key(ssin_of(bundle)), "care-coordinator")) == 1


def test_within_one_bundle_two_active_coordinators() -> None:
    bundle = load("valid/flanders-care-coordination.json")
    ep = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare")
    twin = json.loads(json.dumps(ep))
    twin["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    twin["resource"]["identifier"][0]["value"] = "CC-TWIN"
    gp = next(
        e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "PractitionerRole"
        and e["resource"]["code"][0]["coding"][0]["code"] == "persphysician"
    )
    twin["resource"]["careManager"] = {"reference": gp}
    twin["resource"]["team"] = []
    bundle["entry"].append(twin)
    ids = {
        i.rule
        for i in check_rulebook(bundle, region=None, lang="en", registry=None).issues
        if i.severity == "error"
    }
    assert ids == {"IC-ONE-1"}


def test_unusable_database_urls_are_clear_errors() -> None:
    """Without a server, or with a bad URL, the failure names the problem (no traceback text)."""
    with pytest.raises(RegistryError, match="cannot use the registry database"):
        EpisodeRegistry("postgresql://becare@127.0.0.1:1/becare")  # psycopg 3, not psycopg2
    with pytest.raises(RegistryError, match="empty"):
        EpisodeRegistry("")
    with pytest.raises(RegistryError, match="unsupported"):
        EpisodeRegistry("nosuchdb://x/y")


def test_a_bare_path_is_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    bundle = load("valid/flanders-care-coordination.json")
    assert EpisodeRegistry(str(path), salt="x").record(bundle).stored == 1
    again = EpisodeRegistry(f"sqlite:///{path}", salt="x")
    assert len(again.active_roles(again.person_key(ssin_of(bundle)), "care-coordinator")) == 1
