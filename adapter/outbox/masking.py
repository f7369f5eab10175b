"""Masking of personal data in text that may reach logs, errors or the audit trail.

Hub replies and exception messages can echo what we sent; an SSIN or a name must never
leave the payload column in clear text, so every free text we store or log goes through here.
"""

from __future__ import annotations

import re

# SSIN / INSZ / NISS: 11 digits, often written 85.07.30-033.28 or 850730 033 28.
_SSIN = re.compile(r"(?<!\d)\d{2}[.\s]?\d{2}[.\s]?\d{2}[-\s]?\d{3}[.\s]?\d{2}(?!\d)")
# Names in FHIR JSON that a hub may echo back: "family": "..." / "given": ["..."] / "text": "..."
_NAME_FIELDS = re.compile(r'("(?:family|given|text|name|display)"\s*:\s*)(\[[^\]]*\]|"[^"]*")')


def mask(text: str | None, *, limit: int = 300) -> str:
    """Return ``text`` with SSIN-like numbers and FHIR name values masked, cut to ``limit``."""
    if not text:
        return ""
    masked = _SSIN.sub("***********", text)
    masked = _NAME_FIELDS.sub(lambda m: m.group(1) + '"***"', masked)
    if len(masked) > limit:
        masked = masked[: limit - 1] + "…"
    return masked


def mask_ssin(ssin: str | None) -> str:
    """Keep the last two digits only, enough to tell people apart in an operator's view."""
    if not ssin:
        return ""
    digits = re.sub(r"\D", "", ssin)
    return "*" * max(len(digits) - 2, 0) + digits[-2:]
