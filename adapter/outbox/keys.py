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


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def canonical_json(resource: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept: stable across producers."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def content_hash(resource: Any) -> str:
    return hashlib.sha256(canonical_json(resource).encode("utf-8")).hexdigest()


def idempotency_key(bundle: dict[str, Any]) -> str:
    """``system|value`` of ``Bundle.identifier`` when it has a value, else ``sha256:<hex>``."""
    ident = bundle.get("identifier") if isinstance(bundle, dict) else None
    if isinstance(ident, dict):
        value = ident.get("value")
        if isinstance(value, str) and value.strip():
            system = ident.get("system") if isinstance(ident.get("system"), str) else ""
            return f"{system}|{value.strip()}"
    return "sha256:" + content_hash(bundle)
