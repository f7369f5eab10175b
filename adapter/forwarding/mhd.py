"""IHE MHD ITI-65 "Provide Document Bundle" around a becare Bundle (pure).

The hubs' proposed FHIR model is document sharing (MHD), not a FHIR store: the care situation
travels as a document (a Binary holding our Bundle) described by a DocumentReference and a
SubmissionSet List, all in one transaction, following the MHD Minimal profiles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from adapter.outbox.keys import canonical_json

from .region import SSIN_SYSTEMS, person

MHD = "https://profiles.ihe.net/ITI/MHD"
PROVIDE_BUNDLE_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"
SUBMISSION_SET_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Minimal.SubmissionSet"
DOCUMENT_REFERENCE_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Minimal.DocumentReference"
LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
SOURCE_ID_EXT = f"{MHD}/StructureDefinition/ihe-sourceId"
DEFAULT_SOURCE_ID = "urn:becare:source"
BECARE_BUNDLE_PROFILE = "https://becare.dev/fhir/StructureDefinition/becare-bundle"
CONTENT_TYPE = "application/fhir+json"
# LOINC 18776-5 "Plan of care note": the document type closest to a shared care plan
DOC_TYPE = {"system": "http://loinc.org", "code": "18776-5", "display": "Plan of care note"}


def _uuid_from(key: str, salt: str) -> str:
    """Deterministic UUIDs: a retried ITI-65 carries the same uniqueIds, so a hub can dedupe."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"becare:{salt}:{key}"))


def _subject(bundle: dict[str, Any]) -> dict[str, Any] | None:
    patient = person(bundle)
    for ident in (patient or {}).get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") in SSIN_SYSTEMS and ident.get("value"):
            return {"identifier": {"system": SSIN_SYSTEMS[0], "value": ident["value"]}}
    return None


def provide_document_bundle(
    bundle: dict[str, Any],
    *,
    idempotency_key: str,
    source_id: str | None = None,
    now: datetime | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """Wrap ``bundle`` as an ITI-65 transaction: SubmissionSet List, DocumentReference, Binary."""
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    if data is None:
        data = canonical_json(bundle).encode("utf-8")
    binary_url = f"urn:uuid:{_uuid_from(idempotency_key, 'binary')}"
    docref_url = f"urn:uuid:{_uuid_from(idempotency_key, 'docref')}"
    list_url = f"urn:uuid:{_uuid_from(idempotency_key, 'submissionset')}"
    subject = _subject(bundle)

    binary = {"resourceType": "Binary", "contentType": CONTENT_TYPE, "data": base64.b64encode(data).decode()}
    docref: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCUMENT_REFERENCE_PROFILE]},
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": docref_url},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": docref_url}],
        "status": "current",
        "type": {"coding": [DOC_TYPE]},
        "date": when,
        "content": [
            {
                "attachment": {
                    "contentType": CONTENT_TYPE,
                    "url": binary_url,
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": "becare care situation bundle",
                },
                "format": {"system": "urn:ietf:rfc:3986", "code": BECARE_BUNDLE_PROFILE},
            }
        ],
    }
    submission_set: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [SUBMISSION_SET_PROFILE]},
        "extension": [
            {"url": SOURCE_ID_EXT, "valueIdentifier": {"value": source_id or DEFAULT_SOURCE_ID}}
        ],
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986", "value": list_url}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
        "date": when,
        "entry": [{"item": {"reference": docref_url}}],
    }
    if subject is not None:
        docref["subject"] = subject
        submission_set["subject"] = subject
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [PROVIDE_BUNDLE_PROFILE]},
        "type": "transaction",
        "entry": [
            {"fullUrl": list_url, "resource": submission_set, "request": {"method": "POST", "url": "List"}},
            {"fullUrl": docref_url, "resource": docref,
             "request": {"method": "POST", "url": "DocumentReference"}},
            {"fullUrl": binary_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
        ],
    }


def unwrap(provide_bundle: dict[str, Any]) -> dict[str, Any] | None:
    """The becare Bundle inside an ITI-65 bundle (used by the mock hub and tests)."""
    for entry in provide_bundle.get("entry") or []:
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Binary" and res.get("data"):
            return json.loads(base64.b64decode(res["data"]))
    return None
