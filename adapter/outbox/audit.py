"""The audit trail as FHIR AuditEvent resources.

Stored rows stay small and free of personal data (who = the client id, what = a delivery id or
idempotency key); this module only renders them, so exports are a pure transformation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

AUDIT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ACTION_SYSTEM = "https://becare.dev/fhir/CodeSystem/audit-action"
OBSERVER = "becare"

# AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure, 12 major failure
_OUTCOME_CODES = {"success": "0", "rejected": "4", "failure": "8", "error": "12"}
# AuditEvent.action: C create, R read, U update, D delete, E execute
_ACTION_CODES = {"validate": "E", "accept": "C", "deliver": "E", "retry": "U", "block": "E", "dead": "E"}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    recorded_at: float
    action: str
    who: str | None
    what: str | None
    outcome: str
    detail: str | None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_event(record: AuditRecord) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{record.id}",
        "type": {"system": AUDIT_TYPE_SYSTEM, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": ACTION_SYSTEM, "code": record.action}],
        "action": _ACTION_CODES.get(record.action, "E"),
        "recorded": iso(record.recorded_at),
        "outcome": _OUTCOME_CODES.get(record.outcome, "8"),
        "agent": [
            {
                "who": {"display": record.who or "anonymous"},
                "requestor": record.action in ("validate", "accept", "retry"),
            }
        ],
        "source": {"observer": {"display": OBSERVER}},
    }
    if record.outcome != "success" and record.detail:
        event["outcomeDesc"] = record.detail
    if record.what:
        entity: dict[str, Any] = {"what": {"identifier": {"value": record.what}}}
        if record.detail and record.outcome == "success":
            entity["description"] = record.detail
        event["entity"] = [entity]
    return event


def audit_bundle(records: list[AuditRecord]) -> dict[str, Any]:
    """A ``collection`` Bundle of AuditEvents, oldest first."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:becare:audit:{r.id}", "resource": audit_event(r)} for r in records],
    }
