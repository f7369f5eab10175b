"""Terminology bindings: required is an error, extensible a warning, weaker ones are advice.

Membership comes from the offline ``Terminology`` service; when it cannot decide (SNOMED CT,
LOINC, a fragment code system) the binding is reported as not checked rather than passed or
failed, the way the reference validator behaves without a terminology server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapter.validation.model import ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import Walker

_CODE_TYPES = frozenset({"code", "string", "uri", "url", "canonical"})


Coded = tuple[str | None, str | None, str | None]  # (system, code, display)


def _coding(node: dict[str, Any], with_display: bool = True) -> Coded | None:
    """(system, code, display) of a Coding-like object; None when its system or code is not a
    string (a shape error the structure check reports: the binding does not look inside)."""
    system, code = node.get("system"), node.get("code")
    if any(v is not None and not isinstance(v, str) for v in (system, code)):
        return None
    display = node.get("display") if with_display else None
    return system, code, display if isinstance(display, str) else None


def _codings(value: Any, tcode: str) -> list[Coded]:
    if tcode in _CODE_TYPES:
        return [(None, value, None)] if isinstance(value, str) else []
    if not isinstance(value, dict):
        return []
    found: list[Coded | None] = []
    if tcode == "Coding":
        found = [_coding(value)]
    elif tcode == "Quantity":
        found = [_coding(value, with_display=False)] if value.get("code") else []
    elif tcode == "CodeableConcept":
        codings = value.get("coding")  # not an array: a shape error the walk reported
        found = [_coding(c) for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
    return [c for c in found if c is not None]


class BindingChecker:
    def __init__(self, terminology: Any) -> None:
        self.tx = terminology

    def in_value_set(self, value: Any, elem: ElementRule) -> bool:
        """Used by value discriminators: does any coding of ``value`` sit in the bound set?"""
        vs = (elem.binding or {}).get("valueSet")
        if not vs:
            return False
        tcode = elem.types[0].code if elem.types else "code"
        if isinstance(value, dict) and "coding" in value:
            tcode = "CodeableConcept"
        elif isinstance(value, dict) and "code" in value:
            tcode = "Coding"
        for system, code, _display in _codings(value, tcode):
            if code and self.tx.validate_code(vs, system, code).status == "valid":
                return True
        return False

    def check(
        self, walker: Walker, value: Any, tcode: str, binding: dict[str, Any], expr: str, profile_mode: bool
    ) -> None:
        strength = binding.get("strength")
        vs = binding.get("valueSet")
        if strength not in ("required", "extensible") or not vs:
            return
        codings = _codings(value, tcode)
        if not codings:
            self._check(walker, value, tcode, codings, strength, vs, expr, profile_mode)
            return
        # the same codes recur throughout a bundle, and what is said depends only on the codings
        # and the binding: once they were found to hold (nothing said), they hold again
        mark = (id(binding), profile_mode, *codings)
        if mark in walker.valid_bindings:
            return
        before = len(walker.issues)
        self._check(walker, value, tcode, codings, strength, vs, expr, profile_mode)
        if len(walker.issues) == before:
            walker.valid_bindings.add(mark)

    def _check(
        self,
        walker: Walker,
        value: Any,
        tcode: str,
        codings: list[Coded],
        strength: str,
        vs: str,
        expr: str,
        profile_mode: bool,
    ) -> None:
        if not codings:
            if (
                tcode == "CodeableConcept"
                and strength == "required"
                and isinstance(value, dict)
                and value.get("text")
            ):
                walker.report(
                    "warning",
                    "code-invalid",
                    expr,
                    f"No code provided, and a code should be provided from the value set '{vs}'",
                    source="terminology",
                )
            return
        results = [
            self.tx.validate_code(vs, system, code, display) for system, code, display in codings if code
        ]
        if not results:
            return
        if any(r.status == "valid" for r in results):
            for r in results:
                if r.status == "valid" and r.message:
                    walker.report("warning", "code-invalid", expr, r.message, source="terminology")
            return
        if all(r.status == "unknown" for r in results):
            if strength == "required" and not profile_mode:
                walker.report(
                    "warning",
                    "not-found",
                    expr,
                    results[0].message or f"The code could not be validated against the value set '{vs}'",
                    source="terminology",
                )
            return
        message = next((r.message for r in results if r.status == "invalid" and r.message), None)
        shown = ", ".join(f"{s}#{c}" if s else str(c) for s, c, _ in codings)
        text = message or f"The value provided ({shown}) is not in the value set '{vs}'"
        if strength == "required":
            walker.report(
                "error", "code-invalid", expr, text, source="terminology", message_id="Terminology_TX_NoValid"
            )
        else:
            walker.report("warning", "code-invalid", expr, text, source="terminology")

    def check_coding(self, walker: Walker, coding: dict[str, Any], expr: str) -> None:
        """A Coding in a complete, known code system must use a code of that system."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return
        known = self.tx.code_system_has(system, code)
        if known is False:
            walker.report(
                "error",
                "code-invalid",
                f"{expr}.code",
                f"Unknown code '{code}' in the CodeSystem '{system}'",
                source="terminology",
            )
