"""What the outbox hands out: deliveries with their attempt logs, the rows a worker claims, the
outcome of one attempt, and the error a request the outbox cannot honour raises."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .audit import iso

Outcome = Literal["delivered", "retry", "dead", "blocked"]


class OutboxError(Exception):
    """A request the outbox cannot honour; ``code`` is ``not-found``, ``conflict`` or ``config``."""

    def __init__(self, message: str, code: str = "conflict", *, delivery_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.delivery_id = delivery_id  # the delivery a conflict is with, when there is one


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: float
    finished_at: float | None
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: float | None
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started": iso(self.started_at),
            "finished": iso(self.finished_at),
            "outcome": self.outcome,
            "httpStatus": self.http_status,
            "error": self.error,
            "durationMs": None if self.duration_ms is None else round(self.duration_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    idempotency_key: str
    destination: str
    group_id: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    last_error: str | None
    last_status_code: int | None
    client: str | None
    region: str | None
    route_via: str | None
    reason: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    attempt_log: tuple[Attempt, ...] = ()
    related: tuple[str, ...] = ()  # the other deliveries of the same submission (other destinations)

    def to_json(self) -> dict[str, Any]:
        """The shape served at ``GET /deliveries/{id}``."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "destination": self.destination or None,
            "idempotencyKey": self.idempotency_key,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "created": iso(self.created_at),
            "updated": iso(self.updated_at),
            "delivered": iso(self.delivered_at),
            "nextAttempt": iso(self.next_attempt_at) if self.status == "pending" else None,
            "lastError": self.last_error,
            "lastHttpStatus": self.last_status_code,
            "region": self.region,
            "routedBy": self.route_via,
            "reason": self.reason,
            "related": list(self.related),
            "attemptLog": [a.to_json() for a in self.attempt_log],
        }
        outcome = self.operation_outcome()
        if outcome is not None:
            out["outcome"] = outcome
        return out

    def operation_outcome(self) -> dict[str, Any] | None:
        """Why the delivery is not (yet) delivered, as the FHIR OperationOutcome a caller reads:
        blocked (an operator or the person must act), dead (the receiver refused it), or pending
        after a failed attempt (it will be retried)."""
        text = self.reason if self.status == "blocked" and self.reason else self.last_error
        if self.status == "delivered" or not text:
            return None
        severity, code = {"blocked": ("error", "business-rule"), "dead": ("error", "exception")}.get(
            self.status, ("warning", "transient"))
        where = f" to {self.destination}" if self.destination else ""
        issue = {"severity": severity, "code": code, "diagnostics": text,
                 "details": {"text": f"delivery{where}: {self.status}"}}
        return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    """A row a worker holds under lease; ``attempt`` is this attempt's number (1-based).

    ``reclaimed``: the claim took over an expired lease (of a row without a replay or unknown
    mark, which takes precedence in ``claimed_from``). ``outcome_unknown``: an earlier
    attempt's worker stopped after sending, before it heard back (the receiver may hold it).
    ``replayed``: an operator replayed it (``retry``), so attempts before the replay exist."""

    id: str
    destination: str
    idempotency_key: str
    attempt: int
    max_attempts: int
    payload_text: str = field(repr=False)
    reclaimed: bool = False
    outcome_unknown: bool = False
    replayed: bool = False

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_text)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one delivery attempt came to, for ``Outbox.complete_many``. ``unknown``: the request
    went out whole and no answer came back (logged as outcome ``unknown``)."""

    item: ClaimedItem
    outcome: Outcome
    started_at: float
    finished_at: float
    http_status: int | None = None
    error: str | None = None
    retry_at: float | None = None
    unknown: bool = False


def row_to_delivery(row: Any, log_rows: Sequence[Any] = (), related: Sequence[str] = ()) -> Delivery:
    return Delivery(
        id=row.id,
        idempotency_key=row.idempotency_key,
        destination=row.destination,
        group_id=row.group_id,
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        client=row.client,
        region=row.region,
        route_via=row.route_via,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
        attempt_log=tuple(
            Attempt(a.number, a.started_at, a.finished_at, a.outcome, a.http_status, a.error, a.duration_ms,
                    a.worker)
            for a in log_rows
        ),
        related=tuple(related),
    )
