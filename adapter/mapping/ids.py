"""Deterministic resource ids for the mapper.

The same document must give a byte-identical bundle, so no clock and no random uuid is used:
each fullUrl is a uuid5 of the document's content hash and the resource's key. The content hash
(not the SSIN) seeds the uuids so that a fullUrl seen in a log does not stand for a person.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

MAPPING_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://becare.dev/fhir/mapping")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def document_namespace(document_data: Any) -> uuid.UUID:
    digest = hashlib.sha256(canonical_json(document_data).encode("utf-8")).hexdigest()
    return uuid.uuid5(MAPPING_NAMESPACE, digest)


def full_url(namespace: uuid.UUID, resource_type: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(namespace, f'{resource_type}/{key}')}"
