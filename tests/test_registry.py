"""The episode registry: hashed persons, roles per accepted bundle, IC-ONE-1/2 across submissions.

The tests taking ``db_url`` are the registry's behaviour; tests/test_registry_pg.py runs the very
same functions again on a real PostgreSQL server by overriding that fixture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy

from adapter.registry import EpisodeRegistry, Recorded, RegistryError
from adapter.registry.labels import Labeller
from adapter.rules import check_rulebook
from adapter.rules.identifiers import make_ssin

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


# --- persons named by reference: hashed, and the same person however named ---------------------

SSIN_CORE = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
SSIN_LEGACY = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin"
NIHDI_CORE = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/nihdi"
WAYS = ("resolved", "identifier", "formatted", "conditional", "legacy", "encoded")


def formatted(ssin: str) -> str:
    """85.07.30-033.28: how SSINs are often typed."""
    return f"{ssin[:2]}.{ssin[2:4]}.{ssin[4:6]}-{ssin[6:9]}.{ssin[9:]}"


def naming(ssin: str, way: str, rtype: str = "Patient") -> dict[str, Any]:
    """A Reference to the holder of ``ssin`` that no resource of the bundle resolves."""
    if way == "identifier":
        return {"identifier": {"system": SSIN_CORE, "value": ssin}}
    if way == "formatted":
        return {"identifier": {"system": SSIN_LEGACY, "value": formatted(ssin)}}
    query = {
        "conditional": f"identifier={SSIN_CORE}|{ssin}",
        "legacy": f"identifier={SSIN_LEGACY}|{ssin}",
        "encoded": "identifier=" + quote(f"{SSIN_CORE}|{ssin}", safe=""),
        "bare": f"identifier={ssin}",  # no system: nothing says it is an SSIN, it is one anyway
    }[way]
    return {"reference": f"{rtype}?{query}"}


def retarget(value: Any, target: str, ref: dict[str, Any]) -> None:
    """Point every Reference to ``target`` at ``ref`` instead."""
    if isinstance(value, dict):
        if value.get("reference") == target:
            value.clear()
            value.update(json.loads(json.dumps(ref)))
        for child in value.values():
            retarget(child, target, ref)
    elif isinstance(value, list):
        for child in value:
            retarget(child, target, ref)


def name_person(bundle: dict[str, Any], way: str) -> dict[str, Any]:
    """The bundle with its Patient left out and named ``way`` wherever it was referenced."""
    if way == "resolved":
        return bundle
    entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    bundle["entry"].remove(entry)
    retarget(bundle, entry["fullUrl"], naming(entry["resource"]["identifier"][0]["value"], way))
    return bundle


def one_rule(bundle: dict[str, Any], reg: EpisodeRegistry, rule_id: str) -> list[tuple[str, str]]:
    issues = check_rulebook(bundle, region=None, lang="en", registry=reg).issues
    return [(i.severity, i.message_id or "") for i in issues if i.rule == rule_id]


def text_values(url: str) -> list[str]:
    """Every value of every text column of every table of the registry's database."""
    engine = sqlalchemy.create_engine(EpisodeRegistry(url).url)
    out: list[str] = []
    try:
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            for table in inspector.get_table_names():
                for column in inspector.get_columns(table):
                    if isinstance(column["type"], sqlalchemy.String):  # VARCHAR, TEXT
                        rows = conn.execute(sqlalchemy.text(f'select "{column["name"]}" from "{table}"'))
                        out += [v for (v,) in rows if v is not None]
    finally:
        engine.dispose()
    return out


def assert_not_in_clear(url: str, ssins: list[str]) -> None:
    values = text_values(url)
    assert any(re.fullmatch(r"[0-9a-f]{64}", v) for v in values)  # the scan sees the person keys
    for ssin in ssins:
        hits = [v for v in values if ssin in v or formatted(ssin) in v or ssin in re.sub(r"\D", "", v)]
        assert hits == [], f"{ssin} stored in clear: {hits}"
    if url.startswith("sqlite:///"):
        raw = Path(url[10:]).read_bytes()
        assert not [s for s in ssins if s.encode() in raw]  # nor in free pages of the file


def test_ssins_named_by_reference_are_stored_only_hashed(db_url: str) -> None:
    """Persons, coordinators and case managers named by logical or conditional references
    (both naming systems, URL-encoded, typed with dots, without a system), a reference whose
    id is an SSIN and an episode identifier holding one: no text column keeps the number."""
    reg = EpisodeRegistry(db_url, salt="x")
    ssins: list[str] = []
    recorded = 0
    for i, way in enumerate(("identifier", "formatted", "conditional", "legacy", "encoded")):
        person, relative, coordinator = (make_ssin("1950-01-02", 10 * i + n) for n in (1, 2, 3))
        ssins += [person, relative, coordinator]
        bundle = name_person(for_person("breaks", person, i), way)
        ep = episode(bundle)
        ep["careManager"] = naming(
            relative, ("legacy", "encoded", "formatted", "conditional", "bare")[i], "RelatedPerson"
        )
        recorded += reg.record(bundle, source="a").stored
        # a second episode coordinated by a team member named by SSIN only
        team = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CareTeam")
        member = next(
            p for p in team["participant"] if p["role"][0]["coding"][0]["code"] == "care-coordinator"
        )
        member["member"] = naming(coordinator, way, "Practitioner")
        del ep["careManager"]
        ep["identifier"][0]["value"] = f"CC-{person}"  # an episode identifier holding the SSIN
        ep["status"] = "finished"
        recorded += reg.record(bundle, source="a").stored
    # a case manager whose reference carries the SSIN as its id, on a resolved person
    cm_person, cm_holder = make_ssin("1960-03-04", 1), make_ssin("1960-03-04", 2)
    ssins += [cm_person, cm_holder]
    bundle = load("rules/IC-ONE-2/prior.json")
    next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")["resource"]["identifier"][
        0
    ]["value"] = cm_person
    episode(bundle)["careManager"] = {"reference": f"https://hub.example/fhir/RelatedPerson/{cm_holder}"}
    recorded += reg.record(bundle).stored
    assert recorded == 11  # every episode was keyed: the scan below is not of an empty table

    assert_not_in_clear(db_url, ssins)
    # what is stored instead: the registry's own salted hash, however the number was written
    person, relative, coordinator = ssins[:3]
    roles = reg.active_roles(reg.person_key(person), "care-coordinator")
    assert [r.holder for r in roles] == ["ssin:" + reg.person_key(relative)]
    assert len(reg.active_roles(reg.person_key(ssins[3]), "care-coordinator")) == 1
    [cm] = reg.active_roles(reg.person_key(cm_person), "case-manager")
    assert cm.holder == "ref:https://hub.example/fhir/RelatedPerson/ssin:" + reg.person_key(cm_holder)


@pytest.mark.parametrize("way", [w for w in WAYS if w != "resolved"])
def test_one_coordinator_however_the_person_is_named(db_url: str, way: str) -> None:
    """IC-ONE-1 and the registry's own check find the same person whether a submission
    resolves the Patient or names it by identifier or conditional reference, either way round."""
    reg = EpisodeRegistry(db_url, salt="x")
    for i, (first, second) in enumerate((("resolved", way), (way, "resolved"), (way, way))):
        ssin = make_ssin("1941-04-17", 100 + i)
        prior = name_person(for_person("prior", ssin, i), first)
        assert reg.record(prior, source="platform-a") == Recorded(1)
        breaks = name_person(for_person("breaks", ssin, i), second)
        assert one_rule(breaks, reg, "IC-ONE-1") == [("error", "IC-ONE-1")], (first, second)
        result = reg.record(breaks, source="platform-b", exclusive=True)
        assert result.stored == 0 and [c.other.source for c in result.conflicts] == ["platform-a"]
        # another person is not matched
        other = name_person(for_person("breaks", make_ssin("1941-04-17", 200 + i), i), second)
        assert one_rule(other, reg, "IC-ONE-1") == []
        assert_not_in_clear(db_url, [ssin])


def test_the_same_holder_however_named_is_not_a_second_coordinator(db_url: str) -> None:
    """A new episode held by the same person as the stored one is no conflict, whether the
    holder is resolved or named by NIHDI or SSIN; a different relative is one."""
    reg = EpisodeRegistry(db_url, salt="x")
    ssin, relative = make_ssin("1941-04-17", 300), make_ssin("1970-01-01", 5)
    prior = for_person("prior", ssin, 0)
    assert reg.record(prior) == Recorded(1)
    cm_role = next(e for e in prior["entry"] if e["fullUrl"] == episode(prior)["careManager"]["reference"])
    practitioner = next(
        e["resource"]
        for e in prior["entry"]
        if e["fullUrl"] == cm_role["resource"]["practitioner"]["reference"]
    )
    nihdi = next(i["value"] for i in practitioner["identifier"] if i["system"] == NIHDI_CORE)
    again = for_person("prior", ssin, 1)
    episode(again)["careManager"] = {"reference": f"Practitioner?identifier={NIHDI_CORE}|{nihdi}"}
    assert one_rule(again, reg, "IC-ONE-1") == []
    assert reg.record(again, exclusive=True) == Recorded(1)

    # a relative: resolved RelatedPerson with an SSIN, then named by conditional reference
    carer = for_person("prior", ssin, 2)
    related = next(e for e in carer["entry"] if e["resource"]["resourceType"] == "RelatedPerson")
    related["resource"]["identifier"].append({"system": SSIN_CORE, "value": relative})
    episode(carer)["careManager"] = {"reference": related["fullUrl"]}
    assert reg.record(carer, exclusive=True).stored == 0  # the GP coordinates until then
    for ended in (prior, again):
        episode(ended)["status"] = "finished"
        reg.record(ended)
    assert reg.record(carer, exclusive=True) == Recorded(1)
    same = for_person("prior", ssin, 3)
    episode(same)["careManager"] = naming(relative, "legacy", "RelatedPerson")
    assert one_rule(same, reg, "IC-ONE-1") == []
    assert reg.record(same, exclusive=True) == Recorded(1)
    stranger = for_person("prior", ssin, 4)
    episode(stranger)["careManager"] = naming(make_ssin("1970-01-01", 6), "conditional", "RelatedPerson")
    assert one_rule(stranger, reg, "IC-ONE-1") == [("error", "IC-ONE-1")]
    assert reg.record(stranger, exclusive=True).stored == 0
    assert_not_in_clear(db_url, [ssin, relative])


def test_rows_stored_in_clear_before_are_hashed_when_the_registry_opens(db_url: str) -> None:
    """Earlier versions kept a conditional reference's text as the holder: opening the
    database once rewrites those rows, and the person is still found."""
    reg = EpisodeRegistry(db_url, salt="x")
    ssin, relative = make_ssin("1941-04-17", 400), make_ssin("1970-01-01", 7)
    assert reg.record(for_person("prior", ssin, 0)) == Recorded(1)
    engine = sqlalchemy.create_engine(reg.url)
    old = {
        "person_key": reg.person_key(ssin),
        "holder": f"ref:RelatedPerson?identifier={SSIN_LEGACY}|{relative}",
        "episode_key": f"https://x.example/id|CC-{ssin}",
    }
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "update becare_episode_role set holder = :holder, episode_key = :episode_key"
                " where person_key = :person_key"
            ),
            old,
        )
        conn.execute(sqlalchemy.text("delete from becare_registry_meta where key = 'labels'"))
        before = [tuple(r) for r in conn.execute(sqlalchemy.text("select holder from becare_episode_role"))]
    engine.dispose()
    reg.close()
    assert before == [(old["holder"],)]  # what an upgraded database holds before it is opened

    again = EpisodeRegistry(db_url, salt="x")
    assert_not_in_clear(db_url, [ssin, relative])
    [role] = again.active_roles(again.person_key(ssin), "care-coordinator")
    assert role.holder == "ssin:" + again.person_key(relative)
    assert role.episode_key == "https://x.example/id|CC-ssin:" + again.person_key(ssin)
    before = stored_text(db_url)
    EpisodeRegistry(db_url, salt="x").close()  # once only: a second opening changes nothing
    assert stored_text(db_url) == before


def test_scrubbing_is_stable_and_keeps_numbers_apart() -> None:
    labels = Labeller(EpisodeRegistry("sqlite://", salt="x").person_key)
    for n in range(1, 300):
        ssin = make_ssin("1985-07-30", n)
        once = labels.scrub(f"ref:Patient/{ssin} and {formatted(ssin)}")
        assert ssin not in once and labels.scrub(once) == once  # a hash is never hashed again
        first, second = re.findall(r"ssin:[0-9a-f]{64}", once)
        assert first == second
    assert labels.scrub("urn:uuid:5a0ff560-03f0-5841-aa42-8ff9e7bb8203") == (
        "urn:uuid:5a0ff560-03f0-5841-aa42-8ff9e7bb8203"
    )
