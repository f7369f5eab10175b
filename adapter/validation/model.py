"""StructureDefinition snapshots compiled into element trees the walker can follow fast.

A snapshot is a flat, ordered list of ElementDefinitions. Validation needs, for an element,
its children by JSON property name, its slices, and the definition of the datatype it unfolds
into. Building that once per StructureDefinition (and caching it) keeps the per-instance walk
to dictionary look-ups.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_BASE = "http://hl7.org/fhir/StructureDefinition/"

_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

PRIMITIVE_TYPES = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    }
)


def type_code(type_entry: dict[str, Any]) -> str:
    """The FHIR type of a snapshot ``type`` entry (R4 writes primitives' ``value`` and
    ``id`` as FHIRPath system types with the FHIR type in an extension)."""
    code = type_entry.get("code", "")
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_entry.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or _SYSTEM_TYPES.get(code, "string"))
        return _SYSTEM_TYPES.get(code, "string")
    return str(code)


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class ElementRule:
    """One compiled ElementDefinition and its place in the tree."""

    id: str
    path: str
    name: str  # last path segment, e.g. "value[x]"
    min: int
    max: float  # math.inf for "*"
    types: tuple[TypeRef, ...]
    definition: dict[str, Any]
    slice_name: str | None = None
    children: dict[str, ElementRule] = field(default_factory=dict)
    slices: list[ElementRule] = field(default_factory=list)
    content_reference: str | None = None
    fixed: tuple[str, Any] | None = None  # (type suffix, value)
    pattern: tuple[str, Any] | None = None
    binding: dict[str, Any] | None = None
    constraints: tuple[dict[str, Any], ...] = ()
    slicing: dict[str, Any] | None = None
    max_length: int | None = None
    is_choice: bool = False
    has_limits: bool = False  # minValue[x] / maxValue[x]
    # False on a profile's element that neither the profile nor its parent profiles touch
    # (nor any element below it): the walk against the base definition already checked it.
    constrained: bool = True
    # False on a profile's element touched only in its cardinality or documentation, with nothing
    # touched below it: counted by its parent's walk, not walked into (see structures.py)
    descend: bool = True
    # the constraints the walker evaluates (not the structural ele-1 / ext-1), filled lazily
    evaluable: tuple[dict[str, Any], ...] | None = None
    plain: bool | None = None  # a primitive with no constraint beyond its datatype (walker)
    child_plan: Any = None  # the walker's plan for the JSON properties under this element
    # (target profiles of a Reference, the resource types the known ones allow, the unknown
    # ones), filled lazily
    reference_targets: tuple[list[str], frozenset[str], tuple[str, ...]] | None = None
    # filled lazily by the structure index: JSON key -> (rule, type code)
    json_children: dict[str, tuple[ElementRule, str | None]] | None = None
    # on a slice, filled lazily by slicing.py: what each discriminator of its slicing requires
    slice_criteria: Any = None
    # whether any of its types names a profile (a type profile the walker applies in addition)
    type_profiled: bool = False

    @property
    def type_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.types)


def _parse_max(value: str | None) -> float:
    if value is None or value == "*":
        return math.inf
    try:
        return float(int(value))
    except ValueError:
        return math.inf


def _element_fixed(defn: dict[str, Any], prefix: str) -> tuple[str, Any] | None:
    for key, value in defn.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key[len(prefix) :], value
    return None


def _compile_element(defn: dict[str, Any], elem_id: str) -> ElementRule:
    path = defn["path"]
    name = path.rsplit(".", 1)[-1]
    types = tuple(
        TypeRef(
            code=type_code(t),
            profiles=tuple(t.get("profile", ()) or ()),
            target_profiles=tuple(t.get("targetProfile", ()) or ()),
        )
        for t in defn.get("type", ()) or ()
    )
    constraints = tuple(c for c in defn.get("constraint", ()) or () if c.get("expression"))
    return ElementRule(
        id=elem_id,
        path=path,
        name=name,
        min=int(defn.get("min", 0) or 0),
        max=_parse_max(defn.get("max")),
        types=types,
        definition=defn,
        slice_name=defn.get("sliceName"),
        content_reference=defn.get("contentReference"),
        fixed=_element_fixed(defn, "fixed"),
        pattern=_element_fixed(defn, "pattern"),
        binding=defn.get("binding"),
        constraints=constraints,
        slicing=defn.get("slicing"),
        max_length=defn.get("maxLength"),
        is_choice=name.endswith("[x]"),
        has_limits=any(k.startswith(("minValue", "maxValue")) for k in defn),
        type_profiled=any(t.profiles for t in types),
    )


def _synth_ids(elements: list[dict[str, Any]]) -> list[str]:
    """Element ids, synthesised from paths and slice names where a snapshot lacks them
    (older or hand-written profiles)."""
    ids: list[str] = []
    current: dict[str, str] = {}  # path -> id of the element last seen at that path
    for el in elements:
        if el.get("id"):
            ids.append(el["id"])
            current[el["path"]] = el["id"]
            continue
        path = el["path"]
        parent_path, _, last = path.rpartition(".")
        parent_id = current.get(parent_path, parent_path) if parent_path else ""
        seg = f"{last}:{el['sliceName']}" if el.get("sliceName") else last
        elem_id = f"{parent_id}.{seg}" if parent_id else seg
        ids.append(elem_id)
        current[path] = elem_id
        # reset deeper paths so children attach to this element
        for p in [p for p in current if p.startswith(path + ".")]:
            del current[p]
    return ids


def _split_id(elem_id: str) -> tuple[str, str]:
    """Split an element id into (parent id, last segment)."""
    parent, _, last = elem_id.rpartition(".")
    return parent, last


@dataclass(eq=False)
class CompiledStructure:
    """A StructureDefinition ready for walking."""

    url: str
    type: str
    kind: str
    root: ElementRule
    by_id: dict[str, ElementRule]
    sd: dict[str, Any]

    @property
    def is_profile(self) -> bool:
        return self.sd.get("derivation") == "constraint"

    @functools.cached_property
    def canonical(self) -> str:
        """``url|version`` (its url alone when it has no version): the provenance of every
        resource names the structures applied to it."""
        version = self.sd.get("version")
        return f"{self.url}|{version}" if isinstance(version, str) and version else self.url


def compile_structure(sd: dict[str, Any]) -> CompiledStructure:
    elements: list[dict[str, Any]] = (sd.get("snapshot") or {}).get("element") or []
    if not elements:
        raise ValueError(f"StructureDefinition {sd.get('url')} has no snapshot")
    ids = _synth_ids(elements)
    by_id: dict[str, ElementRule] = {}
    root: ElementRule | None = None
    for defn, elem_id in zip(elements, ids, strict=True):
        rule = _compile_element(defn, elem_id)
        by_id[elem_id] = rule
        if root is None:
            root = rule
            continue
        parent_id, last = _split_id(elem_id)
        name, _, slice_part = last.partition(":")
        if defn.get("sliceName") and slice_part:
            # a re-slice "a/b" is a slice of the slice "a", not of the sliced element itself
            owner = f"{name}:{slice_part.rsplit('/', 1)[0]}" if "/" in slice_part else name
            base = by_id.get(f"{parent_id}.{owner}" if parent_id else owner)
            if base is not None:
                base.slices.append(rule)
                continue
        parent = by_id.get(parent_id)
        if parent is None:
            continue  # malformed snapshot; the element has no anchor
        parent.children[name] = rule
    assert root is not None
    return CompiledStructure(
        url=sd.get("url", ""),
        type=sd.get("type", root.path),
        kind=sd.get("kind", ""),
        root=root,
        by_id=by_id,
        sd=sd,
    )


def json_children(
    rule: ElementRule, structure: CompiledStructure
) -> dict[str, tuple[ElementRule, str | None]]:
    """Map each JSON property name allowed under ``rule`` to (child rule, chosen type).

    Choice elements expand to one key per type (``valueQuantity``); a contentReference
    borrows the children of the referenced element.
    """
    if rule.json_children is not None:
        return rule.json_children
    source = rule
    if rule.content_reference and not rule.children:
        ref = rule.content_reference.split("#", 1)[-1]
        source = structure.by_id.get(ref, rule)
    out: dict[str, tuple[ElementRule, str | None]] = {}
    for name, child in source.children.items():
        if child.is_choice:
            stem = name[:-3]
            for t in child.types:
                out[stem + _upper_first(t.code)] = (child, t.code)
        else:
            out[name] = (child, child.types[0].code if len(child.types) == 1 else None)
    rule.json_children = out
    return out
