"""Invariants: FHIRPath constraints of the definitions, evaluated on each element they govern.

Expressions are compiled once (by the FHIRPath layer) and the commonest base invariants run as
native Python, which is what makes invariant checking affordable on large bundles.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapter.fhirpath.compiled import Env, Fallback
from adapter.validation.issues import Issue
from adapter.validation.model import ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import ResourceContext, Walker

log = logging.getLogger("becare.validation")

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


def _entries_have(part: str, kinds: tuple[str, ...]) -> Callable[[Any], bool | None]:
    """bdl-3 / bdl-4: every entry has a request (response) exactly when the bundle is of one
    of ``kinds``; this guard is for a bundle validated as the resource itself (``%resource``)."""

    def guard(node: Any) -> bool | None:
        kind = node.get("type") if isinstance(node, dict) else None
        entries = node.get("entry") if isinstance(node, dict) else None
        if not isinstance(kind, str) or not isinstance(entries, list):
            return None
        want = kind in kinds
        ok = all(isinstance(e, dict) and (e.get(part) is not None) == want for e in entries)
        return True if ok else None

    return guard


def _bdl_7(node: Any) -> bool | None:
    if not isinstance(node, dict):
        return None
    if node.get("type") == "history":
        return True
    seen: set[str] = set()
    for e in node.get("entry") or ():
        if not isinstance(e, dict) or e.get("fullUrl") is None:
            continue
        url = e["fullUrl"]
        res = e.get("resource")
        meta = res.get("meta") if isinstance(res, dict) else None
        version = meta.get("versionId", "") if isinstance(meta, dict) else ""
        if not isinstance(url, str) or not isinstance(version, str) or "_fullUrl" in e:
            return None
        key = url + version
        if key in seen:
            return None  # a duplicate: let FHIRPath judge and report
        seen.add(key)
    return True


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
    (
        "bdl-3",
        "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' "
        "or %resource.type = 'history'))",
    ): _entries_have("request", ("batch", "transaction", "history")),
    (
        "bdl-4",
        "entry.all(response.exists() = (%resource.type = 'batch-response' or "
        "%resource.type = 'transaction-response' or %resource.type = 'history'))",
    ): _entries_have("response", ("batch-response", "transaction-response", "history")),
    (
        "bdl-7",
        "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId)"
        ".isDistinct()",
    ): _bdl_7,
}


def _severity(constraint: dict[str, Any]) -> str:
    for ext in constraint.get("extension", ()) or ():
        if ext.get("url") == _BEST_PRACTICE and ext.get("valueBoolean"):
            return "warning"
    return "error" if constraint.get("severity") == "error" else "warning"


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one constraint is evaluated, decided once per constraint rather than per node."""

    key: str
    expression: str
    skip: bool
    guard: Callable[[Any], bool | None] | None
    native: Callable[[Any], bool] | None
    compiled: Callable[[Any, Env], list[Any]] | None


class InvariantChecker:
    def __init__(self, fhirpath: Any) -> None:
        self.fp = fhirpath
        self._plans: dict[int, tuple[dict[str, Any], _Plan]] = {}

    def _plan(self, constraint: dict[str, Any]) -> _Plan:
        entry = self._plans.get(id(constraint))
        if entry is not None and entry[0] is constraint:
            return entry[1]
        key = constraint.get("key", "")
        expression = constraint.get("expression", "")
        finder = getattr(self.fp, "native_invariant", None)
        compiler = getattr(self.fp, "compiled", None)
        plan = _Plan(
            key=key,
            expression=expression,
            skip=key in _SKIP or not expression,
            guard=_GUARDS.get((key, expression)),
            native=finder(key, expression) if finder and expression else None,
            compiled=compiler(expression) if compiler and expression else None,
        )
        self._plans[id(constraint)] = (constraint, plan)  # holding it keeps the id unique
        return plan

    def _compiled(
        self, plan: _Plan, value: Any, rule: ElementRule, tcode: str, resource: Any, root: Any
    ) -> bool | None:
        """The verdict of the plan's compiled expression, or None when it declines (or has none)."""
        if plan.compiled is None:
            return None
        try:
            return _truthy(plan.compiled(value, Env(value, resource, root, _node_type(rule, tcode))))
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
        try:
            plan = self._plan(constraint)
        except Exception as exc:
            _failed(walker, constraint.get("key", ""), str(constraint.get("expression", "")), exc, expr)
            return
        if not plan.skip:
            self.run(walker, value, rule, tcode, constraint, plan, expr, rc)

    def plan_of(self, constraint: dict[str, Any]) -> _Plan | None:
        """The constraint's plan, for a caller that evaluates it at many nodes (``run``); None
        when it cannot be planned (``check`` then reports that at each node)."""
        try:
            return self._plan(constraint)
        except Exception:
            return None

    def run_all(
        self,
        walker: Walker,
        value: Any,
        rule: ElementRule,
        tcode: str,
        todo: tuple[tuple[dict[str, Any], str, str, _Plan | None], ...],
        expr: str,
        rc: ResourceContext,
    ) -> None:
        """The constraints of one element at one node, each (constraint, key, expression, plan)
        evaluated once per location (``walker.evaluated``: a profile repeats its base's), in one
        call per element rather than one per constraint."""
        evaluated = walker.evaluated
        for constraint, key, expression, plan in todo:
            mark = (expr, key, expression)
            if mark in evaluated:
                continue
            evaluated.add(mark)
            if plan is None:  # not planned: check() plans it again and reports why it cannot
                self.check(walker, value, rule, tcode, constraint, expr, rc)
            else:
                self.run(walker, value, rule, tcode, constraint, plan, expr, rc)

    def run(
        self,
        walker: Walker,
        value: Any,
        rule: ElementRule,
        tcode: str,
        constraint: dict[str, Any],
        plan: _Plan,
        expr: str,
        rc: ResourceContext,
    ) -> None:
        """Evaluate a planned constraint (not a skipped one) at one node; report when it fails."""
        key, expression, native = plan.key, plan.expression, plan.native
        root = rc.container if rc.container is not None else rc.resource
        try:
            if plan.guard is not None and plan.guard(value) is True:
                return
            if native is not None:
                ok = native(value)
            elif (verdict := self._compiled(plan, value, rule, tcode, rc.resource, root)) is not None:
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
        except Exception as exc:  # an expression the engine cannot run has not been checked
            _failed(walker, key, expression, exc, expr)
            return
        if not ok:
            _report(walker, constraint, key, expression, expr)


def _report(walker: Walker, constraint: dict[str, Any], key: str, expression: str, expr: str) -> None:
    human = constraint.get("human") or expression
    walker.report(
        _severity(constraint),
        "invariant",
        expr,
        f"Constraint failed: {key}: '{human}'",
        source="invariant",
        message_id=key,
    )


INVARIANT_FAILED = "becare-invariant-failed"


_BEYOND_NODE = ("%resource", "%rootResource", "resolve(")


def _failed(walker: Walker, key: str, expression: str, exc: Exception, expr: str) -> None:
    """Fail closed: an invariant that cannot be evaluated is an error (code ``exception``) naming
    it, never a warning that lets the input pass, and never a traceback. ``scope`` is the part
    of the input the expression reads: the node, or all of it when it reads beyond the node."""
    log.debug("constraint %s could not be evaluated at %s", key, expr, exc_info=True)
    walker.issues.append(
        Issue(
            "error",
            "exception",
            expr,
            f"Internal error: constraint {key} could not be evaluated ({type(exc).__name__}: "
            f"{str(exc)[:200]}). This is a fault in becare, not in the data, but the input cannot "
            "count as checked until it is fixed.",
            source="invariant",
            message_id=INVARIANT_FAILED,
            extra={"scope": "" if any(m in expression for m in _BEYOND_NODE) else expr},
        )
    )


def settle_failures(issues: list[Issue]) -> list[Issue]:
    """Drop the internal error of a check that could not be evaluated over a part of the input
    where the structure check found an error: evaluating FHIRPath (an invariant's, or a rule's)
    over a value of the wrong shape is expected to fail, that error already makes the input
    invalid, and the shape error is reported once, not again as becare's fault. Such failures
    carry the part of the input they read as ``extra["scope"]``: a FHIRPath (at or under which a
    structure error explains them) or ``""`` for anywhere (an expression that reads ``%resource``,
    ``%rootResource`` or resolves references; a rule of the rulebook)."""
    if not any(_settleable(i) for i in issues):
        return issues
    broken = [
        i.expression
        for i in issues
        if i.is_error and i.source in ("structure", "parse") and not _settleable(i)
    ]

    def explained(issue: Issue) -> bool:
        scope = issue.extra["scope"]
        if not scope:
            return bool(broken)
        return any(b == scope or b.startswith((scope + ".", scope + "[")) for b in broken)

    return [i for i in issues if not _settleable(i) or not explained(i)]


def _settleable(issue: Issue) -> bool:
    """An internal failure that says which part of the input it read (see ``settle_failures``)."""
    return issue.code == "exception" and "scope" in issue.extra


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
