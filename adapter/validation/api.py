"""The validator facade: the one entry point the CLI, the service, the mapper and the
pytest plugin call.

It wires the aspects together (structure, terminology, invariants, profiles, bundle, rulebook)
over one shared, warm ``ConformanceStore``; callers never reach into the aspects directly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from adapter.validation.issues import Issue, has_errors, operation_outcome


@dataclass(frozen=True)
class ValidationOptions:
    """What a caller may choose per validation."""

    region: str | None = None  # flanders | wallonia | brussels | german-speaking
    lang: str = "en"  # en | fr | nl | de
    profiles: tuple[str, ...] = ()  # validated in addition to meta.profile
    rulebook: bool = True  # run the interfederal rules on becare content
    registry: Any | None = None  # adapter.registry EpisodeRegistry, for IC-ONE-1/2
    today: dt.date | None = None  # the date rules judge "active" and "planned" against (None: today)
    # adapter.validation.suppressions.Suppression entries (--suppress FILE, service.suppress, the
    # plugin's --becare-suppress): matched issues become information, marked suppressed
    suppressions: tuple[Any, ...] = ()


@dataclass
class Report:
    """The result of one validation: issues plus what judged them."""

    issues: list[Issue]
    resource: dict[str, Any] | None = None
    region: str | None = None
    rulebook_version: str | None = None
    source: str | None = None  # file name or request id, for multi-input outputs
    extra: dict[str, Any] = field(default_factory=dict)
    # What judged this report (validator and rulebook versions, packages, profiles applied per
    # resource, region, date, duration): filled by the engine, rendered by every output.
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return has_errors(self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(
            self.issues, rulebook_version=self.rulebook_version, provenance=self.provenance
        )


def __getattr__(name: str) -> object:
    # ``Validator`` is part of this facade (docs/architecture.md); it lives in the engine module,
    # which imports this one, so it is resolved lazily.
    if name == "Validator":
        from adapter.validation.engine import Validator

        return Validator
    raise AttributeError(name)
