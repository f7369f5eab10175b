"""The durable outbox on a real SQLite file: durability, idempotency, claims, leases, audit."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from adapter.database import is_memory_sqlite, normalise_url
from adapter.forwarding.routing import RouteDecision
from adapter.forwarding.settings import OutboxConfig
from adapter.outbox import Outbox, OutboxError, idempotency_key, mask, mask_ssin
from adapter.outbox.keys import canonical_json
from adapter.outbox.masking import mask_audit

SSIN = "85073003328"


def bundle(i: int = 0, *, ident: bool = True) -> dict:
    b = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient", "identifier": [{"value": SSIN}]},
                   "request": {"method": "POST", "url": "Patient"}}],
    }
    if ident:
        b["identifier"] = {"system": "urn:test", "value": f"b-{i}"}
    return b


ROUTE = RouteDecision(("hub",), "default")


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    ob = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}", max_attempts=3)
    yield ob
    ob.close()


def enqueue(box: Outbox, b: dict, route: RouteDecision = ROUTE):
    return box.enqueue(b, route=route, idempotency_key=idempotency_key(b), client="vendor-a")


def test_idempotency_key_uses_identifier_else_canonical_hash() -> None:
    assert idempotency_key(bundle(7)) == "urn:test|b-7"
    a = {"resourceType": "Bundle", "type": "collection",
         "entry": [{"resource": {"id": "x", "resourceType": "Basic"}}]}
    b = {"type": "collection", "entry": [{"resource": {"resourceType": "Basic", "id": "x"}}],
         "resourceType": "Bundle"}
    assert idempotency_key(a) == idempotency_key(b)
    assert idempotency_key(a).startswith("sha256:") and len(idempotency_key(a)) == 7 + 64
    a["entry"][0]["resource"]["id"] = "y"
    assert idempotency_key(a) != idempotency_key(b)
    # an identifier without value falls back to the content hash
    assert idempotency_key({**a, "identifier": {"system": "urn:x"}}).startswith("sha256:")


def test_canonical_json_keeps_decimals_as_the_numbers_they_were() -> None:
    from decimal import Decimal

    from adapter.outbox.keys import _stdlib_canonical

    value = {"b": [Decimal("1.50"), Decimal("1E+2"), Decimal("-0.000120")], "a": "\u00e9", "n": 3}
    assert canonical_json(value) == '{"a":"\u00e9","b":[1.50,1E+2,-0.000120],"n":3}'
    assert json.loads(canonical_json(value))["b"][0] == 1.5  # a number, not the string "1.50"
    # what the fast writer refuses goes through the stdlib writer, with the same spelling
    big = {**value, "z": 2**70}
    assert canonical_json(big) == _stdlib_canonical(big)
    assert canonical_json(big).endswith(',"n":3,"z":1180591620717411303424}')
    assert _stdlib_canonical(value) == canonical_json(value)


def test_enqueue_is_committed_and_visible_to_another_connection(box: Outbox, tmp_path: Path) -> None:
    d = enqueue(box, bundle(1))
    assert d.status == "pending" and d.destination == "hub" and d.attempts == 0
    # a plain sqlite3 connection (another "process") sees the row at once
    con = sqlite3.connect(tmp_path / "outbox.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = con.execute("SELECT status, payload FROM outbox_deliveries WHERE id = ?", (d.id,)).fetchone()
    con.close()
    assert row[0] == "pending"
    assert row[1] == canonical_json(bundle(1))


def test_same_key_returns_the_existing_delivery(box: Outbox) -> None:
    first = enqueue(box, bundle(1))
    again = enqueue(box, bundle(1), RouteDecision(("other",), "explicit"))
    assert again.id == first.id and again.destination == "hub"
    assert len(box.list()) == 1


def test_concurrent_enqueues_group_commit_and_stay_unique(box: Outbox) -> None:
    errors: list[BaseException] = []

    def producer(k: int) -> None:
        try:
            for i in range(40):
                enqueue(box, bundle(i % 60))  # overlapping keys across threads
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    items = box.list(limit=1000)
    assert len(items) == 40 and len({d.idempotency_key for d in items}) == 40


def test_multi_destination_route_makes_one_row_each(box: Outbox) -> None:
    d = enqueue(box, bundle(2), RouteDecision(("a", "b", "a"), "region+metahub", region="flanders"))
    assert d.destination == "a" and len(d.related) == 1
    other = box.get(d.related[0])
    assert other is not None and other.destination == "b" and other.related == (d.id,)
    assert d.region == "flanders" and d.route_via == "region+metahub"


def test_blocked_route_is_stored_with_reason_and_never_claimed(box: Outbox) -> None:
    d = enqueue(box, bundle(3), RouteDecision((), "metahub-consent", reason="no consent", blocked=True))
    assert d.status == "blocked" and d.reason == "no consent" and d.destination == ""
    assert box.claim("w") == []
    with pytest.raises(OutboxError) as err:
        box.retry(d.id)
    assert "no destination" in err.value.message
    assert [r.action for r in box.audit_records()] == ["block"]


def test_no_destination_is_blocked_with_a_clear_reason(box: Outbox) -> None:
    d = enqueue(box, bundle(4), RouteDecision((), "none"))
    assert d.status == "blocked" and d.reason == "no destination configured"


def test_blocked_bundle_sent_again_once_routable_is_queued(box: Outbox) -> None:
    blocked = enqueue(box, bundle(5), RouteDecision((), "none"))
    assert blocked.status == "blocked" and box.claim("w") == []
    again = enqueue(box, bundle(5), RouteDecision(("a", "b"), "region", region="flanders"))
    assert again.id == blocked.id and again.status == "pending" and again.destination == "a"
    assert len(again.related) == 1 and box.get(again.related[0]).destination == "b"
    assert sorted(i.destination for i in box.claim("w", limit=10)) == ["a", "b"]
    assert "route" in [r.action for r in box.audit_records()]
    # once routed, a further resubmission is the same delivery again
    assert enqueue(box, bundle(5), RouteDecision(("a",), "region")).id == blocked.id
    assert sum(box.counts().values()) == 2


def test_changed_content_under_an_accepted_key_is_refused(box: Outbox) -> None:
    first = enqueue(box, bundle(6))
    changed = bundle(6)
    changed["type"] = "batch"
    with pytest.raises(OutboxError) as err:
        enqueue(box, changed)
    assert err.value.code == "conflict" and first.id in err.value.message
    assert sum(box.counts().values()) == 1


def test_claim_takes_only_due_rows_and_counts_the_attempt(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    items = box.claim("w1", limit=10, lease_seconds=30)
    assert [i.id for i in items] == [d.id] and items[0].attempt == 1 and items[0].payload == bundle(1)
    assert box.claim("w2") == []  # held under lease
    got = box.get(d.id)
    assert got is not None and got.status == "in-flight" and got.attempts == 1


def test_a_claim_takes_no_more_than_its_limit(box: Outbox) -> None:
    for i in range(30):
        enqueue(box, bundle(i))
    assert [len(box.claim(f"w{k}", limit=8)) for k in range(4)] == [8, 8, 8, 6]


def test_concurrent_claims_never_overlap(box: Outbox) -> None:
    for i in range(150):
        enqueue(box, bundle(i))
    seen: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            items = box.claim(name, limit=7, lease_seconds=60)
            if not items:
                return
            with lock:
                seen.extend(i.id for i in items)

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 150 and len(set(seen)) == 150


def test_expired_lease_is_reclaimed_and_logged(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    [item] = box.claim("dead-worker", lease_seconds=0.05)
    assert box.begin(item, worker="dead-worker", lease_seconds=0.05)  # sent, then the worker died
    time.sleep(0.1)
    [again] = box.claim("new-worker", lease_seconds=30)
    assert again.id == d.id and again.reclaimed and again.attempt == 2 and again.outcome_unknown
    # the old worker's late result is fenced off
    now = time.time()
    late = box.complete(item, worker="dead-worker", outcome="delivered", started_at=now, finished_at=now)
    assert late == "lost"
    ok = box.complete(again, worker="new-worker", outcome="delivered", started_at=now, finished_at=now)
    assert ok == "delivered"
    got = box.get(d.id)
    assert got is not None and got.status == "delivered"
    assert [a.outcome for a in got.attempt_log] == ["lease-expired", "delivered", "delivered"]
    assert "outcome unknown" in (got.attempt_log[0].error or "")
    audit = [r.detail for r in box.audit_records() if r.what == d.id]
    assert any("lease-expired" in (t or "") for t in audit)  # the lost attempt is in the audit too


def test_a_claim_never_sent_is_free_again_without_costing_an_attempt(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    [item] = box.claim("dead-worker", lease_seconds=0.05)  # claimed, killed before sending
    time.sleep(0.1)
    [again] = box.claim("new-worker", lease_seconds=30)
    assert again.id == d.id and again.reclaimed and again.attempt == 1 and not again.outcome_unknown
    assert not box.begin(item, worker="dead-worker", lease_seconds=30)  # the loser never sends it
    assert box.begin(again, worker="new-worker", lease_seconds=30)
    now = time.time()
    assert box.complete(again, worker="new-worker", outcome="delivered", started_at=now,
                        finished_at=now) == "delivered"
    got = box.get(d.id)
    assert got is not None and got.attempts == 1 and [a.outcome for a in got.attempt_log] == ["delivered"]


def test_begin_extends_the_lease_so_a_slow_attempt_is_not_taken_over(box: Outbox) -> None:
    enqueue(box, bundle(1))
    [item] = box.claim("w1", lease_seconds=0.05)
    assert box.begin(item, worker="w1", lease_seconds=30)
    time.sleep(0.1)
    assert box.claim("w2") == []  # the claim lease ended, the attempt's did not


def test_an_unknown_outcome_after_a_takeover_is_carried_until_an_attempt_begins(box: Outbox) -> None:
    enqueue(box, bundle(1))
    [item] = box.claim("w1", lease_seconds=0.05)
    box.begin(item, worker="w1", lease_seconds=0.05)
    time.sleep(0.1)
    [taken] = box.claim("w2", lease_seconds=0.05)
    box.release([taken], "w2")  # graceful stop before sending: the unknown must not be forgotten
    [again] = box.claim("w3", lease_seconds=0.05)
    assert again.outcome_unknown and again.attempt == 2
    time.sleep(0.1)
    [once_more] = box.claim("w4", lease_seconds=30)  # w3 died before sending too
    assert once_more.outcome_unknown and once_more.attempt == 2
    lost = [a for a in box.get(item.id).attempt_log if a.outcome == "lease-expired"]
    assert len(lost) == 1  # logged once, when the attempt on the wire was taken over


def test_retry_schedules_then_dead_letters_then_manual_replay(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    for n in range(1, 4):
        [item] = box.claim("w")
        now = time.time()
        status = box.complete(item, worker="w", outcome="retry", started_at=now, finished_at=now,
                              http_status=503, error=f"HTTP 503 for {SSIN}", retry_at=now)
        assert status == ("dead" if n == 3 else "pending")
    got = box.get(d.id)
    assert got is not None and got.status == "dead" and got.attempts == 3 and got.last_status_code == 503
    assert SSIN not in (got.last_error or "") and "***" in (got.last_error or "")
    assert box.claim("w") == []
    with pytest.raises(OutboxError) as err:
        box.retry("no-such-id")
    assert err.value.code == "not-found"
    replayed = box.retry(d.id, who="operator")
    assert replayed.status == "pending" and replayed.attempts == 0
    with pytest.raises(OutboxError) as err:
        box.retry(d.id)
    assert err.value.code == "conflict"
    [item] = box.claim("w")
    assert item.id == d.id and item.replayed and item.attempt == 1
    assert box.attempts_made(d.id) == 3  # the replay's first attempt is its fourth in all


def test_retry_waits_until_next_attempt_at(box: Outbox) -> None:
    enqueue(box, bundle(1))
    [item] = box.claim("w")
    now = time.time()
    box.complete(item, worker="w", outcome="retry", started_at=now, finished_at=now, retry_at=now + 0.3)
    assert box.claim("w") == []
    time.sleep(0.35)
    assert len(box.claim("w")) == 1


def test_release_gives_rows_back_without_counting(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    items = box.claim("w")
    box.release(items, "w")
    got = box.get(d.id)
    assert got is not None and got.status == "pending" and got.attempts == 0


def test_list_filters_and_counts(box: Outbox) -> None:
    enqueue(box, bundle(1))
    enqueue(box, bundle(2), RouteDecision((), "none"))
    assert [d.status for d in box.list("blocked")] == ["blocked"]
    assert box.counts()["pending"] == 1 and box.counts()["blocked"] == 1
    with pytest.raises(OutboxError):
        box.list("bogus")
    assert box.ping()


def test_audit_is_masked_and_exports_as_fhir(box: Outbox) -> None:
    box.record_audit("accept", who="vendor-a", what="delivery-1", outcome="success",
                     detail=f"bundle of {SSIN}")
    box.record_audit("validate", who="vendor-b", what=None, outcome="rejected", detail="2 errors")
    records = box.audit_records()
    assert SSIN not in (records[0].detail or "")
    fhir = box.audit_events_as_fhir()
    assert fhir["resourceType"] == "Bundle" and fhir["type"] == "collection"
    events = [e["resource"] for e in fhir["entry"]]
    assert all(e["resourceType"] == "AuditEvent" for e in events)
    assert events[0]["action"] == "C" and events[0]["outcome"] == "0"
    assert events[0]["agent"][0]["who"]["display"] == "vendor-a"
    assert events[0]["entity"][0]["what"]["identifier"]["value"] == "delivery-1"
    assert events[1]["outcome"] == "4" and events[1]["outcomeDesc"] == "2 errors"
    assert events[0]["recorded"].endswith("Z")


def test_audit_events_written_without_waiting_for_the_disk_are_stored_in_order(box: Outbox) -> None:
    """The service's queued validation events use durable=False (no fsync of their own); they
    are stored, masked and read back in order with the durable ones around them."""
    box.record_audit("accept", who="a", what="d-1", outcome="success")
    box.record_audit("validate", who="b", what=None, outcome="success", detail=f"of {SSIN}", durable=False)
    box.record_audit("validate", who="c", what=None, outcome="rejected", durable=False)
    box.record_audit("accept", who="d", what="d-2", outcome="success")
    records = box.audit_records()
    assert [(r.action, r.who, r.outcome) for r in records] == [
        ("accept", "a", "success"),
        ("validate", "b", "success"),
        ("validate", "c", "rejected"),
        ("accept", "d", "success"),
    ]
    assert SSIN not in (records[1].detail or "")


def test_delivery_json_shape(box: Outbox) -> None:
    d = enqueue(box, bundle(1))
    j = d.to_json()
    assert j["id"] == d.id and j["status"] == "pending" and j["destination"] == "hub"
    assert j["attemptLog"] == [] and j["created"].endswith("Z")


def test_bad_database_urls_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(OutboxError) as err:
        Outbox(f"sqlite:///{tmp_path}/missing/dir/outbox.db")
    assert "does not exist" in err.value.message and err.value.code == "config"
    with pytest.raises(OutboxError):
        Outbox("nosuchdb://x")
    with pytest.raises(OutboxError):
        Outbox(f"sqlite:///{tmp_path}/o.db", sqlite_synchronous="SOMETIMES")
    for empty in ("", "   "):
        with pytest.raises(OutboxError, match="empty") as err:
            Outbox(empty)
        assert err.value.code == "config"


def test_database_urls_read_one_way_by_every_part() -> None:
    """Outbox, registry and the delivery-process choice read a URL the same way."""
    assert normalise_url("becare.db") == "sqlite:///becare.db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite://") == "sqlite://"
    assert is_memory_sqlite("sqlite://") and is_memory_sqlite(":memory:")
    assert not is_memory_sqlite("becare.db") and not is_memory_sqlite("postgres://u@h/db")
    # a bare path (accepted by the outbox) used to crash the choice of `becare serve`
    assert OutboxConfig(workers=1, process=None).delivery_process("sqlite://") is False
    OutboxConfig(workers=1, process=None).delivery_process("becare.db")


def test_masking() -> None:
    assert mask(f"id {SSIN} and 85.07.30-033.28") == "id *********** and ***********"
    assert mask('{"family": "Peeters", "given": ["An"]}') == '{"family": "***", "given": "***"}'
    assert mask("x" * 500, limit=10) == "x" * 9 + "…"
    assert mask("85.07.30.033.28") == "***********"  # dotted throughout, as the log filter reads it
    assert mask_audit(None, "", "") == (None, "", "")
    who, what, detail = mask_audit("c" * 300, f"Patient?identifier={SSIN}", "d" * 400)
    assert (len(who), what, len(detail)) == (200, "Patient?identifier=***********", 300)
    assert mask_ssin(SSIN) == "*********28"
