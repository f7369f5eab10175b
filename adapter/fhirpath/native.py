"""Plain-Python versions of the base R4 invariants checked on (nearly) every element.

ele-1 runs on every element and ext-1 on every extension: evaluating them through fhirpathpy would
dominate validation time. Each function here is checked against the FHIRPath evaluation in
tests/test_fhirpath.py. A native function is only handed out when the expression text is the
R4 one, so a profile that reuses a key for another rule still gets FHIRPath semantics.

Signature: `fn(node, side=None) -> bool` where `node` is the element's value in the internal form
(dict for complex types and resources, the bare value for primitives) and `side` is the primitive's
`_name` sibling (id/extension) if any. True means the invariant holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

NativeInvariant = Callable[..., bool]


def _present(v: Any) -> bool:
    return v is not None and v != []


def ele_1(node: Any, side: dict | None = None) -> bool:
    """hasValue() or (children().count() > id.count())"""
    if node is not None and not isinstance(node, dict | list):
        return True
    children = node if isinstance(node, dict) else side if isinstance(side, dict) else {}
    return any(k != "id" and _present(v) for k, v in children.items())


def ext_1(node: Any, side: dict | None = None) -> bool:
    """extension.exists() != value.exists()"""
    if not isinstance(node, dict):
        return True
    has_ext = bool(node.get("extension"))
    has_value = any(
        ((k.startswith("value") and len(k) > 5 and k[5].isupper()) or (k.startswith("_value") and len(k) > 6))
        and _present(v)
        for k, v in node.items()
    )
    return has_ext != has_value


def _contained(node: Any) -> list[dict]:
    if not isinstance(node, dict):
        return []
    return [c for c in node.get("contained") or [] if isinstance(c, dict)]


def dom_2(node: Any, side: dict | None = None) -> bool:
    """contained.contained.empty()"""
    return not any(c.get("contained") for c in _contained(node))


def dom_4(node: Any, side: dict | None = None) -> bool:
    """contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"""
    for c in _contained(node):
        meta = c.get("meta") if isinstance(c.get("meta"), dict) else {}
        if _present(meta.get("versionId")) or _present(meta.get("lastUpdated")):
            return False
        if meta.get("_versionId") or meta.get("_lastUpdated"):
            return False
    return True


def dom_5(node: Any, side: dict | None = None) -> bool:
    """contained.meta.security.empty()"""
    for c in _contained(node):
        meta = c.get("meta") if isinstance(c.get("meta"), dict) else {}
        if meta.get("security"):
            return False
    return True


def dom_6(node: Any, side: dict | None = None) -> bool:
    """text.`div`.exists()"""
    text = node.get("text") if isinstance(node, dict) else None
    return isinstance(text, dict) and _present(text.get("div"))


def _strings(node: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


# a link or an image in the narrative that points at a contained resource: <a href="#id">, <img src="#id">
_NARRATIVE_REF = re.compile(r"""\b(?:href|src)\s*=\s*(?:"(#[^"]*)"|'(#[^']*)')""")


def _narrative_refs(node: dict) -> set[str]:
    text = node.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str) or "#" not in div:
        return set()
    return {a or b for a, b in _NARRATIVE_REF.findall(div)}


def dom_3(node: Any, side: dict | None = None) -> bool:
    """Every contained resource is referenced from the resource (or refers back to it with '#').

    References are `reference` values and canonical/uri/url values; as the internal form does not
    carry types, any string value equal to '#id' counts (a display text of exactly '#id' is the
    only false match, and it only makes the check more lenient). A link or an image in the
    narrative (``<a href="#id">``, ``<img src="#id">``) is a reference too, as the reference
    validator counts it: the narrative is where a contained resource is often shown.
    """
    contained = _contained(node)
    if not contained:
        return True
    values = {v for _, v in _strings(node) if v.startswith("#")} | _narrative_refs(node)
    for c in contained:
        cid = c.get("id")
        if isinstance(cid, str) and "#" + cid in values:
            continue
        if any(v == "#" for _, v in _strings(c)):
            continue
        return False
    return True


R4_EXPRESSIONS: dict[str, tuple[str, NativeInvariant]] = {
    "ele-1": ("hasValue() or (children().count() > id.count())", ele_1),
    "ext-1": ("extension.exists() != value.exists()", ext_1),
    "dom-2": ("contained.contained.empty()", dom_2),
    "dom-3": (
        "contained.where((('#'+id in (%resource.descendants().reference"
        " | %resource.descendants().ofType(canonical)"
        " | %resource.descendants().ofType(uri) | %resource.descendants().ofType(url)))"
        " or descendants().where(reference = '#').exists()"
        " or descendants().where(as(canonical) = '#').exists()"
        " or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()",
        dom_3,
    ),
    "dom-4": ("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()", dom_4),
    "dom-5": ("contained.meta.security.empty()", dom_5),
    "dom-6": ("text.`div`.exists()", dom_6),
}

_WS = re.compile(r"\s+")


def _norm(expr: str) -> str:
    return _WS.sub("", expr)


_BY_TEXT = {(k, _norm(e)): fn for k, (e, fn) in R4_EXPRESSIONS.items()}


def native_invariant(key: str, expression: str) -> NativeInvariant | None:
    """The native function for this base invariant, or None when FHIRPath must be used."""
    return _BY_TEXT.get((key, _norm(expression or "")))
