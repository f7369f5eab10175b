"""The becare pytest plugin (entry point ``pytest11``: ``becare``).

pytest imports this module for every test run wherever becare is installed, so at import time it
touches only pytest and the light helpers; the validator, the service and the mock hub are
imported inside the fixtures that need them.

Offers: fixtures ``becare_validator``, ``becare_options``, ``becare_today``, ``becare_service``,
``mock_hub``; options ``--becare-region`` / ``--becare-lang`` / ``--becare-today`` /
``--becare-suppress``; ini ``becare_region``, ``becare_lang``, ``becare_today``, ``becare_allow``,
``becare_suppress``, ``becare_validate_paths``.
``assert_valid`` and friends live in ``adapter.testing``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapter.testing import defaults

if TYPE_CHECKING:
    from adapter.testing.hub import HubHandle
    from adapter.testing.service import BecareService
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("becare", "becare FHIR validation")
    group.addoption(
        "--becare-region",
        choices=defaults.REGIONS,
        default=None,
        help="region for the interfederal rulebook (default: from the bundle)",
    )
    group.addoption(
        "--becare-lang",
        choices=defaults.LANGS,
        default=None,
        help="language of validation messages (default: en)",
    )
    group.addoption(
        "--becare-today",
        default=None,
        metavar="YYYY-MM-DD",
        help='the date rules judge "active" and "planned" against (default: the current date)',
    )
    group.addoption(
        "--becare-suppress",
        default=None,
        metavar="FILE",
        help="YAML suppression file (id, expression, reason, until): matched issues become information",
    )
    parser.addini("becare_suppress", "YAML suppression file, relative to the ini file", default=None)
    parser.addini("becare_region", "default region for the interfederal rulebook", default=None)
    parser.addini("becare_today", "validation date YYYY-MM-DD, for reproducible runs", default=None)
    parser.addini("becare_lang", "language of validation messages (en, fr, nl, de)", default=None)
    parser.addini(
        "becare_allow", "rule ids / issue codes tolerated by every becare check", type="linelist", default=[]
    )
    parser.addini(
        "becare_validate_paths",
        "FHIR files, folders or globs (relative to rootdir) collected as one validation test per file",
        type="linelist",
        default=[],
    )


_SAVED = pytest.StashKey[defaults.Defaults]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SAVED] = defaults.snapshot()
    region = config.getoption("becare_region") or config.getini("becare_region") or None
    lang = config.getoption("becare_lang") or config.getini("becare_lang") or None
    try:
        defaults.configure(
            region=region,
            lang=lang,
            allow=tuple(config.getini("becare_allow")),
            today=config.getoption("becare_today") or config.getini("becare_today") or None,
            suppress=_suppress_path(config),
        )
    except ValueError as exc:
        raise pytest.UsageError(f"becare: {exc}") from None


def _suppress_path(config: pytest.Config) -> str | None:
    """``--becare-suppress`` as given (relative to the current folder), else ``becare_suppress``
    relative to the ini file that sets it."""
    option = config.getoption("becare_suppress")
    if option:
        return str(option)
    value = config.getini("becare_suppress")
    if not value:
        return None
    path = Path(str(value))
    if not path.is_absolute():
        path = (config.inipath.parent if config.inipath else config.rootpath) / path
    return str(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    # In-process runs (pytester) nest configurations in one interpreter: give the outer one its
    # settings back instead of leaking the inner run's.
    saved = config.stash.get(_SAVED, None)
    if saved is not None:
        defaults.restore(saved)


def pytest_report_header(config: pytest.Config) -> str | None:
    current = defaults.current
    if (
        current.region is None
        and current.lang == "en"
        and current.today is None
        and not current.suppressions
        and not config.getini("becare_validate_paths")
    ):
        return None
    today = f" today={current.today.isoformat()}" if current.today else ""
    suppressed = f" suppressions={len(current.suppressions)}" if current.suppressions else ""
    return f"becare: region={current.region or 'from bundle'} lang={current.lang}{today}{suppressed}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    entries = parent.config.getini("becare_validate_paths")
    if not entries:
        return None
    from adapter.testing.collect import FHIR_SUFFIXES, BecareFile, matches

    if file_path.suffix.lower() in FHIR_SUFFIXES and matches(file_path, parent.config.rootpath, entries):
        return BecareFile.from_parent(parent, path=file_path)
    return None


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def becare_validator() -> Validator:
    """The real validator, built once per process and shared with ``assert_valid``."""
    from adapter.testing.validating import shared_validator

    return shared_validator()


@pytest.fixture(scope="session")
def becare_options() -> ValidationOptions:
    """``ValidationOptions`` with ``--becare-region`` / ``--becare-lang`` applied."""
    from adapter.testing.validating import options

    return options()


@pytest.fixture(scope="session")
def becare_today() -> dt.date:
    """The validation date: ``--becare-today`` / ini ``becare_today``, else the current date."""
    return defaults.current.today or dt.date.today()


@pytest.fixture(scope="session")
def _becare_hub() -> Iterator[HubHandle]:
    from adapter.testing.hub import HubHandle
    from adapter.testing.mockhub import MockHub

    with MockHub() as hub:
        yield HubHandle(hub)


@pytest.fixture
def mock_hub(_becare_hub: HubHandle) -> HubHandle:
    """The recording mock hub (the one ``becare_service`` forwards to), emptied for each test."""
    _becare_hub.reset()
    return _becare_hub


@pytest.fixture(scope="session")
def becare_service(
    tmp_path_factory: pytest.TempPathFactory, _becare_hub: HubHandle
) -> Iterator[BecareService]:
    """``becare serve`` on a free loopback port, SQLite in a tmp folder, forwarding to the mock hub.

    Session-scoped: its outbox and episode registry keep what earlier tests submitted.
    """
    from adapter.testing.service import BecareService

    service = BecareService(tmp_path_factory.mktemp("becare-service"), forward_to=_becare_hub.fhir_url)
    service.start()
    try:
        yield service
    finally:
        service.stop()
