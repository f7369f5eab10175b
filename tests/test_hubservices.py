"""hubservices v3: request builders against the vendored XSDs, reply parsing, the client against
the loopback mock eHealth server (STS + ETK depot + hubs) with real WS-Security and folder
encryption, fault mapping, and unknown outcomes without double sends."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from lxml import etree

from adapter.ehealth.credentials import load_pkcs12_bytes
from adapter.ehealth.etk import EtkClient, EtkIdentifier
from adapter.ehealth.sts import StsClient
from adapter.forwarding.transport import StdlibTransport
from adapter.hubservices import HubClient, HubError, InvalidRequest, KmehrId, NoSecurity, SamlSecurity
from adapter.hubservices import envelope as soap
from adapter.hubservices import messages as m
from adapter.hubservices.encryption import decrypt_folders, encrypt_folders, encryptor_for_etk
from adapter.kmehr import schemas
from adapter.rules.identifiers import make_ssin
from adapter.testing.ehealth.hub import HubFault, MockHub
from adapter.testing.ehealth.server import MockEHealthServer

KMEHR_NS = m.KMEHR_NS
INSS = make_ssin("1985-07-30", 33)
ORG_NIHII = "71000436000"


@dataclass(frozen=True)
class Party:  # the shape of adapter.kmehr.Party
    nihii: str | None = None
    cbe: str | None = None
    inss: str | None = None
    cd: str | None = None
    name: str | None = None
    firstname: str | None = None
    familyname: str | None = None


@dataclass(frozen=True)
class Sender:  # the shape of adapter.kmehr.Sender
    organisation: Party | None = None
    professional: Party | None = None
    software_name: str = "becare"
    software_version: str = "0.1"


SENDER = Sender(Party(nihii=ORG_NIHII, cbe="0123456749", cd="orghospital", name="Test Hospital"))
SENDER_WITH_NURSE = Sender(
    Party(nihii=ORG_NIHII, name="Test Hospital"),
    Party(
        nihii="40000195401",
        inss=make_ssin("1970-01-01", 5),
        cd="persnurse",
        firstname="Ann",
        familyname="Nurse",
    ),
)

# the synthetic careplan sample (reference pack), reduced: enough for both KMEHR versions
_MESSAGE = """<kmehrmessage xmlns="http://www.ehealth.fgov.be/standards/kmehr/schema/v1">
  <header>
    <standard><cd S="CD-STANDARD" SV="1.11">{standard}</cd></standard>
    <id S="ID-KMEHR" SV="1.0">{org}.20240101100000</id>
    <date>2024-01-01</date><time>10:00:00</time>
    <sender><hcparty><id S="ID-HCPARTY" SV="1.0">{org}</id><cd S="CD-HCPARTY" SV="1.1">orghospital</cd>
      <name>Test Hospital</name></hcparty></sender>
    <recipient><hcparty><id S="ID-HCPARTY" SV="1.0">19990001000</id><cd S="CD-HCPARTY" SV="1.1">hub</cd>
      <name>Hub</name></hcparty></recipient>
  </header>
  <folder>
    <id S="ID-KMEHR" SV="1.0">1</id>
    <patient><id S="ID-PATIENT" SV="1.0">{inss}</id><firstname>Pat</firstname><familyname>Ient</familyname>
      <sex><cd S="CD-SEX" SV="1.1">undefined</cd></sex></patient>
    <transaction>
      <id S="ID-KMEHR" SV="1.0">1</id>
      <id S="LOCAL" SL="becare-transaction" SV="1.0">{local}</id>
      <cd S="CD-TRANSACTION" SV="1.10">careplan</cd>
      <date>2024-01-01</date><time>10:00:00</time>
      <author><hcparty><id S="ID-HCPARTY" SV="1.0">{org}</id><cd S="CD-HCPARTY" SV="1.1">orghospital</cd>
        <name>Test Hospital</name></hcparty></author>
      <iscomplete>true</iscomplete><isvalidated>true</isvalidated>
      <heading><id S="ID-KMEHR" SV="1.0">1</id><cd S="CD-HEADING" SV="1.0">clinicalplan</cd>
        <item><id S="ID-KMEHR" SV="1.0">1</id><cd S="CD-ITEM" SV="1.0">healthcareapproach</cd>
          <content><text L="en">Goal: walks 500 m without help.</text></content>
          <lifecycle><cd S="CD-LIFECYCLE" SV="1.0">planned</cd></lifecycle></item>
      </heading>
    </transaction>
  </folder>
</kmehrmessage>"""


def kmehr_message(*, kmehr: str = "1.26", inss: str = INSS, local: str = "tx-1.1") -> etree._Element:
    return etree.fromstring(
        _MESSAGE.format(
            standard=schemas.STANDARD_FOR_KMEHR[kmehr], org=ORG_NIHII, inss=inss, local=local
        ).encode()
    )


def info(author=SENDER) -> m.RequestInfo:
    return m.request_info(m.author_hcparties(author), datetime(2024, 5, 1, 10, 0, tzinfo=UTC))


def all_bodies(version: str) -> dict[str, etree._Element]:
    i = info()
    bodies = {
        "PutTransaction": m.put_transaction(i, kmehr_message(kmehr=schemas.KMEHR_FOR_HUB[version])),
        "GetTransactionList": m.get_transaction_list(
            i, INSS, cds=("careplan", "diarynote"), begindate=date(2024, 1, 1), enddate="2024-12-31"
        ),
        "GetTransaction": m.get_transaction(i, INSS, "tx-1.1"),
        "RevokeTransaction": m.revoke_transaction(i, INSS, KmehrId("7", "LOCAL", "hub-x")),
        "GetPatientConsent": m.get_patient_consent(i, INSS, consent_types=("retrospective",)),
        "GetTherapeuticLink": m.get_therapeutic_link(
            i,
            INSS,
            Party(nihii="10000000001", inss=INSS),
            link_types=("gpconsultation",),
            begindate=date(2024, 1, 1),
        ),
    }
    if version == "3.5":
        bodies["GetTransactionList-page"] = m.get_transaction_list(i, INSS, page_index=51)
    return bodies


# -- builders -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["3.2", "3.5"])
def test_every_builder_is_valid_against_the_hub_xsd(version: str) -> None:
    for name, body in all_bodies(version).items():
        assert schemas.problems("hub", version, body) == [], name
    with_nurse = m.get_patient_consent(info(SENDER_WITH_NURSE), INSS)
    assert schemas.problems("hub", version, with_nurse) == []


def test_request_author_and_soap_action() -> None:
    body = m.get_patient_consent(info(SENDER_WITH_NURSE), INSS)
    parties = body.findall(f"{{{m.CORE_NS}}}request/{{{m.CORE_NS}}}author/{{{KMEHR_NS}}}hcparty")
    cds = [p.findtext(f"{{{KMEHR_NS}}}cd") for p in parties]
    assert cds == ["orghospital", "persnurse", "application"]
    software = parties[-1].find(f"{{{KMEHR_NS}}}id")
    assert (software.get("S"), software.get("SL"), software.text) == (
        "LOCAL",
        "endusersoftwareinfo",
        "becare 0.1",
    )
    request_id = body.findtext(f"{{{m.CORE_NS}}}request/{{{m.CORE_NS}}}id")
    assert request_id.startswith(ORG_NIHII + ".20240501120000")  # Brussels local time, CEST
    assert m.soap_action("PutTransaction") == "urn:be:fgov:ehealth:intrahub:protocol:v3:PutTransaction"
    with pytest.raises(m.InvalidArgument):
        m.author_hcparties(Sender(None, None))


def test_pagination_is_refused_by_the_3_2_xsd() -> None:
    body = m.get_transaction_list(info(), INSS, page_index=1)
    assert schemas.problems("hub", "3.2", body)
    assert not schemas.problems("hub", "3.5", body)


def test_put_transaction_keeps_the_kmehr_children_in_their_namespace() -> None:
    body = m.put_transaction(info(), kmehr_message())
    wire = etree.fromstring(etree.tostring(soap.wrap(body)))  # what the hub parses
    msg = wire.find(f".//{{{m.CORE_NS}}}kmehrmessage")
    assert [etree.QName(c).namespace for c in msg] == [KMEHR_NS, KMEHR_NS]
    assert m.folder_patient_ids(m.as_kmehr_message(msg)) == [INSS]


# -- encryption -------------------------------------------------------------------------------------------
def test_encrypted_folder_is_xsd_valid_and_round_trips(ehealth: MockEHealthServer) -> None:
    from adapter.ehealth import cms

    key, cert = ehealth.hub_etk["flanders"]
    for version in ("3.2", "3.5"):
        clear = kmehr_message(kmehr=schemas.KMEHR_FOR_HUB[version])
        sealed = encrypt_folders(clear, lambda data: cms.encrypt(data, cert))
        assert sealed.find(f"{{{KMEHR_NS}}}folder") is None
        data = sealed.find(f"{{{KMEHR_NS}}}Base64EncryptedData")
        assert data.findtext(f"{{{KMEHR_NS}}}cd") == "CMS"
        assert INSS.encode() not in etree.tostring(sealed)
        assert schemas.problems("kmehr", schemas.KMEHR_FOR_HUB[version], sealed) == []
        assert schemas.problems("hub", version, m.put_transaction(info(), sealed)) == []
        opened = decrypt_folders(sealed, lambda der: cms.decrypt(der, key, cert))
        assert etree.tostring(opened) == etree.tostring(m.as_kmehr_message(clear))


# -- reply parsing and fault mapping, transport scripted ----------------------------------------------------
def _hub_reply(operation: str, version: str = "3.5", errors=(), extra=()) -> bytes:
    hub = MockHub(hub_version=version, sts_certificates=None, decrypt_key=None, decrypt_cert=None)
    request = all_bodies(version)[operation]
    return hub._answer(operation, request, list(errors), extra=list(extra))


def scripted(replies, *, version: str = "3.5", seen: list | None = None) -> HubClient:
    """A client whose transport answers from ``replies`` (status, headers, body) in order."""
    queue = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        status, headers, body = item
        return httpx.Response(status, headers=headers, content=body)

    return HubClient(
        "http://hub.test/hub",
        hub_version=version,
        security=NoSecurity(),
        author=SENDER,
        transport=httpx.MockTransport(handler),
    )


XML = {"Content-Type": "text/xml"}


def test_acknowledge_ok_and_rejected() -> None:
    seen: list = []
    ok = _hub_reply("RevokeTransaction")
    ack = scripted([(200, XML, ok)], seen=seen).revoke_transaction(INSS, "tx-1.1")
    assert ack.complete and ack.errors == ()
    request = seen[0]
    assert request.headers["SOAPAction"] == '"urn:be:fgov:ehealth:intrahub:protocol:v3:RevokeTransaction"'
    assert request.headers["Content-Type"].startswith("text/xml")
    assert request.headers["Connection"] == "close"  # state-changing: never over a kept-alive connection

    refused = _hub_reply("RevokeTransaction", errors=[("not-found", f"no transaction for {INSS}")])
    with pytest.raises(HubError) as err:
        scripted([(200, XML, refused)]).revoke_transaction(INSS, "tx-1.1")
    e = err.value
    assert (e.kind, e.retryable, [x.code for x in e.errors]) == ("rejected", False, ["not-found"])
    assert INSS not in str(e) and INSS not in json.dumps(e.to_operation_outcome())
    outcome = e.to_operation_outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "business-rule"
    assert outcome["issue"][1]["details"]["text"].startswith("not-found: no transaction for ****")

    temporary = _hub_reply("RevokeTransaction", errors=[("SERVICE.TEMPORARILY.UNAVAILABLE", "later")])
    with pytest.raises(HubError) as err:
        scripted([(200, XML, temporary)]).revoke_transaction(INSS, "tx-1.1")
    assert (err.value.kind, err.value.retryable) == ("rejected", True)


def test_soap_faults_map_to_fault_and_security() -> None:
    server = soap.fault_envelope((soap.SOAP11_NS, "Server"), "database down")
    client = soap.fault_envelope((soap.SOAP11_NS, "Client"), "bad request")
    wsse = soap.fault_envelope((soap.WSSE_NS, "FailedAuthentication"), "signature invalid")
    c = scripted([(500, XML, server), (500, XML, client), (500, XML, wsse)])
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.fault_code, err.value.reason, err.value.retryable) == (
        "fault",
        "soap:Server",
        "database down",
        True,
    )
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.retryable) == ("fault", False)
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.fault_code) == ("security", "wsse:FailedAuthentication")
    assert err.value.to_operation_outcome()["issue"][0]["code"] == "security"


def test_html_503_garbage_and_gateway_errors() -> None:
    html = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
    c = scripted(
        [
            (503, {"Content-Type": "text/html", "Retry-After": "7"}, html),
            (429, {"Retry-After": "2"}, b""),
            (200, {"Content-Type": "text/html"}, b"<html><p>Welcome to nginx!"),
            (502, {}, b"Bad gateway"),
            (200, XML, b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
            (404, {}, b"not here"),
        ]
    )
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.retryable, err.value.retry_after, err.value.http_status) == (
        "unavailable",
        True,
        7.0,
        503,
    )
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert err.value.kind == "unavailable"
    assert err.value.to_operation_outcome()["issue"][0]["code"] == "throttled"
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.retryable) == ("bad-reply", True)
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.retryable) == ("unavailable", True)
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert err.value.kind == "bad-reply" and "document type" in err.value.reason
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert (err.value.kind, err.value.retryable) == ("fault", False)


def test_a_write_without_a_usable_reply_has_an_unknown_outcome() -> None:
    msg = kmehr_message()
    c = scripted(
        [
            (200, {}, b"<html>oops"),
            (504, {}, b"Gateway Timeout"),
            httpx.ReadTimeout("read timed out"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.ConnectError("connection refused"),
            httpx.WriteError("broken pipe while sending"),
            (503, {"Retry-After": "3"}, b""),
        ]
    )
    kinds = []
    for _ in range(7):
        with pytest.raises(HubError) as err:
            c.put_transaction(msg, patient_inss=INSS)
        kinds.append((err.value.kind, err.value.retryable))
    assert kinds == [("unknown-outcome", False)] * 4 + [("unavailable", True)] * 3
    text = HubError(
        "unknown-outcome", "x", retryable=False, operation="PutTransaction"
    ).to_operation_outcome()
    assert "look it up" in text["issue"][0]["diagnostics"]


def test_reply_size_limit() -> None:
    big = _hub_reply("GetPatientConsent") + b" " * 2048
    c = scripted([(200, XML, big)])
    c.max_reply_bytes = 1024
    with pytest.raises(HubError) as err:
        c.get_patient_consent(INSS)
    assert err.value.kind == "bad-reply" and "larger than" in err.value.reason


def test_an_invalid_body_is_refused_before_sending() -> None:
    seen: list = []
    c = scripted([], seen=seen)
    with pytest.raises(InvalidRequest) as err:
        c.revoke_transaction(INSS, KmehrId("7", s="NOT-A-SCHEME"))
    assert err.value.kind == "invalid-request" and err.value.schema_errors
    assert err.value.to_operation_outcome()["issue"][0]["code"] == "invalid"
    with pytest.raises(InvalidRequest):
        c.get_transaction_list(INSS, searchtype="everywhere")
    with pytest.raises(InvalidRequest) as err:
        c.get_patient_consent("12345")  # not an INSS
    assert err.value.to_operation_outcome()["issue"][0]["expression"] == ["Patient.identifier"]
    bad = kmehr_message()
    bad.find(f".//{{{KMEHR_NS}}}transaction/{{{KMEHR_NS}}}date").text = "yesterday"
    with pytest.raises(InvalidRequest) as err:
        c.put_transaction(bad, patient_inss=INSS)
    assert "KMEHR" in err.value.reason
    with pytest.raises(InvalidRequest) as err:  # the folder is about someone else
        c.put_transaction(kmehr_message(), patient_inss=make_ssin("1990-02-02", 7))
    assert seen == []


def in_process(hub: MockHub, version: str) -> HubClient:
    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, body = hub.handle(request.read(), dict(request.headers))
        return httpx.Response(status, headers=headers, content=body)

    return HubClient(
        "http://hub.test/hub",
        hub_version=version,
        security=NoSecurity(),
        author=SENDER,
        transport=httpx.MockTransport(handler),
    )


def test_transaction_list_follows_3_5_pagination() -> None:
    hub = MockHub(
        hub_version="3.5",
        sts_certificates=None,
        decrypt_key=None,
        decrypt_cert=None,
        default_consent=True,
        page_size=2,
    )
    client = in_process(hub, "3.5")
    for i in range(5):
        client.put_transaction(kmehr_message(local=f"p-{i}.1"), patient_inss=INSS)
    listed = client.get_transaction_list(INSS)
    assert [t.local_id() for t in listed] == [f"p-{i}.1" for i in range(5)]
    assert hub.count("GetTransactionList") == 3
    assert client.get_transaction_list(INSS, cd="diarynote") == []


# -- the loopback mock eHealth server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ehealth(tmp_path_factory: pytest.TempPathFactory):
    with MockEHealthServer(tmp_path_factory.mktemp("ehealth")) as server:
        yield server


@pytest.fixture(scope="module")
def credential(ehealth: MockEHealthServer):
    return load_pkcs12_bytes(
        ehealth.pki.org_p12.read_bytes(), ehealth.pki.password.encode(), source="org.p12"
    )


@pytest.fixture(scope="module")
def security(ehealth: MockEHealthServer, credential):
    sts = StsClient(ehealth.sts_url, credential)
    yield SamlSecurity(sts, credential)
    sts.close()


@pytest.fixture(scope="module")
def etk(ehealth: MockEHealthServer):
    client = EtkClient(ehealth.etk_url)
    yield client
    client.close()


@pytest.fixture
def hubs(ehealth: MockEHealthServer):
    for hub in ehealth.hubs.values():
        hub.reset()
    yield ehealth.hubs


def make_client(ehealth, security, etk, name: str = "flanders", **kwargs) -> HubClient:
    version = ehealth.hubs[name].hub_version
    encrypt = encryptor_for_etk(etk, EtkIdentifier("CBE", ehealth.hub_cbe[name]))
    kwargs.setdefault("encrypt_for_hub", encrypt)
    return HubClient(ehealth.hub_url(name), hub_version=version, security=security, author=SENDER, **kwargs)


class Recording(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        return self.inner.handle_request(request)


@pytest.mark.parametrize("name", ["flanders", "brussels"])  # hubservices 3.5 and 3.2
def test_put_list_get_revoke_with_security_and_encryption(ehealth, hubs, security, etk, name, caplog) -> None:
    caplog.set_level(logging.INFO, logger="becare.hubservices")
    hub = hubs[name]
    hub.set_consent(INSS, True)
    kmehr = schemas.KMEHR_FOR_HUB[hub.hub_version]
    writes = Recording(StdlibTransport(max_idle_per_origin=0))
    with make_client(ehealth, security, etk, name, write_transport=writes) as client:
        result = client.put_transaction(kmehr_message(kmehr=kmehr, local="tx-9.1"), patient_inss=INSS)
        assert KmehrId("tx-9.1").matches(result.ids[-1])
        assert b"Base64EncryptedData" in writes.bodies[0] and INSS.encode() not in writes.bodies[0]

        listed = client.get_transaction_list(INSS)
        assert [t.local_id() for t in listed] == ["tx-9.1"]
        assert listed[0].cd == "careplan" and listed[0].author[0].cds == ("orghospital",)
        assert client.find_transaction(INSS, "tx-9.1") == listed[0]

        message = client.get_transaction(INSS, "tx-9.1")
        assert message.tag == f"{{{KMEHR_NS}}}kmehrmessage"
        assert schemas.problems("kmehr", kmehr, message) == []
        assert m.folder_patient_ids(message) == [INSS]
        by_hub_id = client.get_transaction(INSS, listed[0].ids[0])  # the hub's own id works too
        assert etree.tostring(by_hub_id) == etree.tostring(message)

        assert client.revoke_transaction(INSS, "tx-9.1").complete
        assert client.get_transaction_list(INSS) == []
        with pytest.raises(HubError) as err:
            client.get_transaction(INSS, "tx-9.1")
        assert (err.value.kind, err.value.errors[0].code) == ("rejected", "not-found")
    log = hub.request_log()
    assert [r["operation"] for r in log][:3] == ["PutTransaction", "GetTransactionList", "GetTransactionList"]
    assert all(r["caller"] and "CBE=0123456789" in r["caller"] for r in log)
    assert INSS not in caplog.text and "PutTransaction" in caplog.text


def test_consent_and_therapeutic_links(ehealth, hubs, security, etk) -> None:
    hub = hubs["wallonia"]
    other = make_ssin("1950-03-03", 11)
    today = datetime.now(UTC).date()
    hub.set_consent(INSS, True, signdate=date(2020, 1, 1))
    hub.set_consent(other, False, revokedate=today - timedelta(days=2))
    hub.set_therapeutic_link(INSS, {"ID-HCPARTY": ORG_NIHII})
    hub.set_therapeutic_link(INSS, {"ID-HCPARTY": "10000000001"}, active=False)
    with make_client(ehealth, security, etk, "wallonia") as client:
        consent = client.get_patient_consent(INSS)
        assert (consent.active, consent.types, consent.signdate) == (
            True,
            ("retrospective",),
            date(2020, 1, 1),
        )
        revoked = client.get_patient_consent(other)
        assert (revoked.active, revoked.present, revoked.revokedate) == (
            False,
            True,
            today - timedelta(days=2),
        )
        nobody = client.get_patient_consent(make_ssin("2001-01-01", 1))
        assert (nobody.active, nobody.present) == (False, False)

        links = client.get_therapeutic_link(INSS, Party(nihii=ORG_NIHII))
        assert links.active and len(links) == 1 and links.links[0].type == "gpconsultation"
        ended = client.get_therapeutic_link(INSS, {"ID-HCPARTY": "10000000001"})
        assert len(ended) == 1 and not ended.active
        assert not client.get_therapeutic_link(other, Party(nihii=ORG_NIHII)).active

        with pytest.raises(HubError) as err:  # no consent: the hub refuses to store
            client.put_transaction(kmehr_message(inss=other, kmehr="1.26"), patient_inss=other)
        assert (err.value.kind, err.value.retryable, err.value.errors[0].code) == (
            "rejected",
            False,
            "no-consent",
        )


def test_fault_kinds_from_the_mock_hub(ehealth, hubs, security, etk) -> None:
    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    hub.queue_faults(
        [
            "fault=soapenv:Server,faultstring=backend down",
            "fault=wsse:InvalidSecurity",
            "503,retry-after=4",
            "429",
            "reject=temporarily-unavailable",
        ]
    )
    expected = [
        ("fault", True),
        ("security", False),
        ("unavailable", True),
        ("unavailable", True),
        ("rejected", True),
    ]
    with make_client(ehealth, security, etk) as client:
        got = []
        for _ in expected:
            with pytest.raises(HubError) as err:
                client.get_patient_consent(INSS)
            got.append((err.value.kind, err.value.retryable))
        assert got == expected
        assert client.get_patient_consent(INSS).active  # the queue is empty again
    statuses = [r["status"] for r in hub.request_log()]
    assert statuses == [500, 500, 503, 429, 200, 200]


def test_slow_hub_read_is_unavailable_write_is_unknown(ehealth, hubs, security, etk) -> None:
    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    hub.queue_faults(
        [
            {"kind": "delay", "delay": 0.8, "operation": "GetPatientConsent"},
            {"kind": "delay", "delay": 0.8, "operation": "PutTransaction"},
        ]
    )
    with make_client(ehealth, security, etk, timeout=0.3) as client:
        with pytest.raises(HubError) as err:
            client.get_patient_consent(INSS)
        assert (err.value.kind, err.value.retryable) == ("unavailable", True)
        with pytest.raises(HubError) as err:
            client.put_transaction(kmehr_message(local="slow.1"), patient_inss=INSS)
        assert (err.value.kind, err.value.retryable) == ("unknown-outcome", False)
    time.sleep(0.6)
    with make_client(ehealth, security, etk) as client:  # the caller looks it up: it did arrive
        assert client.find_transaction(INSS, "slow.1") is not None


@pytest.mark.parametrize("fault,stored", [("drop", False), ("drop-after", True)])
def test_dropped_connection_is_unknown_outcome_and_never_resent(
    ehealth, hubs, security, etk, fault, stored
) -> None:
    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    with make_client(ehealth, security, etk) as client:
        client.get_patient_consent(INSS)  # a kept-alive connection now waits in the read pool
        client.get_patient_consent(INSS)
        hub.queue_faults([{"kind": fault, "operation": "PutTransaction"}])
        with pytest.raises(HubError) as err:
            client.put_transaction(kmehr_message(local="drop.1"), patient_inss=INSS)
        assert (err.value.kind, err.value.retryable) == ("unknown-outcome", False)
        assert hub.count("PutTransaction") == 1  # sent once, not retried on a fresh connection
        assert len(hub.stored(INSS)) == (1 if stored else 0)
        found = client.find_transaction(INSS, "drop.1")
        assert (found is not None) == stored
        if not stored:  # known not to be there: now it is safe to send again
            client.put_transaction(kmehr_message(local="drop.1"), patient_inss=INSS)
            assert client.find_transaction(INSS, "drop.1") is not None


def test_even_a_pooled_transport_never_sends_a_put_twice(ehealth, hubs, security, etk) -> None:
    """Over a reused keep-alive connection too, a put whose reply is lost after it was sent is an
    unknown outcome, never a silent second put (the transport resends only unsent requests)."""
    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    pooled = StdlibTransport()
    with make_client(ehealth, security, etk, transport=pooled, write_transport=pooled) as client:
        client.get_patient_consent(INSS)
        hub.queue_faults([{"kind": "drop-after", "operation": "PutTransaction"}])
        with pytest.raises(HubError) as err:
            client.put_transaction(kmehr_message(local="twice.1"), patient_inss=INSS)
        assert err.value.kind == "unknown-outcome"
        assert client.find_transaction(INSS, "twice.1") is not None  # the lookup settles it
    pooled.close()
    assert hub.count("PutTransaction") == 1 and len(hub.stored(INSS)) == 1


def test_connection_refused_is_unavailable(security) -> None:
    with (
        HubClient(
            "http://127.0.0.1:9/hub", hub_version="3.5", security=security, author=SENDER, timeout=2
        ) as client,
        pytest.raises(HubError) as err,
    ):
        client.put_transaction(kmehr_message(), patient_inss=INSS)
    assert (err.value.kind, err.value.retryable) == ("unavailable", True)


class Tamper:
    """Signs correctly, then changes the signed Body (the patient asked about)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def apply(self, envelope: etree._Element) -> etree._Element:
        envelope = self.inner.apply(envelope)
        patient = envelope.find(f".//{{{m.CORE_NS}}}select/{{{m.CORE_NS}}}patient/{{{m.CORE_NS}}}id")
        patient.text = make_ssin("1960-06-06", 9)
        return envelope


def test_security_correct_tampered_expired_missing(ehealth, hubs, security, credential, etk) -> None:
    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    with make_client(ehealth, security, etk) as client:
        assert client.get_patient_consent(INSS).active
    stale = SamlSecurity(
        security.sts_client, credential, clock=lambda: datetime.now(UTC) - timedelta(minutes=20)
    )
    for bad in (Tamper(security), stale, NoSecurity()):
        with make_client(ehealth, security, etk) as client:
            client.security = bad
            with pytest.raises(HubError) as err:
                client.get_patient_consent(INSS)
            assert (err.value.kind, err.value.retryable) == ("security", False), bad
            assert err.value.fault_code.startswith("wsse:")
    outcomes = [r["outcome"] for r in hub.request_log()]
    assert outcomes == ["ok", "fault", "fault", "fault"]


def test_security_expired_token_and_foreign_key(ehealth, hubs, security, credential, etk) -> None:
    from adapter.ehealth.credentials import Credential
    from adapter.testing.ehealth.pki import make_key

    hub = hubs["flanders"]
    hub.set_consent(INSS, True)
    later = datetime.now(UTC) + timedelta(hours=5)  # the 1 h token is long expired, the timestamp fresh
    hub.clock = lambda: later
    try:
        with make_client(ehealth, security, etk) as client:
            client.security = SamlSecurity(security.sts_client, credential, clock=lambda: later)
            with pytest.raises(HubError) as err:
                client.get_patient_consent(INSS)
    finally:
        hub.clock = lambda: datetime.now(UTC)
    assert err.value.kind == "security"
    key = make_key()  # a valid token, but the request is signed by a key that is not its holder
    other = Credential(key, ehealth.pki.issue(key, ehealth.pki.org_name()), (), "other")
    with make_client(ehealth, security, etk) as client:
        client.security = SamlSecurity(security.sts_client, other)
        with pytest.raises(HubError) as err:
            client.get_patient_consent(INSS)
    assert err.value.kind == "security"


def test_encrypted_for_another_hub_is_refused(ehealth, hubs, security, etk) -> None:
    hubs["wallonia"].set_consent(INSS, True)
    wrong = encryptor_for_etk(etk, EtkIdentifier("CBE", ehealth.hub_cbe["flanders"]))
    client = make_client(ehealth, security, etk, "wallonia", encrypt_for_hub=wrong)
    with client, pytest.raises(HubError) as err:
        client.put_transaction(kmehr_message(), patient_inss=INSS)
    assert (err.value.kind, err.value.errors[0].code) == ("rejected", "decryption-failed")
    assert hubs["wallonia"].stored() == []


def test_mock_hub_checks_action_body_and_xml() -> None:
    hub = MockHub(
        hub_version="3.2", sts_certificates=None, decrypt_key=None, decrypt_cert=None, default_consent=True
    )
    body = soap.serialize(soap.wrap(m.get_patient_consent(info(), INSS)))
    action = {"SOAPAction": f'"{m.soap_action("GetPatientConsent")}"'}

    def fault(data: bytes, headers: dict) -> str:
        status, _, reply = hub.handle(data, headers)
        assert status == 500
        with pytest.raises(soap.SoapFault) as err:
            soap.payload(soap.parse(reply))
        return err.value.fault.string

    assert hub.handle(body, action)[0] == 200
    assert "SOAPAction" in fault(body, {})
    assert "does not match" in fault(body, {"SOAPAction": m.soap_action("GetTransaction")})
    invalid = m.get_patient_consent(info(), INSS)
    etree.SubElement(invalid, f"{{{m.CORE_NS}}}unexpected")
    assert "not valid against hubservices 3.2" in fault(soap.serialize(soap.wrap(invalid)), action)
    assert "document type" in fault(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', action)
    paged = m.get_transaction_list(info(), INSS, page_index=1)  # 3.5 only
    listing = {"SOAPAction": m.soap_action("GetTransactionList")}
    assert "not valid" in fault(soap.serialize(soap.wrap(paged)), listing)
    assert [r["status"] for r in hub.request_log()] == [200, 500, 500, 500, 500, 500]


def test_kmehr_writer_output_goes_through(ehealth, hubs, security, etk) -> None:
    kmehr = pytest.importorskip("adapter.kmehr")
    bundle_path = (
        Path(__file__).resolve().parents[1] / "samples" / "valid" / "flanders-care-coordination.json"
    )
    if not bundle_path.is_file():
        pytest.skip("sample bundle not present")
    bundle = json.loads(bundle_path.read_text(encoding="utf-8"))
    hub = hubs["brussels"]  # hubservices 3.2, KMEHR 1.19
    message = kmehr.to_kmehr(
        bundle,
        version="1.19",
        transaction_id="bundle-7",
        sender=kmehr.Sender(organisation=kmehr.Party(nihii=ORG_NIHII, name="Test Hospital")),
    )
    inss = m.folder_patient_ids(message)[0]
    hub.set_consent(inss, True)
    with make_client(ehealth, security, etk, "brussels") as client:
        client.put_transaction(message, patient_inss=inss)
        ids = kmehr.transaction_ids(message)
        assert [t.local_id() for t in client.get_transaction_list(inss)] == ids
        back = client.get_transaction(inss, ids[0])
    assert kmehr.transaction_ids(back) == ids


# -- the server's control API and command line --------------------------------------------------------------
def test_control_api(ehealth, hubs, security, etk) -> None:
    base = f"{ehealth.url}/_control"
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{base}/health").json() == {"ok": True}
        info = http.get(f"{base}/info").json()
        assert set(info["hubs"]) == {"flanders", "wallonia", "brussels", "german-speaking"}
        assert len({h["cbe"] for h in info["hubs"].values()}) == 4
        assert http.put(f"{base}/hubs/german-speaking/consent/{INSS}", json={"active": True}).json()["ok"]
        link = {"links": [{"hcparty": {"ID-HCPARTY": ORG_NIHII}}]}
        assert http.put(f"{base}/hubs/german-speaking/therapeutic-links/{INSS}", json=link).status_code == 200
        with make_client(ehealth, security, etk, "german-speaking") as client:
            assert client.get_patient_consent(INSS).active
            assert client.get_therapeutic_link(INSS, Party(nihii=ORG_NIHII)).active
            client.put_transaction(kmehr_message(kmehr="1.19", local="ctl.1"), patient_inss=INSS)
            assert http.post(f"{base}/hubs/german-speaking/faults", json={"faults": ["503"]}).json() == {
                "queued": 1
            }
            with pytest.raises(HubError):
                client.get_patient_consent(INSS)
        stored = http.get(f"{base}/hubs/german-speaking/transactions", params={"inss": INSS}).json()
        assert stored["count"] == 1 and stored["items"][0]["local_ids"] == ["ctl.1"]
        requests = http.get(f"{base}/hubs/german-speaking/requests").json()["items"]
        assert [r["status"] for r in requests] == [200, 200, 200, 503]
        assert http.post(f"{base}/hubs/german-speaking/faults", json={"faults": ["bogus"]}).status_code == 400
        assert http.post(f"{base}/reset").json() == {"ok": True}
        assert http.get(f"{base}/hubs/german-speaking/transactions").json()["count"] == 0
        assert http.get(f"{base}/hubs/nowhere/requests").status_code == 400


def test_fault_specs() -> None:
    f = HubFault.parse("503,retry-after=2,op=PutTransaction")
    assert (f.kind, f.status, f.retry_after, f.operation) == ("status", 503, "2", "PutTransaction")
    assert HubFault.parse("delay=1.5").delay == 1.5
    assert HubFault.from_json({"kind": "drop-after"}).kind == "drop-after"
    with pytest.raises(ValueError):
        HubFault.parse("explode")


def test_command_line_server(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.testing.ehealth.server", "--port", "0", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:"), line
        url = line.split()[1]
        assert httpx.get(f"{url}/_control/health", timeout=5).json() == {"ok": True}
        written = json.loads((tmp_path / "server.json").read_text())
        assert written["hubs"]["flanders"]["url"] == f"{url}/hub/flanders"
        assert (tmp_path / "org.p12").is_file()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
