"""The organisation's eHealth credential (certificate + private key) from a PKCS#12 file.

The password comes from an environment variable named by the caller, never from a config file
or an argument that could end up in a process list. Validity is checked when loading, so an
expired certificate fails at start-up with one clear line instead of as an STS fault later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs12

from adapter.ehealth.errors import CredentialError

__all__ = ["Credential", "load_pkcs12", "load_pkcs12_bytes"]


@dataclass(frozen=True)
class Credential:
    """A private key, its certificate, the rest of the chain found in the file, and where it came
    from (``source``: a file name or a label, for messages)."""

    key: PrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    source: str

    def __repr__(self) -> str:  # never print key material
        return f"Credential(source={self.source!r}, serial={self.certificate.serial_number:x})"


def load_pkcs12(
    path: str | os.PathLike[str], *, password_env: str, now: datetime | None = None
) -> Credential:
    """Load ``path`` with the password held in the environment variable ``password_env``."""
    source = Path(path).name
    password = os.environ.get(password_env)
    if password is None:
        raise CredentialError(f"{source}: the password environment variable {password_env} is not set")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CredentialError(f"{source}: PKCS#12 file not found") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CredentialError(f"{source}: cannot read the PKCS#12 file ({why})") from None
    return load_pkcs12_bytes(data, password.encode("utf-8") or None, source=source, now=now)


def load_pkcs12_bytes(
    data: bytes, password: bytes | None, *, source: str, now: datetime | None = None
) -> Credential:
    """Load a PKCS#12 blob; ``source`` names it in messages."""
    try:
        p12 = pkcs12.load_pkcs12(data, password)
    except ValueError:
        raise CredentialError(f"{source}: wrong password, or not a PKCS#12 file") from None
    except Exception as exc:  # unsupported algorithms and the like
        raise CredentialError(f"{source}: cannot read the PKCS#12 file ({type(exc).__name__})") from None
    if p12.key is None:
        raise CredentialError(f"{source}: the PKCS#12 file holds no private key")
    if p12.cert is None:
        raise CredentialError(f"{source}: the PKCS#12 file holds no certificate for its private key")
    certificate = p12.cert.certificate
    if _spki(p12.key.public_key()) != _spki(certificate.public_key()):
        raise CredentialError(f"{source}: the private key does not match the certificate")
    check_validity(certificate, now=now, what=f"{source}: certificate", error=CredentialError)
    return Credential(
        key=p12.key,
        certificate=certificate,
        chain=tuple(c.certificate for c in p12.additional_certs),
        source=source,
    )


def check_validity(
    certificate: x509.Certificate,
    *,
    now: datetime | None,
    what: str,
    error: type[Exception] = CredentialError,
) -> None:
    """Raise ``error`` unless ``certificate`` is valid at ``now`` (default: the current time)."""
    at = utc(now or datetime.now(UTC))
    if at < certificate.not_valid_before_utc:
        raise error(f"{what} is not valid yet (from {certificate.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ})")
    if at > certificate.not_valid_after_utc:
        raise error(f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
