"""``assert_valid`` / ``assert_invalid``: the one-line checks a vendor writes in a test.

They raise ``BecareValidationError`` (an ``AssertionError``), so pytest reports a failed test with
the issue list as its message instead of an error with a traceback into becare.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from adapter.testing import defaults
from adapter.testing.inputs import Subject
from adapter.testing.report import FailOn, failing, format_failure, format_issue, tolerated
from adapter.testing.validating import validate_subject

if TYPE_CHECKING:
    from adapter.validation.api import Report
    from adapter.validation.engine import Validator


class BecareValidationError(AssertionError):
    """The content does not meet the expectation; ``report`` holds every issue found."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


# Reported by pytest under the name vendors import it by, not the private module.
BecareValidationError.__module__ = "adapter.testing"


def _names(values: str | Iterable[str]) -> tuple[str, ...]:
    # A single id is the common case; a bare str must not be split into characters.
    return (values,) if isinstance(values, str) else tuple(values)


def validate(
    subject: Subject,
    *,
    region: str | None = None,
    lang: str | None = None,
    profiles: Iterable[str] = (),
    validator: Validator | None = None,
) -> Report:
    """The full report, for tests that want to look at the issues themselves."""
    return validate_subject(subject, region=region, lang=lang, profiles=tuple(profiles), validator=validator)[
        1
    ]


def assert_valid(
    subject: Subject,
    *,
    region: str | None = None,
    lang: str | None = None,
    allow: str | Iterable[str] = (),
    profiles: Iterable[str] = (),
    fail_on: FailOn = "error",
    validator: Validator | None = None,
) -> Report:
    """Fail unless no issue of ``fail_on`` severity or worse remains once ``allow`` is applied.

    ``allow`` names rule ids (``IC-TEAM-2``), issue codes (``code-invalid``) or message ids that
    are tolerated here, on top of the run-wide ``becare_allow`` ini option.
    """
    __tracebackhide__ = True
    label, report = validate_subject(
        subject, region=region, lang=lang, profiles=tuple(profiles), validator=validator
    )
    tolerate = (*defaults.current.allow, *_names(allow))
    bad = failing(report.issues, allow=tolerate, fail_on=fail_on)
    if bad:
        raise BecareValidationError(format_failure(label, report, bad, fail_on=fail_on), report)
    return report


def assert_invalid(
    subject: Subject,
    expect: str | Iterable[str] = (),
    *,
    region: str | None = None,
    lang: str | None = None,
    profiles: Iterable[str] = (),
    validator: Validator | None = None,
) -> Report:
    """Fail unless the content has errors and every id in ``expect`` is among them.

    For negative tests: a vendor proves that a broken bundle is caught for the right reason.
    """
    __tracebackhide__ = True
    label, report = validate_subject(
        subject, region=region, lang=lang, profiles=tuple(profiles), validator=validator
    )
    errors = failing(report.issues)
    missing = [name for name in _names(expect) if not any(tolerated(i, (name,)) for i in errors)]
    if errors and not missing:
        return report
    found = "\n".join(f"  - {format_issue(i)}" for i in report.issues) or "  (no issues)"
    what = f"no error {', '.join(missing)}" if missing else "no error"
    raise BecareValidationError(f"{label}: expected errors, found {what}; issues:\n{found}", report)
