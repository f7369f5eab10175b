"""Belgian identifier checks (IC-ID-1): pure functions, no FHIR knowledge.

BeCore's invariants only check the digit count; the check digits are where real typing
errors show up (a swapped pair of digits keeps the length), so the rulebook checks them too.
"""

from __future__ import annotations

import re
from typing import Any, Literal

CORE_NS = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
LEGACY_NS = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/"

SSIN_SYSTEM = CORE_NS + "ssin"

# Naming systems checked, by their last path segment, and the kind of number they carry.
_KINDS: dict[str, str] = {
    "ssin": "ssin",
    "nihdi": "nihdi",
    "nihdi-professional": "nihdi",
    "nihdi-organization": "nihdi",
    "cbe": "cbe",
}

IdKind = Literal["ssin", "nihdi", "cbe"]
Verdict = Literal["ok", "invalid", "nihdi-8"]

_DIGITS = re.compile(r"\d+")


def classify_system(system: Any) -> tuple[IdKind, bool] | None:
    """Return (kind, legacy) for a Belgian identifier system we check, else None (also for a
    system that is not a string: the structure checker reports that)."""
    if not isinstance(system, str) or not system:
        return None
    for prefix, legacy in ((CORE_NS, False), (LEGACY_NS, True)):
        if system.startswith(prefix):
            kind = _KINDS.get(system[len(prefix) :])
            if kind:
                return kind, legacy  # type: ignore[return-value]
    return None


def _mod97_check(body: int, check: int) -> bool:
    return 97 - (body % 97) == check


def ssin_valid(value: str) -> bool:
    """11 digits; the last two are 97 - (first nine mod 97), or, for people born in or after
    2000, 97 - ((2 000 000 000 + first nine) mod 97)."""
    if len(value) != 11 or not _DIGITS.fullmatch(value):
        return False
    body, check = int(value[:9]), int(value[9:])
    return _mod97_check(body, check) or _mod97_check(2_000_000_000 + body, check)


def cbe_valid(value: str) -> bool:
    """10 digits starting with 0 or 1; the last two are 97 - (first eight mod 97)."""
    if len(value) != 10 or not _DIGITS.fullmatch(value) or value[0] not in "01":
        return False
    return _mod97_check(int(value[:8]), int(value[8:]))


def nihdi_verdict(value: str) -> Verdict:
    """11 digits is the current form; 8 digits is the deprecated short form (a warning)."""
    if not _DIGITS.fullmatch(value or ""):
        return "invalid"
    if len(value) == 11:
        return "ok"
    if len(value) == 8:
        return "nihdi-8"
    return "invalid"


def check_identifier(kind: IdKind, value: str) -> Verdict:
    if kind == "ssin":
        return "ok" if ssin_valid(value) else "invalid"
    if kind == "cbe":
        return "ok" if cbe_valid(value) else "invalid"
    return nihdi_verdict(value)


def make_ssin(birth: str, serial: int) -> str:
    """Build a valid SSIN from a birth date ``YYYY-MM-DD`` and a serial (1-997): for samples and tests."""
    year, month, day = birth.split("-")
    body = f"{year[2:]}{month}{day}{serial:03d}"
    base = int(body) + (2_000_000_000 if int(year) >= 2000 else 0)
    return f"{body}{97 - base % 97:02d}"


def make_cbe(body: int) -> str:
    """Build a valid CBE number from an 8-digit body starting with 0 or 1."""
    text = f"{body:08d}"
    return f"{text}{97 - body % 97:02d}"


def make_nihdi(base: int, qualification: str) -> str:
    """Build a professional NIHDI number: 6-digit base, 2 check digits, 3-digit qualification."""
    return f"{base:06d}{97 - base % 97:02d}{qualification}"
