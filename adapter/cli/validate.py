"""``becare validate PATH...``: CONTRACT section 5.

Reads files or folders (``*.json`` / ``*.xml``), validates each, writes one report. Inputs that
cannot be read or parsed are reported as a fatal issue for that input and make the exit code 2;
they never stop the other inputs from being validated.
"""

from __future__ import annotations

import argparse
import os
import sys
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
        help="load conformance resources (file, folder or package .tgz)",
    )
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument("--output", metavar="FILE", help="write the report here instead of standard output")
    p.add_argument("--registry", metavar="URL", help="episode registry database (for IC-ONE-1/2)")
    p.add_argument("--no-rulebook", action="store_true", help="structure and profiles only")
    p.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
    from adapter.fhirio import ParseError, parse_file
    from adapter.output import render
    from adapter.validation.api import Report, ValidationOptions
    from adapter.validation.issues import Issue

    files, problems = collect_inputs(args.paths)
    for problem in problems:
        sys.stderr.write(f"becare: {problem}\n")
    if not files:
        return EXIT_UNUSABLE

    try:
        validator = _validator(args.ig)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"becare: cannot load --ig: {exc}\n")
        return EXIT_UNUSABLE

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
    )
    reports: list[Report] = []
    unusable = bool(problems)
    progress = _Progress(len(files))
    for path in files:
        progress.step(path)
        try:
            document = parse_file(path)
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
        report = validator.validate(document, options)
        report.source = str(path)
        reports.append(report)
    progress.done()

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


def _validator(igs: list[str]) -> Any:
    from adapter.conformance import default_store
    from adapter.validation.engine import Validator

    if not igs:
        return shared_validator()
    store = default_store().overlay()
    for ig in igs:
        if not Path(ig).exists():
            raise ValueError(f"{ig}: no such file or folder")
        store.load(ig)
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
    """A one-line counter on stderr when a terminal watches a long run."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.enabled = total > 5 and sys.stderr.isatty()

    def step(self, path: Path) -> None:
        self.n += 1
        if self.enabled:
            sys.stderr.write(f"\rvalidating {self.n}/{self.total} {path.name[:40]:<40}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 70 + "\r")
