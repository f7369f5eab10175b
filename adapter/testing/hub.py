"""The ``mock_hub`` handle: the recording mock hub plus the waits and fault helpers tests need.

Forwarding is asynchronous (outbox, workers, retries), so a test cannot assert right after the
POST; ``wait_for`` polls the hub's memory with a deadline instead of making every test sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapter.testing.mockhub import Fault, MockHub, MockHubState, Received


class HubHandle:
    """Wraps a started ``adapter.testing.mockhub.MockHub`` (``.hub``)."""

    def __init__(self, hub: MockHub) -> None:
        self.hub = hub

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def fhir_url(self) -> str:
        return self.hub.fhir_url

    @property
    def mhd_url(self) -> str:
        return self.hub.mhd_url

    @property
    def state(self) -> MockHubState:
        return self.hub.state

    def received(self) -> list[Received]:
        """What the hub stored, in arrival order: once per idempotency key, unless the hub was
        told to ignore the key (``ignore_idempotency_key()``), then every copy."""
        with self.state._lock:
            return list(self.state.received)

    def ignore_idempotency_key(self, ignore: bool = True) -> None:
        """Behave as a plain FHIR server: store every POST, duplicates included; only
        If-None-Exist and searches by identifier tell the sender what is already there."""
        self.state.honour_idempotency_key = not ignore

    def copies(self) -> dict[str, int]:
        """Stored copies per ``Bundle.identifier`` (``system|value``)."""
        return dict(self.state.copies())

    def duplicates(self) -> dict[str, int]:
        """Bundles stored more than once: empty when every delivery was exactly once."""
        return self.state.duplicates()

    def lookups(self) -> list[dict[str, Any]]:
        """The searches the hub answered (``GET /fhir/Bundle?identifier=`` and the like)."""
        with self.state._lock:
            return list(self.state.lookups)

    def assert_no_duplicates(self) -> None:
        __tracebackhide__ = True
        dupes = self.duplicates()
        some = sorted(dupes.items())[:10]
        assert not dupes, f"mock hub: {len(dupes)} bundle(s) stored more than once: {some}"

    def bundles(self) -> list[dict[str, Any]]:
        return [r.bundle for r in self.received() if r.bundle is not None]

    def wait_for(
        self,
        identifier: str | None = None,
        *,
        delivery: dict[str, Any] | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        count: int = 1,
        timeout: float = 30.0,
    ) -> list[Received]:
        """Wait until ``count`` bundles arrived that pass every filter given: ``identifier``
        (``Bundle.identifier.value``), ``delivery`` (a ``/deliveries/{id}`` status, matched by its
        idempotency key) and ``match`` (a predicate on the received bundle).

        Raises ``AssertionError`` naming what did arrive, so a timeout reads as a test failure.
        """
        __tracebackhide__ = True
        key = _header_key(delivery["idempotencyKey"]) if delivery else None

        def wanted(r: Received) -> bool:
            return (
                (identifier is None or _identifier(r) == identifier)
                and (key is None or r.key == key)
                and (match is None or (r.bundle is not None and bool(match(r.bundle))))
            )

        deadline = time.monotonic() + timeout
        while True:
            items = [r for r in self.received() if wanted(r)]
            if len(items) >= count:
                return items
            if time.monotonic() > deadline:
                seen = [(_identifier(r), r.key[:12]) for r in self.received()]
                raise AssertionError(
                    f"mock hub: expected {count} matching bundle(s) within {timeout:g}s, got {len(items)}; "
                    f"received (identifier, key): {seen}"
                )
            time.sleep(0.05)

    def fail_next(self, *faults: str | Fault | dict[str, Any]) -> None:
        """Queue faults (``"503,retry-after=1"``, ``"500"``, ``"drop"``...), one per next request."""
        self.state.add_faults(list(faults))

    def fail_always(self, fault: str | Fault | dict[str, Any] | None) -> None:
        """Apply a fault to every request until called with ``None`` (a hub that is down)."""
        from adapter.testing.mockhub import Fault

        self.state.always = (
            None if fault is None else (fault if isinstance(fault, Fault) else Fault.from_json(fault))
        )

    def reset(self) -> None:
        self.state.reset()


def _identifier(item: Received) -> str | None:
    ident = (item.bundle or {}).get("identifier")
    return ident.get("value") if isinstance(ident, dict) else None


def _header_key(idempotency_key: str) -> str:
    from adapter.forwarding.destinations import header_key

    return header_key(idempotency_key)
