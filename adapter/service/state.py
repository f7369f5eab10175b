"""What the endpoints share: the injected collaborators, the audit writer, metrics, rate buckets.

One ``ServiceState`` per app (``app.state.becare``); routes receive it through the ``AppState``
dependency, so a router never reaches for globals and ``create_app`` stays the only place that
wires things together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from adapter.service import negotiation as neg
from adapter.service.audit import AuditWriter
from adapter.service.config import ServiceConfig
from adapter.service.metrics import Metrics
from adapter.service.ratelimit import TokenBuckets

log = logging.getLogger("becare.service")


@dataclass
class ServiceState:
    config: ServiceConfig
    validator: Any
    outbox: Any | None
    router: Any | None
    forwarder: Any | None
    registry: Any | None
    mapper: Callable[[bytes, str | None], dict[str, Any]] | None
    audit: AuditWriter
    metrics: Metrics
    buckets: TokenBuckets | None
    warm: threading.Event
    warm_error: str | None = None

    def warm_up(self) -> None:
        """Load and exercise the validator once, so the first real request is not the slow one."""
        try:
            from adapter.validation.api import ValidationOptions

            if self.validator is None:
                from adapter.validation import Validator

                self.validator = Validator()
            self.validator.validate_bytes(
                b'{"resourceType":"Bundle","type":"collection"}', neg.JSON_TYPE, ValidationOptions()
            )
        except Exception as exc:
            self.warm_error = type(exc).__name__
            log.exception("validator warm-up failed")
            return
        self.warm.set()


def get_state(request: Request) -> ServiceState:
    """The app's state (set by ``create_app``)."""
    state: ServiceState = request.app.state.becare
    return state


AppState = Annotated[ServiceState, Depends(get_state)]
