"""Exactly-once delivery: no bundle stored twice by a receiver, none lost ("never half-accepts").

The receiver here is the mock hub playing a plain FHIR server: it ignores ``Idempotency-Key``
(stores every POST, duplicates included) and offers only what FHIR offers: ``If-None-Exist``
on ``POST {base}/Bundle`` and searches by identifier. Its ``duplicates()`` must stay empty.

Covered: an attempt whose reply is lost after a complete send is an *unknown* outcome, resolved
as the destination's ``exactly_once`` says (lookup, conditional create, idempotency key), or
blocked when nothing can be looked up; the worker records each outcome as it happens and begins
each row with a fenced lease extension; two ``becare outbox work`` processes on PostgreSQL (and
SQLite), one SIGKILLed mid-batch, deliver every bundle exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.forwarding import Forwarder, build_forwarding
from adapter.forwarding.destinations import DeliveryResult, FhirRestDestination, MhdDestination
from adapter.forwarding.routing import RouteDecision
from adapter.forwarding.settings import ConfigError, DestinationConfig, settings_from_dict
from adapter.outbox import Outbox, idempotency_key
from adapter.testing.hub import HubHandle
from adapter.testing.mockhub import Fault, MockHub
from tests import conftest_pg

pg_url = conftest_pg.pg_url  # the throwaway PostgreSQL server fixtures
pg_db = conftest_pg.pg_db

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "urn:becare:test"


def document(i: int | str, btype: str = "collection") -> dict[str, Any]:
    """A bundle stored as a Bundle resource at ``{base}/Bundle`` (searchable by identifier)."""
    return {"resourceType": "Bundle", "type": btype, "identifier": {"system": SYSTEM, "value": f"doc-{i}"},
            "entry": [{"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Basic", "id": str(i)}}]}


def transaction(i: int | str, *, conditional: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": "Basic"}
    if conditional:
        request["ifNoneExist"] = f"identifier={SYSTEM}|basic-{i}"
    ident = {"system": SYSTEM, "value": f"tx-{i}"}
    return {"resourceType": "Bundle", "type": "transaction", "identifier": ident,
            "entry": [{"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Basic", "id": str(i)},
                       "request": request}]}


@pytest.fixture
def plain_hub() -> Iterator[MockHub]:
    """A hub that ignores Idempotency-Key, as a plain FHIR server does."""
    with MockHub() as hub:
        hub.state.honour_idempotency_key = False
        yield hub


def rest(hub: MockHub, mode: str | None, **cfg: Any) -> FhirRestDestination:
    return FhirRestDestination("hub", DestinationConfig(kind="fhir-rest", url=hub.fhir_url, exactly_once=mode,
                                                        **cfg))


def deliver(dest: Any, bundle: dict[str, Any], **kw: Any) -> DeliveryResult:
    return dest.deliver(bundle, idempotency_key=idempotency_key(bundle), delivery_id="d-1", **kw)


# -- the mock hub as a plain FHIR server ---------------------------------------------------------
def test_mock_hub_without_the_key_stores_duplicates_answers_searches_and_conditional_creates(
    plain_hub: MockHub,
) -> None:
    url, b = plain_hub.fhir_url, document(1)
    headers = {"Idempotency-Key": "same", "Content-Type": "application/fhir+json"}
    assert httpx.post(f"{url}/Bundle", json=b, headers=headers).status_code == 201
    assert httpx.post(f"{url}/Bundle", json=b, headers=headers).status_code == 201  # the key is ignored
    assert plain_hub.state.duplicates() == {f"{SYSTEM}|doc-1": 2}
    found = httpx.get(f"{url}/Bundle", params={"identifier": f"{SYSTEM}|doc-1", "_summary": "count"}).json()
    assert found == {"resourceType": "Bundle", "type": "searchset", "total": 2}
    assert httpx.get(f"{url}/Bundle", params={"identifier": f"{SYSTEM}|doc-9"}).json()["total"] == 0
    assert httpx.get(f"{url}/Bundle", params={"identifier": "urn:other|doc-1"}).json()["total"] == 0
    # If-None-Exist: kept (200) when one matches, 412 when several do, created when none
    other = document(2)
    cond = {**headers, "If-None-Exist": f"identifier={SYSTEM}|doc-2"}
    assert httpx.post(f"{url}/Bundle", json=other, headers=cond).status_code == 201
    assert httpx.post(f"{url}/Bundle", json=other, headers=cond).status_code == 200
    cond["If-None-Exist"] = f"identifier={SYSTEM}|doc-1"
    assert httpx.post(f"{url}/Bundle", json=b, headers=cond).status_code == 412
    assert plain_hub.state.copies() == {f"{SYSTEM}|doc-1": 2, f"{SYSTEM}|doc-2": 1}
    # a transaction posted to the base is not stored as a Bundle: no search finds it
    httpx.post(url, json=transaction(1), headers=headers)
    assert httpx.get(f"{url}/Bundle", params={"identifier": f"{SYSTEM}|tx-1"}).json()["total"] == 0
    counts = httpx.get(f"{plain_hub.url}/_mock/counts").json()
    assert counts["duplicates"] == {f"{SYSTEM}|doc-1": 2} and counts["lookups"] == 4
    handle = HubHandle(plain_hub)
    with pytest.raises(AssertionError, match="stored more than once"):
        handle.assert_no_duplicates()
    handle.reset()
    handle.assert_no_duplicates()


def test_mock_hub_mode_is_switchable_over_the_control_api(plain_hub: MockHub) -> None:
    r = httpx.put(f"{plain_hub.url}/_mock/mode", json={"honour_idempotency_key": True})
    assert r.json() == {"honour_idempotency_key": True} and plain_hub.state.honour_idempotency_key


# -- settings ------------------------------------------------------------------------------------
def test_exactly_once_setting() -> None:
    assert DestinationConfig(url="http://x").delivery_guarantee == "idempotency-key"
    assert DestinationConfig(url="http://x", exactly_once="search").delivery_guarantee == "search"
    with pytest.raises(ConfigError, match="conditional-create is not possible for mhd"):
        settings_from_dict({"destinations": {"m": {"kind": "mhd", "url": "http://x",
                                                   "exactly_once": "conditional-create"}}})
    with pytest.raises(ConfigError, match="exactly_once"):
        settings_from_dict({"destinations": {"m": {"url": "http://x", "exactly_once": "maybe"}}})


# -- destinations: an unknown outcome, resolved the way the receiver allows ------------------------
def test_default_mode_against_a_receiver_ignoring_the_key_is_at_least_once(plain_hub: MockHub) -> None:
    """What the README says plainly: without a lookup, a lost reply means a second copy."""
    dest = rest(plain_hub, None)
    plain_hub.state.add_faults(["drop-after"])
    first = deliver(dest, document(1))
    assert first.outcome == "retry" and first.unknown and "Idempotency-Key" in (first.error or "")
    assert deliver(dest, document(1), ).outcome == "delivered"
    dest.close()
    assert plain_hub.state.copies()[f"{SYSTEM}|doc-1"] == 2


def test_search_looks_the_bundle_up_before_sending_again(plain_hub: MockHub) -> None:
    dest = rest(plain_hub, "search")
    plain_hub.state.add_faults(["drop-after"])  # stored, then the reply is lost
    first = deliver(dest, document(1), attempt=1)
    assert first.outcome == "retry" and first.unknown and "looks it up" in (first.error or "")
    second = deliver(dest, document(1), attempt=2)
    assert second.outcome == "delivered" and "found by search" in (second.error or "")
    assert len(plain_hub.state.requests) == 1 and len(plain_hub.state.lookups) == 1  # no second POST
    assert "identifier=urn:becare:test|doc-1" in plain_hub.state.lookups[0]["query"]
    # not there (e.g. a 503 before): the lookup finds nothing, the bundle is sent
    assert deliver(dest, document(2), attempt=2).outcome == "delivered"
    assert deliver(dest, document(3), attempt=1).outcome == "delivered"  # first attempt: no lookup
    dest.close()
    assert len(plain_hub.state.lookups) == 2 and not plain_hub.state.duplicates()
    assert set(plain_hub.state.copies()) == {f"{SYSTEM}|doc-{i}" for i in (1, 2, 3)}


def test_a_failed_lookup_never_sends(plain_hub: MockHub) -> None:
    dest = rest(plain_hub, "search")
    plain_hub.state.always = Fault(status=503)
    result = deliver(dest, document(1), attempt=2)
    assert result.outcome == "retry" and result.http_status == 503 and "lookup" in (result.error or "")
    plain_hub.state.always = Fault(status=400)
    result = deliver(dest, document(1), attempt=2)
    assert result.outcome == "dead" and "exactly_once: search needs" in (result.error or "")
    dest.close()
    assert plain_hub.state.requests == []  # nothing was POSTed


def test_conditional_create_sends_if_none_exist(plain_hub: MockHub) -> None:
    dest = rest(plain_hub, "conditional-create")
    plain_hub.state.add_faults(["drop-after"])
    first = deliver(dest, document(1), attempt=1)
    assert first.unknown and "If-None-Exist" in (first.error or "")
    again = deliver(dest, document(1), attempt=2)
    assert again.outcome == "delivered" and again.http_status == 200  # kept, not created
    dest.close()
    assert len(plain_hub.state.requests) == 2 and plain_hub.state.copies() == {f"{SYSTEM}|doc-1": 1}


def test_conditional_create_when_the_receiver_already_holds_copies(plain_hub: MockHub) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    for _ in range(2):
        httpx.post(f"{plain_hub.fhir_url}/Bundle", json=document(1), headers=headers)
    dest = rest(plain_hub, "conditional-create")
    result = deliver(dest, document(1))
    dest.close()
    assert result.outcome == "delivered" and result.http_status == 412 and "several" in (result.error or "")
    assert plain_hub.state.copies()[f"{SYSTEM}|doc-1"] == 2  # no third


@pytest.mark.parametrize("mode", ["search", "conditional-create"])
def test_a_transaction_that_cannot_be_looked_up_is_blocked_not_sent_again(
    plain_hub: MockHub, mode: str
) -> None:
    """A transaction is not stored as a Bundle: after an unknown outcome nothing can tell whether
    it arrived, so it is blocked for an operator instead of being sent blindly a second time."""
    dest = rest(plain_hub, mode)
    plain_hub.state.add_faults(["drop-after"])
    result = deliver(dest, transaction(1))
    assert result.outcome == "blocked" and result.unknown
    assert "cannot be looked up" in (result.error or "") and "becare outbox retry" in (result.error or "")
    # the worker of an earlier attempt died after sending it: blocked before sending anything
    taken_over = deliver(dest, transaction(2), attempt=2, outcome_unknown=True)
    assert taken_over.outcome == "blocked" and not taken_over.unknown
    # a 503 is a plain answer: the transaction is simply sent again later
    plain_hub.state.add_faults(["503"])
    assert deliver(dest, transaction(3)).outcome == "retry"
    assert deliver(dest, transaction(3), attempt=2).outcome == "delivered"
    # a transaction whose every entry is conditional can be sent again: the server keeps one
    plain_hub.state.add_faults(["drop-after"])
    conditional = deliver(dest, transaction(4, conditional=True))
    assert conditional.outcome == "retry" and conditional.unknown
    dest.close()
    assert [r["key"] for r in plain_hub.state.requests].count(plain_hub.state.requests[0]["key"]) == 1


def test_a_gateway_timeout_is_an_unknown_outcome(plain_hub: MockHub) -> None:
    plain_hub.state.add_faults(["504"])
    dest = rest(plain_hub, "search")
    result = deliver(dest, document(1))
    dest.close()
    assert result.outcome == "retry" and result.unknown and result.http_status == 504


def test_mhd_search_finds_the_document_reference(plain_hub: MockHub) -> None:
    dest = MhdDestination("m", DestinationConfig(kind="mhd", url=plain_hub.mhd_url, exactly_once="search"))
    assert dest.attempt_timeout == 2 * dest.config.timeout  # a lookup and a POST
    plain_hub.state.add_faults(["drop-after"])
    assert deliver(dest, transaction(1)).unknown
    again = deliver(dest, transaction(1), attempt=2)
    dest.close()
    assert again.outcome == "delivered" and "found by search" in (again.error or "")
    assert "DocumentReference" in plain_hub.state.lookups[0]["path"] and len(plain_hub.state.requests) == 1


# -- the worker: each outcome recorded as it happens, fenced begins, every attempt audited ---------
class Recording:
    """A destination that notes, on each call, how many deliveries the outbox already records."""

    name = kind = "rec"
    reads_bundle = False

    def __init__(self, box: Outbox, gate: threading.Event | None = None) -> None:
        self.box, self.gate = box, gate
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def deliver(self, bundle: Any, *, idempotency_key: str, delivery_id: str, raw: str | None = None,
                **kw: Any) -> DeliveryResult:
        with self.lock:
            self.calls.append((delivery_id, self.box.counts()["delivered"]))
            first = len(self.calls) == 1
        if first and self.gate is not None:
            self.gate.wait(10)
        return DeliveryResult("delivered", 200)

    def close(self) -> None:
        pass


def _enqueue(box: Outbox, n: int, destination: str = "rec",
             make: Callable[[int], dict] = document) -> list[str]:
    route = RouteDecision((destination,), "default")
    return [box.enqueue(make(i), route=route, idempotency_key=idempotency_key(make(i)), client="t").id
            for i in range(n)]


def test_each_outcome_is_recorded_before_the_next_row_is_sent(tmp_path: Path) -> None:
    box = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    _enqueue(box, 8)
    dest = Recording(box)
    fw = Forwarder(box, {"rec": dest}, batch=8)
    assert fw.run_once("w") == 8
    # one batch of 8: when row k is sent, the k rows before it are already recorded delivered
    assert [seen for _, seen in dest.calls] == list(range(8))
    box.close()


def test_rows_claimed_but_not_sent_are_free_again_within_seconds_and_never_sent_by_the_loser(
    tmp_path: Path,
) -> None:
    box = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    ids = _enqueue(box, 8)
    gate = threading.Event()
    slow = Recording(box, gate)  # its first delivery hangs: a worker stuck (or dead) mid-batch
    a = Forwarder(box, {"rec": slow}, batch=8, claim_lease_seconds=0.3, name="a")
    assert a.lease_seconds >= 30  # a whole attempt's lease, as before
    stuck = threading.Thread(target=a.run_once, args=("a/0",))
    stuck.start()
    while not slow.calls:
        time.sleep(0.01)
    time.sleep(0.4)  # the seven rows it claimed but did not send: their short claim has ended
    fast = Recording(box)
    b = Forwarder(box, {"rec": fast}, batch=8, name="b")
    assert b.run_once("b/0") == 7
    gate.set()
    stuck.join(10)
    sent = [i for i, _ in slow.calls] + [i for i, _ in fast.calls]
    assert sorted(sent) == sorted(ids)  # each row sent exactly once
    assert a.stats["skipped"] == 7 and a.stats["delivered"] == 1
    assert box.counts()["delivered"] == 8
    assert all(box.get(i).attempts == 1 for i in ids)  # a claim never sent cost no attempt
    box.close()


def test_every_attempt_is_audited_503s_included(tmp_path: Path) -> None:
    with MockHub() as hub:
        hub.state.add_faults(["503", "503,retry-after=0"])
        fw = build_forwarding(settings_from_dict({
            "outbox": {"db": f"sqlite:///{tmp_path / 'o.db'}", "backoff_base": 0.01, "backoff_cap": 0.01},
            "destinations": {"hub": {"url": hub.fhir_url}}, "routing": {"default": ["hub"]},
        }))
        try:
            [d] = _enqueue(fw.outbox, 1, "hub")
            deadline = time.monotonic() + 20
            while fw.outbox.get(d).status != "delivered":  # retries are due a few ms later
                assert time.monotonic() < deadline
                fw.forwarder.drain(5)
                time.sleep(0.01)
            attempts = fw.outbox.get(d).attempt_log
            audit = [r for r in fw.outbox.audit_records() if r.what == d and r.action == "deliver"]
            assert [a.http_status for a in attempts] == [503, 503, 201]  # stored at {base}/Bundle
            assert [r.outcome for r in audit] == ["failure", "failure", "success"]
            assert all("HTTP 503" in (r.detail or "") for r in audit[:2])
        finally:
            fw.close()


def test_a_worker_lost_after_sending_is_resolved_by_a_lookup(tmp_path: Path, plain_hub: MockHub) -> None:
    """In one process: a worker begins a row, the hub stores it, the worker dies before its
    outcome is recorded. The next worker looks it up and does not send it again."""
    settings = settings_from_dict({
        "outbox": {"db": f"sqlite:///{tmp_path / 'o.db'}"},
        "destinations": {"hub": {"url": plain_hub.fhir_url, "exactly_once": "search"}},
        "routing": {"default": ["hub"]},
    })
    fw = build_forwarding(settings)
    box = fw.outbox
    [d] = _enqueue(box, 1, "hub")
    [item] = box.claim("dead", lease_seconds=0.05)
    assert box.begin(item, worker="dead", lease_seconds=0.05)
    dest = fw.forwarder.destinations["hub"]
    assert dest.deliver(None, idempotency_key=item.idempotency_key, delivery_id=d,
                        raw=item.payload_text).outcome == "delivered"  # ... and the worker died here
    time.sleep(0.1)
    try:
        assert fw.forwarder.drain(10)
        done = box.get(d)
        assert done.status == "delivered" and "found by search" in (done.last_error or "")
        assert [a.outcome for a in done.attempt_log] == ["lease-expired", "delivered"]
        assert len(plain_hub.state.requests) == 1 and not plain_hub.state.duplicates()
    finally:
        fw.close()


def test_a_blocked_unknown_transaction_is_sent_once_the_operator_replays_it(
    tmp_path: Path, plain_hub: MockHub
) -> None:
    fw = build_forwarding(settings_from_dict({
        "outbox": {"db": f"sqlite:///{tmp_path / 'o.db'}"},
        "destinations": {"hub": {"url": plain_hub.fhir_url, "exactly_once": "search"}},
        "routing": {"default": ["hub"]},
    }))
    try:
        plain_hub.state.add_faults(["drop"])  # the connection drops before the hub stores it
        [d] = _enqueue(fw.outbox, 1, "hub", transaction)
        assert fw.forwarder.drain(10)
        blocked = fw.outbox.get(d)
        assert blocked.status == "blocked" and [a.outcome for a in blocked.attempt_log] == ["unknown"]
        assert "cannot be looked up" in (blocked.reason or "")
        assert plain_hub.state.copies() == {}  # the operator checks: it is not there
        fw.outbox.retry(d, who="operator")
        assert fw.forwarder.drain(10)
        assert fw.outbox.get(d).status == "delivered" and plain_hub.state.copies() == {f"{SYSTEM}|tx-0": 1}
    finally:
        fw.close()


# -- two delivery processes, one SIGKILLed mid-batch ------------------------------------------------
def _two_processes_one_killed(db: str, tmp_path: Path, mode: str, n: int) -> None:
    box = Outbox(db)
    route = RouteDecision(("hub",), "default")
    for i in range(n):
        b = document(i)
        box.enqueue(b, route=route, idempotency_key=idempotency_key(b), client="t")
    with MockHub() as hub:
        hub.state.honour_idempotency_key = False  # a plain FHIR server: only the lookup protects it
        hub.state.always = Fault(delay=0.03)  # each request takes a while: a kill lands mid-send
        config = tmp_path / "becare.yaml"
        config.write_text(json.dumps({
            "outbox": {"poll_interval": 0.05, "backoff_base": 0.05, "backoff_cap": 0.2, "max_attempts": 50},
            "destinations": {"hub": {"url": hub.fhir_url, "timeout": 1, "exactly_once": mode}},
            "routing": {"default": ["hub"]},
        }))
        log = tmp_path / "workers.log"

        def worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "adapter.cli.outbox", "work", "--db", db, "--config", str(config),
                 "--workers", "3", "--lease", "3"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                stderr=log.open("ab"),
            )

        victim, survivor = worker(), worker()
        try:
            deadline = time.monotonic() + 120
            while len(hub.state.received) < n // 4:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                assert victim.poll() is None and survivor.poll() is None, log.read_text()[-2000:]
                time.sleep(0.01)
            victim.send_signal(signal.SIGKILL)  # mid-batch: rows claimed, one on the wire per thread
            victim.wait(10)
            while box.counts()["delivered"] < n:
                assert time.monotonic() < deadline, f"timed out: {box.counts()}"
                assert survivor.poll() is None, log.read_text()[-2000:]
                time.sleep(0.1)
        finally:
            for w in (victim, survivor):
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in (victim, survivor):
                try:
                    w.wait(20)
                except subprocess.TimeoutExpired:
                    w.kill()
        time.sleep(0.2)  # requests the killed process left in flight finish at the hub
        copies = hub.state.copies()
        twice = hub.state.duplicates()
        assert not twice, f"{len(twice)} bundles delivered twice, e.g. {sorted(twice.items())[:5]}"
        assert set(copies) == {f"{SYSTEM}|doc-{i}" for i in range(n)}  # none lost
        lookups, absorbed = len(hub.state.lookups), len(hub.state.requests) - len(copies)
    logs = [box.get(d.id).attempt_log for d in box.list("delivered", limit=n)]
    assert box.counts()["delivered"] == n
    lost_mid_send = sum(1 for log in logs if any(a.outcome == "lease-expired" for a in log))
    assert lost_mid_send >= 1  # the kill did hit rows on the wire ...
    if mode == "search":  # ... each was looked up before any re-send ...
        assert lookups >= lost_mid_send
    else:  # ... or sent again with If-None-Exist, which the hub answered with the copy it held
        assert absorbed >= 1
    box.close()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["search", "conditional-create"])
def test_two_processes_on_postgres_one_killed_mid_batch_deliver_exactly_once(
    pg_db: str, tmp_path: Path, mode: str
) -> None:
    _two_processes_one_killed(pg_db, tmp_path, mode, 500)


@pytest.mark.slow
def test_two_processes_on_sqlite_one_killed_mid_batch_deliver_exactly_once(tmp_path: Path) -> None:
    _two_processes_one_killed(f"sqlite:///{tmp_path / 'outbox.db'}", tmp_path, "search", 300)
