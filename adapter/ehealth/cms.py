"""CMS EnvelopedData for a recipient's ETK (encryption certificate): AES-256-CBC content
encryption, RSA key transport. All cryptography is ``cryptography``'s (OpenSSL underneath)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from adapter.ehealth.errors import SecurityError

__all__ = ["decrypt", "encrypt"]


def encrypt(data: bytes, recipient: x509.Certificate) -> bytes:
    """``data`` as DER CMS EnvelopedData that only ``recipient``'s private key opens."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise SecurityError("encryption failed: the recipient's certificate has no RSA key")
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(data)
        .set_content_encryption_algorithm(algorithms.AES256)
        .add_recipient(recipient)
        .encrypt(serialization.Encoding.DER, [])
    )


def decrypt(der: bytes, key: PrivateKeyTypes, certificate: x509.Certificate) -> bytes:
    """The content of DER EnvelopedData ``der`` addressed to ``certificate``; ``SecurityError``
    when it is not EnvelopedData, not for this recipient, or does not decrypt."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecurityError("decryption failed: only RSA recipient keys are supported")
    try:
        return pkcs7.pkcs7_decrypt_der(der, certificate, key, [])
    except ValueError as exc:
        text = str(exc).lower()
        if "no recipient" in text:
            why = "the message is not encrypted for this certificate"
        elif "not an envelopeddata" in text or "parsing" in text:
            why = "not a CMS EnvelopedData message"
        else:
            why = "wrong key or corrupted content"
        raise SecurityError(f"decryption failed: {why}") from None
    except Exception as exc:
        raise SecurityError(f"decryption failed: {type(exc).__name__}") from None
