"""Errors of the eHealth security layer.

Every error carries ``reason``: one line a human can act on. It never holds personal data (no
SSIN, no names from certificates) and never a secret (no password, no key material): these
messages end up in logs and in outbox records.
"""

from __future__ import annotations


class EHealthError(Exception):
    """Base class; ``reason`` is the one-line message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CredentialError(EHealthError):
    """The PKCS#12 credential cannot be used: missing file, wrong or unset password, no private
    key, certificate expired or not yet valid."""


class StsError(EHealthError):
    """The STS could not issue a token: unreachable, SOAP fault (its faultstring is in ``reason``),
    or a reply that is not a usable RSTR. ``retryable`` says whether trying later may help."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


class EtkError(EHealthError):
    """No usable ETK: depot unreachable, identifier unknown, or an invalid / expired ETK."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


class SecurityError(EHealthError):
    """A signature, token, timestamp or encrypted payload did not verify / decrypt."""
