"""Idempotency keys: what makes two submissions "the same" for delivery purposes.

A Bundle that carries an ``identifier`` is keyed by it (``system|value``), so a corrected resend
with the same identifier is still one logical submission. Without one we key by the SHA-256 of a
canonical JSON form, so byte-level differences (key order, whitespace) do not create duplicates.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import orjson

from adapter.fhirio.jsonwrite import decimal_text, to_json

_SORTED = orjson.OPT_SORT_KEYS


def _fragment(value: Any) -> Any:
    if isinstance(value, Decimal):
        # written as the number it was read as: "1.50" stays the JSON number 1.50
        return orjson.Fragment(decimal_text(value))
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def canonical_json(resource: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept, decimals exact: stable across
    producers, and the very text that is stored and forwarded.

    orjson writes it ten times faster than the stdlib; what orjson refuses (integers beyond 64
    bits, lone surrogates) goes through the stdlib writer, which yields the same text for the
    same input, so a key never depends on which writer ran.
    """
    try:
        return orjson.dumps(resource, default=_fragment, option=_SORTED).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return _stdlib_canonical(resource)


def _stdlib_canonical(resource: Any) -> str:
    try:
        return to_json(resource, pretty=False, sort_keys=True)
    except ValueError:  # a non-finite float/decimal: keep the old, lossless-enough spelling
        return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(resource: Any) -> str:
    return hashlib.sha256(canonical_json(resource).encode("utf-8", "surrogatepass")).hexdigest()


def idempotency_key(bundle: dict[str, Any]) -> str:
    """``system|value`` of ``Bundle.identifier`` when it has a value, else ``sha256:<hex>``."""
    ident = bundle.get("identifier") if isinstance(bundle, dict) else None
    if isinstance(ident, dict):
        value = ident.get("value")
        if isinstance(value, str) and value.strip():
            system = ident.get("system") if isinstance(ident.get("system"), str) else ""
            return f"{system}|{value.strip()}"
    return "sha256:" + content_hash(bundle)
