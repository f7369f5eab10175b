"""Durable outbox: accepted bundles, their delivery attempts and the audit trail."""

from .keys import canonical_json, content_hash, idempotency_key
from .masking import mask, mask_ssin
from .store import (
    Attempt,
    AttemptResult,
    ClaimedItem,
    Delivery,
    Outbox,
    OutboxError,
)

__all__ = [
    "Attempt",
    "AttemptResult",
    "ClaimedItem",
    "Delivery",
    "Outbox",
    "OutboxError",
    "canonical_json",
    "content_hash",
    "idempotency_key",
    "mask",
    "mask_ssin",
]
