"""Background delivery workers.

Each worker thread claims a small batch of due rows under a short lease, then for each row:
begins its attempt (one UPDATE fenced on ``claimed_by`` that extends the lease to a whole
attempt, skipping a row another worker took over meanwhile), sends it, and records the outcome
in the same short transaction that begins the next row. A worker killed mid-batch thus leaves at
most the one row it was sending with an unknown outcome (resolved by the next attempt through
the destination: lookup, conditional create or idempotency key); the rows it claimed but never
sent are free again once the short claim lease ends. Threads (not asyncio) because delivery is
blocking HTTP plus short database transactions, and the same code then runs inside the service
or as ``becare outbox work``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping

from adapter.outbox.masking import mask
from adapter.outbox.store import AttemptResult, ClaimedItem, Outbox

from .backoff import retry_delay
from .destinations import DeliveryResult, Destination, build_destinations
from .settings import DestinationConfig, Settings

log = logging.getLogger("becare.forwarding")


class Forwarder:
    def __init__(
        self,
        outbox: Outbox,
        destinations: Mapping[str, Destination],
        *,
        workers: int = 4,
        batch: int = 8,
        lease_seconds: float | None = None,
        claim_lease_seconds: float = 5.0,
        poll_interval: float = 0.5,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        retry_after_max: float = 3600.0,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.destinations = dict(destinations)
        self.workers = workers
        self.batch = batch
        # a destination that makes several calls per attempt (a hub: consent, link, lookup, put)
        # says how long one attempt may take in all
        timeouts = [
            getattr(d, "attempt_timeout", None) or d.config.timeout
            for d in self.destinations.values()
            if isinstance(getattr(d, "config", None), DestinationConfig)
        ]
        longest = max(timeouts, default=30.0)
        # A lease must outlive a whole attempt, or a slow but alive worker would be taken over.
        self.lease_seconds = lease_seconds or (2 * longest + 30.0)
        # Claimed rows wait their turn under this short lease until their attempt begins: the
        # rows a dead worker never sent are due again after it (capped by lease_seconds).
        self.claim_lease_seconds = claim_lease_seconds
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_max = retry_after_max
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._listening = False
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()
        self.stats = {"delivered": 0, "retry": 0, "dead": 0, "blocked": 0, "lost": 0, "unknown": 0,
                      "skipped": 0}

    @classmethod
    def from_settings(cls, settings: Settings, outbox: Outbox, **overrides: object) -> Forwarder:
        o = settings.outbox
        options: dict[str, object] = {
            "workers": o.workers, "batch": o.batch, "lease_seconds": o.lease_seconds,
            "poll_interval": o.poll_interval, "backoff_base": o.backoff_base,
            "backoff_cap": o.backoff_cap, "retry_after_max": o.retry_after_max,
        }
        options.update(overrides)
        return cls(outbox, build_destinations(settings.destinations), **options)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        if not self._listening:
            self.outbox.add_listener(self.notify)
            self._listening = True
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(f"{self.name}/{i}",), name=f"becare-worker-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the attempt in progress, hand back unsent claimed rows, then return."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.1))
        self._threads = []

    def close(self) -> None:
        self.stop()
        for dest in self.destinations.values():
            dest.close()

    def notify(self) -> None:
        """New work: wake one idle worker (waking all would only make them race for one row)."""
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def _idle(self) -> None:
        with self._wake:
            if self._pending_wakes:
                self._pending_wakes -= 1
                return
            self._wake.wait(self.poll_interval)
            if self._pending_wakes:
                self._pending_wakes -= 1

    # -- work --------------------------------------------------------------------------------
    def _run(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once(worker)
            except Exception as exc:  # database down, etc.: keep the worker alive
                log.error("worker %s: %s", worker, mask(repr(exc)))
                done = 0
                self._stop.wait(min(self.poll_interval * 4, 5.0))
            if done == 0:
                self._idle()
            elif done >= self.batch:
                self.notify()  # there may be more due: get a colleague going

    def run_once(self, worker: str | None = None) -> int:
        """Claim one batch and deliver it row by row; returns the rows claimed and handled.

        Each outcome is recorded as it happens, in the transaction that begins the next row (one
        short transaction per row): a kill mid-batch leaves only the row on the wire unrecorded.
        """
        worker = worker or f"{self.name}/sync"
        items = self.outbox.claim(worker, limit=self.batch,
                                  lease_seconds=min(self.claim_lease_seconds, self.lease_seconds))
        done: AttemptResult | None = None
        walked = 0
        try:
            for item in items:
                if self._stop.is_set():
                    break
                walked += 1
                statuses, began = self.outbox.advance(
                    worker, finished=[done] if done else (), start=item, lease_seconds=self.lease_seconds)
                if done is not None:
                    self._account(done, statuses[0])
                    done = None
                if not began:  # its short claim ran out and another worker took it over
                    with self._stats_lock:
                        self.stats["skipped"] += 1
                    continue
                done = self._deliver(item)
        finally:
            rest = items[walked:]
            if done is not None or rest:
                statuses, _ = self.outbox.advance(worker, finished=[done] if done else (), release=rest)
                if done is not None:
                    self._account(done, statuses[0])
        return walked

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver synchronously until nothing is due (tests, one-shot runs). True if drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                return True
        return False

    def _deliver(self, item: ClaimedItem) -> AttemptResult:
        started = time.time()
        dest = self.destinations.get(item.destination)
        if dest is None:
            result = DeliveryResult("dead", error=f"destination {item.destination!r} is not configured")
        else:
            try:
                bundle = item.payload if getattr(dest, "reads_bundle", True) else None
                extra: dict[str, object] = {}
                if getattr(dest, "wants_attempt", False):
                    extra["attempt"] = self._lifetime_attempt(item)
                if getattr(dest, "wants_outcome_unknown", False):
                    extra["outcome_unknown"] = item.outcome_unknown
                result = dest.deliver(bundle, idempotency_key=item.idempotency_key,  # type: ignore[arg-type]
                                      delivery_id=item.id, raw=item.payload_text, **extra)
            except Exception as exc:  # a bug in a destination must not kill the worker
                log.exception("destination %s failed", item.destination)
                result = DeliveryResult("retry", error=mask(f"internal error: {exc!r}"))
        finished = time.time()
        retry_at = None
        if result.outcome == "retry":
            retry_at = finished + retry_delay(
                item.attempt, retry_after=result.retry_after, base=self.backoff_base,
                cap=self.backoff_cap, retry_after_max=self.retry_after_max, rng=self._rng,
            )
        return AttemptResult(
            item, result.outcome, started, finished, result.http_status, result.error, retry_at,
            bool(getattr(result, "unknown", False)),
        )

    def _lifetime_attempt(self, item: ClaimedItem) -> int:
        """The attempt's number over the delivery's whole life: a replayed dead letter starts its
        counter at 1 again, yet its earlier attempts may be at the receiver (one query, only for
        a replay's first attempt)."""
        if item.attempt > 1 or not item.replayed:
            return item.attempt
        return self.outbox.attempts_made(item.id) + 1

    def _account(self, r: AttemptResult, status: str) -> None:
        with self._stats_lock:
            key = status if status in ("lost", "dead") else r.outcome
            self.stats[key] = self.stats.get(key, 0) + 1
            if r.unknown:
                self.stats["unknown"] += 1
        if r.outcome != "delivered":
            log.warning("delivery %s to %s attempt %d: %s -> %s", r.item.id, r.item.destination,
                        r.item.attempt, mask(r.error), status)
