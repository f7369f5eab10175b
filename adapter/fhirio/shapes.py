"""Reading the internal form without trusting its shape.

The internal form is whatever JSON the caller sent: where FHIR expects an array there may be a
boolean, where it expects an object a string. The structure checker reports such a node once;
every other reader (bindings, references, invariants, the rulebook, the registry, routing) must
then simply not see into it. These helpers are how they read: a value of the wrong shape reads
as absent, never as an exception or as the characters of a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def as_list(value: Any) -> list[Any]:
    """``value`` if it is an array, else an empty list (absent or of the wrong shape)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is an object, else an empty dict (absent or of the wrong shape)."""
    return value if isinstance(value, dict) else {}


def objects(value: Any) -> Iterator[dict[str, Any]]:
    """The objects among the items of an array (nothing when ``value`` is not an array)."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def member(node: Any, key: str) -> Any:
    """``node[key]`` when ``node`` is an object, else None."""
    return node.get(key) if isinstance(node, dict) else None


def text(value: Any) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
