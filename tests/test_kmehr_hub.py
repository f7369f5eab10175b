"""The ``kmehr-hub`` destination end to end, on loopback, with nothing faked in between.

Real parts: the mock eHealth platform (``adapter.testing.ehealth.server``: STS, ETK depot, four
hubs that verify WS-Security, decrypt with their ETK key and validate against the XSDs), the
outbox on a SQLite file, the ``Forwarder`` and its worker threads, the organisation's PKCS#12
credential, SAML token, signature and CMS encryption. The hubs are driven and inspected through
the server's JSON control API, as an operator's script would.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from adapter.forwarding import Forwarding, build_forwarding
from adapter.forwarding.kmehrhub import identity, transaction_base
from adapter.forwarding.region import SSIN_SYSTEMS, person_ssin
from adapter.forwarding.settings import ConfigError, settings_from_dict
from adapter.hubservices import HubClient, SamlSecurity
from adapter.kmehr import Party, Sender, from_kmehr, schemas
from adapter.outbox import idempotency_key
from adapter.testing.ehealth.server import MockEHealthServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "valid"
PASSWORD_ENV = "BECARE_TEST_KMEHR_HUB_P12_PASSWORD"
HUB_IDS = {"flanders": "19990001000", "wallonia": "19990002000", "brussels": "19990003000",
           "german-speaking": "19990004000"}
FAST = {"workers": 1, "batch": 8, "max_attempts": 6, "poll_interval": 0.05, "backoff_base": 0.05,
        "backoff_cap": 0.2, "lease_seconds": 20, "process": False}


# -- helpers -----------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sample(region: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{region}-care-coordination.json").read_text(encoding="utf-8"))


def patient(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Control:
    """The mock platform's control API."""

    def __init__(self, client: httpx.Client, info: dict[str, Any]) -> None:
        self.http = client
        self.info = info
        self.org_cbe: str = info["pki"]["org_cbe"]

    def _ok(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def consent(self, hub: str, inss: str, active: bool = True) -> None:
        self._ok(self.http.put(f"/_control/hubs/{hub}/consent/{inss}", json={"active": active}))

    def link(self, hub: str, inss: str, cbe: str | None = None) -> None:
        links = [{"hcparty": {"ID-CBE": cbe or self.org_cbe}}]
        self._ok(self.http.put(f"/_control/hubs/{hub}/therapeutic-links/{inss}", json={"links": links}))

    def allow(self, hub: str, inss: str) -> None:
        self.consent(hub, inss)
        self.link(hub, inss)

    def faults(self, hub: str, *specs: str) -> None:
        self._ok(self.http.post(f"/_control/hubs/{hub}/faults", json={"faults": list(specs)}))

    def requests(self, hub: str) -> list[dict[str, Any]]:
        return self._ok(self.http.get(f"/_control/hubs/{hub}/requests"))["items"]

    def ops(self, hub: str) -> list[str]:
        return [r["operation"] for r in self.requests(hub)]

    def count(self, hub: str, operation: str, outcome: str | None = None) -> int:
        return sum(1 for r in self.requests(hub)
                   if r["operation"] == operation and (outcome is None or r["outcome"] == outcome))

    def transactions(self, hub: str, inss: str | None = None) -> list[dict[str, Any]]:
        params = {"inss": inss} if inss else None
        return self._ok(self.http.get(f"/_control/hubs/{hub}/transactions", params=params))["items"]


@pytest.fixture(scope="module")
def eh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockEHealthServer]:
    with MockEHealthServer(tmp_path_factory.mktemp("ehealth")) as server:
        yield server


@pytest.fixture
def control(eh: MockEHealthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Control]:
    monkeypatch.setenv(PASSWORD_ENV, eh.pki.password)
    with httpx.Client(base_url=eh.url, timeout=10) as client:
        client.post("/_control/reset").raise_for_status()
        yield Control(client, eh.info())


def config(eh: MockEHealthServer, tmp_path: Path, *, hubs: tuple[str, ...] = ("flanders",),
           outbox: dict[str, Any] | None = None, **ehealth: Any) -> dict[str, Any]:
    info = eh.info()
    destinations: dict[str, Any] = {}
    for region in hubs:
        hub = info["hubs"][region]
        destinations[f"hub-{region}"] = {
            "kind": "kmehr-hub", "url": hub["url"], "timeout": 5,
            "hub": {"version": hub["version"], "id": HUB_IDS[region], "name": f"Hub {region}",
                    "etk": hub["etk"]},
        }
    return {
        "outbox": {"db": f"sqlite:///{tmp_path / 'outbox.db'}", **FAST, **(outbox or {})},
        "ehealth": {"certificate": info["pki"]["org_p12"], "password_env": PASSWORD_ENV,
                    "sts_url": eh.sts_url, "etk_url": eh.etk_url, "timeout": 5,
                    "organisation": {"cbe": info["pki"]["org_cbe"], "name": "Test Care Organisation"},
                    **ehealth},
        "destinations": destinations,
        "routing": {"by_region": {region: f"hub-{region}" for region in hubs}},
    }


@pytest.fixture
def forwarding() -> Iterator[Callable[[dict[str, Any]], Forwarding]]:
    started: list[Forwarding] = []

    def start(cfg: dict[str, Any]) -> Forwarding:
        fw = build_forwarding(settings_from_dict(cfg))
        started.append(fw)
        fw.start()
        return fw

    yield start
    for fw in started:
        fw.close()


def accept(fw: Forwarding, bundle: dict[str, Any]) -> Any:
    return fw.outbox.enqueue(bundle, route=fw.router.route(bundle), idempotency_key=idempotency_key(bundle),
                             client="test")


def settle(fw: Forwarding, delivery_id: str, *statuses: str, timeout: float = 15.0) -> Any:
    wait_for(lambda: fw.outbox.get(delivery_id).status in statuses, timeout,
             what=f"delivery {delivery_id} to become {'/'.join(statuses)}")
    return fw.outbox.get(delivery_id)


def hub_client(fw: Forwarding, destination: str) -> HubClient:
    """A second, independent client for the same hub, signing as the organisation."""
    dest = fw.settings.destinations[destination]
    ident = identity(dest.ehealth)
    org = dest.ehealth.organisation
    return HubClient(dest.url, hub_version=dest.hub.version,
                     security=SamlSecurity(ident.sts, ident.credential),
                     author=Sender(organisation=Party(cbe=org.cbe, name=org.name)), name="test")


def org_subject(control: Control) -> str:
    from adapter.ehealth.credentials import load_pkcs12

    credential = load_pkcs12(control.info["pki"]["org_p12"], password_env=PASSWORD_ENV)
    return credential.certificate.subject.rfc4514_string()


# -- 1. the happy path -------------------------------------------------------------------------------
def test_bundle_from_ghent_becomes_one_careplan_transaction_at_the_flemish_hub(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    address = patient(bundle)["address"][0]
    assert (address["postalCode"], address["city"]) == ("9000", "Gent")
    inss = person_ssin(bundle)
    assert inss
    control.allow("flanders", inss)
    fw = forwarding(config(eh, tmp_path, hubs=("flanders", "brussels")))

    d = accept(fw, bundle)
    assert (d.destination, d.region, d.route_via) == ("hub-flanders", "flanders", "region")
    done = settle(fw, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert done.attempts == 1

    # the hub verified the organisation's signature on every call, and saw exactly these calls
    requests = control.requests("flanders")
    assert [r["operation"] for r in requests] == ["GetPatientConsent", "GetTherapeuticLink", "PutTransaction"]
    subject = org_subject(control)
    assert f"CBE={control.org_cbe}" in subject
    assert {r["caller"] for r in requests} == {subject}
    assert {r["status"] for r in requests} == {200} and {r["outcome"] for r in requests} == {"ok"}
    assert control.requests("brussels") == []

    stored = control.transactions("flanders")
    assert len(stored) == 1
    local_id = f"{transaction_base(d.id)}.1"
    assert local_id == f"becare-{d.id}.1"
    assert stored[0]["local_ids"] == [local_id]
    assert stored[0]["patient"] == inss and stored[0]["cds"] == ["careplan"]
    assert stored[0]["caller"] == subject

    # read it back over hubservices, as another application of the organisation would
    with hub_client(fw, "hub-flanders") as client:
        found = client.find_transaction(inss, local_id)
        assert found is not None
        message = client.get_transaction(inss, local_id)
    assert schemas.problems("kmehr", "1.26", message) == []
    assert from_kmehr(message) == [bundle]
    # what the hub keeps is the clear message it decrypted with its ETK key: the same one
    kept = eh.hubs["flanders"].stored(inss)[0].message
    assert from_kmehr(kept) == [bundle]


# -- 2. consent and therapeutic link -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "reason", "calls"),
    [
        pytest.param("none", "no active consent", ["GetPatientConsent"], id="no-consent"),
        pytest.param("revoked", "no active consent", ["GetPatientConsent"], id="revoked-consent"),
        pytest.param("consent-only", "no active therapeutic link",
                     ["GetPatientConsent", "GetTherapeuticLink"], id="no-link"),
        pytest.param("other-org-link", "no active therapeutic link",
                     ["GetPatientConsent", "GetTherapeuticLink"], id="link-of-another-organisation"),
    ],
)
def test_missing_consent_or_link_blocks_then_replay_delivers(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path,
    fixture: str, reason: str, calls: list[str],
) -> None:
    bundle = sample("flanders")
    inss = person_ssin(bundle)
    if fixture == "revoked":
        control.consent("flanders", inss, active=False)
        control.link("flanders", inss)
    elif fixture == "consent-only":
        control.consent("flanders", inss)
    elif fixture == "other-org-link":
        control.consent("flanders", inss)
        control.link("flanders", inss, cbe="0987654321")
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    blocked = settle(fw, d.id, "blocked", "delivered", "dead")
    assert blocked.status == "blocked"
    assert blocked.attempts == 1  # not retried on its own
    assert reason in blocked.reason and "Hub flanders" in blocked.reason
    assert "nothing was put" in blocked.reason
    assert inss not in blocked.reason
    assert control.ops("flanders") == calls
    assert control.transactions("flanders") == []

    control.allow("flanders", inss)
    fw.outbox.retry(d.id, who="test")
    done = settle(fw, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert control.count("flanders", "PutTransaction") == 1
    assert [t["local_ids"] for t in control.transactions("flanders")] == [[f"becare-{d.id}.1"]]


# -- 3. hub faults -----------------------------------------------------------------------------------
def test_503_retry_after_is_honoured(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", "503,retry-after=1,op=PutTransaction")
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    done = settle(fw, d.id, "delivered", "dead")
    assert done.status == "delivered", done.last_error
    log = done.attempt_log
    assert [(a.outcome, a.http_status) for a in log] == [("retry", 503), ("delivered", 200)]
    gap = log[1].started_at - log[0].finished_at
    assert 0.95 <= gap < 5.0, f"retried after {gap:.2f}s despite Retry-After: 1"
    assert "HTTP 503" in log[0].error
    assert control.count("flanders", "PutTransaction") == 2
    assert control.count("flanders", "PutTransaction", "ok") == 1
    assert len(control.transactions("flanders")) == 1


def test_503_retry_after_is_bounded_by_retry_after_max(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", "503,retry-after=86400,op=PutTransaction")
    fw = forwarding(config(eh, tmp_path, outbox={"retry_after_max": 0.5}))

    d = accept(fw, bundle)
    done = settle(fw, d.id, "delivered", "dead")
    assert done.status == "delivered", done.last_error
    gap = done.attempt_log[1].started_at - done.attempt_log[0].finished_at
    assert 0.45 <= gap < 3.0, f"retried after {gap:.2f}s (Retry-After 86400, retry_after_max 0.5)"
    assert len(control.transactions("flanders")) == 1


@pytest.mark.parametrize(
    ("fault", "first_error"),
    [
        pytest.param("fault,op=PutTransaction", "injected fault", id="soap-server-fault-on-put"),
        pytest.param("fault", "injected fault", id="soap-server-fault-on-consent"),
        pytest.param("fault,op=GetTherapeuticLink", "injected fault", id="soap-server-fault-on-link"),
        pytest.param("drop,op=PutTransaction", "outcome unknown", id="drop-before-storing"),
        pytest.param("reject,op=PutTransaction", "temporarily-unavailable", id="temporary-rejection"),
        pytest.param("502,op=PutTransaction", "outcome unknown", id="gateway-502-on-put"),
    ],
)
def test_retryable_hub_failures_end_in_one_stored_transaction(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path,
    fault: str, first_error: str,
) -> None:
    bundle = sample("flanders")
    inss = person_ssin(bundle)
    control.allow("flanders", inss)
    control.faults("flanders", fault)
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    done = settle(fw, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert [a.outcome for a in done.attempt_log] == ["retry", "delivered"]
    assert first_error in done.attempt_log[0].error
    assert inss not in done.attempt_log[0].error
    stored = control.transactions("flanders")
    assert [t["local_ids"] for t in stored] == [[f"becare-{d.id}.1"]]
    assert control.count("flanders", "PutTransaction", "ok") == 1
    # the second attempt looked the transaction up before putting it
    assert control.count("flanders", "GetTransactionList") == 1
    assert control.ops("flanders")[-2:] == ["GetTransactionList", "PutTransaction"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param("reject=invalid-kmehr,op=PutTransaction", "invalid-kmehr", id="rejected"),
        pytest.param("fault=soapenv:Client,op=PutTransaction", "injected fault", id="soap-client-fault"),
        pytest.param("fault=wsse:FailedAuthentication,op=PutTransaction", "injected fault",
                     id="security-fault"),
    ],
)
def test_non_retryable_hub_refusal_is_dead_with_the_hubs_reason(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path,
    fault: str, expected: str,
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", fault)
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    dead = settle(fw, d.id, "dead", "delivered", "blocked")
    assert dead.status == "dead"
    assert dead.attempts == 1
    assert dead.last_error.startswith("hub-flanders: ") and expected in dead.last_error
    assert control.transactions("flanders") == []
    assert control.count("flanders", "PutTransaction") == 1


# -- 4. unknown outcome ------------------------------------------------------------------------------
def test_put_stored_but_reply_lost_is_found_and_not_put_again(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", "drop-after,op=PutTransaction")
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    done = settle(fw, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert [a.outcome for a in done.attempt_log] == ["retry", "delivered"]
    assert "outcome unknown" in done.attempt_log[0].error
    assert "GetTransactionList" in done.attempt_log[1].error
    assert control.ops("flanders") == [
        "GetPatientConsent", "GetTherapeuticLink", "PutTransaction",  # stored, connection dropped
        "GetPatientConsent", "GetTherapeuticLink", "GetTransactionList",  # found: no second put
    ]
    assert control.count("flanders", "PutTransaction") == 1
    assert [t["local_ids"] for t in control.transactions("flanders")] == [[f"becare-{d.id}.1"]]


def test_put_stored_on_the_last_attempt_is_not_duplicated_by_a_manual_replay(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    """The reply to the last allowed attempt is lost: the delivery is dead though the hub holds
    it. ``becare outbox retry`` starts counting attempts again, and must still look it up."""
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", "drop-after,op=PutTransaction")
    fw = forwarding(config(eh, tmp_path, outbox={"max_attempts": 1}))

    d = accept(fw, bundle)
    dead = settle(fw, d.id, "dead", "delivered", "blocked")
    assert dead.status == "dead" and "outcome unknown" in dead.last_error
    assert len(control.transactions("flanders")) == 1

    fw.outbox.retry(d.id, who="test")
    done = settle(fw, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert control.count("flanders", "PutTransaction") == 1
    assert control.count("flanders", "GetTransactionList") == 1
    assert len(control.transactions("flanders")) == 1


def test_put_stored_on_the_last_attempt_is_not_duplicated_by_a_replay_after_a_restart(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    control.faults("flanders", "drop-after,op=PutTransaction")
    cfg = config(eh, tmp_path, outbox={"max_attempts": 1})
    first = forwarding(cfg)
    d = accept(first, bundle)
    assert settle(first, d.id, "dead", "delivered", "blocked").status == "dead"
    first.close()

    second = forwarding(cfg)  # the service restarted; then the operator replays the dead letter
    second.outbox.retry(d.id, who="test")
    done = settle(second, d.id, "delivered", "dead", "blocked")
    assert done.status == "delivered", done.last_error
    assert len(control.transactions("flanders")) == 1


# -- 5. no INSS --------------------------------------------------------------------------------------
def test_bundle_without_inss_is_blocked_and_nothing_is_sent(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    person = patient(bundle)
    person["identifier"] = [i for i in person.get("identifier", []) if i.get("system") not in SSIN_SYSTEMS]
    assert person_ssin(bundle) is None
    fw = forwarding(config(eh, tmp_path))

    d = accept(fw, bundle)
    assert d.destination == "hub-flanders"  # routed by the postal code all the same
    blocked = settle(fw, d.id, "blocked", "delivered", "dead")
    assert blocked.status == "blocked" and blocked.attempts == 1
    assert "no INSS" in blocked.reason and blocked.reason.startswith("hub-flanders: ")
    for hub in HUB_IDS:
        assert control.requests(hub) == [] and control.transactions(hub) == []


# -- 6. eHealth failures -----------------------------------------------------------------------------
class _Relay(BaseHTTPRequestHandler):
    """Relays POSTs to the mock STS: an STS that comes up on a port that refused connections."""

    target = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "soapaction")}
        reply = httpx.post(self.target, content=body, headers=headers, timeout=10)
        self.send_response(reply.status_code)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "text/xml"))
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)


def test_unreachable_sts_keeps_the_delivery_pending_until_it_is_back(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    handler = type("Relay", (_Relay,), {"target": eh.sts_url})
    sts = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    sts.daemon_threads = True
    sts.server_bind()  # bound, not listening: connections are refused
    port = sts.server_address[1]
    thread: threading.Thread | None = None
    try:
        fw = forwarding(config(eh, tmp_path, outbox={"max_attempts": 1000, "workers": 1},
                               sts_url=f"http://127.0.0.1:{port}/sts"))
        d = accept(fw, bundle)
        wait_for(lambda: fw.outbox.get(d.id).attempts >= 3, what="three attempts against a closed STS")
        fw.forwarder.stop()
        waiting = fw.outbox.get(d.id)
        assert waiting.status == "pending"
        assert "STS unreachable" in waiting.last_error and waiting.last_error.startswith("hub-flanders: ")
        assert {a.outcome for a in waiting.attempt_log} == {"retry"}
        assert control.requests("flanders") == []  # not one unsigned or half-signed request

        sts.server_activate()
        thread = threading.Thread(target=sts.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        fw.forwarder.start()
        done = settle(fw, d.id, "delivered", "dead", "blocked")
        assert done.status == "delivered", done.last_error
        assert len(control.transactions("flanders")) == 1
    finally:
        if thread is not None:
            sts.shutdown()
        sts.server_close()


def test_expired_certificate_blocks_the_delivery(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    fw = forwarding(config(eh, tmp_path, certificate=control.info["pki"]["expired_p12"]))
    d = accept(fw, bundle)
    blocked = settle(fw, d.id, "blocked", "delivered", "dead")
    assert blocked.status == "blocked"
    assert "eHealth certificate" in blocked.reason and "expired" in blocked.reason
    assert control.requests("flanders") == []


def test_unreachable_etk_depot_keeps_the_delivery_pending(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    fw = forwarding(config(eh, tmp_path, outbox={"max_attempts": 1000},
                           etk_url=f"http://127.0.0.1:{free_port()}/etk"))
    d = accept(fw, bundle)
    wait_for(lambda: fw.outbox.get(d.id).attempts >= 2, what="two attempts without an ETK depot")
    fw.forwarder.stop()
    waiting = fw.outbox.get(d.id)
    assert waiting.status == "pending"
    assert "ETK depot unreachable" in waiting.last_error
    assert control.count("flanders", "PutTransaction") == 0  # nothing goes out unencrypted
    assert control.transactions("flanders") == []


def test_certificate_expiring_while_running_blocks_the_delivery(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    """Loaded while still valid, expired by the time of the delivery: blocked, not dead at the STS."""
    from datetime import timedelta

    from cryptography.hazmat.primitives.serialization import pkcs12

    from adapter.ehealth.credentials import load_pkcs12
    from adapter.ehealth.etk import EtkClient
    from adapter.ehealth.sts import StsClient
    from adapter.forwarding.kmehrhub import KmehrHubDestination, _Identity

    path = control.info["pki"]["expired_p12"]
    p12 = pkcs12.load_pkcs12(Path(path).read_bytes(), eh.pki.password.encode())
    valid_then = p12.cert.certificate.not_valid_after_utc - timedelta(days=1)
    credential = load_pkcs12(path, password_env=PASSWORD_ENV, now=valid_then)
    ident = _Identity(credential, StsClient(eh.sts_url, credential), EtkClient(eh.etk_url))

    bundle = sample("flanders")
    control.allow("flanders", person_ssin(bundle))
    fw = forwarding(config(eh, tmp_path))
    fw.forwarder.stop()
    settings = fw.settings.destinations["hub-flanders"]
    fw.forwarder.destinations["hub-flanders"] = KmehrHubDestination("hub-flanders", settings, ehealth=ident)
    fw.forwarder.start()
    d = accept(fw, bundle)
    blocked = settle(fw, d.id, "blocked", "delivered", "dead")
    assert blocked.status == "blocked", blocked.last_error
    assert "eHealth certificate" in blocked.reason and "expired" in blocked.reason
    assert control.requests("flanders") == []
    ident.sts.close()


WRONG_PASSWORD = "not-the-password-4711"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        pytest.param("wrong-password", "wrong password", id="wrong-password"),
        pytest.param("unset-password", f"environment variable {PASSWORD_ENV} is not set",
                     id="unset-password"),
        pytest.param("expired", "expired", id="expired-certificate"),
    ],
)
def test_serve_refuses_to_start_with_an_unusable_certificate(
    eh: MockEHealthServer, control: Control, tmp_path: Path, case: str, reason: str
) -> None:
    cfg = config(eh, tmp_path)
    if case == "expired":
        cfg["ehealth"]["certificate"] = control.info["pki"]["expired_p12"]
    del cfg["outbox"]["db"]
    path = tmp_path / "becare.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in (PASSWORD_ENV, "BECARE_CONFIG")}
    if case == "wrong-password":
        env[PASSWORD_ENV] = WRONG_PASSWORD
    elif case == "expired":
        env[PASSWORD_ENV] = eh.pki.password
    proc = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "serve", "--config", str(path), "--port", str(free_port()),
         "--db", f"sqlite:///{tmp_path / 'serve.db'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "hub-flanders" in line and reason in line, line
    assert "Traceback" not in proc.stderr + proc.stdout
    for secret in (WRONG_PASSWORD, eh.pki.password):
        assert secret not in proc.stderr + proc.stdout


def test_serve_starts_with_the_same_configuration_and_a_usable_certificate(
    eh: MockEHealthServer, control: Control, tmp_path: Path
) -> None:
    """The control case of the refusals above: the same file, the right password, it serves."""
    cfg = config(eh, tmp_path)
    del cfg["outbox"]["db"]
    path = tmp_path / "becare.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "BECARE_CONFIG"}
    env[PASSWORD_ENV] = eh.pki.password
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli.main", "serve", "--config", str(path), "--port", str(port),
         "--db", f"sqlite:///{tmp_path / 'serve.db'}", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=45, what="becare serve to answer /healthz")
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert eh.pki.password not in err


# -- 7. configuration --------------------------------------------------------------------------------
def _drop_hub(c: dict[str, Any]) -> None:
    del c["destinations"]["hub-flanders"]["hub"]


def _drop_ehealth(c: dict[str, Any]) -> None:
    del c["ehealth"]


def _hub_on_rest(c: dict[str, Any]) -> None:
    c["destinations"]["platform"] = {"kind": "fhir-rest", "url": "http://127.0.0.1:9/fhir",
                                     "hub": c["destinations"]["hub-flanders"]["hub"]}


def _missing_certificate(c: dict[str, Any]) -> None:
    c["ehealth"]["certificate"] = str(Path(c["ehealth"]["certificate"]).with_name("nowhere.p12"))


def _unknown_hub_key(c: dict[str, Any]) -> None:
    c["destinations"]["hub-flanders"]["hub"]["check_consnet"] = False


def _unknown_ehealth_key(c: dict[str, Any]) -> None:
    c["ehealth"]["password"] = "never in a file"


def _bad_hub_version(c: dict[str, Any]) -> None:
    c["destinations"]["hub-flanders"]["hub"]["version"] = "3.4"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(_drop_hub, "destinations.hub-flanders: a kmehr-hub destination needs a `hub:` section",
                     id="kmehr-hub-without-hub"),
        pytest.param(_drop_ehealth, "destinations.hub-flanders: a kmehr-hub destination needs the `ehealth:`",
                     id="kmehr-hub-without-ehealth"),
        pytest.param(_hub_on_rest, "destinations.platform: `hub:` is only for kind kmehr-hub, not fhir-rest",
                     id="hub-on-fhir-rest"),
        pytest.param(_missing_certificate, "ehealth.certificate: file not found", id="missing-certificate"),
        pytest.param(_unknown_hub_key, "destinations.hub-flanders.hub.check_consnet: Extra inputs",
                     id="unknown-hub-key"),
        pytest.param(_unknown_ehealth_key, "ehealth.password: Extra inputs", id="unknown-ehealth-key"),
        pytest.param(_bad_hub_version, "destinations.hub-flanders.hub.version:", id="unknown-hub-version"),
    ],
)
def test_config_problems_name_the_key(
    eh: MockEHealthServer, tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    cfg = copy.deepcopy(config(eh, tmp_path))
    settings_from_dict(copy.deepcopy(cfg))  # the unchanged configuration is fine
    change(cfg)
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(cfg)
    assert expected in caught.value.message
    assert "never in a file" not in caught.value.message


# -- 8. two hubs, two versions, in parallel ----------------------------------------------------------
def test_two_patients_to_two_hubs_in_parallel_each_in_its_own_kmehr_version(
    eh: MockEHealthServer, control: Control, forwarding: Callable[..., Forwarding], tmp_path: Path
) -> None:
    bundles = {"flanders": sample("flanders"), "brussels": sample("brussels")}
    inss = {region: person_ssin(b) for region, b in bundles.items()}
    assert inss["flanders"] != inss["brussels"]
    versions = {region: control.info["hubs"][region]["version"] for region in bundles}
    assert versions == {"flanders": "3.5", "brussels": "3.2"}
    for region in bundles:
        control.allow(region, inss[region])
        control.faults(region, "delay=0.4,op=PutTransaction")  # long enough to see the overlap
    fw = forwarding(config(eh, tmp_path, hubs=("flanders", "brussels"), outbox={"workers": 2, "batch": 1}))

    ids = {region: accept(fw, b).id for region, b in bundles.items()}
    done = {region: settle(fw, i, "delivered", "dead", "blocked") for region, i in ids.items()}
    for region, d in done.items():
        assert d.status == "delivered", d.last_error
        assert d.destination == f"hub-{region}"
    spans = [(d.attempt_log[0].started_at, d.attempt_log[0].finished_at) for d in done.values()]
    assert max(s for s, _ in spans) < min(f for _, f in spans), "the two deliveries did not overlap"

    for region, d in done.items():
        stored = control.transactions(region)
        assert [(t["patient"], t["local_ids"]) for t in stored] == [(inss[region], [f"becare-{d.id}.1"])]
        assert control.count(region, "PutTransaction") == 1
        kmehr = schemas.KMEHR_FOR_HUB[versions[region]]
        with hub_client(fw, f"hub-{region}") as client:
            message = client.get_transaction(inss[region], f"becare-{d.id}.1")
        assert schemas.problems("kmehr", kmehr, message) == []
        assert from_kmehr(message) == [bundles[region]]
