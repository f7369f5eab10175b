"""Slicing: which slice each item of a sliced element belongs to, and the slice rules.

Discriminators value, pattern, type, exists and profile are evaluated over a small path
language (dotted names, ``$this``, ``resolve()``, ``ofType(T)``, ``extension('url')``) that
covers what published profiles use. Items that match no slice are allowed (open), refused
(closed) or allowed only after the matched ones (openAtEnd).

What a slice requires of a discriminator is found by walking the element definitions along the
discriminator path from the slice (profiling.html, "Discriminator"), into datatypes, type
profiles and, after ``resolve()``, the target profile. Two things beyond the plain walk:

* a sliced element met on the way (``component:SystolicBP.code.coding`` sliced, with the fixed
  values in its mandatory slice ``coding:SBPCode``) is entered through its required slices as
  well: a member of the outer slice has at least one repetition matching each of them, so their
  fixed and pattern values count when any repetition matches (``'8480-6' in code.coding.code``);
* a fixed or pattern value higher up (``patternIdentifier`` on the slice, discriminator
  ``system``) pins the value below it.

As the HL7 Java validator does, a slice is matched on the discriminators it constrains; one it
leaves unconstrained is skipped, and only a slice constraining none of them cannot be evaluated
(reported, see docs/slicing.md). Re-slices (``identifier:a/b``) are matched among the items of
their parent slice, by its own slicing.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapter.validation.compare import fixed_matches, pattern_matches
from adapter.validation.model import PRIMITIVE_TYPES, CompiledStructure, ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import ResourceContext, Walker

_SEGMENT = re.compile(
    r"extension\('([^']*)'\)|ofType\(([A-Za-z]+)\)|resolve\(\)|\$this|[A-Za-z][A-Za-z0-9_]*(?:\[x\])?"
)


@functools.lru_cache(maxsize=4096)
def _segments(path: str) -> tuple[str, ...]:
    """The steps of a discriminator path (a few distinct paths, met at every sliced item)."""
    return tuple(m.group(0) for m in _SEGMENT.finditer(path or "$this"))


def _type_name(suffix: str) -> str:
    """``String`` (from ``valueString``) -> ``string``; complex types keep their case."""
    lower = suffix[:1].lower() + suffix[1:]
    return lower if lower in PRIMITIVE_TYPES else suffix


# ---------------------------------------------------------------------------------- definitions
@dataclass(frozen=True, slots=True)
class _Node:
    """An element definition reached by a discriminator path."""

    rule: ElementRule | None
    structure: CompiledStructure | None
    # values that a fixed or pattern value above this element pins here; each group must all
    # be found in the instance (a pattern's repeating property: every item somewhere)
    derived: tuple[tuple[Any, ...], ...] = ()
    type_filter: str | None = None  # after ofType(T) or a typed choice name (valueString)
    root: bool = False  # the root of a structure (after resolve())
    branch: tuple[str, ...] = ()  # the optional nested slices entered on the way


def _children_of(walker: Walker, node: _Node) -> tuple[dict[str, ElementRule], CompiledStructure | None]:
    rule, struct = node.rule, node.structure
    if rule is None:
        return {}, struct
    if rule.children:
        return rule.children, struct
    if rule.content_reference and struct is not None:
        target = struct.by_id.get(rule.content_reference.split("#", 1)[-1])
        if target is not None:
            return target.children, struct
    if node.root:
        return {}, struct
    types = [t for t in rule.types if node.type_filter is None or t.code == node.type_filter]
    if len(types) != 1 or types[0].code in PRIMITIVE_TYPES:
        return {}, struct
    t = types[0]
    for url in (*t.profiles, t.code):
        dt = walker.index.get(url)
        if dt is not None:
            return dt.root.children, dt
    return {}, struct


def _lookup(children: dict[str, ElementRule], seg: str) -> tuple[ElementRule | None, str | None]:
    name = seg[:-3] if seg.endswith("[x]") else seg
    child = children.get(name) or children.get(name + "[x]")
    if child is not None:
        return child, None
    for key, choice in children.items():
        stem = key[:-3]
        if key.endswith("[x]") and name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper():
            tname = _type_name(name[len(stem) :])
            typed = next((s for s in choice.slices if s.slice_name == name), None)
            return (typed or choice), tname
    return None, None


def _project(values: tuple[Any, ...], seg: str) -> tuple[Any, ...]:
    """The parts of fixed/pattern values at the child ``seg`` (lists flattened)."""
    name = seg[:-3] if seg.endswith("[x]") else seg
    out: list[Any] = []
    for v in values:
        if not isinstance(v, dict):
            continue
        raws = [v[name]] if name in v else [
            raw for key, raw in v.items() if key.startswith(name) and key[len(name) : len(name) + 1].isupper()
        ]
        for raw in raws:
            out.extend(raw if isinstance(raw, list) else [raw])
    return tuple(out)


def _nested_slices(node: _Node, start: ElementRule, optional: bool) -> list[_Node]:
    """A sliced element below the item: each repetition may be any slice. The mandatory ones
    are there in every valid instance, so their definitions pin values too; with ``optional``,
    the others are entered as well, each on a branch of its own (alternatives)."""
    rule = node.rule
    if rule is None or rule is start or not rule.slices:
        return []
    out = []
    for s in rule.slices:
        if s.min > 0 or optional:
            branch = node.branch + ((s.id,) if s.min < 1 else ())
            out.append(_Node(s, node.structure, node.derived, node.type_filter, branch=branch))
    return out


def _step(walker: Walker, node: _Node, seg: str, start: ElementRule, optional: bool) -> list[_Node]:
    rule = node.rule
    if seg == "$this":
        return [node]
    if seg == "resolve()":
        if rule is None:
            return []
        out = []
        for url in (tp for t in rule.types for tp in t.target_profiles):
            target = walker.index.get(url)
            if target is not None:
                out.append(_Node(target.root, target, root=True))
        return out
    if seg.startswith("ofType("):
        wanted = seg[7:-1]
        if rule is None:
            return []
        if node.root and node.structure is not None:
            return [node] if node.structure.type == wanted else []
        if wanted not in rule.type_codes:
            return []
        if rule.is_choice:
            stem = rule.name[:-3]
            typed_name = stem + wanted[:1].upper() + wanted[1:]
            typed = next((s for s in rule.slices if s.slice_name == typed_name), None)
            if typed is not None:
                return [_Node(typed, node.structure, node.derived, wanted, branch=node.branch)]
        return [_Node(rule, node.structure, node.derived, wanted, branch=node.branch)]
    out = []
    for base in (node, *_nested_slices(node, start, optional)):
        children, cstruct = _children_of(walker, base)
        if seg.startswith("extension('"):
            url = seg[11:-2]
            ext = children.get("extension")
            for s in ext.slices if ext is not None else ():
                url_rule = s.children.get("url")
                fixed_url = url_rule.fixed if url_rule is not None else None
                if any(url in t.profiles for t in s.types) or (fixed_url and fixed_url[1] == url):
                    out.append(_Node(s, cstruct, branch=base.branch))
            continue
        if seg == "value" and base.rule is not None and set(base.rule.type_codes) <= PRIMITIVE_TYPES:
            out.append(base)  # a primitive's value is the primitive
            continue
        child, tfilter = _lookup(children, seg)
        derived = tuple(g for g in (_project(group, seg) for group in base.derived) if g)
        if base.rule is not None:
            pinned = base.rule.fixed or base.rule.pattern
            if pinned is not None and isinstance(pinned[1], dict):
                group = _project((pinned[1],), seg)
                if group:
                    derived += (group,)
        if child is None and not derived:
            continue
        out.append(_Node(child, cstruct, derived, tfilter, branch=base.branch))
    return out


def _leaves(
    walker: Walker, start: ElementRule, structure: CompiledStructure, path: str, optional: bool = False
) -> list[_Node]:
    nodes = [_Node(start, structure)]
    for seg in _segments(path):
        nodes = [n for node in nodes for n in _step(walker, node, seg, start, optional)]
    return [m for n in nodes for m in (n, *_nested_slices(n, start, optional))]


@dataclass(frozen=True, slots=True)
class _Criterion:
    kind: str  # empty | exists | fixed | pattern | all | anyof | binding | type | profile | any
    value: Any = None


def _value_criteria(leaves: list[_Node]) -> list[_Criterion]:
    crits: list[_Criterion] = []
    for leaf in leaves:
        rule = leaf.rule
        if rule is not None and rule.max == 0:
            crits.append(_Criterion("empty"))
        elif rule is not None and rule.fixed is not None:
            crits.append(_Criterion("fixed", rule.fixed[1]))
        elif rule is not None and rule.pattern is not None:
            crits.append(_Criterion("pattern", rule.pattern[1]))
        crits.extend(_Criterion("all", group) for group in leaf.derived)
    if not crits:
        for leaf in leaves:
            binding = leaf.rule.binding if leaf.rule is not None else None
            if binding and binding.get("strength") == "required" and binding.get("valueSet"):
                crits.append(_Criterion("binding", leaf.rule))
                break
    return crits


def _criteria(
    walker: Walker, slice_rule: ElementRule, structure: CompiledStructure, disc: dict[str, Any]
) -> tuple[_Criterion, ...] | None:
    """What ``slice_rule`` requires for one discriminator; None when it does not constrain it."""
    dtype, path = disc.get("type"), disc.get("path") or "$this"
    if dtype == "profile":
        segs = _segments(path)
        resolving = bool(segs) and segs[-1] == "resolve()"
        if resolving:
            path = ".".join(segs[:-1]) or "$this"
    leaves = _leaves(walker, slice_rule, structure, path)
    main = next((n for n in leaves if n.rule is not None), None)
    if dtype in ("value", "pattern"):
        crits = _value_criteria(leaves)
        if not crits:  # only optional nested slices pin it: the item matches when one of them does
            branches: dict[tuple[str, ...], list[_Node]] = {}
            for leaf in _leaves(walker, slice_rule, structure, path, optional=True):
                if leaf.branch:
                    branches.setdefault(leaf.branch, []).append(leaf)
            alternatives = tuple(c for c in (tuple(_value_criteria(ls)) for ls in branches.values()) if c)
            if alternatives:
                crits = [_Criterion("anyof", alternatives)]
        if not crits:  # the slice's type profile (an extension's url) may fix it
            for url in (p for t in slice_rule.types for p in t.profiles):
                prof = walker.index.get(url)
                if prof is not None and prof.is_profile:
                    crits = _value_criteria(_leaves(walker, prof.root, prof, path))
                    if crits:
                        break
        if not crits and path in ("url", "$this.url"):
            # an extension slice whose definition is not loaded: its profile is its url
            profiles = [p for t in slice_rule.types for p in t.profiles]
            if profiles:
                crits = [_Criterion("fixed", profiles[0])]
        return tuple(crits) or None
    if main is None or main.rule is None:
        return None
    rule = main.rule
    if rule.max == 0:
        return (_Criterion("empty"),)
    if dtype == "exists":
        if rule.min >= 1:
            return (_Criterion("exists"),)
        return None
    if dtype == "type":
        roots = {n.structure.type for n in leaves if n.root and n.structure is not None}
        if roots:
            return (_Criterion("type", frozenset(roots)),)
        # the element, and the required type slices of a choice (payload:file.contentAttachment)
        crits = []
        for leaf in leaves:
            if leaf.rule is not None:
                allowed = {leaf.type_filter} if leaf.type_filter else set(leaf.rule.type_codes)
                if allowed:
                    crits.append(_Criterion("type", frozenset(allowed)))
        return tuple(crits) or None
    if dtype == "profile":
        urls = tuple(u for t in rule.types for u in (t.target_profiles if resolving else t.profiles))
        return (_Criterion("profile", urls),) if urls else (_Criterion("any"),)
    return None


def _slice_criteria(
    walker: Walker,
    slice_rule: ElementRule,
    structure: CompiledStructure,
    discriminators: list[dict[str, Any]],
) -> tuple[tuple[_Criterion, ...] | None, ...]:
    key = tuple((d.get("type"), d.get("path")) for d in discriminators)
    cache = slice_rule.slice_criteria
    if cache is None:
        cache = slice_rule.slice_criteria = {}
    found = cache.get(key)
    if found is None:
        found = cache[key] = tuple(_criteria(walker, slice_rule, structure, d) for d in discriminators)
    return found  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------- instances
def _shape_fits(value: Any, tname: str) -> bool:
    """Without a known type, whether a JSON value can be of type ``tname``."""
    if isinstance(value, dict):
        return tname not in PRIMITIVE_TYPES
    if isinstance(value, bool):
        return tname == "boolean"
    if isinstance(value, int | float) or type(value).__name__ == "Decimal":
        return tname in ("integer", "decimal", "positiveInt", "unsignedInt")
    return tname in PRIMITIVE_TYPES


def instance_values(
    walker: Walker, item: Any, path: str, rc: ResourceContext, item_type: str | None = None
) -> list[tuple[Any, str | None]]:
    """Values reached from ``item`` by a discriminator path, with their type when known."""
    values: list[tuple[Any, str | None]] = [(item, item_type)]
    for seg in _segments(path):
        nxt: list[tuple[Any, str | None]] = []
        for value, vtype in values:
            if seg == "$this":
                nxt.append((value, vtype))
            elif seg == "resolve()":
                if isinstance(value, dict) and isinstance(value.get("reference"), str):
                    target = rc.resolve(value["reference"])
                    if isinstance(target, dict):
                        nxt.append((target, target.get("resourceType")))
            elif seg.startswith("ofType("):
                wanted = seg[7:-1]
                actual = vtype or (value.get("resourceType") if isinstance(value, dict) else None)
                if actual == wanted or (actual is None and _shape_fits(value, wanted)):
                    nxt.append((value, wanted))
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
                        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
                            t = _type_name(key[len(name) :])
                            nxt.extend((v, t) for v in (raw if isinstance(raw, list) else [raw]))
            elif seg == "value":
                nxt.append((value, vtype))  # a primitive's value
        values = nxt
    return [(v, t) for v, t in values if v is not None]


def _satisfied(
    walker: Walker, crit: _Criterion, values: list[tuple[Any, str | None]], rc: ResourceContext
) -> bool:
    kind = crit.kind
    if kind == "any":
        return True
    if kind == "empty":
        return not values
    if kind == "exists":
        return bool(values)
    if kind == "fixed":
        # a fixed complex value discriminates like a pattern (the Java validator's where(...).exists());
        # the walk of the slice then checks it exactly
        if isinstance(crit.value, dict | list):
            return any(pattern_matches(v, crit.value) for v, _t in values)
        return any(fixed_matches(v, crit.value) for v, _t in values)
    if kind == "pattern":
        return any(pattern_matches(v, crit.value) for v, _t in values)
    if kind == "all":
        return all(any(pattern_matches(v, want) for v, _t in values) for want in crit.value)
    if kind == "anyof":
        return any(all(_satisfied(walker, c, values, rc) for c in alt) for alt in crit.value)
    if kind == "binding":
        return any(walker.engine.bindings.in_value_set(v, crit.value) for v, _t in values)
    if kind == "type":
        for v, t in values:
            actual = t or (v.get("resourceType") if isinstance(v, dict) else None)
            if actual in crit.value or (actual is None and any(_shape_fits(v, a) for a in crit.value)):
                return True
        return False
    if kind == "profile":
        return any(walker.engine.conforms(v, url, rc) for v, _t in values for url in crit.value)
    return False


def _matches(
    walker: Walker,
    slice_rule: ElementRule,
    structure: CompiledStructure,
    discriminators: list[dict[str, Any]],
    item: Any,
    item_type: str | None,
    rc: ResourceContext,
    reached: dict[str, list[tuple[Any, str | None]]] | None = None,
) -> bool:
    """Whether ``item`` belongs to ``slice_rule``. ``reached`` keeps, for one item, the values
    each discriminator path reaches: they do not depend on the slice being tried."""
    if not discriminators:
        return _conforms(walker, item, slice_rule, structure, item_type, rc)
    for disc, crits in zip(
        discriminators, _slice_criteria(walker, slice_rule, structure, discriminators), strict=True
    ):
        if not crits:
            continue  # not constrained by this slice: matching uses the ones it constrains
        path = disc.get("path") or "$this"
        values = reached.get(path) if reached is not None else None
        if values is None:
            values = instance_values(walker, item, path, rc, item_type)
            if reached is not None:
                reached[path] = values
        if not all(_satisfied(walker, c, values, rc) for c in crits):
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


# ---------------------------------------------------------------------------------- assignment
def assign(
    walker: Walker,
    rule: ElementRule,
    structure: CompiledStructure,
    items: list[tuple[Any, str, str | None, bool]],
    expr: str,
    rc: ResourceContext,
    profile_mode: bool,
) -> list[ElementRule | None]:
    """Match items to slices and report the slicing rules; returns the slice per item (the
    deepest re-slice when a slice is sliced again)."""
    return _assign(walker, rule, rule.slicing or {}, structure, items, expr, rc)


def _assign(
    walker: Walker,
    rule: ElementRule,
    slicing: dict[str, Any],
    structure: CompiledStructure,
    items: list[tuple[Any, str, str | None, bool]],
    expr: str,
    rc: ResourceContext,
) -> list[ElementRule | None]:
    discriminators = [d for d in slicing.get("discriminator") or () if isinstance(d, dict)]
    rules_kind = slicing.get("rules", "open")
    where = f"{expr}.{rule.name.replace('[x]', '')}"
    # slices that constrain none of the discriminators cannot be told apart (Java: an error)
    broken = set()
    if discriminators and any(not placeholder for *_rest, placeholder in items):
        for s in rule.slices:
            if not any(_slice_criteria(walker, s, structure, discriminators)):
                broken.add(id(s))
                paths = ", ".join(str(d.get("path")) for d in discriminators)
                walker.report(
                    "error",
                    "processing",
                    where,
                    f"Slicing cannot be evaluated: Could not match discriminator ({paths}) for slice "
                    f"{s.id} in profile {structure.url} - the discriminator {paths} does not have "
                    "fixed value, binding or existence assertions",
                    source="profile",
                    message_id="SLICING_CANNOT_BE_EVALUATED",
                )
    out: list[ElementRule | None] = []
    counts: dict[int, int] = {}
    last_index = -1
    for item, key, itype, placeholder in items:
        chosen: ElementRule | None = None
        if not placeholder:
            reached: dict[str, list[tuple[Any, str | None]]] = {}
            for s in rule.slices:
                if id(s) not in broken and _matches(
                    walker, s, structure, discriminators, item, itype, rc, reached
                ):
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
        elif not placeholder and rule.slices and rules_kind == "closed" and not broken:
            walker.report(
                "error",
                "structure",
                f"{expr}.{key}",
                "This element does not match any known slice defined in the profile and slicing is "
                f"CLOSED ({rule.path}{':' + rule.slice_name if rule.slice_name else ''})",
                source="profile",
            )
    for s in rule.slices:
        if id(s) in broken:
            continue
        n = counts.get(id(s), 0)
        if n < s.min:
            walker.report(
                "error",
                "required",
                where,
                f"Slice '{rule.path}:{s.slice_name}': a matching slice is required, but not found "
                f"(minimum required = {s.min}, found {n})",
                source="profile",
            )
        if n > s.max:
            walker.report(
                "error",
                "structure",
                where,
                f"Slice '{rule.path}:{s.slice_name}': max allowed = "
                f"{'*' if math.isinf(s.max) else int(s.max)}, but found {n}",
                source="profile",
            )
        if s.slices:  # re-sliced: its items are sliced again, by its own slicing
            indexes = [i for i, chosen in enumerate(out) if chosen is s]
            sub = _assign(
                walker, s, s.slicing or slicing, structure, [items[i] for i in indexes], expr, rc
            )
            for i, reslice in zip(indexes, sub, strict=True):
                if reslice is not None:
                    out[i] = reslice
    return out
