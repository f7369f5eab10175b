"""A resource given as Python values (``Validator.validate(dict)``, the pytest plugin's
``assert_valid``) has not been through the parser, so what the parser guarantees is checked here
before the walk: nesting within the depth limit (the walk recurses with it; compiled, without
the interpreter's recursion limit to stop it) and property names that are strings (JSON has no
other kind). Either problem is one fatal issue and nothing is checked, as for unparseable input.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from adapter.validation.issues import Issue


def not_checkable(resource: Any, max_depth: int) -> Issue | None:
    """The fatal issue for a resource the walk cannot take, or None. One pass without paths;
    the path of a bad property name is looked for only when there is one."""
    stack: list[tuple[Any, int]] = [(resource, 1)]
    pop, push = stack.pop, stack.append
    bad_key = False
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return Issue(
                "fatal",
                "too-costly",
                "",
                f"The resource nests deeper than {max_depth} levels of objects and arrays: it has not "
                "been checked",
                source="structure",
            )
        if type(node) is dict:
            for key, child in node.items():
                if type(key) is not str:
                    bad_key = True
                kind = type(child)
                if kind is dict or kind is list:
                    push((child, depth + 1))
        else:
            for child in node:
                kind = type(child)
                if kind is dict or kind is list:
                    push((child, depth + 1))
    if not bad_key:
        return None
    where, key = _first_bad_key(resource)
    return Issue(
        "fatal",
        "structure",
        where,
        f"Property name {key!r} is not a string ({type(key).__name__}), and JSON has no other kind: "
        "the resource has not been checked",
        source="structure",
    )


def _first_bad_key(resource: Any) -> tuple[str, Any]:
    """(FHIRPath of the object holding it, the key) of the first non-string property name."""
    root = resource.get("resourceType") if isinstance(resource, dict) else None
    start = root if isinstance(root, str) and root else "Resource"
    queue: deque[tuple[Any, str]] = deque([(resource, start)])
    while queue:  # breadth first: the shallowest bad name
        node, path = queue.popleft()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, child in items:
            if type(node) is dict and type(key) is not str:
                return path, key
            if type(child) is dict or type(child) is list:
                queue.append((child, f"{path}.{key}" if type(node) is dict else f"{path}[{key}]"))
    return "", None
