"""eHealth security: PKCS#12 credentials, CMS, WS-Security (sign / verify as a hub), the STS and
ETK clients against their test doubles. Keys are generated once for the module (RSA 2048)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import NoEncryption
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from lxml import etree

from adapter.ehealth import cms
from adapter.ehealth.credentials import Credential, load_pkcs12, load_pkcs12_bytes
from adapter.ehealth.errors import CredentialError, EtkError, SecurityError, StsError
from adapter.ehealth.etk import EtkClient, EtkIdentifier, encryption_certificate
from adapter.ehealth.sts import StsClient
from adapter.ehealth.wssecurity import (
    DS_NS,
    SAML1_NS,
    SOAP11_NS,
    WSSE_NS,
    WSU_NS,
    SamlToken,
    parse_xml,
    secure,
    secure_x509,
    token_from_assertion,
    verify,
    verify_assertion,
    verify_x509,
)
from adapter.kmehr.schemas import problems
from adapter.testing.ehealth.etk import MockEtkDepot, make_etk
from adapter.testing.ehealth.pki import TestPki, make_key, make_pki, pkcs12
from adapter.testing.ehealth.sts import MockSts, build_assertion

UTC = dt.UTC
NS = {"soap": SOAP11_NS, "wsse": WSSE_NS, "wsu": WSU_NS, "saml": SAML1_NS, "ds": DS_NS}
PASSWORD_ENV = "BECARE_TEST_P12_PASSWORD"
CBE_ATTR = "urn:be:fgov:ehealth:1.0:certificateholder:enterprise:cbe-number"


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cred(pki: TestPki) -> Credential:
    return load_pkcs12_bytes(pki.org_p12.read_bytes(), pki.password.encode(), source="org.p12")


@pytest.fixture(scope="module")
def other_cred(pki: TestPki) -> Credential:
    """Another organisation (its own key), also issued by the test CA."""
    cert = pki.issue(pki.hub2_key, pki.org_name("0999999999"))
    return Credential(key=pki.hub2_key, certificate=cert, chain=(pki.ca_cert,), source="other")


def transport_for(handler: Callable[[bytes, dict[str, str]], tuple[int, bytes]]) -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        status, body = handler(request.read(), dict(request.headers))
        return httpx.Response(status, content=body, headers={"Content-Type": "text/xml; charset=utf-8"})

    return httpx.MockTransport(respond)


@pytest.fixture(scope="module")
def mock_sts(pki: TestPki) -> MockSts:
    return MockSts(pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert])


@pytest.fixture(scope="module")
def token(mock_sts: MockSts, cred: Credential) -> SamlToken:
    with StsClient("https://sts.test/", cred, transport=transport_for(mock_sts.handle)) as client:
        return client.token()


def envelope(text: str = "hello hub") -> etree._Element:
    root = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
    body = etree.SubElement(root, f"{{{SOAP11_NS}}}Body")
    request = etree.SubElement(body, "{urn:test:hub}PutTransactionRequest", nsmap={"h": "urn:test:hub"})
    etree.SubElement(request, "{urn:test:hub}text").text = text
    return root


def signed(token: SamlToken, cred: Credential, *, now: dt.datetime | None = None, ttl: float = 60.0) -> bytes:
    return etree.tostring(secure(envelope(), token=token, credential=cred, now=now, ttl=ttl))


def rejected(data: bytes, sts_certs: list[x509.Certificate], **kw: object) -> str:
    with pytest.raises(SecurityError) as info:
        verify(parse_xml(data), sts_certificates=sts_certs, **kw)  # type: ignore[arg-type]
    return info.value.reason


# --- PKCS#12 ------------------------------------------------------------------------------------------


def test_pkcs12_right_password(pki: TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, pki.password)
    credential = load_pkcs12(pki.org_p12, password_env=PASSWORD_ENV)
    assert credential.certificate == pki.org_cert
    assert credential.chain == (pki.ca_cert,)
    assert credential.source == "org.p12"
    assert "PRIVATE" not in repr(credential) and pki.password not in repr(credential)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "org.p12: wrong password, or not a PKCS#12 file"),
        ("unset", f"org.p12: the password environment variable {PASSWORD_ENV} is not set"),
        ("expired", "expired.p12: certificate expired on "),
        ("future", "future.p12: certificate is not valid yet"),
        ("missing", "missing.p12: PKCS#12 file not found"),
    ],
)
def test_pkcs12_problems_are_one_clear_line(
    pki: TestPki, monkeypatch: pytest.MonkeyPatch, case: str, expected: str
) -> None:
    path = {
        "expired": pki.expired_p12,
        "future": pki.future_p12,
        "missing": pki.directory / "missing.p12",
    }.get(case, pki.org_p12)
    if case == "unset":
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSWORD_ENV, "not-the-password" if case == "wrong-password" else pki.password)
    with pytest.raises(CredentialError) as info:
        load_pkcs12(path, password_env=PASSWORD_ENV)
    reason = info.value.reason
    assert reason.startswith(expected)
    assert "\n" not in reason and "not-the-password" not in reason and pki.password not in reason


def test_pkcs12_validity_uses_now_and_key_is_required(pki: TestPki) -> None:
    data = pki.expired_p12.read_bytes()
    earlier = pki.expired_cert.not_valid_before_utc + dt.timedelta(days=1)
    assert (
        load_pkcs12_bytes(data, pki.password.encode(), source="x", now=earlier).certificate
        == pki.expired_cert
    )
    cert_only = crypto_pkcs12.serialize_key_and_certificates(b"c", None, pki.org_cert, None, NoEncryption())
    with pytest.raises(CredentialError, match="holds no private key"):
        load_pkcs12_bytes(cert_only, None, source="cert-only.p12")
    unprotected = pkcs12(pki.org_key, pki.org_cert, None)
    assert load_pkcs12_bytes(unprotected, None, source="plain.p12").certificate == pki.org_cert


# --- CMS ----------------------------------------------------------------------------------------------


def test_cms_round_trip_and_failures(pki: TestPki) -> None:
    payload = b"<kmehrmessage>" + b"x" * 50_000 + b"</kmehrmessage>"
    der = cms.encrypt(payload, pki.hub_cert)
    assert der[:1] == b"\x30" and payload not in der
    assert cms.decrypt(der, pki.hub_key, pki.hub_cert) == payload
    with pytest.raises(SecurityError, match="not encrypted for this certificate"):
        cms.decrypt(der, pki.hub2_key, pki.hub2_cert)
    with pytest.raises(SecurityError, match="decryption failed"):
        cms.decrypt(der, pki.hub2_key, pki.hub_cert)  # right recipient id, wrong key
    with pytest.raises(SecurityError, match="not a CMS EnvelopedData"):
        cms.decrypt(b"\x30\x03junk", pki.hub_key, pki.hub_cert)


# --- WS-Security --------------------------------------------------------------------------------------


def test_secure_then_verify_from_bytes(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    data = signed(token, cred)
    root = parse_xml(data)
    security = root.find("soap:Header/wsse:Security", NS)
    assert security is not None and security.get(f"{{{SOAP11_NS}}}mustUnderstand") == "1"
    assert [etree.QName(c).localname for c in security] == ["Timestamp", "Assertion", "Signature"]
    sig = security.find("ds:Signature", NS)
    assert sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm").endswith("rsa-sha256")
    assert sig.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm").endswith("xml-exc-c14n#")
    uris = {r.get("URI") for r in sig.iterfind("ds:SignedInfo/ds:Reference", NS)}
    body_id = root.find("soap:Body", NS).get(f"{{{WSU_NS}}}Id")
    ts_id = security.find("wsu:Timestamp", NS).get(f"{{{WSU_NS}}}Id")
    assert uris == {f"#{body_id}", f"#{ts_id}"}
    key_id = sig.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:KeyIdentifier", NS)
    assert key_id.text == token.assertion_id and key_id.get("ValueType").endswith("#SAMLAssertionID")

    caller = verify(root, sts_certificates=[pki.sts_cert])
    assert caller.certificate == pki.org_cert
    assert caller.assertion_id == token.assertion_id
    assert "CBE=0123456789" in caller.subject
    assert caller.attributes[CBE_ATTR] == ["0123456789"]


def test_tampered_body_is_rejected(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    data = signed(token, cred).replace(b"hello hub", b"evil hub!")
    assert "soap:Body was changed after signing" in rejected(data, [pki.sts_cert])


def test_tampered_timestamp_is_rejected(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    data = signed(token, cred)
    expires = parse_xml(data).findtext(".//wsu:Expires", namespaces=NS).encode()
    later = (dt.datetime.now(UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
    reason = rejected(data.replace(expires, later), [pki.sts_cert])
    assert "wsu:Timestamp was changed after signing" in reason


def test_expired_and_future_timestamps_are_rejected(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    now = dt.datetime.now(UTC)
    data = signed(token, cred, now=now, ttl=60)
    verify(parse_xml(data), sts_certificates=[pki.sts_cert], now=now + dt.timedelta(seconds=59))
    reason = rejected(data, [pki.sts_cert], now=now + dt.timedelta(seconds=61))
    assert reason.startswith("the wsu:Timestamp expired at")
    future = signed(token, cred, now=now + dt.timedelta(seconds=600), ttl=60)
    assert "created in the future" in rejected(future, [pki.sts_cert], now=now)
    within_skew = signed(token, cred, now=now + dt.timedelta(seconds=200), ttl=60)
    verify(parse_xml(within_skew), sts_certificates=[pki.sts_cert], now=now)


def test_assertion_from_untrusted_sts_is_rejected(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    rogue_cert = pki.issue(pki.hub2_key, pki.org_name("0888888888"))
    rogue = MockSts(pki.hub2_key, rogue_cert, trusted=[pki.ca_cert])
    with StsClient("https://rogue.test/", cred, transport=transport_for(rogue.handle)) as client:
        rogue_token = client.token()
    reason = rejected(signed(rogue_token, cred), [pki.sts_cert])
    assert reason == "the SAML assertion is not signed by a trusted STS"
    # trusting both works; trusting none is an error of its own
    verify(parse_xml(signed(rogue_token, cred)), sts_certificates=[pki.sts_cert, rogue_cert])
    assert rejected(signed(token, cred), []) == "no trusted STS certificate configured"


def test_expired_or_tampered_assertion_is_rejected(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    now = dt.datetime.now(UTC)
    old = build_assertion(
        key=pki.sts_key,
        certificate=pki.sts_cert,
        holder=pki.org_cert,
        attributes=[("urn:be:fgov:identification-namespace", CBE_ATTR, ["0123456789"])],
        not_before=now - dt.timedelta(hours=3),
        not_on_or_after=now - dt.timedelta(hours=1),
    )
    expired = token_from_assertion(parse_xml(etree.tostring(old)))
    assert rejected(signed(expired, cred), [pki.sts_cert]).startswith("the SAML assertion expired at")
    # within the clock skew it still passes
    verify(parse_xml(signed(expired, cred)), sts_certificates=[pki.sts_cert], clock_skew=3700)

    data = signed(token, cred).replace(
        b">0123456789</saml:AttributeValue>", b">0999999999</saml:AttributeValue>"
    )
    assert rejected(data, [pki.sts_cert]) == "the SAML assertion was changed after the STS signed it"


def test_request_signed_by_another_key_than_the_holder_of_key(
    token: SamlToken, cred: Credential, other_cred: Credential, pki: TestPki
) -> None:
    data = signed(token, other_cred)  # the assertion names cred's certificate
    reason = rejected(data, [pki.sts_cert])
    assert reason == (
        "the request signature does not verify: it was not made with the holder-of-key certificate's key"
    )


def test_signature_wrapping_second_body(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    root = parse_xml(signed(token, cred))
    evil = etree.SubElement(root, f"{{{SOAP11_NS}}}Body")
    etree.SubElement(evil, "{urn:test:hub}PutTransactionRequest").text = "evil"
    reason = rejected(etree.tostring(root), [pki.sts_cert])
    assert reason.startswith("2 soap:Body elements") and "wrapping" in reason


def test_signature_wrapping_moved_id(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    # the signed Body is moved into a header wrapper; a new Body takes its place
    root = parse_xml(signed(token, cred))
    body = root.find("soap:Body", NS)
    wrapper = etree.SubElement(root.find("soap:Header", NS), "{urn:evil}Wrapper")
    wrapper.append(body)
    new_body = etree.SubElement(root, f"{{{SOAP11_NS}}}Body")
    etree.SubElement(new_body, "{urn:test:hub}PutTransactionRequest").text = "evil"
    assert (
        rejected(etree.tostring(root), [pki.sts_cert]) == "the request signature does not cover the soap:Body"
    )
    # ... and with the id copied onto the new Body too
    new_body.set(f"{{{WSU_NS}}}Id", body.get(f"{{{WSU_NS}}}Id"))
    assert rejected(etree.tostring(root), [pki.sts_cert]).startswith("duplicated id")


def _resign(data: bytes, cred: Credential, which: Callable[[etree._Element], list[str]]) -> bytes:
    """Replace the request signature by a valid one over other references."""
    from adapter.ehealth import wssecurity

    root = parse_xml(data)
    security = root.find("soap:Header/wsse:Security", NS)
    old = security.find("ds:Signature", NS)
    key_info = old.find("ds:KeyInfo", NS)
    security.remove(old)
    wssecurity._sign(root, security, cred, which(root), key_info)
    return etree.tostring(root)


def test_signature_must_cover_body_and_timestamp_only(
    token: SamlToken, cred: Credential, pki: TestPki
) -> None:
    data = signed(token, cred)

    def body_id(root: etree._Element) -> str:
        return root.find("soap:Body", NS).get(f"{{{WSU_NS}}}Id")

    def ts_id(root: etree._Element) -> str:
        return root.find(".//wsu:Timestamp", NS).get(f"{{{WSU_NS}}}Id")

    only_body = _resign(data, cred, lambda r: [body_id(r)])
    assert rejected(only_body, [pki.sts_cert]) == "the request signature does not cover the wsu:Timestamp"
    only_ts = _resign(data, cred, lambda r: [ts_id(r)])
    assert rejected(only_ts, [pki.sts_cert]) == "the request signature does not cover the soap:Body"

    def with_extra(root: etree._Element) -> list[str]:
        extra = etree.SubElement(root.find("soap:Header", NS), "{urn:x}Extra")
        extra.set(f"{{{WSU_NS}}}Id", "extra-1")
        return [body_id(root), ts_id(root), "extra-1"]

    three = _resign(data, cred, with_extra)
    assert "other than the Body and the Timestamp" in rejected(three, [pki.sts_cert])
    # the same re-signing over exactly Body + Timestamp verifies: the helper itself is sound
    verify(parse_xml(_resign(data, cred, lambda r: [body_id(r), ts_id(r)])), sts_certificates=[pki.sts_cert])


def test_missing_header_and_foreign_key_identifier(token: SamlToken, cred: Credential, pki: TestPki) -> None:
    assert rejected(etree.tostring(envelope()), [pki.sts_cert]) == "no soap:Header"
    root = envelope()
    etree.SubElement(root, f"{{{SOAP11_NS}}}Header")
    root.insert(0, root[-1])
    assert rejected(etree.tostring(root), [pki.sts_cert]) == "no wsse:Security header"
    data = signed(token, cred).replace(
        f">{token.assertion_id}</wsse:KeyIdentifier>".encode(), b">_other</wsse:KeyIdentifier>"
    )
    assert rejected(data, [pki.sts_cert]) == "the request signature's KeyInfo names another SAML assertion"
    with pytest.raises(ValueError, match="already has a wsse:Security"):
        secure(parse_xml(signed(token, cred)), token=token, credential=cred)


def test_x509_token_profile(cred: Credential, other_cred: Credential, pki: TestPki) -> None:
    data = etree.tostring(secure_x509(envelope(), credential=cred))
    assert verify_x509(parse_xml(data), trusted=[pki.ca_cert]) == pki.org_cert
    assert verify_x509(parse_xml(data), trusted=[pki.org_cert]) == pki.org_cert
    with pytest.raises(SecurityError, match="not trusted"):
        verify_x509(parse_xml(data), trusted=[pki.sts_cert])
    with pytest.raises(SecurityError, match="soap:Body was changed"):
        verify_x509(parse_xml(data.replace(b"hello hub", b"HELLO HUB")), trusted=[pki.ca_cert])


def test_hostile_xml_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>'
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_xml(bomb)
    with pytest.raises(ValueError, match="not well-formed"):
        parse_xml(b"<a><b></a>")


# --- STS ------------------------------------------------------------------------------------------------


def test_sts_issues_a_valid_saml11_holder_of_key_token(token: SamlToken, pki: TestPki) -> None:
    assertion = parse_xml(token.assertion)
    assert problems("saml", "1.1", assertion) == []
    assert token.assertion_id == assertion.get("AssertionID")
    assert token.not_on_or_after - token.not_before == dt.timedelta(hours=1)  # the mock caps at 1 h
    caller = verify_assertion(assertion, sts_certificates=[pki.sts_cert])
    assert caller.certificate == pki.org_cert
    assert set(caller.attributes) == {CBE_ATTR, "urn:be:fgov:ehealth:1.0:enterprise:cbe-number"}
    assert "SamlToken(assertion_id=" in repr(token) and "0123456789" not in repr(token)


def test_sts_token_is_cached_also_across_threads(pki: TestPki, cred: Credential) -> None:
    sts = MockSts(pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert])

    def slow(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        time.sleep(0.05)
        return sts.handle(body, headers)

    with StsClient("https://sts.test/", cred, transport=transport_for(slow)) as client:
        barrier = threading.Barrier(16)
        tokens: list[SamlToken] = []

        def ask() -> None:
            barrier.wait()
            tokens.append(client.token())

        threads = [threading.Thread(target=ask) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(tokens) == 16 and len({t.assertion_id for t in tokens}) == 1
        assert all(client.token() is tokens[0] for _ in range(20))
    assert sts.issued == 1


def test_sts_token_is_renewed_before_expiry(pki: TestPki, cred: Credential) -> None:
    now = [dt.datetime.now(UTC)]
    sts = MockSts(pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert], lifetime=3600, clock=lambda: now[0])
    transport = transport_for(sts.handle)
    with StsClient(
        "https://sts.test/", cred, renew_margin=300, transport=transport, clock=lambda: now[0]
    ) as c:
        first = c.token()
        now[0] += dt.timedelta(seconds=3290)
        assert c.token() is first and sts.issued == 1
        now[0] += dt.timedelta(seconds=20)  # inside the last 300 s
        second = c.token()
        assert second.assertion_id != first.assertion_id and sts.issued == 2
        assert second.not_on_or_after > first.not_on_or_after


def test_sts_unreachable_is_retryable(cred: Credential) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        StsClient(f"http://127.0.0.1:{port}/sts", cred, timeout=2.0) as client,
        pytest.raises(StsError) as info,
    ):
        client.token()
    assert info.value.retryable is True
    assert info.value.reason.startswith("STS unreachable")


def test_sts_fault_carries_the_faultstring(pki: TestPki, cred: Credential, other_cred: Credential) -> None:
    picky = MockSts(pki.sts_key, pki.sts_cert, trusted=[other_cred.certificate])  # not our CA
    client = StsClient("https://sts.test/", cred, transport=transport_for(picky.handle))
    with client, pytest.raises(StsError) as info:
        client.token()
    assert info.value.reason == (
        "STS fault (Client): authentication failed: the signer's certificate is not trusted"
    )
    assert info.value.retryable is False and picky.faults == 1 and picky.issued == 0

    sts = MockSts(pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert])
    wanted = [("urn:be:fgov:identification-namespace", "urn:be:fgov:person:ssin")]
    client = StsClient("https://sts.test/", cred, attributes=wanted, transport=transport_for(sts.handle))
    with client, pytest.raises(StsError, match="attribute urn:be:fgov:person:ssin cannot be certified"):
        client.token()


def test_sts_bad_replies(cred: Credential) -> None:
    def gateway(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return 503, b"<html>maintenance</html>"

    client = StsClient("https://sts.test/", cred, transport=transport_for(gateway))
    with client, pytest.raises(StsError) as info:
        client.token()
    assert info.value.retryable is True and "HTTP 503" in info.value.reason

    def empty(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return 200, b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'

    client = StsClient("https://sts.test/", cred, transport=transport_for(empty))
    with client, pytest.raises(StsError, match=r"no SAML 1\.1 assertion") as info:
        client.token()
    assert info.value.retryable is False


def test_mock_sts_refuses_unsigned_and_hostile_requests(mock_sts: MockSts) -> None:
    status, body = mock_sts.handle(etree.tostring(envelope()), {})
    assert status == 500 and b"authentication failed: no soap:Header" in body
    status, body = mock_sts.handle(b'<!DOCTYPE a [<!ENTITY x "y">]><a/>', {})
    assert status == 500 and b"DOCTYPE" in body


# --- ETK --------------------------------------------------------------------------------------------------

HUB = EtkIdentifier("CBE", "0809394427")
HUB2 = EtkIdentifier("CBE", "0456789123")


@pytest.fixture(scope="module")
def depot(pki: TestPki) -> MockEtkDepot:
    expired = pki.issue(
        pki.hub2_key,
        pki.org_name("0777777777"),
        not_before=dt.datetime.now(UTC) - dt.timedelta(days=30),
        not_after=dt.datetime.now(UTC) - dt.timedelta(days=1),
        usage="encrypt",
    )
    return MockEtkDepot(
        {
            ("CBE", HUB.value, ""): (pki.hub_key, pki.hub_cert),
            ("CBE", HUB2.value, ""): (pki.hub2_key, pki.hub2_cert),
            ("CBE", "0777777777", ""): (pki.hub2_key, expired),
            ("CBE", "0666666666", "A"): (pki.hub_key, pki.hub_cert),
            ("CBE", "0666666666", "B"): (pki.hub2_key, pki.hub2_cert),
        }
    )


def test_etk_fetch_cache_and_ttl(depot: MockEtkDepot, pki: TestPki) -> None:
    clock = [0.0]
    start = depot.requests
    with EtkClient(
        "https://etk.test/", ttl=3600, transport=transport_for(depot.handle), clock=lambda: clock[0]
    ) as c:
        assert c.certificate(HUB) == pki.hub_cert
        assert c.certificate(EtkIdentifier("CBE", "0809394427")) == pki.hub_cert
        assert c.certificate(HUB2) == pki.hub2_cert
        assert depot.requests - start == 2
        clock[0] = 3601
        assert c.certificate(HUB) == pki.hub_cert
        assert depot.requests - start == 3
        # what the hub client does with it: encrypt for the hub, the hub decrypts
        der = cms.encrypt(b"folder", c.certificate(HUB))
        assert cms.decrypt(der, pki.hub_key, pki.hub_cert) == b"folder"


def test_etk_problems(depot: MockEtkDepot) -> None:
    with EtkClient("https://etk.test/", transport=transport_for(depot.handle)) as client:
        with pytest.raises(EtkError) as info:
            client.certificate(EtkIdentifier("CBE", "0777777777"))
        assert "certificate expired on" in info.value.reason and info.value.retryable is False
        with pytest.raises(EtkError) as info:
            client.certificate(EtkIdentifier("CBE", "0000000000"))
        assert info.value.reason.startswith("no ETK found for CBE 0000000000 (status 404")
        assert info.value.retryable is False
        with pytest.raises(EtkError) as info:
            client.certificate(EtkIdentifier("SSIN", "85073003328"))
        assert "85073003328" not in info.value.reason
        with pytest.raises(EtkError, match="matches 2 ETKs: configure its application id"):
            client.certificate(EtkIdentifier("CBE", "0666666666"))
        assert client.certificate(EtkIdentifier("CBE", "0666666666", "B")).serial_number > 0


def test_etk_unreachable_and_invalid(pki: TestPki) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = EtkClient("https://etk.test/", transport=httpx.MockTransport(refuse))
    with client, pytest.raises(EtkError) as info:
        client.certificate(HUB)
    assert info.value.retryable is True
    with pytest.raises(EtkError, match="not a CMS SignedData"):
        encryption_certificate(b"\x30\x00")
    signing_only = make_etk(pki.org_key, pki.org_cert)  # a signing certificate is no ETK
    with pytest.raises(EtkError, match="carries no encryption certificate"):
        encryption_certificate(signing_only)


def test_pki_files(pki: TestPki) -> None:
    assert {p.name for p in Path(pki.directory).glob("*.p12")} >= {"org.p12", "expired.p12", "future.p12"}
    assert pki.org_cert.issuer == pki.ca_cert.subject
    assert make_key().key_size == 2048
