"""Routing: which destinations get an accepted bundle, or why none does.

Order: a destination named by the caller; else the person's region (CONTRACT section 4) mapped to
a platform, plus the hubs that the metahub says hold data for the person; else the default. The
metahub step also gates delivery: without an active sharing consent nothing is sent and the
delivery is stored as ``blocked`` with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.rules.catalog import UnknownRegionError

from .metahub import MetahubError, MetahubLocator
from .region import bundle_region, person_ssin
from .settings import Settings

NO_CONSENT = "blocked by the metahub: the person's data-sharing consent is not active"
NO_SSIN = "blocked: the bundle has no SSIN for the person, so the metahub consent cannot be checked"


class RoutingError(Exception):
    """Routing cannot decide now. ``code``: ``invalid`` (caller's fault, 4xx) or ``unavailable``
    (metahub down: retry later, 503)."""

    def __init__(self, message: str, code: str = "invalid", pointer: str = "destination") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        # what the caller got wrong, for a 4xx OperationOutcome (none when the metahub is down)
        self.problems = [RoutingProblem(pointer, message)] if code == "invalid" else None


@dataclass(frozen=True, slots=True)
class RoutingProblem:
    pointer: str
    message: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    destinations: tuple[str, ...]
    via: str  # explicit | region | metahub | default | none | metahub-consent | metahub-ssin
    region: str | None = None
    reason: str | None = None
    blocked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "destinations": list(self.destinations),
            "via": self.via,
            "region": self.region,
            "reason": self.reason,
            "blocked": self.blocked,
        }


class Router:
    def __init__(self, settings: Settings, *, locator: MetahubLocator | None = None) -> None:
        self.settings = settings
        self.locator = locator
        if self.locator is None and settings.metahub is not None:
            self.locator = MetahubLocator(settings.metahub)

    def route(
        self, bundle: dict[str, Any], *, region: str | None = None, destination: str | None = None
    ) -> RouteDecision:
        """Decide for one bundle. Raises ``RoutingError`` for an unknown explicit destination or
        region (``invalid``) or an unreachable metahub (``unavailable``)."""
        s = self.settings
        try:
            resolved = bundle_region(bundle, region)
        except UnknownRegionError as exc:
            raise RoutingError(str(exc), pointer="region") from None
        if destination is not None:
            if not s.routing.allow_explicit:
                raise RoutingError("explicit destinations are not allowed by the configuration")
            if destination not in s.destinations:
                raise RoutingError(f"unknown destination {destination!r}")

        hub_destinations: list[str] = []
        if s.metahub is not None and self.locator is not None:
            ssin = person_ssin(bundle)
            if ssin is None:
                if s.metahub.require_ssin:
                    return RouteDecision((), "metahub-ssin", resolved, NO_SSIN, blocked=True)
            else:
                try:
                    answer = self.locator.locate(ssin)
                except MetahubError as exc:
                    raise RoutingError(str(exc), "unavailable") from None
                if not answer.consent_active:
                    return RouteDecision((), "metahub-consent", resolved, NO_CONSENT, blocked=True)
                if s.metahub.route_to_hubs:
                    hub_destinations = [s.metahub.hubs[h] for h in answer.hubs if h in s.metahub.hubs]

        if destination is not None:
            return RouteDecision((destination,), "explicit", resolved)
        chosen: list[str] = []
        via = []
        if resolved and resolved in s.routing.by_region:
            chosen.extend(s.routing.region_targets(resolved))
            via.append("region")
        if hub_destinations:
            chosen.extend(hub_destinations)
            via.append("metahub")
        if chosen:
            return RouteDecision(tuple(dict.fromkeys(chosen)), "+".join(via), resolved)
        if s.routing.default:
            return RouteDecision(tuple(s.routing.default), "default", resolved)
        if not s.destinations:
            return RouteDecision((), "none", resolved, "forwarding is not configured (no destination)")
        where = f"region {resolved}" if resolved else "a bundle without a known region"
        return RouteDecision((), "none", resolved, f"no destination is configured for {where}")

    def close(self) -> None:
        if self.locator is not None:
            self.locator.close()
