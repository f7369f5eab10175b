"""Strict FHIRPath parsing.

fhirpathpy's own `parse` installs a silent ANTLR error listener and stops at the first complete
expression, so `2 + 2 /` parses as `2 + 2`. An invariant that silently means something else is worse
than one that fails loudly, hence this wrapper: any lexer/parser error or unconsumed input raises.

fhirpathpy's grammar also ranks the binary operators differently from the FHIRPath grammar
(N1 section "Operator precedence": `is`/`as` bind tighter than `|`, which binds tighter than the
comparisons), so `1 | 1 is Integer` meant `(1 | 1) is Integer`. The parse tree is therefore
re-associated with the specification's table (`_reassociate`); every binary operator is
left-associative and operands (terms, invocations, indexers, unary +/-) stay as parsed.
"""

from __future__ import annotations

import re

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser


class FhirPathError(Exception):
    """A FHIRPath expression could not be parsed or evaluated."""

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class _Raise(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        raise FhirPathError(f"syntax error at {line}:{column}: {msg}")


# `@2015T` (a DateTime with only a date part) is valid FHIRPath that the bundled grammar rejects
_PARTIAL_DATETIME = re.compile(r"@(\d{4}(?:-\d{2}(?:-\d{2})?)?)T(?![\d])")


def parse(expression: str) -> dict:
    """Parse to fhirpathpy's AST dict, raising FhirPathError on any syntax problem."""
    if not isinstance(expression, str) or not expression.strip():
        raise FhirPathError("empty FHIRPath expression", expression if isinstance(expression, str) else None)
    listener = _Raise()
    try:
        text = _PARTIAL_DATETIME.sub(r"(@\1.toDateTime())", expression)
        lexer = FHIRPathLexer(InputStream(text))
        lexer.removeErrorListeners()
        lexer.addErrorListener(listener)
        parser = FHIRPathParser(CommonTokenStream(lexer))
        parser.buildParseTrees = True
        parser.removeErrorListeners()
        parser.addErrorListener(listener)
        tree = parser.expression()
        trailing = parser.getCurrentToken()
        if trailing is not None and trailing.type != Token.EOF:
            raise FhirPathError(f"unexpected '{trailing.text}' at {trailing.line}:{trailing.column}")
        ast = ASTPathListener()
        ParseTreeWalker().walk(ast, tree)
        return _reassociate(ast.parentStack[0])
    except FhirPathError as exc:
        raise FhirPathError(f"invalid FHIRPath {expression!r}: {exc.message}", expression) from None
    except Exception as exc:  # ANTLR raises assorted internal errors on garbage input
        raise FhirPathError(f"invalid FHIRPath {expression!r}: {exc}", expression) from None


# FHIRPath N1 operator precedence, tightest first (unary +/- and invocation bind tighter still)
_LEVELS = {
    "MultiplicativeExpression": 10,
    "AdditiveExpression": 9,
    "TypeExpression": 8,
    "UnionExpression": 7,
    "InequalityExpression": 6,
    "EqualityExpression": 5,
    "MembershipExpression": 4,
    "AndExpression": 3,
    "OrExpression": 2,
    "XorExpression": 2,
    "ImpliesExpression": 1,
}


def _reassociate(node: dict) -> dict:
    """The parse tree with binary operator chains rebuilt by the specification's precedence."""
    if node.get("type") in _LEVELS:
        tokens: list = []
        _flatten(node, tokens)
        pos = [0]
        return _climb(tokens, pos, 0)
    children = node.get("children")
    if children:
        node["children"] = [_reassociate(c) for c in children]
    return node


def _flatten(node: dict, out: list) -> None:
    """In-order operands and operators of a binary chain: ("operand", node) / ("op", node, level)."""
    kind = node.get("type")
    level = _LEVELS.get(kind)
    if level is None:
        out.append(("operand", _reassociate(node)))
        return
    left, right = node["children"]
    _flatten(left, out)
    if kind == "TypeExpression":
        out.append(("postfix", node, level, right))
    else:
        out.append(("op", node, level))
        _flatten(right, out)


def _climb(tokens: list, pos: list, min_level: int) -> dict:
    lhs = tokens[pos[0]][1]
    pos[0] += 1
    while pos[0] < len(tokens):
        token = tokens[pos[0]]
        level = token[2]
        if level < min_level:
            break
        pos[0] += 1
        template = token[1]
        if token[0] == "postfix":
            lhs = {**template, "children": [lhs, token[3]]}
            continue
        rhs = _climb(tokens, pos, level + 1)
        lhs = {**template, "children": [lhs, rhs]}
    return lhs
