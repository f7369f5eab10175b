"""The instance walker: one pass over a resource against a compiled StructureDefinition.

Structure (unknown properties, JSON shapes, primitive formats, cardinality), fixed and pattern
values, bindings, invariants, slicing and references are all checked on the way down, so each
node is visited once per structure that applies to it (its base type, then each profile).
In profile mode the checks the base type already made (unknown properties, primitive formats)
are skipped, so a profile costs only what it adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from adapter.fhirio.scan import Scans
from adapter.validation import slicing
from adapter.validation.compare import fixed_matches, pattern_matches
from adapter.validation.datatypes import ELE_1, check_attachment, check_limits, only_id, primitive_at
from adapter.validation.extensions import checker_for, strip_indexes
from adapter.validation.issues import Issue
from adapter.validation.model import (
    PRIMITIVE_TYPES,
    CompiledStructure,
    ElementRule,
    TypeRef,
    json_children,
)
from adapter.validation.primitives import check_primitive
from adapter.validation.primitives import describe_kind as _kind
from adapter.validation.references import (
    BundleIndex,
    contained_by_id,
    is_valid_reference_format,
    reference_type,
)

# Invariants checked structurally (empty elements, extension value xor children) or by the
# bundle checker; evaluating them in FHIRPath again would only duplicate the messages.
_STRUCTURAL = frozenset({"ele-1", "ext-1"})


@dataclass
class ResourceContext:
    """Where a resource sits: what references resolve against."""

    resource: dict[str, Any]
    container: dict[str, Any] | None  # the resource holding this one in ``contained``
    bundle: BundleIndex | None
    full_url: str | None

    def contained(self) -> dict[str, dict[str, Any]]:
        owner = self.container if self.container is not None else self.resource
        return contained_by_id(owner)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        if reference.startswith("#"):
            if reference == "#":
                return self.container if self.container is not None else self.resource
            return self.contained().get(reference[1:])
        if self.bundle is not None:
            entry = self.bundle.resolve(reference, self.full_url)
            return entry.resource if entry is not None else None
        return None


class Walker:
    """Validates one resource tree; the engine provides the shared services."""

    def __init__(self, engine: Any, issues: list[Issue]) -> None:
        self.engine = engine
        self.index = engine.structures
        self.issues = issues
        self.regexes = self.index.regexes
        self.resource_types = self.index.resource_types()
        # (location, key, expression) of invariants already evaluated: a profile repeats the
        # constraints of its base, and the answer at one location does not change
        self.evaluated: set[tuple[str, str, str]] = set()
        # per-rule invariant plans (``_invariants``): the engine's, shared by its walkers
        self._invariant_plans: dict[ElementRule, Any] = engine.invariant_plans()
        self.extensions = checker_for(engine)
        self.resource_at: list[tuple[str, str]] = []  # (expression, type) of the resources walked into
        self.applied: dict[str, list[str]] = {}  # resource FHIRPath -> canonicals applied (provenance)
        self.canonicals: list[dict[str, str]] = []  # {declared, applied, at}: profiles not applied as sent
        # (type, string) pairs check_primitive found valid in this validation: codes, systems and
        # references recur throughout a bundle, and the check is a pure function of the pair
        self.valid_strings: set[tuple[str, str]] = set()
        # (binding, profile mode, codings...) found to hold in this validation (bindings.py)
        self.valid_bindings: set[tuple[Any, ...]] = set()
        self.scans = Scans()  # references and identifiers of each resource, found once (fhirio.scan)

    def instance_path(self, expr: str) -> str:
        """``expr`` from its resource on, indexes removed: ``Patient.address`` (extension contexts)."""
        if self.resource_at:
            at, rtype = self.resource_at[-1]
            if expr.startswith(at):
                return strip_indexes(rtype + expr[len(at) :])
        return strip_indexes(expr)

    # ------------------------------------------------------------------ reporting
    def report(
        self,
        severity: str,
        code: str,
        expr: str,
        message: str,
        source: str = "structure",
        message_id: str | None = None,
    ) -> None:
        self.issues.append(Issue(severity, code, expr, message, source=source, message_id=message_id))  # type: ignore[arg-type]

    def _primitive_problem(self, expr: str, problem: str) -> None:
        """A primitive value check_primitive refused: a wrong JSON shape, or an invalid value."""
        self.report("error", "invalid" if "JSON" not in problem else "structure", expr, problem)

    # ------------------------------------------------------------------ resources
    def validate_resource(
        self,
        resource: Any,
        expr: str,
        rc: ResourceContext,
        *,
        extra_profiles: tuple[str, ...] = (),
        expected_types: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(resource, dict):
            self.report("error", "structure", expr, "A resource must be a JSON object")
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            self.report("error", "structure", expr, "The resource has no resourceType")
            return
        base = self.index.get(rtype) if self.index.is_resource_type(rtype) else None
        if base is None:
            self.report(
                "error", "structure", expr, f"Unknown resource type '{rtype}'", message_id="UNKNOWN_TYPE"
            )
            return
        if expected_types and rtype not in expected_types and "Resource" not in expected_types:
            self.report("error", "structure", expr, f"The resource type '{rtype}' is not allowed here")
        # invariants are evaluated once per location (``evaluated``); the locations inside a
        # nested resource (a bundle entry, a contained resource) are all visited while it is
        # validated here, never again by this walker (its container's profile walks check it
        # with walkers of their own), so its marks are kept only meanwhile: on a large bundle
        # they would otherwise pile up, hundreds of thousands, for nothing
        outer = self.evaluated
        if self.resource_at:
            self.evaluated = set()
        try:
            self._validate_resource(resource, rtype, base, expr, rc, extra_profiles)
        finally:
            self.evaluated = outer

    def _validate_resource(
        self,
        resource: dict[str, Any],
        rtype: str,
        base: CompiledStructure,
        expr: str,
        rc: ResourceContext,
        extra_profiles: tuple[str, ...],
    ) -> None:
        self.engine.before_resource(self, resource, expr, rc)
        self.resource_at.append((expr, rtype))
        self.applied.setdefault(expr, []).append(canonical_of(base))
        try:
            self.walk(resource, base.root, base, rtype, expr, rc, False)
        finally:
            self.resource_at.pop()
        meta = resource.get("meta")
        # not an object, not an array: shape errors the walk reported
        profiles = meta.get("profile") if isinstance(meta, dict) else None
        declared = [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []
        for i, url in enumerate(declared):
            self.apply_profile(resource, url, f"{expr}.meta.profile[{i}]", expr, rc, declared=True)
        for url in self.engine.global_profiles(rtype):
            if url not in declared and url not in extra_profiles:
                self.apply_profile(resource, url, expr, expr, rc, declared=True)
        for url in extra_profiles:
            if url not in declared and not self._declared_as(url, declared):
                self.apply_profile(resource, url, expr, expr, rc, declared=False)
        self.engine.after_resource(self, resource, expr, rc)

    def apply_profile(
        self,
        resource: dict[str, Any],
        url: str,
        where: str,
        expr: str,
        rc: ResourceContext,
        *,
        declared: bool,
    ) -> None:
        profile = self.index.get(url)  # any canonical form; "url|version" picks that version
        if profile is None and url in self.index.broken:
            self.report(
                "error",
                "invalid",
                where,
                f"Profile '{url}' cannot be used: {self.index.broken[url]}",
                source="profile",
            )
            return
        if profile is None:
            known = self.engine.other_versions(url)
            if declared and known:  # the profile is loaded, not that version: it cannot be checked
                self.report(
                    "error",
                    "not-found",
                    where,
                    f"Profile reference '{url}' cannot be checked{known}: load that version (--ig) or "
                    "declare a loaded one",
                    source="profile",
                    message_id="becare-profile-version-not-loaded",
                )
            elif declared:
                self.report(
                    "warning",
                    "not-supported",
                    where,
                    f"Profile reference '{url}' has not been checked because it is unknown{known}",
                    source="profile",
                    message_id="VALIDATION_VAL_PROFILE_UNKNOWN",
                )
            else:
                self.report(
                    "error", "not-found", expr, f"Unable to find the profile '{url}'{known}", source="profile"
                )
            return
        self._note_canonical(url, profile, where)
        if profile.type != resource.get("resourceType"):
            self.report(
                "error",
                "structure",
                where,
                f"The profile '{url}' is for {profile.type} resources, not {resource.get('resourceType')}",
                source="profile",
            )
            return
        if (
            profile.kind == "resource"
            and profile.url.startswith("http://hl7.org/fhir/StructureDefinition/")
            and not profile.is_profile
        ):
            return  # the base definition: already walked
        self.applied.setdefault(expr, []).append(canonical_of(profile))
        self.walk(resource, profile.root, profile, profile.type, expr, rc, True)

    # ------------------------------------------------------------------ elements
    def walk(
        self,
        value: Any,
        rule: ElementRule,
        structure: CompiledStructure,
        tcode: str | None,
        expr: str,
        rc: ResourceContext,
        profile_mode: bool,
    ) -> None:
        """Check one item (not a list) against ``rule``. (``profile_mode`` is passed by position
        in the walker's own calls: this is its hottest call.)"""
        if tcode is None:
            if rule.types:
                tcode = rule.types[0].code
            elif rule.content_reference:
                target = structure.by_id.get(rule.content_reference.split("#", 1)[-1])
                tcode = target.types[0].code if target is not None and target.types else "BackboneElement"
            else:
                tcode = structure.type
        if rule.fixed is not None and not fixed_matches(value, rule.fixed[1]):
            self.report(
                "error",
                "value",
                expr,
                f"Value is {_show(value)} but must be {_show(rule.fixed[1])} (fixed value)",
                source="profile",
            )
        if rule.pattern is not None and not pattern_matches(value, rule.pattern[1]):
            self.report(
                "error",
                "value",
                expr,
                f"The value does not match the required pattern {_show(rule.pattern[1])}",
                source="profile",
            )
        if tcode in PRIMITIVE_TYPES:
            if not profile_mode:
                if rule.name == "id" and rule.id.count(".") == 1 and structure.kind == "resource":
                    tcode = "id"  # R4 types Resource.id as a plain string; its value is an id
                mark = (tcode, value) if value.__class__ is str else None
                if mark is None or mark not in self.valid_strings:
                    problem = check_primitive(value, tcode, self.regexes)
                    if problem:
                        self._primitive_problem(expr, problem)
                        return
                    if mark is not None:
                        self.valid_strings.add(mark)
            if rule.max_length and isinstance(value, str) and len(value) > rule.max_length:
                self.report(
                    "error",
                    "too-long",
                    expr,
                    f"The value is longer ({len(value)}) than the maximum length {rule.max_length}",
                    source="profile",
                )
            if rule.binding:
                self.engine.bindings.check(self, value, tcode, rule.binding, expr, profile_mode)
            if rule.has_limits:
                check_limits(self, value, tcode, rule, expr)
            if tcode == "xhtml" and not profile_mode:
                self.engine.check_xhtml(self, value, expr, rc)
            return
        if not isinstance(value, dict):
            if not profile_mode:
                self.report(
                    "error", "structure", expr, f"This property must be an object, not {_kind(value)}"
                )
            return
        if (rule.types and tcode in ("Resource", "DomainResource")) or (
            rule is not structure.root and tcode in self.resource_types
        ):
            nested = self.engine.nested_context(value, rule.path, rc)
            if not profile_mode:
                expected = tuple(t.code for t in rule.types)
                self.validate_resource(value, expr, nested, expected_types=expected)
            else:
                self._nested_type_profiles(value, rule, expr, nested)
            return
        if not value and not profile_mode:
            self.report(
                "error",
                "structure",
                expr,
                "Object must have some content",
                message_id="Object_must_have_some_content",
            )
            return
        if not profile_mode and len(value) == 1 and "id" in value:  # only_id(): not empty, see above
            self.report("error", "invariant", expr, ELE_1, source="invariant", message_id="ele-1")

        if tcode == "Extension" and not profile_mode and _is_absolute(value.get("url")):
            definition = self.engine.extension_definition(value["url"])
            if definition is not None and definition is not structure:
                self.walk(value, definition.root, definition, "Extension", expr, rc, False)
                return
            if definition is None:
                self.engine.unknown_extension(self, value["url"], expr)

        # which children: those the (profiled) snapshot spells out, else the datatype's own
        cstruct = structure
        if rule.content_reference and not rule.children:
            # a contentReference means the element of the base type, not a profile's constrained copy
            base = self.index.get(structure.type) or structure
            owner = base.by_id.get(rule.content_reference.split("#", 1)[-1]) or rule
            cstruct = base
            cmap = json_children(owner, base)
        elif rule.children or rule is structure.root:
            cached = rule.json_children  # json_children(), inlined where it is cached
            cmap = cached if cached is not None else json_children(rule, structure)
            owner = rule
        elif profile_mode:
            cmap = {}  # the datatype's own definition: the base walk checked it
            owner = rule
        else:
            dt = self.index.get(tcode)
            if dt is None:
                if not profile_mode:
                    self.report("error", "structure", expr, f"Unknown type '{tcode}'")
                return
            cstruct, owner = dt, dt.root
            cached = dt.root.json_children
            cmap = cached if cached is not None else json_children(dt.root, dt)
            if dt.root.evaluable != ():
                self._invariants(value, dt.root, dt, tcode, expr, rc, profile_mode)

        if not profile_mode and ("extension" in value or "modifierExtension" in value):
            self.extensions.check_element(self, value, rule, owner, structure, tcode, expr, rc)
        if cmap or not profile_mode:  # a profile walk with no child rules here reports nothing
            self._children(value, cmap, owner, cstruct, expr, rc, profile_mode)
        if rule.evaluable != ():  # () once known to hold only structural constraints
            self._invariants(value, rule, structure, tcode, expr, rc, profile_mode)
        if rule.binding and tcode in ("Coding", "CodeableConcept", "Quantity", "CodeableReference"):
            self.engine.bindings.check(self, value, tcode, rule.binding, expr, profile_mode)
        if rule.has_limits:
            check_limits(self, value, tcode, rule, expr)
        if tcode == "Reference":
            self._reference(value, rule, expr, rc, profile_mode)
        elif tcode == "Attachment" and not profile_mode:
            check_attachment(self, value, expr)
        elif tcode == "Coding" and not profile_mode:
            self.engine.bindings.check_coding(self, value, expr)
        elif tcode == "CodeableConcept" and not profile_mode:
            codings = value.get("coding")
            for i, coding in enumerate(codings if isinstance(codings, list) else ()):
                if isinstance(coding, dict):
                    self.engine.bindings.check_coding(self, coding, f"{expr}.coding[{i}]")
        # a type profile (e.g. an Address that must be a be-address) applies in addition
        chosen = _type_ref(rule, tcode) if rule.type_profiled else None
        if chosen is not None and chosen.profiles and tcode != "Extension":
            for url in chosen.profiles:
                prof = self.index.get(url)
                if prof is not None and prof.is_profile:
                    self.walk(value, prof.root, prof, tcode, expr, rc, True)

    def _children(
        self,
        value: dict[str, Any],
        cmap: dict[str, tuple[ElementRule, str | None]],
        owner: ElementRule,
        cstruct: CompiledStructure,
        expr: str,
        rc: ResourceContext,
        profile_mode: bool,
    ) -> None:
        # children needing the general path (arrays, choices, slicing, companions), by rule
        present: dict[int, tuple[ElementRule, list[tuple[str, str | None]]]] = {}
        plan = owner.child_plan
        if plan is None or owner.json_children is not cmap:
            plan = _plan(owner, cmap)
        steps, walk, regexes = plan.steps, self.walk, self.regexes  # locals: this loop is the hot one
        valid_strings = self.valid_strings
        members: Any
        if profile_mode:  # only the keys a profile walk can say something about, in their order
            wanted = plan.profile_keys
            members = [(key, raw) for key, raw in value.items() if key in wanted]
        else:
            members = value.items()
        for key, raw in members:
            step = steps.get(key)
            if step is None:
                if key[:1] == "_":
                    base_key = key[1:]
                    if base_key in cmap:
                        if base_key not in value:
                            child, ctype = cmap[base_key]
                            present.setdefault(id(child), (child, []))[1].append((base_key, ctype))
                        if not profile_mode:
                            self._primitive_companion(value, key, cmap[base_key], expr, rc)
                        continue
                elif key == "resourceType" and owner is cstruct.root and cstruct.kind == "resource":
                    continue
                if not profile_mode:
                    self.report(
                        "error",
                        "structure",
                        f"{expr}.{key}",
                        f"Unrecognized property '{key}'",
                        message_id="Unrecognised_property",
                    )
                continue
            child, ctype, kind = step
            if profile_mode and not child.constrained:
                continue  # the base walk checked it; the profile changes nothing here
            if kind and raw is not None and not isinstance(raw, list):
                # the common case: one value where one is allowed, nothing sliced
                if profile_mode and not child.descend:
                    continue  # one value satisfies its cardinality; nothing else to check
                if kind == _PLAIN_PRIMITIVE:
                    # nothing but its datatype constrains it: walk() reduced to its one check
                    # (none at all for a profile: the base walk did it)
                    if not profile_mode:
                        if raw.__class__ is str:
                            mark = (ctype, raw)
                            if mark in valid_strings:
                                continue
                            problem = check_primitive(raw, ctype, regexes)  # type: ignore[arg-type]
                            if not problem:
                                valid_strings.add(mark)  # type: ignore[arg-type]
                                continue
                        else:
                            problem = check_primitive(raw, ctype, regexes)  # type: ignore[arg-type]
                        if problem:
                            self._primitive_problem(f"{expr}.{key}", problem)
                    continue
                walk(raw, child, cstruct, ctype, f"{expr}.{key}", rc, profile_mode)
                continue
            slot = present.get(id(child))
            if slot is None:
                present[id(child)] = (child, [(key, ctype)])
            else:
                slot[1].append((key, ctype))

        for child, keys in present.values():
            if len(keys) == 1 and not (child.slices or child.slicing):
                key, ctype = keys[0]
                raw = value.get(key)
                if (
                    raw.__class__ is list
                    and child.min <= len(raw) <= child.max
                    and child.max > 1
                    and raw
                    and None not in raw
                ):
                    # the common array: nothing to say about the array itself, so each item is
                    # walked as the general path below would, without its bookkeeping
                    if profile_mode and not child.descend:
                        continue  # counted; the profile checks nothing inside it
                    ctype = ctype or _single_type(child)
                    if ctype in PRIMITIVE_TYPES and ctype != "xhtml" and _is_plain(child):
                        if not profile_mode:
                            for j, item in enumerate(raw):
                                problem = check_primitive(item, ctype, regexes)
                                if problem:
                                    self._primitive_problem(f"{expr}.{key}[{j}]", problem)
                        continue
                    for j, item in enumerate(raw):
                        walk(item, child, cstruct, ctype, f"{expr}.{key}[{j}]", rc, profile_mode)
                    continue
            if len(keys) > 1 and child.is_choice:
                self.report(
                    "error",
                    "structure",
                    f"{expr}.{keys[1][0]}",
                    f"Only one of the choices of {child.name} may be present",
                )
            items: list[tuple[Any, str, str | None, bool]] = []  # (item, key, type, is_null_placeholder)
            for key, ctype in keys:
                raw = value.get(key)
                if isinstance(raw, list):
                    if child.max <= 1 and not profile_mode:
                        self.report(
                            "error",
                            "structure",
                            f"{expr}.{key}",
                            "This property must be a single value, not an array "
                            f"(max = {_fmt_max(child.max)})",
                        )
                    if not raw and not profile_mode:
                        self.report(
                            "error",
                            "structure",
                            f"{expr}.{key}",
                            "Array cannot be empty - the property should not be present if it has no values",
                        )
                    for j, item in enumerate(raw):
                        if item is None:
                            companion = value.get("_" + key)
                            ok = (
                                isinstance(companion, list)
                                and j < len(companion)
                                and companion[j] is not None
                            )
                            if not ok and not profile_mode:
                                self.report(
                                    "error",
                                    "structure",
                                    f"{expr}.{key}[{j}]",
                                    "Null values are not allowed in arrays unless the primitive has an "
                                    "extension or id",
                                )
                            items.append((None, f"{key}[{j}]", ctype, True))
                        else:
                            items.append((item, f"{key}[{j}]", ctype, False))
                elif raw is None and key in value:
                    if not profile_mode:
                        self.report("error", "structure", f"{expr}.{key}", "Null values are not allowed here")
                elif raw is None:  # only the _companion is there
                    items.append((None, key if child.max <= 1 else f"{key}[0]", ctype, True))
                else:
                    if child.max > 1 and not profile_mode:
                        self.report(
                            "error",
                            "structure",
                            f"{expr}.{key}",
                            "This property must be an array, not a single value "
                            f"(max = {_fmt_max(child.max)})",
                        )
                    items.append((raw, key if child.max <= 1 else f"{key}[0]", ctype, False))
            count = len(items)
            if count < child.min:
                self.report(
                    "error",
                    "required",
                    f"{expr}.{keys[0][0]}",
                    f"{child.path}: minimum required = {child.min}, but only found {count}",
                    source="profile" if profile_mode else "structure",
                )
            if count > child.max:
                self.report(
                    "error",
                    "structure",
                    f"{expr}.{keys[0][0]}",
                    f"{child.path}: max allowed = {_fmt_max(child.max)}, but found {count}",
                    source="profile" if profile_mode else "structure",
                )
            slice_of: list[ElementRule | None] = [None] * count
            if child.slices or child.slicing:
                slice_of = slicing.assign(self, child, cstruct, items, expr, rc, profile_mode)
            for (item, key, ctype, placeholder), slice_rule in zip(items, slice_of, strict=True):
                if placeholder:
                    continue
                iexpr = f"{expr}.{key}"
                ctype = ctype or _single_type(child)
                if profile_mode and not child.descend and slice_rule is None:
                    continue  # counted above; the profile checks nothing inside it
                if ctype in PRIMITIVE_TYPES and ctype != "xhtml" and _is_plain(child):
                    # walk() reduced to its one check, as for a single plain primitive above
                    if not profile_mode:
                        problem = check_primitive(item, ctype, self.regexes)
                        if problem:
                            self._primitive_problem(iexpr, problem)
                else:
                    self.walk(item, child, cstruct, ctype, iexpr, rc, profile_mode)
                if slice_rule is not None:
                    self.walk(item, slice_rule, cstruct, ctype, iexpr, rc, True)

        for child, wanted_keys in plan.required:
            if value.keys().isdisjoint(wanted_keys):  # none of its keys (nor ``_`` companions) is there
                self.report(
                    "error",
                    "required",
                    f"{expr}",
                    f"{child.path}: minimum required = {child.min}, but only found 0",
                    source="profile" if profile_mode else "structure",
                )
        for child, wanted_keys in plan.sliced:
            if value.keys().isdisjoint(wanted_keys):  # absent: its required slices are missing too
                slicing.assign(self, child, cstruct, [], expr, rc, profile_mode)

    def _primitive_companion(
        self,
        value: dict[str, Any],
        key: str,
        entry: tuple[ElementRule, str | None],
        expr: str,
        rc: ResourceContext,
    ) -> None:
        """``_name`` carries the id and extensions of a primitive; check it as an Element."""
        child, ctype = entry
        ctype = ctype or (child.types[0].code if child.types else "string")
        if ctype not in PRIMITIVE_TYPES:
            self.report("error", "structure", f"{expr}.{key}", f"Unrecognized property '{key}'")
            return
        companion = value[key]
        if "xmlAttr" in (child.definition.get("representation") or ()):
            self.report(
                "error",
                "structure",
                f"{expr}.{key}",
                f"'{key[1:]}' is an XML attribute (element ids, Extension.url): it cannot have an id or "
                "extensions",
            )
            return
        element_sd = self.index.get(ctype)
        if element_sd is None:
            return
        cmap = {k: v for k, v in json_children(element_sd.root, element_sd).items() if k != "value"}
        items = companion if isinstance(companion, list) else [companion]
        if (
            isinstance(companion, list)
            and isinstance(value.get(key[1:]), list)
            and len(companion) != len(value[key[1:]])
        ):
            self.report(
                "error",
                "structure",
                f"{expr}.{key}",
                "The arrays of values and their extensions must have the same length",
            )
        for j, item in enumerate(items):
            if item is None:
                continue
            iexpr = f"{expr}.{key}[{j}]" if isinstance(companion, list) else f"{expr}.{key}"
            if not isinstance(item, dict):
                self.report(
                    "error", "structure", iexpr, f"This property must be an object, not {_kind(item)}"
                )
                continue
            primitive = primitive_at(value.get(key[1:]), j, isinstance(companion, list))
            if primitive is None and only_id(item):
                self.report("error", "invariant", iexpr, ELE_1, source="invariant", message_id="ele-1")
            self.extensions.check_primitive(self, value, key[1:], child, ctype, item, primitive, iexpr, rc)
            self._children(item, cmap, element_sd.root, element_sd, iexpr, rc, False)

    # ------------------------------------------------------------------ invariants
    def _invariants(
        self,
        value: Any,
        rule: ElementRule,
        structure: CompiledStructure,
        tcode: str,
        expr: str,
        rc: ResourceContext,
        profile_mode: bool,
    ) -> None:
        evaluable = rule.evaluable
        if evaluable is None:
            evaluable = rule.evaluable = tuple(
                c for c in rule.constraints if c.get("key", "") not in _STRUCTURAL and c.get("expression")
            )
        # (constraint, key, expression, plan) to evaluate, in a base walk and in a profile walk,
        # worked out once per rule: the same few rules are met at every element of every bundle
        plans = self._invariant_plans
        planned = plans.get(rule)
        if planned is None:
            planned = plans[rule] = self._plan_invariants(evaluable)
            if not planned[0]:  # all skipped: nothing to evaluate here in either walk
                rule.evaluable = ()
        todo = planned[1] if profile_mode else planned[0]
        if todo:
            self.engine.invariants.run_all(self, value, rule, tcode, todo, expr, rc)

    def _plan_invariants(
        self, evaluable: tuple[dict[str, Any], ...]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(all, own): the constraints to evaluate in a base walk, and in a profile walk (not those
        inherited from a core type: the base walk did them); skipped ones are left out."""
        invariants = self.engine.invariants
        items = []
        for c in evaluable:
            plan = invariants.plan_of(c)
            if plan is not None and plan.skip:
                continue
            items.append((c, c.get("key", ""), c.get("expression", ""), plan))
        own = tuple(i for i in items if not self.engine.is_base_source(i[0].get("source", "")))
        return tuple(items), own

    # ------------------------------------------------------------------ references
    def _reference(
        self, value: dict[str, Any], rule: ElementRule, expr: str, rc: ResourceContext, profile_mode: bool
    ) -> None:
        ref = value.get("reference")
        if not isinstance(ref, str):
            return
        if not profile_mode and not is_valid_reference_format(ref):
            self.report("error", "invalid", f"{expr}.reference", f"Invalid reference format '{ref}'")
            return
        cached = rule.reference_targets
        if cached is None:
            targets = [tp for t in rule.types if t.code == "Reference" for tp in t.target_profiles]
            types = [(tp, self._profile_type(tp)) for tp in targets]
            cached = rule.reference_targets = (
                targets,
                frozenset(t for _, t in types if t is not None),
                tuple(tp for tp, t in types if t is None),
            )
        targets, allowed, unknown = cached
        if not targets:
            return
        if unknown:  # an unknown target profile says nothing about the type: it cannot be checked
            self.engine.unknown_target_profiles(self, unknown, bool(allowed), expr)
        target = rc.resolve(ref)
        target_type = target.get("resourceType") if isinstance(target, dict) else reference_type(ref)
        if not isinstance(target_type, str) or not target_type:
            return  # a target without a usable resourceType: reported where it stands
        if "Resource" in allowed or target_type in allowed or unknown:
            if target is not None and profile_mode:
                self.engine.check_target_profiles(self, target, targets, expr, rc)
            return
        self.report(
            "error",
            "structure",
            f"{expr}.reference",
            f"The type '{target_type}' implied by the reference '{ref}' is not valid for the target "
            "of this element "
            f"(must be one of {', '.join(sorted(a for a in allowed if a))})",
            source="profile" if profile_mode else "structure",
        )

    def _nested_type_profiles(
        self, value: dict[str, Any], rule: ElementRule, expr: str, rc: ResourceContext
    ) -> None:
        """A profile may require a nested resource (Bundle.entry.resource, a parameter, a
        contained resource) to conform to a profile of its own; several listed profiles are
        alternatives: conforming to one is enough."""
        rtype = value.get("resourceType")
        urls = [url for t in rule.types for url in t.profiles]
        if not urls:
            return
        candidates = []
        for url in urls:
            prof = self.index.get(url)
            if prof is not None and prof.type == rtype and prof.is_profile:
                candidates.append(prof)
        if not candidates:
            unresolved = [u for u in urls if self.index.get(u) is None]
            if unresolved:
                self.report(
                    "error",
                    "not-found",
                    expr,
                    f"Unable to resolve the profile reference '{unresolved[0]}'",
                    source="profile",
                )
            return
        attempts: list[list[Issue]] = []
        for prof in candidates:
            probe = self.engine.probe_walker()
            probe.walk(value, prof.root, prof, rtype, expr, rc, True)
            if not any(i.is_error for i in probe.issues):
                self.issues.extend(probe.issues)
                self.applied.setdefault(expr, []).append(canonical_of(prof))
                return
            attempts.append(probe.issues)
        broken = [u for u in urls if u in self.index.broken]
        if broken:
            # an alternative we cannot evaluate might be the one it conforms to
            self.report(
                "warning",
                "not-supported",
                expr,
                f"Not checked against '{broken[0]}': {self.index.broken[broken[0]]}",
                source="profile",
            )
            return
        self.applied.setdefault(expr, []).append(canonical_of(candidates[0]))
        self.issues.extend(attempts[0])

    def _note_canonical(self, url: str, profile: CompiledStructure, where: str) -> None:
        """A profile canonical applied other than as sent: a legacy eHealth canonical validated
        against its current profile (an information issue says so, at ``where``), or
        ``url|version`` resolved to a loaded version. Both go to the report's provenance."""
        row = self.index.mapped.get(url)
        if row is None and "|" not in url:
            return
        applied = canonical_of(profile)
        if applied == url:  # applied exactly as sent
            return
        self.canonicals.append({"declared": url, "applied": applied, "at": where})
        if row is not None:
            self.report(
                "information",
                "informational",
                where,
                f"Profile '{url}' is a legacy eHealth canonical ({row.reason}): validated against the "
                f"current profile '{applied}'",
                source="profile",
                message_id="becare-legacy-canonical",
            )

    def _declared_as(self, url: str, declared: list[str]) -> bool:
        """``url|version`` and ``url`` naming the same loaded profile: it applies once."""
        if not declared:
            return False
        try:
            definition = self.index.raw(url)
            return definition is not None and any(self.index.raw(d) is definition for d in declared)
        except ValueError:  # a definition whose snapshot cannot be generated: reported when applied
            return False

    def _profile_type(self, url: str) -> str | None:
        """The resource type a target profile constrains; None when the profile is not loaded
        (its last URL segment is a profile name, not a type)."""
        compiled = self.index.get(url)
        return compiled.type if compiled is not None else None


def canonical_of(structure: Any) -> str:
    """``url|version`` of a compiled structure (its url alone when it has no version)."""
    return structure.canonical  # type: ignore[no-any-return]


_GENERAL, _SINGLE, _PLAIN_PRIMITIVE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _ChildPlan:
    """How each JSON property under one element is walked, decided once per element rule:
    ``steps`` maps a key to (child rule, type, kind) where kind says whether a single value
    can take a fast path; ``required`` lists the required children with the keys (and ``_``
    companions) any of which makes them present; ``sliced`` the children with a required slice,
    reported by the slicing rules when the child is absent altogether."""

    steps: dict[str, tuple[ElementRule, str | None, int]]
    required: tuple[tuple[ElementRule, tuple[str, ...]], ...]
    sliced: tuple[tuple[ElementRule, tuple[str, ...]], ...] = ()
    # the keys a profile walk looks at: those of constrained children, and every ``_`` companion
    # (one standing alone counts its element); a profile walk skips all others unread
    profile_keys: frozenset[str] = frozenset()


def _plan(owner: ElementRule, cmap: dict[str, tuple[ElementRule, str | None]]) -> _ChildPlan:
    cached = owner.child_plan
    if cached is not None and owner.json_children is cmap:
        return cached  # type: ignore[no-any-return]
    steps: dict[str, tuple[ElementRule, str | None, int]] = {}
    keys_of: dict[int, list[str]] = {}
    for key, (child, ctype) in cmap.items():
        keys_of.setdefault(id(child), []).extend((key, "_" + key))
        kind = _GENERAL
        if (
            child.max == 1
            and child.min <= 1
            and not child.is_choice
            and not child.slicing
            and not child.slices
        ):
            ctype = ctype or _single_type(child)
            kind = _SINGLE
            if ctype in PRIMITIVE_TYPES and ctype != "xhtml" and _is_plain(child):
                kind = _PLAIN_PRIMITIVE
        steps[key] = (child, ctype, kind)
    required = tuple((child, tuple(keys_of[id(child)])) for child in _required(cmap))
    sliced = tuple(
        (child, tuple(keys_of[id(child)]))
        for child in {id(c): c for c, _t in cmap.values() if any(s.min > 0 for s in c.slices)}.values()
    )
    profile_keys = frozenset(k for k, (child, _t, _k) in steps.items() if child.constrained) | frozenset(
        "_" + k for k in cmap
    )
    plan = _ChildPlan(steps, required, sliced, profile_keys)
    if owner.json_children is cmap:
        owner.child_plan = plan
    return plan


def _is_plain(rule: ElementRule) -> bool:
    """Whether a primitive element carries no constraint of its own beyond its datatype (no
    fixed or pattern value, binding, length or value limits, and not the id of a resource,
    which R4 types as string but checks as id); cached on the rule."""
    plain = rule.plain
    if plain is None:
        plain = rule.plain = (
            rule.fixed is None
            and rule.pattern is None
            and not rule.binding
            and not rule.max_length
            and not rule.has_limits
            and rule.name != "id"
        )
    return plain


def _is_absolute(url: Any) -> bool:
    return isinstance(url, str) and ("://" in url or url.startswith("urn:"))


def _required(cmap: dict[str, tuple[ElementRule, str | None]]) -> list[ElementRule]:
    """The required children, once each (a choice element appears under several keys)."""
    seen: set[int] = set()
    out = []
    for child, _ctype in cmap.values():
        if child.min > 0 and id(child) not in seen:
            seen.add(id(child))
            out.append(child)
    return out


def _type_ref(rule: ElementRule, tcode: str) -> TypeRef | None:
    for t in rule.types:
        if t.code == tcode:
            return t
    return None


def _single_type(rule: ElementRule) -> str | None:
    if len(rule.types) == 1:
        return rule.types[0].code
    return None


def _fmt_max(value: float) -> str:
    return "*" if math.isinf(value) else str(int(value))


def _show(value: Any, limit: int = 120) -> str:
    import json

    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
