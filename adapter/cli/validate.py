"""``becare validate PATH...``: CONTRACT section 5.

Reads files or folders (``*.json`` / ``*.xml``), validates each, writes one report. Inputs that
cannot be read or parsed are reported as a fatal issue for that input and make the exit code 2;
they never stop the other inputs from being validated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapter.cli.main import EXIT_INVALID, EXIT_OK, EXIT_UNUSABLE

REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")
LANGS = ("en", "fr", "nl", "de")
_SUFFIXES = (".json", ".xml")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="validate FHIR R4 resources and bundles",
        description="Validate FHIR R4 JSON or XML files (or folders of them).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file or folder")
    p.add_argument("--region", choices=REGIONS, help="federated entity whose rules apply")
    p.add_argument("--lang", choices=LANGS, default="en", help="language of the messages")
    p.add_argument(
        "--profile", action="append", default=[], metavar="URL", help="also validate against this profile"
    )
    p.add_argument(
        "--ig",
        action="append",
        default=[],
        metavar="PATH",
        help="load conformance resources (file, folder or package .tgz), or an IG's sushi-config.yaml "
        "or package.json with the dependencies it declares (from --packages)",
    )
    p.add_argument(
        "--packages",
        metavar="DIR",
        help="FHIR package cache holding --ig dependencies as <id>#<version>/package/ "
        "(default: ~/.fhir/packages)",
    )
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument("--output", metavar="FILE", help="write the report here instead of standard output")
    p.add_argument("--registry", metavar="URL", help="episode registry database (for IC-ONE-1/2)")
    p.add_argument("--no-rulebook", action="store_true", help="structure and profiles only")
    p.add_argument("--no-progress", action="store_true", help="do not report progress on standard error")
    p.add_argument(
        "--today",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help='the date rules judge "active" and "planned" against (default: the current date)',
    )
    p.add_argument(
        "--suppress",
        metavar="FILE",
        help="YAML list of accepted issues (id, expression, reason, until): reported as information, "
        "marked suppressed",
    )
    p.add_argument(
        "--max-size",
        type=byte_size,
        metavar="BYTES",
        help="refuse input files larger than this (K, M, G suffixes: 50M is 50 MiB); "
        "default: no limit but memory",
    )
    p.set_defaults(handler=run)


_SIZE = re.compile(r"(\d+)\s*(?:([KMG])(?:i?B)?|B)?", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def byte_size(text: str) -> int:
    """``--max-size``: bytes, or with a binary suffix (``512K``, ``50M``, ``1G``, also ``50MB`` or
    ``50MiB``); anything else is a usage error (exit 2)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not a size in bytes (e.g. 52428800, 50M, 1G): {text!r}")
    unit = m.group(2).upper() if m.group(2) else None
    return int(m.group(1)) * _SIZE_UNITS[unit]


def iso_date(text: str) -> dt.date:
    """``--today``: a calendar date ``YYYY-MM-DD``; anything else is a usage error (exit 2)."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Expand folders; return the files and the paths that cannot be read."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
            if not found:
                problems.append(f"{raw}: no .json or .xml files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file or folder")
    return files, problems


_PAUSED = False


def _pause_collector() -> None:
    global _PAUSED
    if gc.isenabled():
        gc.disable()
        _PAUSED = True


def _resume_collector() -> None:
    global _PAUSED
    if _PAUSED:
        gc.enable()
        _PAUSED = False


def _collector_paused_at_start(
    fn: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """The garbage collector is off until the first input is validated. Start-up (imports, the
    conformance store, the first compile of each definition it uses) allocates hundreds of
    thousands of objects that live as long as the process and leaves almost no garbage, so the
    collector only rescans them, for ~40 ms of a 0.5 s one-file run. It is back on from the second
    input, and whatever ``run`` returns or raises."""

    @functools.wraps(fn)
    def paused(args: argparse.Namespace) -> int:
        _pause_collector()
        try:
            return fn(args)
        finally:
            _resume_collector()

    return paused


@_collector_paused_at_start
def run(args: argparse.Namespace) -> int:
    from adapter.fhirio import Limits, ParseError, parse_file
    from adapter.output import render
    from adapter.output.render import SECONDS
    from adapter.rules.checks import RegistryUnavailable
    from adapter.validation.api import Report, ValidationOptions
    from adapter.validation.issues import Issue

    files, problems = collect_inputs(args.paths)
    for problem in problems:
        sys.stderr.write(f"becare: {problem}\n")
    if not files:
        return EXIT_UNUSABLE

    try:
        validator = _validator(args.ig, getattr(args, "packages", None))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"becare: cannot load --ig: {exc}\n")
        return EXIT_UNUSABLE

    suppressions: tuple[Any, ...] = ()
    if getattr(args, "suppress", None):
        from adapter.validation.suppressions import SuppressionError, expired, load_suppressions

        try:
            suppressions = load_suppressions(args.suppress)
        except SuppressionError as exc:
            sys.stderr.write(f"becare: cannot use --suppress: {exc}\n")
            return EXIT_UNUSABLE
        for lapsed in expired(suppressions, args.today or dt.date.today()):
            sys.stderr.write(f"becare: {args.suppress}: {lapsed.describe()} expired on {lapsed.until}\n")

    registry = None
    if args.registry:
        try:
            from adapter.registry import EpisodeRegistry

            registry = EpisodeRegistry(args.registry)
        except Exception as exc:  # a bad URL or unreachable database is a usage problem
            sys.stderr.write(f"becare: cannot open the episode registry: {exc}\n")
            return EXIT_UNUSABLE
    options = ValidationOptions(
        region=args.region,
        lang=args.lang,
        profiles=tuple(args.profile),
        rulebook=not args.no_rulebook,
        registry=registry,
        today=args.today,
        suppressions=suppressions,
    )
    # a file on disk has no size limit but memory, unless --max-size sets one (the depth limit stays)
    limits = Limits(max_bytes=getattr(args, "max_size", None))
    reports: list[Report] = []
    unusable = bool(problems)
    progress = _Progress(len(files), enabled=not args.no_progress)
    for path in files:
        if reports:
            _resume_collector()  # the start-up is over (see _collector_paused_at_start)
        progress.step(path)
        try:
            document = parse_file(path, limits=limits)
        except ParseError as exc:
            unusable = True
            reports.append(
                Report(
                    issues=[
                        Issue(
                            "fatal",
                            getattr(exc, "code", "structure") or "structure",
                            "",
                            str(getattr(exc, "message", exc)),
                            source="parse",
                            line=getattr(exc, "line", None),
                            col=getattr(exc, "col", None),
                        )
                    ],
                    source=str(path),
                )
            )
            continue
        except OSError as exc:
            unusable = True
            reports.append(
                Report(
                    issues=[
                        Issue(
                            "fatal",
                            "exception",
                            "",
                            f"cannot read the file: {exc.strerror or exc}",
                            source="parse",
                        )
                    ],
                    source=str(path),
                )
            )
            continue
        except Exception as exc:  # a fault of the reader: reported, never a traceback
            unusable = True
            reports.append(_not_checked(path, _internal(exc), "exception"))
            continue
        try:
            report = validator.validate(document, options)
        except RegistryUnavailable as exc:
            # IC-ONE-1/2 cannot be judged without it: this input was not checked (exit 2)
            unusable = True
            reports.append(_not_checked(path, f"the episode registry cannot be queried: {exc}", "transient"))
            continue
        except Exception as exc:  # a fault in becare: say so, never a traceback, never a pass
            unusable = True
            reports.append(_not_checked(path, _internal(exc), "exception"))
            continue
        report.source = str(path)
        reports.append(report)
    progress.done()
    for report, seconds in zip(reports, progress.durations(), strict=False):
        report.extra[SECONDS] = seconds

    colour = (
        args.format == "text" and not args.output and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    text = render(reports, args.format, colour=colour)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"becare: cannot write {args.output}: {exc.strerror or exc}\n")
            return EXIT_UNUSABLE
    else:
        sys.stdout.write(text)
    if unusable:
        return EXIT_UNUSABLE
    return EXIT_INVALID if any(r.has_errors for r in reports) else EXIT_OK


def _internal(exc: BaseException) -> str:
    return (
        f"Internal error while validating this file ({type(exc).__name__}: {str(exc)[:200]}). This is a "
        "fault in becare, not in the data; the file has not been checked."
    )


def _not_checked(path: Path, message: str, code: str) -> Any:
    """The report of an input that could not be checked: one fatal issue (exit code 2)."""
    from adapter.validation.api import Report
    from adapter.validation.issues import Issue

    return Report(issues=[Issue("fatal", code, "", message, source="internal")], source=str(path))


def _validator(igs: list[str], packages: str | None = None) -> Any:
    """The validator for these ``--ig``: the shared one when there are none. A sushi-config.yaml
    or package.json also brings the dependencies it declares, from the package cache; one that
    is not there is said on stderr and validation goes on (what it defines is then reported
    as unknown by the validation itself: docs/validation-notes.md)."""
    from adapter.conformance import default_store
    from adapter.conformance.packages import is_manifest, load_ig
    from adapter.validation.engine import Validator

    if not igs:
        return shared_validator()
    if packages is not None and not Path(packages).is_dir():
        raise ValueError(f"--packages {packages}: no such folder")
    store = default_store().overlay()
    for ig in igs:
        if not Path(ig).exists():
            raise ValueError(f"{ig}: no such file or folder")
        if not is_manifest(ig):
            store.load(ig)
            continue
        loaded = load_ig(store, ig, packages)
        for line in [*loaded.missing, *loaded.notes]:
            sys.stderr.write(f"becare: --ig {ig}: {line}\n")
    return Validator(store)


_SHARED: Any = None


def shared_validator() -> Any:
    """One warm validator per process over the default store."""
    global _SHARED
    if _SHARED is None:
        from adapter.validation.engine import Validator

        _SHARED = Validator()
    return _SHARED


class _Progress:
    """Progress on stderr, never stdout, so ``--format json|junit`` output stays machine-readable.

    On a terminal: one line rewritten in place when there are more than a handful of files. When
    stderr is a log (CI), rewriting lines makes noise, so only a big folder reports, one line per
    tenth of the way. Also keeps the per-file wall time (the JUnit test time).
    """

    TTY_MIN_FILES = 6
    LOG_MIN_FILES = 20

    def __init__(self, total: int, *, enabled: bool = True, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.n = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        minimum = self.TTY_MIN_FILES if self.tty else self.LOG_MIN_FILES
        self.enabled = enabled and total >= minimum
        self.every = max(1, total // 10)
        self.marks: list[float] = []

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the validation
            self.enabled = False

    def step(self, path: Path) -> None:
        self.marks.append(time.perf_counter())
        self.n += 1
        if not self.enabled:
            return
        if self.tty:
            self._write(f"\rvalidating {self.n}/{self.total} {path.name[:40]:<40}")
        elif self.n == 1 or self.n % self.every == 0:
            self._write(f"becare: validating {self.n}/{self.total} {path.name}\n")

    def done(self) -> None:
        self.marks.append(time.perf_counter())
        if not self.enabled:
            return
        if self.tty:
            self._write("\r" + " " * 70 + "\r")
        elapsed = self.marks[-1] - self.marks[0]
        self._write(f"becare: validated {self.n} file(s) in {elapsed:.1f} s\n")

    def durations(self) -> list[float]:
        """Seconds spent on each file, in order (valid after ``done()``)."""
        return [round(b - a, 6) for a, b in zip(self.marks, self.marks[1:], strict=False)]
