"""Keep personal data out of logs: SSINs and names are masked before any handler writes.

Installed on handlers (not loggers) so records propagated from libraries (uvicorn's access log,
httpx) are masked too. Masking works on the final message text, whatever produced it.
"""

from __future__ import annotations

import logging
import re

# An SSIN (rijksregisternummer / numéro de registre national): 11 digits, often written
# YY.MM.DD-SSS.CC. Any 11-digit run is masked: a false positive costs a log detail, a miss a leak.
_SSIN = re.compile(r"(?<!\d)\d{2}[.\s]?\d{2}[.\s]?\d{2}[-.\s]?\d{3}[.\s]?\d{2}(?!\d)")
# Name parts in FHIR JSON / Python reprs / key=value text: "family": "Peeters", given=['Jan'].
_NAME_KEYS = r"(?:family|given|prefix|suffix|name|firstname|lastname|first_name|last_name|display)"
_NAME_VALUE = re.compile(
    r"""(?P<key>["']?\b""" + _NAME_KEYS + r"""\b["']?\s*[:=]\s*)"""
    r"""(?P<value>\[[^\]]*\]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]]+)""",
    re.IGNORECASE,
)
# Names in XML: <family value="Peeters"/>, <given value="Jan"/>
_XML_NAME = re.compile(r"""(<(?:family|given|prefix|suffix|text)\s+value=)("[^"]*"|'[^']*')""", re.IGNORECASE)

MASK = "***"


def mask_personal_data(text: str) -> str:
    """Replace SSINs and name values with ``***`` (pure; used by the filter and the tests)."""
    text = _SSIN.sub(MASK, text)
    text = _NAME_VALUE.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return _XML_NAME.sub(lambda m: f'{m.group(1)}"{MASK}"', text)


class PersonalDataFilter(logging.Filter):
    """Rewrites each record's message with personal data masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: keep the raw template rather than lose the record
            text = str(record.msg)
        record.msg = mask_personal_data(text)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
        return True


def install(*logger_names: str) -> PersonalDataFilter:
    """Add the filter to every handler of the root logger and the named loggers."""
    flt = PersonalDataFilter()
    for name in ("", *logger_names):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt
