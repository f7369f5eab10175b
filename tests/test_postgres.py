"""The outbox on a real PostgreSQL server (started by the fixture; fails, never skips, without it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapter.forwarding.routing import RouteDecision
from adapter.outbox import Outbox, OutboxError, idempotency_key
from adapter.testing.mockhub import MockHub
from tests import conftest_pg

pytestmark = pytest.mark.postgres
pg_url = conftest_pg.pg_url  # the throwaway server fixtures
pg_db = conftest_pg.pg_db

ROOT = Path(__file__).resolve().parent.parent
ROUTE = RouteDecision(("forward-to",), "default")


def bundle(i: int) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "identifier": {"system": "urn:pg", "value": str(i)},
            "entry": [{"resource": {"resourceType": "Basic", "id": str(i)},
                       "request": {"method": "POST", "url": "Basic"}}]}


def enqueue(box: Outbox, i: int):
    b = bundle(i)
    return box.enqueue(b, route=ROUTE, idempotency_key=idempotency_key(b), client="pg")


def test_outbox_basics_on_postgres(pg_db: str) -> None:
    box = Outbox(pg_db.replace("postgresql+psycopg://", "postgresql://"), max_attempts=2)  # plain URL works
    assert box.dialect == "postgresql"
    d = enqueue(box, 1)
    assert enqueue(box, 1).id == d.id
    [item] = box.claim("w", lease_seconds=30)
    assert item.payload == bundle(1) and box.claim("w2") == []
    now = time.time()
    assert box.complete(item, worker="w", outcome="retry", started_at=now, finished_at=now,
                        http_status=503, retry_at=now) == "pending"
    [item] = box.claim("w")
    assert box.complete(item, worker="w", outcome="retry", started_at=now, finished_at=now) == "dead"
    assert box.retry(d.id).status == "pending"
    with pytest.raises(OutboxError):
        box.retry(d.id)
    box.record_audit("accept", who="pg", what=d.id, outcome="success")
    assert box.audit_events_as_fhir()["entry"][-1]["resource"]["subtype"][0]["code"] == "accept"
    box.record_audit("validate", who="pg", what=None, outcome="success", durable=False)
    assert box.audit_events_as_fhir()["entry"][-1]["resource"]["subtype"][0]["code"] == "validate"
    assert box.counts()["pending"] == 1
    # a claim never sent is free again without costing an attempt; the replay mark is kept
    [claimed] = box.claim("crashed-early", lease_seconds=0.05)
    time.sleep(0.1)
    [item] = box.claim("crashed", lease_seconds=0.05)
    assert item.attempt == 1 and item.replayed and not item.outcome_unknown
    assert not box.begin(claimed, worker="crashed-early", lease_seconds=30)  # lost: never sent
    # an attempt on the wire whose worker died is taken over, and logged as lease-expired
    assert box.begin(item, worker="crashed", lease_seconds=0.05)
    time.sleep(0.1)
    [again] = box.claim("new")
    assert again.reclaimed and again.attempt == 2 and again.outcome_unknown
    done = box.complete(again, worker="new", outcome="delivered", started_at=now, finished_at=now)
    assert done == "delivered"
    assert [a.outcome for a in box.get(d.id).attempt_log][-2:] == ["lease-expired", "delivered"]
    box.close()


def test_a_claim_takes_no_more_than_its_limit(pg_db: str) -> None:
    """The planner used to run ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` once per due
    row, so one worker's claim of 8 took every due row."""
    box = Outbox(pg_db)
    for i in range(200):
        enqueue(box, i)
    assert [len(box.claim(f"w{k}", limit=8, lease_seconds=60)) for k in range(3)] == [8, 8, 8]
    assert box.counts() == {"pending": 176, "in-flight": 24, "delivered": 0, "dead": 0, "blocked": 0}
    box.close()


def test_skip_locked_claims_are_disjoint_across_engines(pg_db: str) -> None:
    boxes = [Outbox(pg_db) for _ in range(4)]
    for i in range(300):
        enqueue(boxes[0], i)
    seen: list[str] = []
    lock = threading.Lock()

    def worker(box: Outbox, name: str) -> None:
        while items := box.claim(name, limit=5, lease_seconds=60):
            with lock:
                seen.extend(i.id for i in items)

    threads = [threading.Thread(target=worker, args=(b, f"w{k}")) for k, b in enumerate(boxes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 300 and len(set(seen)) == 300
    for b in boxes:
        b.close()


def test_concurrent_enqueue_of_one_key_keeps_one_row(pg_db: str) -> None:
    boxes = [Outbox(pg_db) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda k: enqueue(boxes[k % 4], 7).id, range(16)))
    assert len(set(ids)) == 1 and len(boxes[0].list()) == 1
    for b in boxes:
        b.close()


def test_two_worker_processes_deliver_1000_bundles_exactly_once(pg_db: str, tmp_path: Path) -> None:
    box = Outbox(pg_db)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: enqueue(box, i), range(1000)))
    assert box.counts()["pending"] == 1000
    with MockHub() as hub:
        log = (tmp_path / "workers.log").open("ab")
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "adapter.cli.outbox", "work", "--db", pg_db,
                 "--forward-to", hub.fhir_url, "--workers", "3"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=log,
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 240
            while box.counts()["delivered"] < 1000:
                assert time.monotonic() < deadline, f"timed out: {box.counts()}"
                assert all(w.poll() is None for w in workers), (tmp_path / "workers.log").read_text()[-2000:]
                time.sleep(0.1)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(20)
                except subprocess.TimeoutExpired:
                    w.kill()
        requests = Counter(hub.state.request_keys())
        assert len(requests) == 1000 and max(requests.values()) == 1  # no bundle sent twice
        assert len(hub.state.keys()) == 1000
    per_process = Counter(
        a.worker.rsplit("/", 1)[0]
        for d in box.list("delivered", limit=1000)
        for a in box.get(d.id).attempt_log
    )
    assert len(per_process) == 2 and min(per_process.values()) > 50, per_process  # both really worked
    assert sum(per_process.values()) == 1000
    box.close()
