"""Static (semantic) checks of a FHIRPath expression against the type it is evaluated on.

The official suite marks expressions `invalid="semantic"` that evaluate to something (often
empty) but mean nothing: `name.given1` on a Patient, `Observation.valueQuantity` (a choice
element is `value`; `valueQuantity` is the JSON name), `(Observation.value as Period).unit`
(a Period has no unit), `Encounter.name` on a Patient, a function called with the wrong
number of arguments. An invariant like that silently passes forever, so the engine rejects it.

Soundness over reach: types are followed only where they are certain (paths on a known root,
`where`/`first`/`ofType`/`as`/`extension`/`select`/`|`...); anything else is "unknown" and
nothing is checked below it. An element is reported missing only when no possible type of the
focus has it. The element table is fhirpathpy's R4 model (paths, choice types, backbone
elements); abstract `Resource`/`DomainResource` (e.g. `Bundle.entry.resource`) accept any
element of any resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fhirpathpy.engine.invocations import invocation_registry as _base_registry
from fhirpathpy.models import models

from adapter.fhirpath.functions import FHIR_PRIMITIVES, FHIR_TYPES, build_table, known_type

_R4 = models["r4"]
_ABSTRACT = frozenset({"Resource", "DomainResource"})
_PRIMITIVE_MEMBERS = {"id": None, "extension": frozenset({"Extension"})}
# functions whose result has the type of their input
_SAME_TYPE = frozenset(
    {"where", "first", "last", "tail", "skip", "take", "single", "distinct", "trace", "intersect",
     "exclude", "defineVariable"}
)  # fmt: skip
_ORDERED = frozenset({"first", "last", "tail", "skip", "take"})
_UNORDERED = frozenset({"children", "descendants"})

Types = frozenset[str] | None  # None: unknown


class SemanticError(Exception):
    """The expression is not valid for the type it is evaluated on."""


@dataclass(frozen=True)
class _Focus:
    types: Types
    unordered: bool = False


_UNKNOWN = _Focus(None)


def _lower_choice(name: str) -> str:
    low = name[:1].lower() + name[1:]
    return low if low in FHIR_PRIMITIVES else name


@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, Types]]:
    """type or backbone path -> {element name -> possible types (None: a System type)}."""
    idx: dict[str, dict[str, Types]] = {}
    path2type: dict[str, str] = _R4["path2Type"]
    for path, t in path2type.items():
        parent, _, name = path.rpartition(".")
        idx.setdefault(parent, {})[name] = None if t.startswith("System.") else frozenset({t})
    for path, target in _R4["pathsDefinedElsewhere"].items():
        parent, _, name = path.rpartition(".")
        idx.setdefault(parent, {})[name] = frozenset({target})
    for path, choices in _R4["choiceTypePaths"].items():
        parent, _, name = path.rpartition(".")
        members = idx.setdefault(parent, {})
        for c in choices:
            members.pop(name + c, None)  # `valueQuantity` is JSON, not FHIRPath
        members[name] = frozenset(_lower_choice(c) for c in choices)
    for parent in list(idx):
        if "." in parent and parent not in path2type:  # a backbone element
            grand, _, name = parent.rpartition(".")
            if name not in idx.get(grand, {}):
                idx.setdefault(grand, {})[name] = frozenset({parent})
    return idx


@lru_cache(maxsize=1)
def _resource_members() -> frozenset[str]:
    """Every element name of every resource (for abstract Resource)."""
    names: set[str] = set()
    for t, parent in _R4["type2Parent"].items():
        if parent in ("DomainResource", "Resource"):
            names.update(_index().get(t, {}))
    return frozenset(names)


def _supertypes(t: str) -> list[str]:
    out = [t]
    parents: dict[str, str] = _R4["type2Parent"]
    while parents.get(t):
        t = parents[t]
        out.append(t)
    return out


@lru_cache(maxsize=1)
def _registry() -> dict:
    return {**_base_registry, **build_table()}


def root_type(node, node_type: str | None) -> str | None:
    """The FHIR type (or backbone path) of an evaluation's input, when it is known."""
    if node_type:
        return node_type
    if isinstance(node, dict):
        rt = node.get("resourceType")
        if isinstance(rt, str):
            return rt
    return None


def check(ast: dict, root: str | None, resource: str | None = None, *, ordered: bool = False) -> None:
    """Raise SemanticError if the parsed expression is invalid on `root` (None: unknown)."""
    focus = _Focus(_known(root))
    env = {"resource": _Focus(_known(resource)), "rootResource": _UNKNOWN, "context": focus}
    _Checker(env, focus, ordered).expr(ast["children"][0], focus, focus)


def _known(t: str | None) -> Types:
    if t is None:
        return None
    if t in _index() or t in FHIR_TYPES:
        return frozenset({t})
    return None


class _Checker:
    def __init__(self, env: dict[str, _Focus], root: _Focus, ordered: bool) -> None:
        self.env = env
        self.root = root  # the evaluation's input: a type name heading a path must fit it
        self.ordered = ordered

    # focus: the input of this node; this: what `$this` (and plain arguments) see
    def expr(self, node: dict, focus: _Focus, this: _Focus) -> _Focus:
        kind = node["type"]
        children = node.get("children") or []
        if kind == "LiteralTerm":
            return _UNKNOWN
        if kind in ("TermExpression", "ParenthesizedTerm", "InvocationTerm"):
            return self.expr(children[0], focus, this)
        if kind == "InvocationExpression":
            left = self.expr(children[0], focus, this)
            return self.expr(children[1], left, this)
        if kind == "MemberInvocation":
            return self.member(_identifier(children[0]), focus)
        if kind == "FunctionInvocation":
            return self.function(children[0], focus, this)
        if kind == "ThisInvocation":
            return this
        if kind in ("IndexInvocation", "TotalInvocation"):
            return _UNKNOWN
        if kind == "ExternalConstantTerm":
            ident = (children[0].get("children") or [{}])[0]
            name = (ident.get("text") or "").strip("`")
            return self.env.get(name, _UNKNOWN)
        if kind == "IndexerExpression":
            base = self.expr(children[0], focus, this)
            self.expr(children[1], focus, this)
            self._ordered_use(base, "[]")
            return base
        if kind == "TypeExpression":
            self.expr(children[0], focus, this)
            spec = _type_name(children[1])
            if spec is None or not known_type(*_split(spec)):
                raise SemanticError(f"unknown type {spec}")
            op = (node.get("terminalNodeText") or [""])[0]
            return _Focus(_type_set(spec)) if op == "as" else _UNKNOWN
        if kind == "UnionExpression":
            return _union(self.expr(children[0], focus, this), self.expr(children[1], focus, this))
        if kind == "PolarityExpression":
            self.expr(children[0], focus, this)
            return _UNKNOWN
        # other operators: each operand starts from the operator's own input
        for child in children:
            self.expr(child, focus, this)
        return _UNKNOWN

    def member(self, name: str, focus: _Focus) -> _Focus:
        types = focus.types
        if name[:1].isupper() and known_type(None, name):
            # a type name: selects the focus when it is of that type
            if types is None:
                return _Focus(_type_set(name), focus.unordered)
            narrower = frozenset(t for t in types if name in _supertypes(t))
            if narrower:
                return _Focus(narrower, focus.unordered)
            if any(t in _supertypes(name) for t in types):
                return _Focus(_type_set(name), focus.unordered)
            if focus is self.root:
                shown = ", ".join(sorted(types))
                raise SemanticError(f"the type {name} is not the type of the context ({shown})")
            return _Focus(None, focus.unordered)
        if types is None:
            return _Focus(None, focus.unordered)
        out: set[str] = set()
        unknown = found = False
        for t in types:
            members = _members(t)
            if members is None:
                unknown = True
                continue
            if name in members:
                found = True
                child = members[name]
                if child is None:
                    unknown = True
                else:
                    out |= child
            elif t in _ABSTRACT and name in _resource_members():
                found = unknown = True
        if not found and not unknown:
            shown = ", ".join(sorted(types))
            raise SemanticError(f"'{name}' is not an element of {shown}")
        return _Focus(None if unknown else frozenset(out), focus.unordered)

    def function(self, functn: dict, focus: _Focus, this: _Focus) -> _Focus:
        parts = functn.get("children") or []
        name = _identifier(parts[0])
        params = (parts[1].get("children") or []) if len(parts) > 1 else []
        spec = _registry().get(name)
        if spec is None:
            raise SemanticError(f"unknown function {name}()")
        arg_types = _arg_types(name, spec, len(params))
        results: list[_Focus] = []
        for param, kind in zip(params, arg_types, strict=True):
            if kind == "TypeSpecifier":
                type_name = _type_name(param)
                if type_name is None or not known_type(*_split(type_name)):
                    raise SemanticError(f"unknown type {type_name} in {name}()")
                results.append(_Focus(_type_set(type_name)))
            elif kind == "Expr":
                # repeat() applies its argument to its own results too: their type is not followed
                item = _UNKNOWN if name == "repeat" else _item(focus)
                results.append(self.expr(param, item, item))
            else:
                results.append(self.expr(param, this, this))
        if name in _ORDERED:
            self._ordered_use(focus, f"{name}()")
        if name in _UNORDERED:
            return _Focus(None, True)
        if name in _SAME_TYPE:
            return focus
        if name in ("ofType", "as"):
            return _Focus(results[0].types, focus.unordered)
        if name == "extension":
            return _Focus(frozenset({"Extension"}), focus.unordered)
        if name == "select" and results:
            return _Focus(results[0].types, focus.unordered)
        if name in ("union", "combine") and results:
            return _union(focus, results[0])
        if name == "iif" and len(results) >= 2:
            return _union(results[1], results[2]) if len(results) == 3 else results[1]
        return _UNKNOWN

    def _ordered_use(self, focus: _Focus, what: str) -> None:
        if self.ordered and focus.unordered:
            raise SemanticError(f"{what} on an unordered collection (children() / descendants())")


def _item(focus: _Focus) -> _Focus:
    return _Focus(focus.types)


def _union(a: _Focus, b: _Focus) -> _Focus:
    types = None if a.types is None or b.types is None else a.types | b.types
    return _Focus(types, a.unordered or b.unordered)


def _members(t: str) -> dict[str, Types] | None:
    if t in FHIR_PRIMITIVES:
        return _PRIMITIVE_MEMBERS
    return _index().get(t)


def _arg_types(name: str, spec: dict, count: int) -> list:
    if "variadic" in spec:
        return [spec["variadic"]] * count
    arity = spec.get("arity")
    if arity is None:
        if count:
            raise SemanticError(f"{name}() takes no arguments, got {count}")
        return []
    if count not in arity:
        allowed = " or ".join(str(n) for n in sorted(arity))
        raise SemanticError(f"{name}() takes {allowed} argument(s), got {count}")
    return (list(arity[count]) + ["Any"] * count)[:count]


def _identifier(node: dict) -> str:
    text = node.get("text") or ((node.get("terminalNodeText") or [""])[0])
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


def _type_name(node: dict) -> str | None:
    """The text of a type specifier (an identifier argument such as `ofType(Quantity)` too)."""
    text = node.get("text")
    if text is None:
        for child in node.get("children") or []:
            found = _type_name(child)
            if found is not None:
                return found
        return None
    return text.replace("`", "")


def _split(type_name: str) -> tuple[str | None, str]:
    ns, _, name = type_name.rpartition(".")
    return (ns or None), name


def _type_set(type_name: str | None) -> Types:
    if type_name is None:
        return None
    ns, name = _split(type_name)
    if ns == "System" or name not in FHIR_TYPES or name in _ABSTRACT:
        return None
    return frozenset({name})
