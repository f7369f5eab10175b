"""One warm validator per test process, and validation that never raises on bad content.

Building the validator loads every conformance resource (about a second); doing it once per
process keeps a vendor suite of hundreds of bundles fast. Unparseable content becomes a fatal
issue in the report, because for a test it is a finding about the bundle, not a crash.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from adapter.testing import defaults
from adapter.testing.inputs import Subject, load

if TYPE_CHECKING:
    from adapter.validation.api import Report, ValidationOptions
    from adapter.validation.engine import Validator

_lock = threading.Lock()
_validator: Validator | None = None


def shared_validator() -> Validator:
    global _validator
    with _lock:
        if _validator is None:
            from adapter.validation.engine import Validator

            _validator = Validator()
        return _validator


def options(
    *, region: str | None = None, lang: str | None = None, profiles: tuple[str, ...] = ()
) -> ValidationOptions:
    """ValidationOptions with the run-wide defaults (``--becare-region``/``--becare-lang``/
    ``--becare-today``) filled in."""
    from adapter.validation.api import ValidationOptions

    return ValidationOptions(
        region=region or defaults.current.region,
        lang=lang or defaults.current.lang,
        profiles=tuple(profiles),
        today=defaults.current.today,
        suppressions=defaults.current.suppressions,
    )


def validate_subject(
    subject: Subject,
    *,
    region: str | None = None,
    lang: str | None = None,
    profiles: tuple[str, ...] = (),
    validator: Validator | None = None,
) -> tuple[str, Report]:
    """(label, report) for anything ``inputs.load`` accepts."""
    from adapter.fhirio.errors import ParseError
    from adapter.validation.api import Report
    from adapter.validation.issues import Issue

    item = load(subject)
    engine = validator or shared_validator()
    opts = options(region=region, lang=lang, profiles=profiles)
    if item.resource is not None:
        return item.label, engine.validate(item.resource, opts)
    assert item.data is not None
    try:
        return item.label, engine.validate_bytes(item.data, item.content_type, opts)
    except ParseError as exc:
        issue = Issue("fatal", exc.code, "", exc.message, source="parse", line=exc.line, col=exc.col)
        return item.label, Report(issues=[issue], region=opts.region)
