"""Invariants: FHIRPath constraints of the definitions, evaluated on each element they govern.

Expressions are compiled once (by the FHIRPath layer) and the commonest base invariants run as
native Python, which is what makes invariant checking affordable on large bundles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adapter.fhirpath.compiled import Env, Fallback
from adapter.validation.model import ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import ResourceContext, Walker

_BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"

# Base R4 invariants whose published expression is known to be wrong or untestable offline;
# the reference validator suppresses the same ones.
_SKIP = frozenset(
    {
        "txt-1",  # checked by the xhtml checker with a precise message
        "txt-2",
    }
)


def _ref_1(node: Any) -> bool | None:
    ref = node.get("reference") if isinstance(node, dict) else None
    return True if not isinstance(ref, str) or not ref.startswith("#") else None


def _bdl_5(node: Any) -> bool | None:
    return isinstance(node, dict) and any(k in node for k in ("resource", "request", "response"))


def _bdl_8(node: Any) -> bool | None:
    url = node.get("fullUrl") if isinstance(node, dict) else None
    return "/_history/" not in url if isinstance(url, str) else True


_PLAIN_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def _per_1(node: Any) -> bool | None:
    if not isinstance(node, dict) or "start" not in node or "end" not in node:
        return True
    start, end = node["start"], node["end"]
    if (
        isinstance(start, str)
        and isinstance(end, str)
        and _PLAIN_DATE.fullmatch(start)
        and _PLAIN_DATE.fullmatch(end)
        and start <= end
    ):
        return True  # two full dates: ISO text order is date order
    return None  # otherwise compare with FHIRPath's precision and time-zone rules


# Shortcuts for the commonest base invariants: they answer when the answer is obvious and
# return None to fall back to FHIRPath. Keyed by (key, exact R4 expression) so a profile that
# reuses a key with another expression is still evaluated in full.
_GUARDS: dict[tuple[str, str], Callable[[Any], bool | None]] = {
    (
        "ref-1",
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
        "%rootResource.contained.id.trace('ids'))",
    ): _ref_1,
    ("bdl-5", "resource.exists() or request.exists() or response.exists()"): _bdl_5,
    ("bdl-8", "fullUrl.contains('/_history/').not()"): _bdl_8,
    ("per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)"): _per_1,
}


def _severity(constraint: dict[str, Any]) -> str:
    for ext in constraint.get("extension", ()) or ():
        if ext.get("url") == _BEST_PRACTICE and ext.get("valueBoolean"):
            return "warning"
    return "error" if constraint.get("severity") == "error" else "warning"


class InvariantChecker:
    def __init__(self, fhirpath: Any) -> None:
        self.fp = fhirpath
        self._native: dict[tuple[str, str], Callable[[Any], bool] | None] = {}

    def _native_for(self, key: str, expression: str) -> Callable[[Any], bool] | None:
        k = (key, expression)
        if k not in self._native:
            finder = getattr(self.fp, "native_invariant", None)
            self._native[k] = finder(key, expression) if finder else None
        return self._native[k]

    def _compiled(
        self, expression: str, value: Any, rule: ElementRule, tcode: str, resource: Any, root: Any
    ) -> bool | None:
        """The verdict of the compiled form of the expression, or None when it declines."""
        compiled = getattr(self.fp, "compiled", None)
        fn = compiled(expression) if compiled else None
        if fn is None:
            return None
        try:
            return _truthy(fn(value, Env(value, resource, root, _node_type(rule, tcode))))
        except Fallback:
            return None

    def check(
        self,
        walker: Walker,
        value: Any,
        rule: ElementRule,
        tcode: str,
        constraint: dict[str, Any],
        expr: str,
        rc: ResourceContext,
    ) -> None:
        key = constraint.get("key", "")
        expression = constraint.get("expression", "")
        if key in _SKIP or not expression:
            return
        guard = _GUARDS.get((key, expression))
        if guard is not None and guard(value) is True:
            return
        native = self._native_for(key, expression)
        root = rc.container if rc.container is not None else rc.resource
        try:
            if native is not None:
                ok = native(value)
            elif (verdict := self._compiled(expression, value, rule, tcode, rc.resource, root)) is not None:
                ok = verdict
            else:
                result = self.fp.evaluate(
                    expression,
                    value,
                    resource=rc.resource,
                    root_resource=root,
                    resolver=lambda ref, _src=None: rc.resolve(ref),
                    node_type=_node_type(rule, tcode),
                )
                ok = _truthy(result)
        except Exception as exc:  # an expression the engine cannot run must not pass silently
            walker.report(
                "warning",
                "invariant",
                expr,
                f"Constraint {key} could not be evaluated: {type(exc).__name__}: {str(exc)[:200]}",
                source="invariant",
                message_id=key,
            )
            return
        if not ok:
            human = constraint.get("human") or expression
            walker.report(
                _severity(constraint),
                "invariant",
                expr,
                f"Constraint failed: {key}: '{human}'",
                source="invariant",
                message_id=key,
            )


def _truthy(result: Any) -> bool:
    """Invariant semantics: an empty result or a single true passes."""
    if isinstance(result, list):
        if not result:
            return True
        if len(result) == 1:
            return result[0] is not False
        return all(r is not False for r in result)
    return result is not False


def _node_type(rule: ElementRule, tcode: str) -> str:
    """What fhirpathpy should take the node to be: its datatype, or for backbone elements the
    element path (fhirpathpy's model resolves both)."""
    if tcode in ("BackboneElement", "Element") or not tcode:
        return rule.path
    return tcode
