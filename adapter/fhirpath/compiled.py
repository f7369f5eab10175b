"""A compiler from FHIRPath to Python closures for the plain subset most invariants use.

Why: the FHIR definitions carry hundreds of constraints, and almost all of them are paths,
``exists``/``empty``/``where``/``all``, equality with a literal and boolean logic. fhirpathpy
interprets its parse tree on typed node wrappers for every evaluation, which made invariants
80% of the validation time. Compiling that subset once into closures over the raw JSON gives
the same answers for a fraction of the cost.

Soundness over reach: anything whose meaning depends on type information we do not carry here
(dates and decimals in comparisons, choice elements, primitive extensions, type functions,
``resolve``...) is not compiled, or raises ``Fallback`` when met at run time; the caller then
evaluates the expression with the full engine. A compiled closure therefore either returns
exactly what the full engine would for invariant purposes, or declines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from fhirpathpy.engine.evaluators import string_literal as fp_string_literal
from fhirpathpy.models import models

from adapter.fhirpath.parsing import parse


class Fallback(Exception):
    """Raised at run time when the compiled closure meets data it cannot judge exactly."""


class _Unsupported(Exception):
    """Raised at compile time for constructs outside the subset."""


class Env(NamedTuple):
    """What an evaluation sees besides its input: the FHIRPath environment variables."""

    context: Any
    resource: Any
    root_resource: Any
    node_type: str | None


Coll = list[Any]
Fn = Callable[[Coll, Env], Coll]  # (focus collection, env) -> result collection

_DATE_LIKE = re.compile(r"^\d{4}(-\d\d(-\d\d)?)?(T|$)|^\d\d:\d\d")
_CONSTANTS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}


def compile_expression(expression: str) -> Callable[[Any, Env], Coll] | None:
    """A closure ``(node, env) -> collection`` for the expression, or None if outside the subset."""
    try:
        tree = parse(expression)
    except Exception:  # a syntax error is the full engine's to report
        return None
    fn = _compile(tree["children"][0])

    def run(node: Any, env: Env) -> Coll:
        return fn(_arraify(node), env)

    return run


# --- helpers on collections ------------------------------------------------------------------


def _arraify(value: Any) -> Coll:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _is_primitive(x: Any) -> bool:
    return not isinstance(x, (dict, list))


def _kind(x: Any) -> str:
    """A coarse type for exact comparisons; raises Fallback where type information matters."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, str):
        if x[:1].isdigit() and _DATE_LIKE.match(x):
            raise Fallback("temporal comparison")
        return "str"
    raise Fallback(f"comparison of {type(x).__name__}")


def _bool3(coll: Coll) -> bool | None:
    """Singleton evaluation of a collection as a boolean (None is the empty collection)."""
    if not coll:
        return None
    if len(coll) == 1 and isinstance(coll[0], bool):
        return coll[0]
    raise Fallback("non-boolean operand of a boolean operator")


def _choice_names() -> frozenset[str]:
    """Names of the R4 choice elements (``value`` of ``value[x]``), also where an element reuses
    one by contentReference: the full engine treats a name as a choice only on those paths, so
    any other absent name is simply absent, without looking for a typed key."""
    model = models["r4"]
    choices = model["choiceTypePaths"]
    names = {path.rsplit(".", 1)[-1] for path in choices}
    names |= {
        path.rsplit(".", 1)[-1]
        for path, target in model["pathsDefinedElsewhere"].items()
        if target in choices
    }
    return frozenset(names)


_CHOICE_NAMES = _choice_names()


def _member(items: Coll, name: str) -> Coll:
    out: Coll = []
    for item in items:
        if not isinstance(item, dict):
            continue  # primitives have no children here (their extensions sit in the parent)
        if "_" + name in item:
            raise Fallback("primitive with extensions")
        value = item.get(name)
        if value is None:
            if name not in _CHOICE_NAMES:
                continue  # not a choice element anywhere: absent
            for key in item:
                if len(key) > len(name) and key.startswith(name) and key[len(name)].isupper():
                    raise Fallback("choice element")
            continue
        if isinstance(value, list):
            out.extend(v for v in value if v is not None)
        else:
            out.append(value)
    return out


# --- the compiler ------------------------------------------------------------------------------


def _text(node: dict[str, Any]) -> str:
    terms = node.get("terminalNodeText") or []
    return terms[0] if terms else ""


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def _identifier(node: dict[str, Any]) -> str:
    name = _text(node)
    if name.startswith("`") and name.endswith("`"):
        name = name[1:-1]
    return name


def _compile(node: dict[str, Any], *, root: bool = True) -> Fn:
    """Compile one parse-tree node; ``root`` is False only for the right side of a dot, where
    a name is a member of what precedes it rather than the head of a path.

    Constructs outside the subset compile to a closure that declines when reached, so an
    expression such as ``type = 'document' implies entry.first().resource.is(Composition)``
    still runs compiled whenever its left side settles the answer."""
    handler = _HANDLERS.get(node["type"])
    try:
        if handler is None:
            raise _Unsupported(node["type"])
        return handler(node, root)
    except _Unsupported as exc:
        reason = str(exc)

        def declined(focus: Coll, env: Env) -> Coll:
            raise Fallback(reason)

        return declined


def _c_term(node: dict[str, Any], root: bool) -> Fn:
    (child,) = _children(node)
    return _compile(child, root=root)


def _c_paren(node: dict[str, Any], root: bool) -> Fn:
    inner = _compile(_children(node)[0])

    def paren(focus: Coll, env: Env) -> Coll:
        return inner(focus, env)

    return paren


def _c_invocation_term(node: dict[str, Any], root: bool) -> Fn:
    (child,) = _children(node)
    if child["type"] == "MemberInvocation" and root:
        return _member_fn(child, first=True)
    return _compile(child, root=root)


def _c_member(node: dict[str, Any], root: bool) -> Fn:
    return _member_fn(node, first=root)


def _member_fn(node: dict[str, Any], *, first: bool) -> Fn:
    name = _identifier(_children(node)[0])
    if not first and name[:1].isupper():
        raise _Unsupported("type name inside a path")
    if first and name[:1].isupper():
        # A type name at the head of a path selects the context if it is of that type.
        def type_head(focus: Coll, env: Env) -> Coll:
            out: Coll = []
            for item in focus:
                if (isinstance(item, dict) and item.get("resourceType") == name) or (
                    env.node_type == name and item is env.context
                ):
                    out.append(item)
                else:
                    raise Fallback("type name at the head of a path")
            return out

        return type_head

    def member(focus: Coll, env: Env) -> Coll:
        return _member(focus, name)

    return member


def _c_this(node: dict[str, Any], root: bool) -> Fn:
    def this(focus: Coll, env: Env) -> Coll:
        return focus

    return this


def _c_external(node: dict[str, Any], root: bool) -> Fn:
    (ext,) = _children(node)
    name = _identifier(_children(ext)[0]) if _children(ext) else ""
    if name.startswith("'"):
        raise _Unsupported("quoted constant")
    if name == "resource":
        return lambda focus, env: _arraify(env.resource)
    if name == "rootResource":
        return lambda focus, env: _arraify(env.root_resource)
    if name == "context":
        return lambda focus, env: _arraify(env.context)
    if name in _CONSTANTS:
        value = _CONSTANTS[name]
        return lambda focus, env: [value]
    raise _Unsupported(f"%{name}")


def _c_literal(node: dict[str, Any], root: bool) -> Fn:
    (lit,) = _children(node)
    kind, text = lit["type"], _text(lit)
    if kind == "StringLiteral":
        # the full engine's own unescaping, so both read the same literal
        (body,) = fp_string_literal(None, None, {"text": lit.get("text") or text})
        return lambda focus, env: [body]
    if kind == "BooleanLiteral":
        value = text == "true"
        return lambda focus, env: [value]
    if kind == "NumberLiteral" and text.isdigit():
        number = int(text)
        return lambda focus, env: [number]
    if kind == "NullLiteral":
        return lambda focus, env: []
    raise _Unsupported(kind)


def _c_invocation_expr(node: dict[str, Any], root: bool) -> Fn:
    left_node, right_node = _children(node)
    left = _compile(left_node, root=root)
    right = _compile(right_node, root=False)

    def invoke(focus: Coll, env: Env) -> Coll:
        return right(left(focus, env), env)

    return invoke


def _c_indexer(node: dict[str, Any], root: bool) -> Fn:
    base_node, index_node = _children(node)
    base = _compile(base_node, root=root)
    index = _compile(index_node)

    def indexer(focus: Coll, env: Env) -> Coll:
        items = base(focus, env)
        (i,) = index(focus, env) or [None]
        if not isinstance(i, int) or isinstance(i, bool):
            raise Fallback("index")
        return items[i : i + 1] if i >= 0 else []

    return indexer


def _binary(node: dict[str, Any], root: bool) -> tuple[Fn, Fn, str]:
    left_node, right_node = _children(node)
    return _compile(left_node, root=root), _compile(right_node), _text(node)


def _c_equality(node: dict[str, Any], root: bool) -> Fn:
    left, right, op = _binary(node, root)
    if op not in ("=", "!="):
        raise _Unsupported(op)
    negate = op == "!="

    def equality(focus: Coll, env: Env) -> Coll:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) != 1 or len(b) != 1:
            raise Fallback("equality of collections")
        x, y = a[0], b[0]
        if _kind(x) != _kind(y):
            raise Fallback("equality across types")
        return [(x == y) != negate]

    return equality


def _c_inequality(node: dict[str, Any], root: bool) -> Fn:
    left, right, op = _binary(node, root)
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda x, y: x < y,
        ">": lambda x, y: x > y,
        "<=": lambda x, y: x <= y,
        ">=": lambda x, y: x >= y,
    }
    fn = compare[op]

    def inequality(focus: Coll, env: Env) -> Coll:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) != 1 or len(b) != 1 or _kind(a[0]) != "int" or _kind(b[0]) != "int":
            raise Fallback("ordering of non-integers")
        return [fn(a[0], b[0])]

    return inequality


def _junction(decisive: bool) -> Callable[[dict[str, Any], bool], Fn]:
    """``and`` (decided by a false side) and ``or`` (by a true side), in three-valued logic:
    the decisive value on either side wins, otherwise empty if a side is empty."""

    def make(node: dict[str, Any], root: bool) -> Fn:
        left, right, _ = _binary(node, root)

        def junction(focus: Coll, env: Env) -> Coll:
            a = _bool3(left(focus, env))
            if a is decisive:
                return [decisive]
            b = _bool3(right(focus, env))
            if b is decisive:
                return [decisive]
            if a is None or b is None:
                return []
            return [not decisive]

        return junction

    return make


_c_and = _junction(False)
_or = _junction(True)


def _c_or(node: dict[str, Any], root: bool) -> Fn:
    if _text(node) != "xor":
        return _or(node, root)
    left, right, _ = _binary(node, root)

    def xor(focus: Coll, env: Env) -> Coll:
        a, b = _bool3(left(focus, env)), _bool3(right(focus, env))
        return [] if a is None or b is None else [a != b]

    return xor


def _c_implies(node: dict[str, Any], root: bool) -> Fn:
    left, right, _ = _binary(node, root)

    def implies(focus: Coll, env: Env) -> Coll:
        a = _bool3(left(focus, env))
        if a is False:
            return [True]
        b = _bool3(right(focus, env))
        if b is True:
            return [True]
        if a is None:
            return []
        return [False] if b is False else []

    return implies


def _c_additive(node: dict[str, Any], root: bool) -> Fn:
    left, right, op = _binary(node, root)
    if op == "&":

        def concat(focus: Coll, env: Env) -> Coll:
            a, b = left(focus, env), right(focus, env)
            if len(a) > 1 or len(b) > 1:
                raise Fallback("& of collections")
            x = a[0] if a else ""
            y = b[0] if b else ""
            if not isinstance(x, str) or not isinstance(y, str):
                raise Fallback("& of non-strings")
            return [x + y]

        return concat
    if op == "+":

        def plus(focus: Coll, env: Env) -> Coll:
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                return []
            if len(a) != 1 or len(b) != 1:
                raise Fallback("+ of collections")
            x, y = a[0], b[0]
            kx, ky = _kind(x), _kind(y)
            if kx != ky or kx == "bool":
                raise Fallback("+ across types")
            return [x + y]

        return plus
    raise _Unsupported(op)


def _hashable(items: Coll) -> Coll:
    for x in items:
        if not _is_primitive(x):
            raise Fallback("set operation on complex values")
        _kind(x)
    return items


def _c_union(node: dict[str, Any], root: bool) -> Fn:
    left, right, _ = _binary(node, root)

    def union(focus: Coll, env: Env) -> Coll:
        out: Coll = []
        seen: set[tuple[str, Any]] = set()
        for x in _hashable(left(focus, env) + right(focus, env)):
            key = (_kind(x), x)
            if key not in seen:
                seen.add(key)
                out.append(x)
        return out

    return union


def _c_membership(node: dict[str, Any], root: bool) -> Fn:
    left, right, op = _binary(node, root)
    if op == "contains":
        left, right = right, left

    def membership(focus: Coll, env: Env) -> Coll:
        a = left(focus, env)
        if not a:
            return []
        if len(a) != 1:
            raise Fallback("membership of a collection")
        b = _hashable(right(focus, env))
        x = a[0]
        kx = _kind(x) if _is_primitive(x) else None
        if kx is None:
            raise Fallback("membership of a complex value")
        return [any(_kind(y) == kx and y == x for y in b)]

    return membership


# --- functions ---------------------------------------------------------------------------------


def _single_str(coll: Coll) -> str | None:
    if not coll:
        return None
    if len(coll) != 1 or not isinstance(coll[0], str):
        raise Fallback("string function on a non-string")
    return coll[0]


def _string_arg(args: list[Fn], focus: Coll, env: Env) -> str | None:
    value = args[0](focus, env)
    if not value:
        return None
    if len(value) != 1 or not isinstance(value[0], str):
        raise Fallback("non-string argument")
    return value[0]


def _f_exists(args: list[Fn]) -> Fn:
    if args:
        crit = _where(args[0])
        return lambda focus, env: [bool(crit(focus, env))]
    return lambda focus, env: [bool(focus)]


def _where(crit: Fn) -> Fn:
    def where(focus: Coll, env: Env) -> Coll:
        out: Coll = []
        for item in focus:
            if _bool3(crit([item], env)) is True:
                out.append(item)
        return out

    return where


def _f_all(args: list[Fn]) -> Fn:
    (crit,) = args

    def all_(focus: Coll, env: Env) -> Coll:
        for item in focus:
            verdict = _bool3(crit([item], env))
            if verdict is None:
                raise Fallback("all() with an empty criterion")
            if not verdict:
                return [False]
        return [True]

    return all_


def _f_select(args: list[Fn]) -> Fn:
    (proj,) = args

    def select(focus: Coll, env: Env) -> Coll:
        out: Coll = []
        for item in focus:
            out.extend(proj([item], env))
        return out

    return select


def _f_not(args: list[Fn]) -> Fn:
    def not_(focus: Coll, env: Env) -> Coll:
        value = _bool3(focus)
        return [] if value is None else [not value]

    return not_


def _f_has_value(args: list[Fn]) -> Fn:
    return lambda focus, env: [len(focus) == 1 and _is_primitive(focus[0])]


def _f_distinct(args: list[Fn]) -> Fn:
    def is_distinct(focus: Coll, env: Env) -> Coll:
        keys = [(_kind(x), x) for x in _hashable(focus)]
        return [len(set(keys)) == len(keys)]

    return is_distinct


def _f_extension(args: list[Fn]) -> Fn:
    (url_fn,) = args

    def extension(focus: Coll, env: Env) -> Coll:
        url = _string_arg([url_fn], focus, env)
        if url is None:
            return []
        return [e for e in _member(focus, "extension") if isinstance(e, dict) and e.get("url") == url]

    return extension


def _string_predicate(fn: Callable[[str, str], bool]) -> Callable[[list[Fn]], Fn]:
    def make(args: list[Fn]) -> Fn:
        def run(focus: Coll, env: Env) -> Coll:
            s = _single_str(focus)
            arg = _string_arg(args, focus, env)
            if s is None or arg is None:
                return []
            return [fn(s, arg)]

        return run

    return make


def _f_matches(args: list[Fn]) -> Fn:
    cache: dict[str, re.Pattern[str]] = {}

    def matches(focus: Coll, env: Env) -> Coll:
        s = _single_str(focus)
        regex = _string_arg(args, focus, env)
        if s is None or regex is None:
            return []
        pattern = cache.get(regex)
        if pattern is None:
            try:
                pattern = cache[regex] = re.compile(regex, re.DOTALL)
            except re.error:
                raise Fallback("regex") from None
        return [pattern.search(s) is not None]

    return matches


def _f_length(args: list[Fn]) -> Fn:
    def length(focus: Coll, env: Env) -> Coll:
        s = _single_str(focus)
        return [] if s is None else [len(s)]

    return length


def _all_bool(want: bool, every: bool) -> Callable[[list[Fn]], Fn]:
    """allTrue / anyTrue / allFalse / anyFalse over a collection of booleans."""

    def make(args: list[Fn]) -> Fn:
        def run(focus: Coll, env: Env) -> Coll:
            if any(not isinstance(x, bool) for x in focus):
                raise Fallback("boolean aggregate over non-booleans")
            hits = (x is want for x in focus)
            return [all(hits) if every else any(hits)]

        return run

    return make


_FUNCTIONS: dict[str, tuple[tuple[int, ...], Callable[[list[Fn]], Fn]]] = {
    "exists": ((0, 1), _f_exists),
    "empty": ((0,), lambda args: lambda focus, env: [not focus]),
    "count": ((0,), lambda args: lambda focus, env: [len(focus)]),
    "first": ((0,), lambda args: lambda focus, env: focus[:1]),
    "last": ((0,), lambda args: lambda focus, env: focus[-1:]),
    "where": ((1,), lambda args: _where(args[0])),
    "all": ((1,), _f_all),
    "select": ((1,), _f_select),
    "not": ((0,), _f_not),
    "hasValue": ((0,), _f_has_value),
    "isDistinct": ((0,), _f_distinct),
    "extension": ((1,), _f_extension),
    "startsWith": ((1,), _string_predicate(lambda s, a: s.startswith(a))),
    "endsWith": ((1,), _string_predicate(lambda s, a: s.endswith(a))),
    "contains": ((1,), _string_predicate(lambda s, a: a in s)),
    "matches": ((1,), _f_matches),
    "length": ((0,), _f_length),
    "allTrue": ((0,), _all_bool(True, every=True)),
    "anyTrue": ((0,), _all_bool(True, every=False)),
    "allFalse": ((0,), _all_bool(False, every=True)),
    "anyFalse": ((0,), _all_bool(False, every=False)),
}


def _c_function(node: dict[str, Any], root: bool) -> Fn:
    (functn,) = _children(node)
    parts = _children(functn)
    name = _identifier(parts[0])
    params = _children(parts[1]) if len(parts) > 1 else []
    spec = _FUNCTIONS.get(name)
    if spec is None or len(params) not in spec[0]:
        raise _Unsupported(f"{name}()")
    if name not in _MACROS and any(_navigates(p) for p in params):
        raise _Unsupported(f"{name}() with a path argument")
    args = [_compile(p) for p in params]
    return spec[1](args)


_MACROS = frozenset({"exists", "where", "all", "select"})


def _navigates(node: dict[str, Any]) -> bool:
    """Whether a parameter reads the data (then its focus would matter): only constants are
    compiled as arguments of ordinary functions."""
    if node["type"] in ("MemberInvocation", "ThisInvocation", "IndexInvocation", "FunctionInvocation"):
        return True
    return any(_navigates(c) for c in _children(node))


_HANDLERS: dict[str, Callable[[dict[str, Any], bool], Fn]] = {
    "TermExpression": _c_term,
    "ParenthesizedTerm": _c_paren,
    "InvocationTerm": _c_invocation_term,
    "MemberInvocation": _c_member,
    "ThisInvocation": _c_this,
    "ExternalConstantTerm": _c_external,
    "LiteralTerm": _c_literal,
    "InvocationExpression": _c_invocation_expr,
    "IndexerExpression": _c_indexer,
    "EqualityExpression": _c_equality,
    "InequalityExpression": _c_inequality,
    "AndExpression": _c_and,
    "OrExpression": _c_or,
    "ImpliesExpression": _c_implies,
    "AdditiveExpression": _c_additive,
    "UnionExpression": _c_union,
    "MembershipExpression": _c_membership,
    "FunctionInvocation": _c_function,
}
