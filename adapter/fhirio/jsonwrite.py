"""FHIR JSON writer.

Decimals must come out exactly as they were read (``1.50`` stays ``1.50``, a FHIR decimal's
precision is significant), which the stdlib encoder cannot do for ``Decimal``. Rather than a
slow pure-Python encoder, each Decimal is written as a unique placeholder string by the C
encoder and substituted afterwards; the random token makes a collision with real content
impossible in practice.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any


def decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot write the non-finite decimal {value} in FHIR")
    return str(value)


def to_json(resource: dict[str, Any], *, pretty: bool = True, sort_keys: bool = False) -> str:
    """Serialise the internal form as FHIR JSON (UTF-8 text, keys in their dict order unless
    ``sort_keys``)."""
    token = "\x1edec" + secrets.token_hex(8) + ":"
    decimals: list[Decimal] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            decimals.append(obj)
            return f"{token}{len(decimals) - 1}"
        raise TypeError(f"cannot write a {type(obj).__name__} in FHIR JSON")

    text = json.dumps(
        resource,
        indent=2 if pretty else None,
        separators=(",", ": ") if pretty else (",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        sort_keys=sort_keys,
        default=default,
    )
    if decimals:
        quoted = json.dumps(token, ensure_ascii=False)[:-1]  # the token as the encoder escapes it
        pattern = re.compile(re.escape(quoted) + r'(\d+)"')
        text = pattern.sub(lambda m: decimal_text(decimals[int(m.group(1))]), text)
    return text
