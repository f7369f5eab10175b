"""FhirPathEngine: fhirpathpy over the internal form, plus the FHIR functions and fixes it lacks.

Evaluation goes through becare's private copy of fhirpathpy's engine (``patches.do_eval``), so
the fixes apply here and nowhere else: ``fhirpathpy.evaluate`` in the same process is untouched.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import Any, Protocol

from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.invocations.constants import constants
from fhirpathpy.models import models

from adapter.fhirpath import patches, semantics
from adapter.fhirpath.compiled import Env, Fallback, compile_expression
from adapter.fhirpath.functions import build_table
from adapter.fhirpath.native import NativeInvariant, native_invariant
from adapter.fhirpath.parsing import FhirPathError, parse

Resolver = Callable[[str, dict | None], dict | None]
ConformsTo = Callable[[Any, str], bool | None]

CACHE_SIZE = 4096
CompiledExpression = Callable[[Any, Env], list]
_R4 = models["r4"]


class TerminologyLike(Protocol):
    def validate_code(
        self, valueset: str, system: str | None, code: str, display: str | None = None
    ) -> Any: ...


class _Vars(dict):
    """Environment variables; %`vs-x` and %`ext-x` are computed, as the FHIR spec defines them."""

    def _computed(self, key: str) -> str | None:
        if key.startswith("vs-"):
            return "http://hl7.org/fhir/ValueSet/" + key[3:]
        if key.startswith("ext-"):
            return "http://hl7.org/fhir/StructureDefinition/" + key[4:]
        return None

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and self._computed(key) is not None)

    def __missing__(self, key: str) -> Any:
        value = self._computed(key)
        if value is None:
            raise KeyError(key)
        return value


class FhirPathEngine:
    """Compile-once FHIRPath evaluation. Thread-safe for concurrent `evaluate` calls on one instance."""

    def __init__(
        self,
        terminology: TerminologyLike | None = None,
        *,
        conforms_to: ConformsTo | None = None,
        trace: Callable[[str, list], None] | None = None,
        cache_size: int = CACHE_SIZE,
        check_ordered: bool = False,
    ) -> None:
        """`check_ordered` also rejects first()/last()/tail()/skip()/take()/[n] on the unordered
        result of children()/descendants() (the spec says they "should not be used" there)."""
        self.terminology = terminology
        self.conforms_to = conforms_to
        self.trace = trace
        self.check_ordered = check_ordered
        self._table = build_table()
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = cache_size
        self._compiled: dict[str, CompiledExpression | None] = {}
        self._semantic: dict[tuple[str, str | None, str | None], str | None] = {}
        self._lock = Lock()

    def compile(self, expression: str) -> dict:
        """The parsed expression (cached, bounded LRU); FhirPathError on a syntax error."""
        with self._lock:
            ast = self._cache.get(expression)
            if ast is not None:
                self._cache.move_to_end(expression)
                return ast
        ast = parse(expression)
        with self._lock:
            self._cache[expression] = ast
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ast

    def semantic_error(self, expression: str, root: str | None, resource: str | None = None) -> str | None:
        """Why the expression is invalid on a `root` type (see adapter.fhirpath.semantics), or
        None; cached. A syntax error raises FhirPathError."""
        key = (expression, root, resource)
        try:
            return self._semantic[key]
        except KeyError:
            pass
        ast = self.compile(expression)
        try:
            semantics.check(ast, root, resource, ordered=self.check_ordered)
            problem = None
        except semantics.SemanticError as exc:
            problem = str(exc)
        with self._lock:
            if len(self._semantic) > self._cache_size * 4:
                self._semantic.clear()
            self._semantic[key] = problem
        return problem

    def evaluate(
        self,
        expression: str,
        node: Any,
        *,
        resource: dict | None = None,
        root_resource: dict | None = None,
        resolver: Resolver | None = None,
        env: dict | None = None,
        node_type: str | None = None,
        side: dict | None = None,
    ) -> list:
        """Evaluate on `node` (internal form). `node_type` (e.g. "HumanName", "string") types a bare
        element; `side` is a primitive's `_name` sibling so ele-1 and extensions see it."""
        ast = self.compile(expression)
        if resource is None and isinstance(node, dict) and "resourceType" in node:
            resource = node
        if root_resource is None:
            root_resource = resource
        problem = self.semantic_error(
            expression, semantics.root_type(node, node_type), semantics.root_type(resource, None)
        )
        if problem is not None:
            raise FhirPathError(f"invalid FHIRPath {expression!r}: {problem}", expression)
        if node_type is not None or side is not None:
            data_root = [nodes.ResourceNode(node, node_type, side)]
        else:
            data_root = util.arraify(node)
        variables = _Vars(
            context=data_root[0] if len(data_root) == 1 else node,
            resource=_as_node(resource),
            rootResource=_as_node(root_resource),
            ucum="http://unitsofmeasure.org",
            sct="http://snomed.info/sct",
            loinc="http://loinc.org",
        )
        variables.update(env or {})
        ctx = {
            "dataRoot": data_root,
            "vars": variables,
            "model": _R4,
            "userInvocationTable": self._table,
            "becare": {
                "resolver": resolver,
                "resource": resource,
                "root_resource": root_resource,
                "terminology": self.terminology,
                "conforms_to": self.conforms_to,
                "trace": self.trace,
            },
        }
        try:
            constants.reset()
            result = patches.do_eval(ctx, data_root, ast["children"][0])
        except FhirPathError:
            raise
        except RecursionError:
            raise FhirPathError(f"expression too deeply nested: {expression!r}", expression) from None
        except Exception as exc:
            raise FhirPathError(f"cannot evaluate {expression!r}: {exc}", expression) from None
        return [_unwrap(x) for x in util.arraify(result)]

    def is_true(self, expression: str, node: Any, **kwargs: Any) -> bool:
        """Invariant semantics: empty or true is satisfied; false is not; several items is an error."""
        result = self.evaluate(expression, node, **kwargs)
        if not result:
            return True
        if len(result) > 1:
            raise FhirPathError(
                f"invariant {expression!r} returned {len(result)} items, not a boolean", expression
            )
        return result[0] is not False

    def native_invariant(self, key: str, expression: str) -> NativeInvariant | None:
        return native_invariant(key, expression)

    def compiled(self, expression: str) -> CompiledExpression | None:
        """The expression compiled to Python closures (see adapter.fhirpath.compiled), cached;
        None when nothing of it is in the compiled subset. Its result is only meant for
        truth tests (invariants): values are the raw JSON items, not typed FHIRPath values."""
        with self._lock:
            if expression in self._compiled:
                return self._compiled[expression]
        fn = compile_expression(expression)
        if fn is not None:
            fn = self._checked(expression, fn)
        with self._lock:
            self._compiled[expression] = fn
        return fn

    def _checked(self, expression: str, fn: CompiledExpression) -> CompiledExpression:
        """The compiled closure, declining (Fallback) where the expression is semantically invalid
        for the node's type, so the full engine reports it rather than a verdict being given."""
        verdicts: dict[tuple[str | None, str | None], bool] = {}

        def run(node: Any, env: Env) -> list:
            key = (semantics.root_type(node, env.node_type), semantics.root_type(env.resource, None))
            ok = verdicts.get(key)
            if ok is None:
                ok = verdicts[key] = self.semantic_error(expression, *key) is None
            if not ok:
                raise Fallback("semantically invalid expression")
            return fn(node, env)

        return run


def _as_node(resource: Any) -> Any:
    """%resource and %rootResource are typed nodes, so ``.type()`` and ``ofType`` see them."""
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        return nodes.ResourceNode(resource, resource["resourceType"])
    return resource


def _unwrap(item: Any) -> Any:
    if isinstance(item, nodes.ResourceNode):
        if item.data is None and item._data is not None:
            return item._data
        return util.get_data(item) if isinstance(item.data, float) else item.data
    return item
