"""The episode registry: hashed persons, roles per accepted bundle, IC-ONE-1/2 across submissions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.registry import EpisodeRegistry
from adapter.rules import check_rulebook

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def load(rel: str) -> dict[str, Any]:
    return json.loads((SAMPLES / rel).read_text(encoding="utf-8"))


def ssin_of(bundle: dict[str, Any]) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return patient["identifier"][0]["value"]


def test_record_stores_hashed_roles_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BECARE_REGISTRY_SALT", raising=False)
    db = tmp_path / "reg.db"
    reg = EpisodeRegistry(f"sqlite:///{db}")
    bundle = load("rules/IC-REG-1/keeps-flanders.json")  # care coordination and case management
    assert reg.record(bundle, source="test") == 2
    ssin = ssin_of(bundle)
    key = reg.person_key(ssin)
    assert len(key) == 64 and ssin not in key
    cc = reg.active_roles(key, "care-coordinator")
    cm = reg.active_roles(key, "case-manager")
    assert len(cc) == 1 and len(cm) == 1
    assert cc[0].holder.startswith("nihdi:") and cc[0].start == dt.date(2024, 3, 1)
    assert cm[0].episode_key.endswith("|CM-101-1") and cm[0].source == "test"
    reg.close()
    raw = db.read_bytes()
    assert ssin.encode() not in raw  # never in clear in the database file
    # the per-database salt persists: a new registry on the same file finds the same person
    again = EpisodeRegistry(f"sqlite:///{db}")
    assert again.person_key(ssin) == key
    assert EpisodeRegistry("sqlite://").person_key(ssin) != key


def test_salt_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BECARE_REGISTRY_SALT", "s3cret")
    a, b = EpisodeRegistry("sqlite://"), EpisodeRegistry("sqlite://")
    assert a.person_key("85073003328") == b.person_key("85.07.30-033.28")


def test_rerecording_an_episode_replaces_it(tmp_path: Path) -> None:
    reg = EpisodeRegistry(f"sqlite:///{tmp_path / 'r.db'}", salt="x")
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


def test_active_roles_at_a_date() -> None:
    reg = EpisodeRegistry("sqlite://", salt="x")
    bundle = load("valid/flanders-care-coordination.json")
    reg.record(bundle)
    key = reg.person_key(ssin_of(bundle))
    assert reg.active_roles(key, "care-coordinator", at=dt.date(2024, 6, 1))
    assert reg.active_roles(key, "care-coordinator", at=dt.date(2023, 6, 1)) == []


def test_one_coordinator_across_submissions() -> None:
    reg = EpisodeRegistry("sqlite://", salt="x")
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


def test_one_case_manager_and_missing_ssin() -> None:
    reg = EpisodeRegistry("sqlite://", salt="x")
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


def test_postgres_url_is_accepted_lazily() -> None:
    """A PostgreSQL URL builds an engine; without a server the failure is a clear DB error."""
    import sqlalchemy.exc

    with pytest.raises(sqlalchemy.exc.OperationalError):
        EpisodeRegistry("postgresql+psycopg://becare@127.0.0.1:1/becare")


def test_sqlite_schema() -> None:
    reg = EpisodeRegistry("sqlite://", salt="x")
    with reg._engine.connect() as conn:  # schema created on first use
        names = set(conn.exec_driver_sql("select name from sqlite_master where type='table'").scalars())
    assert {"becare_episode_role", "becare_registry_meta"} <= names
