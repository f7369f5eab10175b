"""End to end on loopback: real outbox (SQLite file), real workers, real mock hub (uvicorn)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapter.cli.outbox import main as outbox_cli
from adapter.forwarding import build_forwarding
from adapter.forwarding.settings import settings_from_dict
from adapter.outbox import Outbox, idempotency_key
from adapter.testing.mockhub import Fault, MockHub

ROOT = Path(__file__).resolve().parent.parent
SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
SSIN = "85073003328"


def bundle(i: int, postal: str = "9000") -> dict:
    return {
        "resourceType": "Bundle", "type": "transaction",
        "identifier": {"system": "urn:e2e", "value": f"bundle-{i}"},
        "entry": [{"fullUrl": "urn:uuid:p", "request": {"method": "POST", "url": "Patient"},
                   "resource": {"resourceType": "Patient",
                                "identifier": [{"system": SSIN_SYSTEM, "value": SSIN}],
                                "address": [{"postalCode": postal}]}}],
    }


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def hub() -> Iterator[MockHub]:
    h = MockHub().start()
    yield h
    h.stop()


def forwarding(tmp_path: Path, destinations: dict, **extra: object):
    config = {
        "outbox": {"db": f"sqlite:///{tmp_path / 'outbox.db'}", "workers": 4, "max_attempts": 4,
                   "backoff_base": 0.05, "backoff_cap": 0.2, "poll_interval": 0.05, "lease_seconds": 10},
        "destinations": destinations,
        "routing": {"default": [next(iter(destinations))]},
        **extra,
    }
    fw = build_forwarding(settings_from_dict(config))
    fw.start()
    return fw


def accept(fw, b: dict):
    return fw.outbox.enqueue(b, route=fw.router.route(b), idempotency_key=idempotency_key(b), client="e2e")


def test_every_bundle_arrives_exactly_once(tmp_path: Path, hub: MockHub) -> None:
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url}})
    try:
        ids = [accept(fw, bundle(i)).id for i in range(200)]
        again = [accept(fw, bundle(i)).id for i in range(0, 200, 10)]  # resubmissions
        assert again == ids[::10]
        wait_for(lambda: fw.outbox.counts()["delivered"] == 200, what="200 deliveries")
        # not one duplicate request reached the hub, and everything it recorded is ours
        assert len(hub.state.requests) == 200
        assert Counter(hub.state.request_keys()).most_common(1)[0][1] == 1
        assert sorted(r.bundle["identifier"]["value"] for r in hub.state.received) == sorted(
            f"bundle-{i}" for i in range(200))
        assert all(len(fw.outbox.get(i).attempt_log) == 1 for i in ids[:20])
    finally:
        fw.close()


def test_503_with_retry_after_is_honoured(tmp_path: Path, hub: MockHub) -> None:
    hub.state.add_faults(["503,retry-after=1"])
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url}})
    try:
        d = accept(fw, bundle(1))
        wait_for(lambda: fw.outbox.get(d.id).status == "delivered", what="delivery after 503")
        log = fw.outbox.get(d.id).attempt_log
        assert [(a.outcome, a.http_status) for a in log] == [("retry", 503), ("delivered", 200)]
        gap = log[1].started_at - log[0].finished_at
        assert gap >= 0.95, f"retried after {gap:.2f}s despite Retry-After: 1"
        assert len(hub.state.keys()) == 1
    finally:
        fw.close()


def test_hub_down_then_back_gets_everything_once(tmp_path: Path, hub: MockHub) -> None:
    port, state = hub.port, hub.state
    hub.stop()
    fw = forwarding(tmp_path, {"hub": {"url": f"http://127.0.0.1:{port}/fhir"}},
                    outbox={"db": f"sqlite:///{tmp_path / 'outbox.db'}", "workers": 2, "max_attempts": 50,
                            "backoff_base": 0.05, "backoff_cap": 0.3, "poll_interval": 0.05})
    back = None
    try:
        ids = [accept(fw, bundle(i)).id for i in range(30)]
        wait_for(lambda: all(fw.outbox.get(i).attempts >= 2 for i in ids), what="failed attempts while down")
        errors = {a.error.split(")")[0] for i in ids for a in fw.outbox.get(i).attempt_log}
        assert errors == {"network error (ConnectError"}
        back = MockHub(port=port, state=state).start()
        wait_for(lambda: fw.outbox.counts()["delivered"] == 30, what="delivery once the hub is back")
        assert sorted(state.keys()) == sorted(set(state.keys())) and len(state.keys()) == 30
        assert len(state.requests) == 30
    finally:
        fw.close()
        if back:
            back.stop()


def test_dead_letter_then_manual_replay(
    tmp_path: Path, hub: MockHub, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'outbox.db'}"
    hub.state.always = Fault(status=422)
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url}})
    try:
        d = accept(fw, bundle(1))
        wait_for(lambda: fw.outbox.get(d.id).status == "dead", what="dead letter")
        dead = fw.outbox.get(d.id)
        assert dead.attempts == 1 and dead.last_status_code == 422  # 4xx: not retried

        assert outbox_cli(["list", "--status", "dead", "--db", db]) == 0
        assert d.id in capsys.readouterr().out
        hub.state.always = None
        assert outbox_cli(["retry", d.id, "--db", db]) == 0
        assert "queued again for delivery" in capsys.readouterr().out
        wait_for(lambda: fw.outbox.get(d.id).status == "delivered", what="replayed delivery")
        assert outbox_cli(["retry", d.id, "--db", db]) == 1  # delivered: nothing to replay
        assert "only dead or blocked" in capsys.readouterr().err
        assert outbox_cli(["retry", "nope", "--db", db]) == 2
        actions = [r.action for r in fw.outbox.audit_records()]
        assert actions.count("deliver") == 2 and "retry" in actions
    finally:
        fw.close()


def test_retryable_failures_dead_letter_after_max_attempts(tmp_path: Path, hub: MockHub) -> None:
    hub.state.always = Fault(status=500)
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url}})
    try:
        d = accept(fw, bundle(1))
        wait_for(lambda: fw.outbox.get(d.id).status == "dead", what="dead letter")
        assert [a.http_status for a in fw.outbox.get(d.id).attempt_log] == [500] * 4
    finally:
        fw.close()


def test_dropped_connection_after_processing_is_not_duplicated(tmp_path: Path, hub: MockHub) -> None:
    hub.state.add_faults(["drop-after", "drop"])
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url}})
    try:
        d = accept(fw, bundle(1))
        wait_for(lambda: fw.outbox.get(d.id).status == "delivered", what="delivery")
        # both replies were lost after the whole request went out: unknown outcomes, re-sent with the
        # same Idempotency-Key (the default: the receiver honours it, as this hub does)
        assert [a.outcome for a in fw.outbox.get(d.id).attempt_log] == ["unknown", "unknown", "delivered"]
        assert len(hub.state.requests) == 3 and len(hub.state.keys()) == 1
    finally:
        fw.close()


def test_slow_hub_times_out_and_is_retried(tmp_path: Path, hub: MockHub) -> None:
    hub.state.add_faults(["delay=1.5"])
    fw = forwarding(tmp_path, {"hub": {"url": hub.fhir_url, "timeout": 0.3}})
    try:
        d = accept(fw, bundle(1))
        wait_for(lambda: fw.outbox.get(d.id).status == "delivered", what="delivery")
        first = fw.outbox.get(d.id).attempt_log[0]
        assert first.outcome == "unknown" and "timeout" in (first.error or "")  # it was sent whole
        time.sleep(1.5)  # the slow request completes server-side: still one record
        assert len(hub.state.keys()) == 1
    finally:
        fw.close()


def test_mhd_destination_end_to_end(tmp_path: Path, hub: MockHub) -> None:
    fw = forwarding(tmp_path, {"hub-mhd": {"kind": "mhd", "url": hub.mhd_url}})
    try:
        d = accept(fw, bundle(5))
        wait_for(lambda: fw.outbox.get(d.id).status == "delivered", what="mhd delivery")
        [rec] = hub.state.received
        assert rec.kind == "mhd" and rec.bundle == bundle(5)
        types = [e["resource"]["resourceType"] for e in rec.body["entry"]]
        assert types == ["List", "DocumentReference", "Binary"]
    finally:
        fw.close()


def test_metahub_step_blocks_without_consent_and_routes_to_hubs(tmp_path: Path, hub: MockHub) -> None:
    with MockHub() as other:
        fw = forwarding(
            tmp_path,
            {"platform": {"url": hub.fhir_url}, "cozo": {"kind": "mhd", "url": other.mhd_url}},
            routing={"by_region": {"flanders": "platform"}},
            metahub={"url": hub.metahub_url, "hubs": {"cozo": "cozo"}},
        )
        try:
            hub.state.metahub_persons[SSIN] = {"hubs": ["cozo"], "consentActive": False}
            blocked = accept(fw, bundle(1))
            assert blocked.status == "blocked" and "consent is not active" in (blocked.reason or "")
            assert blocked.to_json()["reason"] == blocked.reason

            hub.state.metahub_persons[SSIN] = {"hubs": ["cozo"], "consentActive": True}
            d = accept(fw, bundle(2))
            assert d.destination == "platform" and len(d.related) == 1
            wait_for(lambda: fw.outbox.counts()["delivered"] == 2, what="both destinations")
            assert [r.bundle["identifier"]["value"] for r in hub.state.received] == ["bundle-2"]
            assert [r.bundle["identifier"]["value"] for r in other.state.received] == ["bundle-2"]
        finally:
            fw.close()


def _worker(db: str, hub: MockHub, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "adapter.cli.outbox", "work", "--db", db, "--forward-to", hub.fhir_url,
         "--workers", "3", "--lease", "2"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )


def test_worker_killed_mid_flight_resumes_and_delivers_once(tmp_path: Path, hub: MockHub) -> None:
    db = f"sqlite:///{tmp_path / 'outbox.db'}"
    box = Outbox(db)
    from adapter.forwarding.routing import RouteDecision

    n = 60
    ids = [box.enqueue(bundle(i), route=RouteDecision(("forward-to",), "default"),
                       idempotency_key=idempotency_key(bundle(i)), client="e2e").id for i in range(n)]
    hub.state.always = Fault(delay=2.0)  # every reply hangs: the worker will be mid-flight
    first = _worker(db, hub, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(hub.state.requests) >= 3, timeout=30, what="requests in flight")
        assert box.counts()["in-flight"] >= 3
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert box.counts()["delivered"] == 0 and box.counts()["in-flight"] >= 3
    hub.state.always = None
    second = _worker(db, hub, tmp_path / "worker.log")
    try:
        wait_for(lambda: box.counts()["delivered"] == n, timeout=60, what="all delivered after restart")
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()
    time.sleep(2.2)  # let the hung requests of the killed worker finish server-side
    keys = hub.state.keys()
    assert len(keys) == n and len(set(keys)) == n  # each bundle recorded exactly once
    logs = [box.get(i).attempt_log for i in ids]
    assert any(a.outcome == "lease-expired" for log in logs for a in log)
    assert all(log[-1].outcome == "delivered" for log in logs)
    box.close()


def test_mutual_tls_with_a_client_certificate(tmp_path: Path) -> None:
    from tests.test_forwarding import make_tls_files

    tls = make_tls_files(tmp_path)
    server = {"certfile": str(tls["server_cert"]), "keyfile": str(tls["server_key"]),
              "client_ca": str(tls["ca"])}
    with MockHub(tls=server) as secure:
        assert secure.fhir_url.startswith("https://")
        auth = {"client_cert": str(tls["client_cert"]), "client_key": str(tls["client_key"]),
                "ca_bundle": str(tls["ca"])}
        fw = forwarding(tmp_path, {"secure": {"url": secure.fhir_url, "auth": auth},
                                   "no-cert": {"url": secure.fhir_url,
                                               "auth": {"ca_bundle": str(tls["ca"])}}},
                        outbox={"db": f"sqlite:///{tmp_path / 'outbox.db'}", "workers": 2, "max_attempts": 1,
                                "poll_interval": 0.05})
        try:
            from adapter.forwarding.routing import RouteDecision

            ok = fw.outbox.enqueue(bundle(1), route=RouteDecision(("secure",), "explicit"),
                                   idempotency_key="k-ok", client=None)
            refused = fw.outbox.enqueue(bundle(2), route=RouteDecision(("no-cert",), "explicit"),
                                        idempotency_key="k-refused", client=None)
            wait_for(lambda: fw.outbox.get(ok.id).status == "delivered", what="mTLS delivery")
            wait_for(lambda: fw.outbox.get(refused.id).status == "dead", what="refused without client cert")
            assert "network error" in (fw.outbox.get(refused.id).last_error or "")
            assert len(secure.state.keys()) == 1
        finally:
            fw.close()
