"""Masking of personal data in text that may reach logs, errors or the audit trail.

Hub replies and exception messages can echo what we sent; an SSIN or a name must never
leave the payload column in clear text, so every free text we store or log goes through here.
"""

from __future__ import annotations

import re

# SSIN / INSZ / NISS: 11 digits, often written 85.07.30-033.28, 85.07.30.033.28 or 850730 033 28.
SSIN_PATTERN = re.compile(r"(?<!\d)\d{2}[.\s]?\d{2}[.\s]?\d{2}[-.\s]?\d{3}[.\s]?\d{2}(?!\d)")
# Names in FHIR JSON that a hub may echo back: "family": "..." / "given": ["..."] / "text": "..."
_NAME_FIELDS = re.compile(r'("(?:family|given|text|name|display)"\s*:\s*)(\[[^\]]*\]|"[^"]*")')


def mask(text: str | None, *, limit: int = 300) -> str:
    """Return ``text`` with SSIN-like numbers and FHIR name values masked, cut to ``limit``."""
    if not text:
        return ""
    masked = SSIN_PATTERN.sub("***********", text)
    masked = _NAME_FIELDS.sub(lambda m: m.group(1) + '"***"', masked)
    if len(masked) > limit:
        masked = masked[: limit - 1] + "…"
    return masked


def mask_audit(
    who: str | None, what: str | None, detail: str | None
) -> tuple[str | None, str | None, str | None]:
    """An audit event's texts as every audit store keeps them: masked, ``who`` cut to 200
    characters (a client id), ``what`` to 500 (a delivery id, a reference, a search), ``detail``
    to 300. An absent text (None, "") stays as it is."""
    return (
        mask(who, limit=200) if who else who,
        mask(what, limit=500) if what else what,
        mask(detail, limit=300) if detail else detail,
    )


def mask_ssin(ssin: str | None) -> str:
    """Keep the last two digits only, enough to tell people apart in an operator's view."""
    if not ssin:
        return ""
    digits = re.sub(r"\D", "", ssin)
    return "*" * max(len(digits) - 2, 0) + digits[-2:]
