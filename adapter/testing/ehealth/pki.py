"""A throw-away eHealth-like PKI, generated when a test runs (no key is ever committed).

``make_pki(directory)`` creates a test CA and, signed by it:

- the organisation's certificate + key, written as ``org.p12`` (password protected), subject
  like an eHealth organisation certificate (``CN=CBE=0123456789``, ``OU=CBE=0123456789``);
- the same identity with an expired certificate, ``expired.p12``, and a not-yet-valid one,
  ``future.p12``;
- the STS signing certificate + key;
- the ETK (encryption) certificates + keys of two hubs (``hub``: CBE 0809394427, ``hub2``:
  CBE 0456789123).

RSA 2048 throughout: ~0.5 s for the whole set; build it once per test module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, NoEncryption
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ORG_CBE", "TestPki", "make_key", "make_pki", "pkcs12", "pkcs12_bytes"]

ORG_CBE = "0123456789"
HUB_CBE = "0809394427"
HUB2_CBE = "0456789123"


def make_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str, *ous: str, org: str = "Test Organisation") -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou) for ou in ous),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ]
    return x509.Name(attributes)


def pkcs12_bytes(
    key: PrivateKeyTypes,
    cert: x509.Certificate,
    password: str | bytes | None,
    *,
    chain: tuple[x509.Certificate, ...] = (),
) -> bytes:
    """``key`` + ``cert`` (+ ``chain``) as a PKCS#12 blob protected by ``password``."""
    secret = password.encode() if isinstance(password, str) else password
    encryption = BestAvailableEncryption(secret) if secret else NoEncryption()
    return _pkcs12.serialize_key_and_certificates(
        b"authentication", key, cert, list(chain) or None, encryption
    )  # type: ignore[arg-type]


def pkcs12(key: PrivateKeyTypes, cert: x509.Certificate, password: str | bytes | None) -> bytes:
    """``key`` + ``cert`` as a PKCS#12 blob protected by ``password`` (no password when empty)."""
    return pkcs12_bytes(key, cert, password)


@dataclass
class TestPki:
    """Keys, certificates and the PKCS#12 files of one generated PKI (see the module docstring)."""

    __test__ = False  # not a pytest test class

    directory: Path
    password: str
    ca_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate
    org_key: rsa.RSAPrivateKey
    org_cert: x509.Certificate
    org_p12: Path
    expired_cert: x509.Certificate
    expired_p12: Path
    future_cert: x509.Certificate
    future_p12: Path
    sts_key: rsa.RSAPrivateKey
    sts_cert: x509.Certificate
    hub_key: rsa.RSAPrivateKey
    hub_cert: x509.Certificate
    hub2_key: rsa.RSAPrivateKey
    hub2_cert: x509.Certificate
    org_cbe: str = ORG_CBE
    hub_cbe: str = HUB_CBE
    hub2_cbe: str = HUB2_CBE
    _serial: list[int] = field(default_factory=lambda: [1000], repr=False)

    def issue(
        self,
        key: PrivateKeyTypes,
        subject: x509.Name,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        usage: str = "sign",
        issuer_key: PrivateKeyTypes | None = None,
        issuer_cert: x509.Certificate | None = None,
    ) -> x509.Certificate:
        """A certificate for ``key`` signed by the test CA (or ``issuer_*``); ``usage`` is ``sign``
        (digital signature, client auth) or ``encrypt`` (key encipherment, as an ETK)."""
        self._serial[0] += 1
        return _certificate(
            key,
            subject,
            issuer_key or self.ca_key,
            (issuer_cert or self.ca_cert).subject,
            serial=self._serial[0],
            not_before=not_before,
            not_after=not_after,
            usage=usage,
        )

    def pkcs12(self, key: PrivateKeyTypes, cert: x509.Certificate, password: str | bytes | None) -> bytes:
        return pkcs12_bytes(key, cert, password, chain=(self.ca_cert,))

    def org_name(self, cbe: str = ORG_CBE) -> x509.Name:
        return _name(f"CBE={cbe}", "eHealth-platform Belgium", f"CBE={cbe}", org="Test Care Organisation")


def _certificate(
    key: PrivateKeyTypes,
    subject: x509.Name,
    issuer_key: PrivateKeyTypes,
    issuer: x509.Name,
    *,
    serial: int,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    usage: str = "sign",
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())  # type: ignore[union-attr]
        .serial_number(serial)
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
    )
    if usage == "ca":
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(_key_usage(cert_sign=True), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        if usage == "encrypt":
            builder = builder.add_extension(_key_usage(encipher=True), critical=True)
        else:
            builder = builder.add_extension(_key_usage(sign=True), critical=True)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
    return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


def _key_usage(*, sign: bool = False, encipher: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=encipher,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_pki(directory: Path, *, password: str = "test-password") -> TestPki:
    """Generate the PKI and write ``org.p12``, ``expired.p12`` and ``future.p12`` to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, org_key, sts_key, hub_key, hub2_key = (make_key() for _ in range(5))
    ca_name = _name("Test eHealth CA", org="Test Federal Government")
    ca_cert = _certificate(ca_key, ca_name, ca_key, ca_name, serial=1, usage="ca")
    org_subject = _name(
        f"CBE={ORG_CBE}", "eHealth-platform Belgium", f"CBE={ORG_CBE}", org="Test Care Organisation"
    )
    org_cert = _certificate(org_key, org_subject, ca_key, ca_name, serial=2)
    expired_cert = _certificate(
        org_key,
        org_subject,
        ca_key,
        ca_name,
        serial=3,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=35),
    )
    future_cert = _certificate(
        org_key,
        org_subject,
        ca_key,
        ca_name,
        serial=4,
        not_before=now + dt.timedelta(days=10),
        not_after=now + dt.timedelta(days=400),
    )
    sts_name = _name("Test eHealth STS", "eHealth-platform Belgium", org="Test Federal Government")
    sts_cert = _certificate(sts_key, sts_name, ca_key, ca_name, serial=5)
    hub_name = _name(f"CBE={HUB_CBE}", "eHealth-platform Belgium", f"CBE={HUB_CBE}", org="Test Hub")
    hub_cert = _certificate(hub_key, hub_name, ca_key, ca_name, serial=6, usage="encrypt")
    hub2_name = _name(f"CBE={HUB2_CBE}", "eHealth-platform Belgium", f"CBE={HUB2_CBE}", org="Test Hub 2")
    hub2_cert = _certificate(hub2_key, hub2_name, ca_key, ca_name, serial=7, usage="encrypt")

    paths = {}
    for name, cert in (("org", org_cert), ("expired", expired_cert), ("future", future_cert)):
        path = directory / f"{name}.p12"
        path.write_bytes(pkcs12_bytes(org_key, cert, password, chain=(ca_cert,)))
        path.chmod(0o600)
        paths[name] = path
    return TestPki(
        directory=directory,
        password=password,
        ca_key=ca_key,
        ca_cert=ca_cert,
        org_key=org_key,
        org_cert=org_cert,
        org_p12=paths["org"],
        expired_cert=expired_cert,
        expired_p12=paths["expired"],
        future_cert=future_cert,
        future_p12=paths["future"],
        sts_key=sts_key,
        sts_cert=sts_cert,
        hub_key=hub_key,
        hub_cert=hub_cert,
        hub2_key=hub2_key,
        hub2_cert=hub2_cert,
    )
