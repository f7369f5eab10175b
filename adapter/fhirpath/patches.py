"""Targeted fixes to fhirpathpy's evaluators, in becare's own private copy of its engine.

Why patch instead of fork: a few evaluator entries are wrong for FHIR validation and the rest of
fhirpathpy is fine. The fixes:
- member access pairs a primitive with its `_name` sibling (value + id/extension are ONE node);
  fhirpathpy returns them as two nodes, so `birthDate.count()` was 2 and ele-1 misjudged;
- `1.0` is a Decimal (fhirpathpy collapses it to the integer 1);
- `@2015-02-04` is a Date, not a DateTime; `@2015T` is a DateTime (and `type()` says so);
- time literals with a timezone are an error (the grammar forbids them);
- function arguments and operator operands are scopes for `defineVariable` (a variable defined in
  one lives until that argument or operand is evaluated), and a "Lazy" parameter type hands an
  operand over unevaluated, so `and` / `or` / `implies` can stop at a deciding left side.

None of this touches fhirpathpy itself: becare is a library (and a pytest plugin loaded into
vendors' own test runs), so importing it must not change what ``fhirpathpy.evaluate`` answers
anywhere else in the process. fhirpathpy's evaluator functions find each other through module
globals (``engine.do_eval``, ``evaluators``, ``make_param``), so becare evaluates with *copies* of
those functions whose globals are a private namespace: ``do_eval`` here dispatches on becare's
own evaluator table, the copied ``doInvoke`` / ``infix_invoke`` build parameters with becare's
``make_param``, and the copied evaluators call back into this private engine. fhirpathpy's module
globals, its evaluator table and its classes are left exactly as they are.

The copies depend on fhirpathpy's internals, hence the exact pin in pyproject.toml and the checks
in ``_private_engine`` (a release that renames what is copied fails at import, not mid-validation).
"""

from __future__ import annotations

import importlib
import re
import types
from collections import abc
from decimal import Decimal
from functools import reduce
from typing import Any

import fhirpathpy.engine as _fp_engine
from fhirpathpy.engine import nodes, util

from adapter.fhirpath.temporal import FP_Date

# the evaluators *module* (``fhirpathpy.engine.evaluators`` as an attribute is its table)
_fp_evaluators = importlib.import_module("fhirpathpy.engine.evaluators")

_ENGINE_FUNCTIONS = ("do_eval", "doInvoke", "infix_invoke", "make_param", "type_specifier")


def _copy(fn: Any, namespace: dict[str, Any]) -> Any:
    """``fn`` with ``namespace`` as its globals (same code, defaults and closure)."""
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__doc__ = fn.__doc__
    return copy


def _private_engine() -> tuple[types.ModuleType, dict[str, Any]]:
    """A private ``fhirpathpy.engine`` namespace and a private evaluator table bound to it."""
    missing = [
        n for n in _ENGINE_FUNCTIONS if not isinstance(getattr(_fp_engine, n, None), types.FunctionType)
    ]
    table = getattr(_fp_evaluators, "evaluators", None)
    if missing or not isinstance(table, dict):
        raise ImportError(
            f"fhirpathpy {getattr(__import__('fhirpathpy'), '__version__', '?')} does not have the "
            f"engine functions becare copies ({', '.join(missing) or 'evaluators'}): install the "
            "version pinned in becare's requirements"
        )
    engine = types.ModuleType("adapter.fhirpath._engine")
    engine.__dict__.update({k: v for k, v in vars(_fp_engine).items() if not k.startswith("__")})
    for name, value in vars(_fp_engine).items():
        if isinstance(value, types.FunctionType) and value.__module__ == _fp_engine.__name__:
            setattr(engine, name, _copy(value, engine.__dict__))
    namespace = dict(vars(_fp_evaluators))
    namespace["engine"] = engine
    copies: dict[int, Any] = {}
    for name, value in vars(_fp_evaluators).items():
        if isinstance(value, types.FunctionType) and value.__module__ == _fp_evaluators.__name__:
            copies[id(value)] = namespace[name] = _copy(value, namespace)
    evaluators = {
        kind: copies.get(id(fn)) or (_copy(fn, namespace) if isinstance(fn, types.FunctionType) else fn)
        for kind, fn in table.items()
    }
    engine.evaluators = evaluators
    return engine, evaluators


ENGINE, EVALUATORS = _private_engine()
do_eval = ENGINE.do_eval
_orig_make_param = ENGINE.make_param


def _number_literal(ctx, parent, node):
    text = node["text"]
    return [Decimal(text)] if "." in text else [int(text)]


def _date_time_literal(ctx, parent, node):
    text = node["text"][1:]
    if text.endswith("T"):
        return [nodes.FP_DateTime(text[:-1])]
    if "T" not in text:
        return [FP_Date(text)]
    return [nodes.FP_DateTime(text)]


def _time_literal(ctx, parent, node):
    text = node["text"][2:]
    if text.endswith("Z") or "+" in text or "-" in text:
        raise ValueError(f"time literal @T{text} may not carry a timezone")
    return [nodes.FP_Time(text)]


def _polarity(ctx, parent, node):
    sign = node["terminalNodeText"][0]
    rtn = do_eval(ctx, parent, node["children"][0])
    if len(rtn) != 1:
        raise ValueError(f"unary {sign} applies to a single number or quantity")
    v = util.get_data(rtn[0])
    if isinstance(v, nodes.FP_Quantity):
        return [nodes.FP_Quantity(-v.value, v.unit) if sign == "-" else v]
    if not util.is_number(v):
        raise ValueError(f"unary {sign} applies to a number or quantity")
    return [-v if sign == "-" else v]


def _child_nodes(model, res, key: str) -> list:
    res = nodes.ResourceNode.create_node(res)
    child_path = f"{res.path}.{key}" if res.path else f"_.{key}"
    full_path = (f"{res.propName}.{key}" if res.propName else child_path).replace("_", "")
    data = res.data
    if not isinstance(data, abc.Mapping):
        # a primitive's id/extension live in the `_name` sibling kept on the node
        side = getattr(res, "_data", None)
        if isinstance(side, abc.Mapping) and key in ("id", "extension"):
            data = side
        elif isinstance(data, nodes.FP_Quantity) and key == "value":
            return [nodes.ResourceNode.create_node(data.value, "decimal")]
        else:
            return []
    actual_types = None
    if isinstance(model, dict):
        child_path = model["pathsDefinedElsewhere"].get(child_path, child_path)
        actual_types = model["choiceTypePaths"].get(child_path)
    value = side = None
    if actual_types:
        for t in actual_types:
            field = f"{key}{t}"
            value, side = data.get(field), data.get(f"_{field}")
            if value is not None or side is not None:
                child_path += t
                break
    else:
        value, side = data.get(key), data.get(f"_{key}")
        if key == "extension":
            child_path = "Extension"
    if isinstance(model, dict) and "path2Type" in model:
        child_path = model["path2Type"].get(child_path, child_path)
    out = []
    if isinstance(value, list) or isinstance(side, list):
        values = value if isinstance(value, list) else []
        sides = side if isinstance(side, list) else []
        for i in range(max(len(values), len(sides))):
            v = values[i] if i < len(values) else None
            s = sides[i] if i < len(sides) else None
            if v is None and not s:
                continue
            out.append(nodes.ResourceNode(v, child_path, s, propName=f"{full_path}[{i}]", index=i))
    elif value is not None or side:
        out.append(nodes.ResourceNode(value, child_path, side, propName=full_path))
    return out


def _member_invocation(ctx, parent, node):
    key = do_eval(ctx, parent, node["children"][0])[0].replace("`", "")
    model = ctx["model"]
    if not isinstance(parent, list):
        return []
    if util.is_capitalized(key):
        typed = [
            x
            for x in parent
            if isinstance(util.get_data(x), abc.Mapping) and util.get_data(x).get("resourceType") == key
        ]
        if typed or any(
            isinstance(util.get_data(x), abc.Mapping) and "resourceType" in util.get_data(x) for x in parent
        ):
            return [nodes.ResourceNode.create_node(util.get_data(x), key) for x in typed]
    return list(reduce(lambda acc, res: acc + _child_nodes(model, res, key), parent, []))


_SYSTEM_PATH = re.compile(r"^System\.(.*)$")


def _node_type(node: nodes.ResourceNode, model: dict | None) -> nodes.TypeInfo | None:
    """``ResourceNode.get_type_info`` with the model passed in, not read from ``TypeInfo.model``
    (a class attribute fhirpathpy sets from whichever evaluation ran last)."""
    if node.path is None:
        return None
    match = _SYSTEM_PATH.match(node.path)
    if match:
        return nodes.TypeInfo(name=match.group(1), namespace=nodes.TypeInfo.System)
    if "." not in node.path:
        return nodes.TypeInfo(name=node.path, namespace=nodes.TypeInfo.FHIR)
    if not model:
        return _value_type(nodes.TypeInfo.FHIR, node.data)
    return nodes.TypeInfo(name="BackboneElement", namespace=nodes.TypeInfo.FHIR)


def _value_type(namespace: str, value: Any) -> nodes.TypeInfo:
    if isinstance(value, FP_Date):
        return nodes.TypeInfo("Date" if namespace == nodes.TypeInfo.System else "date", namespace)
    return nodes.TypeInfo.create_by_value_in_namespace(namespace, value)


def type_of(value: Any, model: dict | None) -> nodes.TypeInfo | None:
    """``TypeInfo.from_value`` that knows becare's Date values (fhirpathpy calls them DateTime)
    and takes the model as an argument."""
    if isinstance(value, nodes.ResourceNode):
        return _node_type(value, model)
    return _value_type(nodes.TypeInfo.System, value)


def type_is(actual: nodes.TypeInfo, other: Any, model: dict | None) -> bool:
    """``TypeInfo.is_`` with the model passed in (see ``_node_type``)."""
    if not isinstance(other, nodes.TypeInfo):
        return False
    if actual.namespace and other.namespace and actual.namespace != other.namespace:
        return False
    if model and (not actual.namespace or actual.namespace == nodes.TypeInfo.FHIR):
        name = actual.name
        while name:
            if name == other.name:
                return True
            name = model["type2Parent"].get(name) or model["path2Type"].get(name)
        return False
    return bool(actual.name == other.name)


def type_fn(ctx, coll):
    """``type()``, with becare's Date values typed as dates."""
    return [type_of(value, ctx.get("model")).__dict__ for value in coll]


def _end_scope(ctx, mark: int) -> None:
    """Forget the variables defined since `mark` (the length of ctx["defined"] on entry)."""
    defined = ctx.get("defined")
    if defined and len(defined) > mark:
        variables = ctx["vars"]
        for name in defined[mark:]:
            variables.pop(name, None)
        del defined[mark:]


def _make_param(ctx, parent_data, node_type, param):
    defined = ctx.get("defined")
    if node_type == "Lazy":

        def thunk():
            mark = len(ctx.get("defined") or ())
            try:
                ctx["$this"] = parent_data
                return do_eval(ctx, parent_data, param)
            finally:
                _end_scope(ctx, mark)

        return thunk
    if node_type == "Expr":

        def func(data):
            mark = len(ctx.get("defined") or ())
            try:
                ctx["$this"] = util.arraify(data)
                return do_eval(ctx, ctx["$this"], param)
            finally:
                _end_scope(ctx, mark)

        return func
    mark = len(defined) if defined else 0
    try:
        return _orig_make_param(ctx, parent_data, node_type, param)
    finally:
        _end_scope(ctx, mark)


# becare's evaluator entries, in its private table only
EVALUATORS["NumberLiteral"] = _number_literal
EVALUATORS["DateTimeLiteral"] = _date_time_literal
EVALUATORS["TimeLiteral"] = _time_literal
EVALUATORS["MemberInvocation"] = _member_invocation
EVALUATORS["PolarityExpression"] = _polarity
ENGINE.make_param = _make_param

