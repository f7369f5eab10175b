"""Targeted fixes to fhirpathpy evaluators (installed once, idempotent).

Why patch instead of fork: four evaluator entries are wrong for FHIR validation and the rest of
fhirpathpy is fine. The fixes:
- member access pairs a primitive with its `_name` sibling (value + id/extension are ONE node);
  fhirpathpy returns them as two nodes, so `birthDate.count()` was 2 and ele-1 misjudged;
- `1.0` is a Decimal (fhirpathpy collapses it to the integer 1);
- `@2015-02-04` is a Date, not a DateTime; `@2015T` is a DateTime;
- time literals with a timezone are an error (the grammar forbids them);
- function arguments and operator operands are scopes for `defineVariable` (a variable defined in
  one lives until that argument or operand is evaluated), and a "Lazy" parameter type hands an
  operand over unevaluated, so `and` / `or` / `implies` can stop at a deciding left side.
"""

from __future__ import annotations

from collections import abc
from decimal import Decimal
from functools import reduce

from fhirpathpy import engine
from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.evaluators import evaluators

from adapter.fhirpath.temporal import FP_Date

_installed = False


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
    rtn = engine.do_eval(ctx, parent, node["children"][0])
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
    key = engine.do_eval(ctx, parent, node["children"][0])[0].replace("`", "")
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


_orig_by_value = nodes.TypeInfo.create_by_value_in_namespace


def _create_by_value_in_namespace(namespace, value):
    if isinstance(value, FP_Date):
        return nodes.TypeInfo("Date" if namespace == nodes.TypeInfo.System else "date", namespace)
    return _orig_by_value(namespace, value)


_orig_make_param = engine.make_param


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
                return engine.do_eval(ctx, parent_data, param)
            finally:
                _end_scope(ctx, mark)

        return thunk
    if node_type == "Expr":

        def func(data):
            mark = len(ctx.get("defined") or ())
            try:
                ctx["$this"] = util.arraify(data)
                return engine.do_eval(ctx, ctx["$this"], param)
            finally:
                _end_scope(ctx, mark)

        return func
    mark = len(defined) if defined else 0
    try:
        return _orig_make_param(ctx, parent_data, node_type, param)
    finally:
        _end_scope(ctx, mark)


def install() -> None:
    global _installed
    if _installed:
        return
    engine.make_param = _make_param
    evaluators["NumberLiteral"] = _number_literal
    evaluators["DateTimeLiteral"] = _date_time_literal
    evaluators["TimeLiteral"] = _time_literal
    evaluators["MemberInvocation"] = _member_invocation
    evaluators["PolarityExpression"] = _polarity
    nodes.TypeInfo.create_by_value_in_namespace = staticmethod(_create_by_value_in_namespace)
    nodes.TypeInfo.type_to_class_with_check_string["date"] = FP_Date
    _installed = True
