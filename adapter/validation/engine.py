"""The validator: wires structure, terminology, invariants, profiles, bundle and rulebook
checks over one warm conformance store.

A ``Validator`` is built once (it compiles definitions lazily and caches them) and is safe to
share between threads for read-only validation: each call gets its own issue list and walker.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from adapter.fhirio.errors import DEFAULT_LIMITS
from adapter.fhirio.scan import Scans
from adapter.validation import bundle as bundle_rules
from adapter.validation.api import Report, ValidationOptions
from adapter.validation.bindings import BindingChecker
from adapter.validation.invariants import InvariantChecker, settle_failures
from adapter.validation.issues import Issue
from adapter.validation.model import SD_BASE
from adapter.validation.provenance import build as build_provenance
from adapter.validation.provenance import packages_of
from adapter.validation.pyinput import not_checkable
from adapter.validation.references import BundleIndex
from adapter.validation.structures import StructureIndex
from adapter.validation.walker import ResourceContext, Walker

_BECARE = "https://becare.dev/fhir/"


class Validator:
    """Validate FHIR R4 resources and bundles against definitions loaded as data."""

    def __init__(self, store: Any | None = None) -> None:
        if store is None:
            from adapter.conformance import default_store

            store = default_store()
        from adapter.fhirpath import FhirPathEngine
        from adapter.terminology import Terminology

        self.store = store
        self.structures = StructureIndex(store)
        self.terminology = Terminology(store)
        self.fhirpath = FhirPathEngine(terminology=self.terminology)
        self.invariants = InvariantChecker(self.fhirpath)
        self.bindings = BindingChecker(self.terminology)
        self._base_sources: dict[str, bool] = {}
        self._globals: dict[str, tuple[str, ...]] | None = None
        self._target_plans: dict[tuple[int, Any], tuple[Any, list[str], list[str]]] = {}
        self._invariant_plans: dict[Any, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def validate(self, subject: Any, options: ValidationOptions | None = None) -> Report:
        """Validate a resource (internal form) or an ``adapter.fhirio.Document``."""
        from adapter.fhirio.document import collector_paused

        # The walk allocates many small containers and frees them by reference counting; the
        # collector's heuristics would rescan the whole input tree for cycles it cannot hold.
        with collector_paused():
            return self._validate(subject, options or ValidationOptions())

    def _validate(self, subject: Any, options: ValidationOptions) -> Report:
        started = time.perf_counter()
        document = None
        if isinstance(subject, dict):
            resource = subject
            issues: list[Issue] = []
        else:
            document = subject
            resource = document.resource
            issues = list(getattr(document, "issues", ()) or ())
        walker = Walker(self, issues)
        # what parsing guarantees (depth, string property names), checked for a resource given
        # as Python values (pyinput.py)
        unusable = not_checkable(resource, DEFAULT_LIMITS.max_depth) if document is None else None
        if unusable is not None:
            issues.append(unusable)
        else:
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            expr = rtype if isinstance(rtype, str) and rtype else "Resource"
            rc = ResourceContext(resource, None, None, None)
            walker.validate_resource(resource, expr, rc, extra_profiles=tuple(options.profiles))
        region: str | None = options.region
        version: str | None = None
        if options.rulebook and isinstance(resource, dict) and unusable is None:
            result = self._rulebook(resource, options, walker.scans)
            if result is not None:
                issues.extend(result.issues)
                region, version = result.region, result.version
        issues[:] = settle_failures(issues)
        if document is not None and issues:
            issues[:] = _located_all(issues, document)
        today = options.today or dt.date.today()
        if options.suppressions:
            from adapter.validation.suppressions import apply_suppressions

            issues[:] = apply_suppressions(issues, options.suppressions, today)
        report = Report(issues=issues, resource=resource, region=region, rulebook_version=version)
        report.provenance = build_provenance(
            rulebook_version=version, packages=packages_of(self.store), profiles=walker.applied,
            region=region, date=today, duration_ms=(time.perf_counter() - started) * 1000,
        )
        # profiles applied other than as declared (legacy eHealth canonicals, url|version)
        report.provenance.setdefault("canonicals", []).extend(walker.canonicals)
        return report

    def validate_bytes(
        self, data: bytes | str, content_type: str | None = None, options: ValidationOptions | None = None
    ) -> Report:
        """Parse then validate; raises ``adapter.fhirio.ParseError`` when it cannot parse."""
        from adapter.fhirio import parse

        fmt = _format_from_content_type(content_type)
        document = parse(data, fmt)
        return self.validate(document, options)

    # ------------------------------------------------------------------ walker hooks
    def before_resource(
        self, walker: Walker, resource: dict[str, Any], expr: str, rc: ResourceContext
    ) -> None:
        if resource.get("resourceType") == "Bundle":
            index = BundleIndex.build(resource)
            rc.bundle = index
            bundle_rules.check_bundle(walker, resource, expr, index)
        elif resource.get("resourceType") == "Parameters":
            bundle_rules.check_parameters(walker, resource, expr)

    def after_resource(
        self, walker: Walker, resource: dict[str, Any], expr: str, rc: ResourceContext
    ) -> None:
        return None

    def nested_context(self, value: dict[str, Any], path: str, rc: ResourceContext) -> ResourceContext:
        if path.endswith(".contained"):
            return ResourceContext(value, rc.resource, rc.bundle, rc.full_url)
        if path == "Bundle.entry.resource" and rc.bundle is not None:
            entry = rc.bundle.entry_for(value)
            return ResourceContext(value, None, rc.bundle, entry.full_url if entry else None)
        return ResourceContext(value, None, None, None)

    def invariant_plans(self) -> dict[Any, Any]:
        """The per-element invariant plans its walkers make (``Walker._invariants``): elements are
        compiled once per validator, so their plans are too."""
        return self._invariant_plans

    def global_profiles(self, rtype: str) -> tuple[str, ...]:
        """Profiles an ImplementationGuide declares ``global`` for every resource of a type."""
        if self._globals is None:
            table: dict[str, list[str]] = {}
            for ig in self.store.all("ImplementationGuide"):
                for g in ig.get("global") or ():
                    if (
                        isinstance(g, dict)
                        and isinstance(g.get("type"), str)
                        and isinstance(g.get("profile"), str)
                    ):
                        table.setdefault(g["type"], []).append(g["profile"])
            self._globals = {k: tuple(v) for k, v in table.items()}
        return self._globals.get(rtype, ())

    def is_base_source(self, source: str) -> bool:
        """Constraints inherited from a core type were already checked by the base walk."""
        if not source.startswith(SD_BASE):
            return False
        known = self._base_sources.get(source)
        if known is None:
            sd = self.structures.raw(source)
            known = sd is not None and sd.get("derivation") != "constraint"
            self._base_sources[source] = known
        return known

    def extension_definition(self, url: str) -> Any:
        compiled = self.structures.get(url)
        if compiled is None or compiled.type != "Extension":
            return None
        return compiled

    def unknown_extension(self, walker: Walker, url: str, expr: str) -> None:
        # Our own namespace is fully known, so an unknown becare extension is a mistake; others
        # (HL7's extension pack, vendors') may simply not be loaded here.
        if url.startswith(_BECARE):
            walker.report(
                "error",
                "structure",
                expr,
                f"The extension {url} is unknown, and not allowed here",
                source="profile",
                message_id="Extension_EXT_Unknown_NotHere",
            )
        else:
            walker.report(
                "warning",
                "structure",
                expr,
                f"The extension {url} could not be found so is not checked",
                source="profile",
                message_id="Extension_EXT_Unknown",
            )

    def check_xhtml(self, walker: Walker, value: Any, expr: str, rc: ResourceContext | None = None) -> None:
        from adapter.fhirpath.xhtml import narrative_problems

        problems = narrative_problems(value) if isinstance(value, str) else []
        for problem in problems:
            walker.report("error", "invalid", expr, problem, source="structure")
        if rc is not None and not problems and isinstance(value, str) and 'href="#' in value:
            from .narrative import unresolved_links

            root = rc.container if rc.container is not None else rc.resource
            for href, text in unresolved_links(value, root):
                walker.report("error", "invalid", expr,
                              f"Hyperlink '{href}' for '{text}' does not resolve: no element of the resource "
                              "and no anchor of its narrative has that id", source="structure",
                              message_id="XHTML_IDREF_NOT_FOUND")

    def probe_walker(self) -> Walker:
        return Walker(self, [])

    def other_versions(self, url: str) -> str:
        """For a message about a canonical ``url|version`` that is not loaded: the versions that are."""
        versions = getattr(self.store, "versions", None)
        if "|" not in url or versions is None:
            return ""
        loaded = versions(url)
        return f" (version not loaded; loaded: {', '.join(loaded)})" if loaded else ""

    def conforms(self, value: Any, url: str, rc: ResourceContext) -> bool:
        """Does ``value`` conform to the profile ``url``? (profile discriminators, targets)"""
        profile = self.structures.get(url)
        if profile is None:
            return False
        probe = self.probe_walker()
        if isinstance(value, dict) and "resourceType" in value:
            if value.get("resourceType") != profile.type:
                return False
            nested = ResourceContext(value, None, rc.bundle, None)
            probe.walk(value, profile.root, profile, profile.type, "x", nested, profile_mode=True)
        else:
            probe.walk(value, profile.root, profile, profile.type, "x", rc, profile_mode=True)
        return not any(i.is_error for i in probe.issues)

    def check_target_profiles(
        self, walker: Walker, target: dict[str, Any], urls: list[str], expr: str, rc: ResourceContext
    ) -> None:
        """A resolved target must conform to one of the target profiles for its type; a base
        type among them (e.g. plain RelatedPerson) accepts any instance of that type."""
        rtype = target.get("resourceType")
        # which of the target profiles apply to this type depends on the type alone: worked out
        # once per list of targets and type (the same few references recur in every bundle)
        if isinstance(rtype, str):
            key = (id(urls), rtype)
            known = self._target_plans.get(key)
            if known is None or known[0] is not urls:
                known = self._target_plans[key] = (urls, *self._target_plan(urls, rtype))
            _urls, profiles, unknown = known
        else:
            profiles, unknown = self._target_plan(urls, rtype)
        if not profiles:
            return
        meta = target.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        declared = {p for p in claimed if isinstance(p, str)} if isinstance(claimed, list) else set()
        if declared & set(profiles):
            return
        if any(self.conforms(target, u, rc) for u in profiles):
            return
        if unknown:  # the alternative it may conform to cannot be checked
            walker.report(
                "warning",
                "not-supported",
                f"{expr}.reference",
                f"The referenced {rtype} does not conform to {' or '.join(profiles)}; it may conform to "
                f"the unknown target profile {' or '.join(unknown)}, which cannot be checked",
                source="profile",
            )
            return
        walker.report(
            "error",
            "structure",
            f"{expr}.reference",
            f"The referenced {rtype} does not conform to {' or '.join(profiles)}",
            source="profile",
        )

    def _target_plan(self, urls: list[str], rtype: Any) -> tuple[list[str], list[str]]:
        """(target profiles of ``rtype`` to check, target profiles not loaded); ([], []) when a
        base type among them accepts any instance of the type."""
        profiles: list[str] = []
        unknown: list[str] = []
        for url in urls:
            compiled = self.structures.get(url)
            if compiled is None:
                unknown.append(url)  # the walker warned that it cannot be checked
                continue
            if compiled.type != rtype and compiled.type != "Resource":
                continue
            if not compiled.is_profile:
                return [], []
            profiles.append(url)
        return profiles, unknown

    def unknown_target_profiles(self, walker: Walker, urls: tuple[str, ...], typed: bool, expr: str) -> None:
        """Target profiles that are not loaded: the target cannot be checked against them (nor its
        type, when no known target profile names one). Never a type name. An error, as the HL7
        Java validator reports it (REFERENCE_REF_CANTRESOLVEPROFILE) and as becare fails closed:
        what could not be checked does not count as checked. Load the profile (``--ig``) to check
        the target instead (docs/validation-notes.md)."""
        for url in urls:
            why = self.structures.broken.get(url)
            walker.report(
                "error",
                "not-found",
                expr,
                f"The target profile '{url}' "
                + (f"cannot be used ({why})" if why else "is unknown (not loaded)")
                + ", so the referenced resource's conformance to it cannot be checked"
                + ("" if typed else ", nor its type"),
                source="profile",
                message_id="Reference_REF_CantResolveProfile",
            )

    # ------------------------------------------------------------------ rulebook
    def _rulebook(
        self, resource: dict[str, Any], options: ValidationOptions, scans: Scans | None = None
    ) -> Any:
        # no ImportError fallback: a rulebook that cannot be loaded has not checked anything
        from adapter.rules import check_rulebook

        return check_rulebook(
            resource,
            region=options.region,
            lang=options.lang,
            registry=options.registry,
            today=options.today,
            scans=scans,
        )


def _located(issue: Issue, document: Any) -> Issue:
    if issue.line is not None or not issue.expression:
        return issue
    try:
        pos = document.locate(issue.expression)
    except Exception:  # locating is best effort; the issue stands without a position
        pos = None
    if pos is None:
        return issue
    return issue.at(pos[0], pos[1])


def _located_all(issues: list[Issue], document: Any) -> list[Issue]:
    """Every issue with its line and column, the document read once for all of them (only
    along their paths). Locating is best effort: an issue it cannot place stands without."""
    wanted = {i.expression for i in issues if i.line is None and i.expression}
    if not wanted:
        return issues
    locate_many = getattr(document, "locate_many", None)
    if locate_many is None:
        return [_located(i, document) for i in issues]
    try:
        found = locate_many(wanted)
    except Exception:  # best effort, as above
        return issues
    out = []
    for issue in issues:
        pos = found.get(issue.expression) if issue.line is None and issue.expression else None
        out.append(issue.at(pos[0], pos[1]) if pos is not None else issue)
    return out


def _format_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    ct = content_type.lower()
    if "xml" in ct:
        return "xml"
    if "json" in ct:
        return "json"
    return None
