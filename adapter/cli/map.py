"""``becare map INPUT``, ``becare map --reverse BUNDLE`` (CONTRACT section 5), and KMEHR:
``becare map BUNDLE --to kmehr`` and ``becare map KMEHR.xml --from kmehr``.

The I/O edge of ``adapter.mapping``: read a file (or ``-`` for standard input), map, write the
result atomically (a temporary file renamed into place), so a failed run never leaves a
half-written output. Bad input: every problem with its JSON pointer on standard error, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from adapter.cli.main import EXIT_OK, EXIT_UNUSABLE


def register(sub: Any) -> None:
    p = sub.add_parser(
        "map",
        help="map a care situation document to a becare Bundle, or back",
        description="Map a care situation document (JSON or YAML) to a becare transaction Bundle; "
        "with --reverse, map a Bundle (JSON or XML) back to a document.",
    )
    p.add_argument(
        "input", metavar="INPUT", help="the document (or, with --reverse, the Bundle); - for stdin"
    )
    p.add_argument("--reverse", action="store_true", help="map a Bundle back to a care situation document")
    p.add_argument(
        "--format",
        choices=("json", "xml", "yaml"),
        help="output format: json (default) or xml for a Bundle; json (default) or yaml for a document",
    )
    p.add_argument("--to", choices=("fhir", "kmehr"), default="fhir",
                   help="kmehr: write a KMEHR careplan message for a Bundle (or a care situation document)")
    p.add_argument("--from", dest="source", choices=("document", "kmehr"), default="document",
                   help="kmehr: read a KMEHR careplan message back into a becare Bundle")
    p.add_argument("--kmehr-version", choices=("1.19", "1.26"), default="1.26",
                   help="with --to kmehr: the KMEHR version (1.19 for hubservices 3.2, 1.26 for 3.5)")
    p.add_argument("--lang", choices=("en", "fr", "nl", "de"),
                   help="with --to kmehr: the summary's language (default: the person's, else the region's)")
    p.add_argument("--no-attachment", action="store_true",
                   help="with --to kmehr: do not attach the FHIR Bundle to the transaction")
    p.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument(
        "--changes",
        metavar="FILE",
        help="with --reverse: also write the normaliser's changes (JSON list of path/what/why) here",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        data = _read(args.input)
    except OSError as exc:
        return _fail(f"{args.input}: cannot read: {exc.strerror or exc}")
    if args.to == "kmehr" and (args.reverse or args.source == "kmehr"):
        return _fail("--to kmehr reads a Bundle: it cannot be combined with --reverse or --from kmehr")
    if args.to == "kmehr":
        if args.format not in (None, "xml"):
            return _fail("KMEHR is XML: --format json/yaml does not apply with --to kmehr")
        return _to_kmehr(args, data)
    if args.source == "kmehr":
        if args.reverse or args.format == "yaml":
            return _fail("--from kmehr writes a Bundle: use --format json or xml, without --reverse")
        return _from_kmehr(args, data)
    if args.reverse:
        if args.format == "xml":
            return _fail("--reverse writes a care situation document: use --format json or yaml")
        return _reverse(args, data)
    if args.format == "yaml":
        return _fail("a Bundle is written as json or xml, not yaml")
    return _forward(args, data)


def _forward(args: argparse.Namespace, data: bytes) -> int:
    from adapter.mapping import DocumentError, load_document, to_bundle

    try:
        doc = load_document(data)
    except DocumentError as exc:
        return _problems(args.input, exc)
    bundle = to_bundle(doc)
    if args.format == "xml":
        from adapter.fhirio import to_xml

        text = to_xml(bundle)
    else:
        from adapter.fhirio import to_json

        text = to_json(bundle)
    return _write(args.output, text)


def _reverse(args: argparse.Namespace, data: bytes) -> int:
    from adapter.fhirio import ParseError, parse
    from adapter.mapping import DocumentError, normalise, to_document

    try:
        parsed = parse(data)
    except ParseError as exc:
        where = f" (line {exc.line}, column {exc.col})" if exc.line else ""
        return _fail(f"{args.input}: not a FHIR resource{where}: {exc.message}")
    fixed = normalise(parsed.resource)
    for change in fixed.changes:
        sys.stderr.write(f"becare: changed {change.path}: {change.what} ({change.why})\n")
    try:
        doc = to_document(fixed.resource)
    except DocumentError as exc:
        return _problems(args.input, exc)
    payload = doc.model_dump(mode="json", exclude_defaults=True)
    payload = {"version": 1, **payload}
    if args.format == "yaml":
        import yaml

        text = yaml.safe_dump(payload, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if args.changes:
        changes = json.dumps([c.as_dict() for c in fixed.changes], indent=2, ensure_ascii=False) + "\n"
        code = _write(args.changes, changes)
        if code != EXIT_OK:
            return code
    return _write(args.output, text)


def _bundle_of(source: str, data: bytes) -> dict[str, Any] | int:
    """A FHIR Bundle as given, or the Bundle a care situation document maps to."""
    from adapter.fhirio import ParseError, parse
    from adapter.mapping import DocumentError, load_document, to_bundle

    try:
        resource = parse(data).resource
    except ParseError as exc:
        try:
            return to_bundle(load_document(data))
        except DocumentError:
            where = f" (line {exc.line}, column {exc.col})" if exc.line else ""
            return _fail(f"{source}: neither a FHIR Bundle nor a care situation document{where}: "
                         f"{exc.message}")
    if resource.get("resourceType") != "Bundle":
        return _fail(f"{source}: a {resource.get('resourceType')} is not a Bundle")
    return resource


def _to_kmehr(args: argparse.Namespace, data: bytes) -> int:
    from adapter.kmehr import KmehrError, to_kmehr_bytes

    bundle = _bundle_of(args.input, data)
    if isinstance(bundle, int):
        return bundle
    try:
        xml = to_kmehr_bytes(bundle, version=args.kmehr_version, lang=args.lang,
                             attach_bundle=not args.no_attachment)
    except KmehrError as exc:
        return _kmehr_problems(args.input, exc)
    return _write(args.output, xml.decode("utf-8"))


def _from_kmehr(args: argparse.Namespace, data: bytes) -> int:
    from adapter.kmehr import KmehrError, from_kmehr

    try:
        bundles = from_kmehr(data)
    except KmehrError as exc:
        return _kmehr_problems(args.input, exc)
    result = bundles[0] if len(bundles) == 1 else {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": b} for b in bundles],
    }
    if args.format == "xml":
        from adapter.fhirio import to_xml

        return _write(args.output, to_xml(result))
    from adapter.fhirio import to_json

    return _write(args.output, to_json(result))


def _kmehr_problems(source: str, exc: Any) -> int:
    problems = list(getattr(exc, "problems", None) or [("/", str(exc))])
    for location, reason in problems:
        sys.stderr.write(f"{source}: {location or '/'}: {reason}\n")
    sys.stderr.write(f"becare: {source}: {len(problems)} problem(s); nothing written\n")
    return EXIT_UNUSABLE


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _problems(source: str, exc: Any) -> int:
    for problem in exc.problems:
        sys.stderr.write(f"{source}: {problem.pointer or '/'}: {problem.message}\n")
    sys.stderr.write(f"becare: {source}: {len(exc.problems)} problem(s); nothing written\n")
    return EXIT_UNUSABLE


def _fail(message: str) -> int:
    sys.stderr.write(f"becare: {message}\n")
    return EXIT_UNUSABLE


def _write(output: str | None, text: str) -> int:
    if not text.endswith("\n"):
        text += "\n"
    if output is None or output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    target = Path(output)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or Path("."))
    except OSError as exc:
        return _fail(f"{output}: cannot write: {exc.strerror or exc}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        return _fail(f"{output}: cannot write: {exc.strerror or exc}")
    return EXIT_OK
