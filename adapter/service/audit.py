"""Audit writing off the request path.

Validations are frequent and their audit rows are not what makes an acceptance durable, so they
are queued and written by one background thread (a request never waits for a SQLite fsync to
log that it was validated). Acceptances are written synchronously, before the 202. The store is
anything with the outbox's ``record_audit`` / ``audit_events_as_fhir`` methods.

Texts are masked here, before any store sees them: the outbox masks what it stores, but the
in-memory store of a validate-only service did not, and an audit ``what`` names the content
(``Patient/<id>``, ``Bundle?identifier=...``), where an SSIN can appear.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from adapter.outbox.masking import mask

log = logging.getLogger("becare.service.audit")


class AuditStore(Protocol):
    def record_audit(
        self,
        action: str,
        *,
        who: str | None,
        what: str | None,
        outcome: str,
        detail: str | None = None,
        durable: bool = True,
    ) -> None: ...

    def audit_events_as_fhir(self, *, since: float | None = None, limit: int = 1000) -> dict[str, Any]: ...


def _masked(text: str | None, limit: int) -> str | None:
    """The outbox's masking (SSIN-like numbers, FHIR name values), with its length limits."""
    return (mask(text, limit=limit) or None) if text else text


@dataclass(frozen=True, slots=True)
class _Event:
    action: str
    who: str | None
    what: str | None
    outcome: str
    detail: str | None


class MemoryAuditStore:
    """An in-process store for an app without a database (tests, validate-only use)."""

    def __init__(self) -> None:
        self.events: list[_Event] = []
        self._lock = threading.Lock()

    def record_audit(
        self,
        action: str,
        *,
        who: str | None,
        what: str | None,
        outcome: str,
        detail: str | None = None,
        durable: bool = True,
    ) -> None:
        with self._lock:
            self.events.append(_Event(action, who, what, outcome, detail))

    def audit_events_as_fhir(self, *, since: float | None = None, limit: int = 1000) -> dict[str, Any]:
        from adapter.outbox.audit import AuditRecord, audit_bundle

        with self._lock:
            events = list(self.events[:limit])
        now = time.time()
        records = [
            AuditRecord(i + 1, now, e.action, e.who, e.what, e.outcome, e.detail)
            for i, e in enumerate(events)
        ]
        return audit_bundle(records)


class AuditWriter:
    """Queues events for a background thread; ``flush`` waits until all queued ones are stored."""

    def __init__(self, store: AuditStore, *, max_queue: int = 10_000) -> None:
        self.store = store
        self._queue: queue.Queue[_Event | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        *,
        who: str | None,
        what: str | None,
        outcome: str,
        detail: str | None = None,
        sync: bool = False,
    ) -> None:
        event = _Event(action, _masked(who, 200), _masked(what, 500), outcome, _masked(detail, 300))
        if sync:
            self._write(event, durable=True)
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:  # back-pressure: better a slower request than a lost audit row
            self._write(event, durable=False)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="becare-audit", daemon=True)
                self._thread.start()

    def _write(self, event: _Event, *, durable: bool) -> None:
        """A queued event lives in memory until written, so waiting for the disk to commit it
        adds no durability (``durable=False``); a synchronous one (an acceptance) does."""
        try:
            self.store.record_audit(
                event.action,
                who=event.who,
                what=event.what,
                outcome=event.outcome,
                detail=event.detail,
                durable=durable,
            )
        except Exception:
            log.exception("could not store an audit event (action %s)", event.action)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._write(event, durable=False)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        self._thread = None

    def bundle(self, limit: int = 1000, since: float | None = None) -> dict[str, Any]:
        self.flush()
        return self.store.audit_events_as_fhir(since=since, limit=limit)
