"""Slicing: which slice each item of a sliced element belongs to, and the slice rules.

Discriminators value, pattern, type, exists and profile are evaluated over a small path
language (dotted names, ``$this``, ``resolve()``, ``ofType(T)``, ``extension('url')``) that
covers what published profiles use. Items that match no slice are allowed (open), refused
(closed) or allowed only after the matched ones (openAtEnd).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from adapter.validation.compare import fixed_matches, pattern_matches
from adapter.validation.model import CompiledStructure, ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import ResourceContext, Walker

_SEGMENT = re.compile(
    r"extension\('([^']*)'\)|ofType\(([A-Za-z]+)\)|resolve\(\)|\$this|[A-Za-z][A-Za-z0-9_]*(?:\[x\])?"
)


def _segments(path: str) -> list[str]:
    return [m.group(0) for m in _SEGMENT.finditer(path or "$this")]


def slice_element(
    walker: Walker, rule: ElementRule, structure: CompiledStructure, path: str
) -> ElementRule | None:
    """The element definition reached from a slice by a discriminator path."""
    current: ElementRule | None = rule
    for seg in _segments(path):
        if current is None:
            return None
        if seg == "$this" or seg.startswith("ofType(") or seg == "resolve()":
            continue
        m = re.fullmatch(r"extension\('([^']*)'\)", seg)
        children = current.children
        if not children and current.types and current.types[0].code not in ("BackboneElement", "Element"):
            dt = walker.index.get(_profile_or_type(current))
            if dt is None:
                return None
            children = dt.root.children
        if m:
            ext = children.get("extension")
            if ext is None:
                return None
            current = next(
                (s for s in ext.slices if any(m.group(1) in t.profiles for t in s.types)),
                None,
            )
            continue
        current = children.get(seg) or children.get(seg + "[x]")
    return current


def _profile_or_type(rule: ElementRule) -> str:
    t = rule.types[0]
    return t.profiles[0] if t.profiles else t.code


def instance_values(
    walker: Walker, item: Any, path: str, rc: ResourceContext
) -> list[tuple[Any, str | None]]:
    """Values reached from ``item`` by a discriminator path, with their type when known."""
    values: list[tuple[Any, str | None]] = [(item, None)]
    for seg in _segments(path):
        nxt: list[tuple[Any, str | None]] = []
        for value, vtype in values:
            if seg == "$this":
                nxt.append((value, vtype))
            elif seg == "resolve()":
                if isinstance(value, dict) and isinstance(value.get("reference"), str):
                    target = rc.resolve(value["reference"])
                    if target is not None:
                        nxt.append((target, target.get("resourceType")))
            elif seg.startswith("ofType("):
                wanted = seg[7:-1]
                actual = vtype or (value.get("resourceType") if isinstance(value, dict) else None)
                if actual == wanted:
                    nxt.append((value, vtype))
            elif seg.startswith("extension('"):
                url = seg[11:-2]
                for ext in (value.get("extension") or ()) if isinstance(value, dict) else ():
                    if isinstance(ext, dict) and ext.get("url") == url:
                        nxt.append((ext, "Extension"))
            elif isinstance(value, dict):
                name = seg[:-3] if seg.endswith("[x]") else seg
                if name in value:
                    raw = value[name]
                    nxt.extend((v, None) for v in (raw if isinstance(raw, list) else [raw]))
                else:
                    for key, raw in value.items():
                        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                            t = key[len(name) :]
                            t = t[0].lower() + t[1:] if t not in _UPPER_TYPES else t
                            nxt.extend((v, t) for v in (raw if isinstance(raw, list) else [raw]))
        values = nxt
    return values


_UPPER_TYPES = frozenset(
    {
        "Address",
        "Age",
        "Annotation",
        "Attachment",
        "CodeableConcept",
        "Coding",
        "ContactPoint",
        "Count",
        "Distance",
        "Duration",
        "HumanName",
        "Identifier",
        "Money",
        "Period",
        "Quantity",
        "Range",
        "Ratio",
        "Reference",
        "SampledData",
        "Signature",
        "Timing",
        "ContactDetail",
        "Contributor",
        "DataRequirement",
        "Expression",
        "ParameterDefinition",
        "RelatedArtifact",
        "TriggerDefinition",
        "UsageContext",
        "Dosage",
        "Meta",
    }
)


def _matches(
    walker: Walker,
    slice_rule: ElementRule,
    structure: CompiledStructure,
    discriminators: list[dict[str, Any]],
    item: Any,
    item_type: str | None,
    rc: ResourceContext,
) -> bool:
    if not discriminators:
        return _conforms(walker, item, slice_rule, structure, item_type, rc)
    for disc in discriminators:
        dtype, path = disc.get("type"), disc.get("path", "$this")
        elem = slice_element(walker, slice_rule, structure, path)
        values = instance_values(walker, item, path, rc)
        if dtype in ("value", "pattern"):
            expected = None
            if elem is not None:
                expected = elem.fixed or elem.pattern
            if expected is None and path in ("url", "$this.url") and slice_rule.types:
                profiles = slice_rule.types[0].profiles
                if profiles:
                    expected = ("Uri", profiles[0])
            if expected is not None:
                if not any(
                    fixed_matches(v, expected[1])
                    if elem is not None and elem.fixed
                    else pattern_matches(v, expected[1])
                    for v, _t in values
                ):
                    return False
                continue
            if elem is not None and elem.binding and elem.binding.get("valueSet"):
                if not any(walker.engine.bindings.in_value_set(v, elem) for v, _t in values):
                    return False
                continue
            return False  # nothing to discriminate on: Java reports this as an error in the profile
        elif dtype == "exists":
            if elem is None:
                continue
            if elem.min >= 1 and not values:
                return False
            if elem.max == 0 and values:
                return False
        elif dtype == "type":
            if elem is None:
                continue
            allowed = {t.code for t in elem.types}
            actual = set()
            for v, t in values:
                if t:
                    actual.add(t)
                elif isinstance(v, dict) and "resourceType" in v:
                    actual.add(v["resourceType"])
                elif item_type and path in ("$this", ""):
                    actual.add(item_type)
            if not actual & allowed:
                return False
        elif dtype == "profile":
            if elem is None:
                continue
            resolving = "resolve()" in path
            urls = [p for t in elem.types for p in (t.target_profiles if resolving else t.profiles)]
            if not urls:
                continue
            if not any(walker.engine.conforms(v, url, rc) for v, _t in values for url in urls):
                return False
    return True


def _conforms(
    walker: Walker,
    item: Any,
    rule: ElementRule,
    structure: CompiledStructure,
    item_type: str | None,
    rc: ResourceContext,
) -> bool:
    probe = walker.engine.probe_walker()
    probe.walk(item, rule, structure, item_type, "x", rc, profile_mode=True)
    return not any(i.is_error for i in probe.issues)


def assign(
    walker: Walker,
    rule: ElementRule,
    structure: CompiledStructure,
    items: list[tuple[Any, str, str | None, bool]],
    expr: str,
    rc: ResourceContext,
    profile_mode: bool,
) -> list[ElementRule | None]:
    """Match items to slices and report the slicing rules; returns the slice per item."""
    slicing = rule.slicing or {}
    discriminators = list(slicing.get("discriminator") or ())
    rules_kind = slicing.get("rules", "open")
    out: list[ElementRule | None] = []
    counts: dict[int, int] = {}
    last_index = -1
    for item, key, itype, placeholder in items:
        chosen: ElementRule | None = None
        if not placeholder:
            for s in rule.slices:
                if _matches(walker, s, structure, discriminators, item, itype, rc):
                    chosen = s
                    break
        out.append(chosen)
        if chosen is not None:
            counts[id(chosen)] = counts.get(id(chosen), 0) + 1
            pos = rule.slices.index(chosen)
            if slicing.get("ordered") and pos < last_index:
                walker.report(
                    "error",
                    "structure",
                    f"{expr}.{key}",
                    f"As specified by profile, {rule.path} is out of order (slice {chosen.slice_name})",
                    source="profile",
                )
            last_index = max(last_index, pos)
        elif not placeholder and rule.slices and rules_kind == "closed":
            walker.report(
                "error",
                "structure",
                f"{expr}.{key}",
                "This element does not match any known slice defined in the profile and slicing is "
                f"CLOSED ({rule.path})",
                source="profile",
            )
    for s in rule.slices:
        n = counts.get(id(s), 0)
        if n < s.min:
            walker.report(
                "error",
                "required",
                f"{expr}.{rule.name.replace('[x]', '')}",
                f"Slice '{rule.path}:{s.slice_name}': a matching slice is required, but not found "
                f"(minimum required = {s.min}, found {n})",
                source="profile",
            )
        if n > s.max:
            walker.report(
                "error",
                "structure",
                f"{expr}.{rule.name.replace('[x]', '')}",
                f"Slice '{rule.path}:{s.slice_name}': max allowed = "
                f"{'*' if math.isinf(s.max) else int(s.max)}, but found {n}",
                source="profile",
            )
    return out
