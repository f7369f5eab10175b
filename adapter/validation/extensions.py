"""Extension checks that need the place an extension appears at (extensibility.html,
defining-extensions.html#context).

For every extension or modifierExtension on an element, when its definition is known:

- the element must match one of the definition's ``context`` entries: ``element`` (an element
  path or a type, with the type hierarchy: ``DomainResource.text`` covers ``Patient.text``,
  ``Element`` covers everything), ``extension`` (on, or on the value of, the extension with
  that url) or ``fhirpath`` (the element is among what the expression selects from the
  resource);
- every ``contextInvariant`` must hold on that element (``%extension`` is the extension);
- an extension defined as a modifier must be a modifierExtension, and the other way round.

And for every extension: its url must be absolute, except a sub-extension's (in
``Extension.extension``), which must be one the complex extension defines.

The element context check follows the Java reference validator: the element's instance path
(indexes removed, counted from its resource), its path in the definition it is walked with and
its type are compared with each context, the first step widened to its base types.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapter.validation.model import SD_BASE, CompiledStructure, ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import ResourceContext, Walker

_INDEX = re.compile(r"\[[^\]]*\]")
_SLICE = re.compile(r":[^.]+")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S")

# R4 core extensions whose published context is wrong; the reference validator widens them the
# same way (the first two sit on ElementDefinition.type in every core definition)
_CONTEXT_FIXES: dict[str, tuple[str, ...]] = {
    SD_BASE + "structuredefinition-fhir-type": ("ElementDefinition.type",),
    SD_BASE + "regex": ("ElementDefinition.type",),
    SD_BASE + "structuredefinition-normative-version": ("Element",),
    SD_BASE + "capabilitystatement-expectation": ("Element",),
    SD_BASE + "capabilitystatement-prohibited": ("Element",),
}
# example, fixed and pattern values in an ElementDefinition may carry any extension
_ANY_EXTENSION_UNDER = re.compile(r"(^|\.)(example|fixed[A-Z]\w*|pattern[A-Z]\w*|defaultValue[A-Z]\w*)(\.|$)")


def is_absolute_url(url: Any) -> bool:
    """An absolute URI (a scheme, then something): ``http://...``, ``urn:uuid:...``."""
    return isinstance(url, str) and _SCHEME.match(url) is not None


def strip_indexes(path: str) -> str:
    return _INDEX.sub("", path)


@dataclass(frozen=True, slots=True)
class _Context:
    kind: str  # element | extension | fhirpath
    expression: str

    def label(self) -> str:
        return f"{self.kind} {self.expression}"


@dataclass(frozen=True, slots=True)
class _Definition:
    url: str
    contexts: tuple[_Context, ...]
    invariants: tuple[str, ...]
    is_modifier: bool
    sub_extensions: frozenset[str] | None  # the urls a complex extension defines; None: no rule


@dataclass(frozen=True, slots=True)
class Place:
    """Where extensions were found: the element holding them."""

    element: Any  # the element's value (dict), or for a primitive its value (the `_x` holds the rest)
    companion: dict[str, Any] | None  # a primitive's `_x` object
    literal: str  # instance path from the resource, indexes removed ("Patient.address")
    paths: tuple[str, ...]  # definition paths ("Address", "Patient.address")
    type: str  # its datatype or resource type
    is_resource: bool
    extension_urls: tuple[str, ...]  # urls of the Extension it is, or is the value of


def checker_for(engine: Any) -> ExtensionChecker:
    """One checker per validator, kept on it (it caches what it learns from the definitions)."""
    checker = getattr(engine, "_extension_checker", None)
    if checker is None:
        with _LOCK:
            checker = getattr(engine, "_extension_checker", None)
            if checker is None:
                checker = ExtensionChecker(engine)
                engine._extension_checker = checker
    return checker  # type: ignore[no-any-return]


_LOCK = threading.Lock()


class ExtensionChecker:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.index = engine.structures
        self._definitions: dict[str, _Definition | None] = {}
        self._bases: dict[str, tuple[str, ...]] = {}
        self._verdicts: dict[tuple[Any, ...], bool] = {}

    # ------------------------------------------------------------------ walker entry points
    def check_element(
        self,
        walker: Walker,
        value: dict[str, Any],
        rule: ElementRule,
        owner: ElementRule,
        structure: CompiledStructure,
        tcode: str,
        expr: str,
        rc: ResourceContext,
    ) -> None:
        """The extensions of a complex element (or resource) about to be walked."""
        is_resource = rule is structure.root and structure.kind == "resource"
        urls: list[str] = []
        if tcode == "Extension" and isinstance(value.get("url"), str):
            urls.append(value["url"])
        if rule.path.startswith("Extension.value") and structure.type == "Extension":
            urls.append(structure.url)  # the value of a known extension: its definition's url
        place = Place(
            element=value,
            companion=None,
            literal=walker.instance_path(expr),
            paths=_unique((rule.path, owner.path)),
            type=tcode,
            is_resource=is_resource,
            extension_urls=tuple(urls),
        )
        complex_definition = None
        if tcode == "Extension" and rule is structure.root and structure.is_profile:
            complex_definition = self._definition(structure)
        self._check(walker, value, place, expr, rc, complex_definition)

    def check_primitive(
        self,
        walker: Walker,
        parent: dict[str, Any],
        key: str,
        child: ElementRule,
        ctype: str,
        companion: dict[str, Any],
        primitive: Any,
        iexpr: str,
        rc: ResourceContext,
    ) -> None:
        """The extensions in a primitive's ``_name`` object."""
        if "extension" not in companion and "modifierExtension" not in companion:
            return
        urls: tuple[str, ...] = ()
        if child.path.startswith("Extension.value") and isinstance(parent.get("url"), str):
            urls = (parent["url"],)
        base_expr = iexpr.replace("._" + key, "." + key, 1) if key else iexpr
        place = Place(
            element=primitive,
            companion=companion,
            literal=walker.instance_path(base_expr),
            paths=_unique((child.path,)),
            type=ctype,
            is_resource=False,
            extension_urls=urls,
        )
        self._check(walker, companion, place, iexpr, rc, None)

    # ------------------------------------------------------------------ the checks
    def _check(
        self,
        walker: Walker,
        holder: dict[str, Any],
        place: Place,
        expr: str,
        rc: ResourceContext,
        complex_definition: _Definition | None,
    ) -> None:
        for prop in ("extension", "modifierExtension"):
            items = holder.get(prop)
            if not isinstance(items, list):
                continue
            for i, ext in enumerate(items):
                if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
                    continue
                url = ext["url"]
                eexpr = f"{expr}.{prop}[{i}]"
                if not is_absolute_url(url):
                    self._relative(walker, url, place, complex_definition, eexpr)
                    continue
                definition = self._definition_for(url)
                if definition is None:
                    continue  # unknown: reported (or not) where the extension itself is walked
                self._modifier(walker, definition, prop == "modifierExtension", eexpr)
                if self._allowed(definition, place, rc):
                    self._invariants(walker, definition, ext, place, eexpr, rc)
                else:
                    walker.report(
                        "error",
                        "structure",
                        eexpr,
                        f"The extension {url} is not allowed to be used at this point (allowed: "
                        f"{', '.join(c.label() for c in definition.contexts) or 'nowhere'}; "
                        f"this element is {place.literal or place.type})",
                        source="structure",
                        message_id="Extension_EXT_Context_Wrong",
                    )

    def _relative(
        self, walker: Walker, url: str, place: Place, complex_definition: _Definition | None, expr: str
    ) -> None:
        if place.type != "Extension" or place.companion is not None:
            walker.report(
                "error",
                "invalid",
                f"{expr}.url",
                f"Extension.url must be an absolute URL, not '{url}' (only the sub-extensions of a "
                "complex extension are named by a simple name)",
                source="structure",
                message_id="Extension_EXT_URL_Absolute",
            )
            return
        if complex_definition is None or complex_definition.sub_extensions is None:
            return
        defined = complex_definition.sub_extensions
        if url not in defined:
            walker.report(
                "error",
                "structure",
                f"{expr}.url",
                f"Sub-extension url '{url}' is not defined by the extension {complex_definition.url} "
                f"(it defines: {', '.join(sorted(defined))})",
                source="profile",
                message_id="Extension_EXT_SubExtension_Invalid",
            )

    def _modifier(self, walker: Walker, definition: _Definition, as_modifier: bool, expr: str) -> None:
        if definition.is_modifier == as_modifier:
            return
        if as_modifier:
            message = (
                f"The extension {definition.url} is not a modifier extension, so it must be used "
                "in extension, not modifierExtension"
            )
        else:
            message = (
                f"The extension {definition.url} is a modifier extension, so it must be used in "
                "modifierExtension, not extension"
            )
        walker.report(
            "error",
            "structure",
            expr,
            message,
            source="structure",
            message_id="Extension_EXT_Modifier_Y" if not as_modifier else "Extension_EXT_Modifier_N",
        )

    # ------------------------------------------------------------------ context
    def _allowed(self, definition: _Definition, place: Place, rc: ResourceContext) -> bool:
        if not definition.contexts:
            return True  # nothing stated (an R3-style or broken definition): nothing to hold to
        if _ANY_EXTENSION_UNDER.search(place.literal.partition(".")[2]) and place.literal.startswith(
            "StructureDefinition."
        ):
            return True
        plain = all(c.kind != "fhirpath" for c in definition.contexts)
        key = (
            definition.url,
            place.literal,
            place.paths,
            place.type,
            place.is_resource,
            place.extension_urls,
        )
        if plain:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                return verdict
        ok = any(self._matches(c, place, rc) for c in definition.contexts)
        if plain:
            self._verdicts[key] = ok
        return ok

    def _matches(self, context: _Context, place: Place, rc: ResourceContext) -> bool:
        if context.kind == "element":
            return self._element_matches(context.expression, place)
        if context.kind == "extension":
            return context.expression in place.extension_urls
        if context.kind == "fhirpath":
            return self._fhirpath_matches(context.expression, place, rc)
        return False

    def _element_matches(self, expression: str, place: Place) -> bool:
        target = expression.split("#", 1)[1] if "#" in expression else expression
        target = _SLICE.sub("", target)
        if target in ("Element", "Any", "Base"):
            return True
        if target == "Resource" and place.is_resource:
            return True
        candidates = [place.literal, *place.paths, place.type]
        for p in candidates:
            if not p:
                continue
            if p == target:
                return True
            head, dot, rest = p.partition(".")
            for base in self._hierarchy(head):
                if base + dot + rest == target:
                    return True
            if p.endswith("[x]") and p[:-3] == target:
                return True
        return False

    def _fhirpath_matches(self, expression: str, place: Place, rc: ResourceContext) -> bool:
        resource = rc.resource
        root = rc.container if rc.container is not None else resource
        try:
            found = self.engine.fhirpath.evaluate(
                expression,
                resource,
                resource=resource,
                root_resource=root,
                resolver=lambda ref, _src=None: rc.resolve(ref),
            )
        except Exception:  # an expression that cannot run selects nothing
            return False
        for item in found:
            if item is place.element or (place.companion is not None and item is place.companion):
                return True
            if place.companion is not None and not isinstance(item, dict | list) and item == place.element:
                return True  # a primitive: selected by value
        return False

    def _invariants(
        self,
        walker: Walker,
        definition: _Definition,
        ext: dict[str, Any],
        place: Place,
        expr: str,
        rc: ResourceContext,
    ) -> None:
        root = rc.container if rc.container is not None else rc.resource
        for expression in definition.invariants:
            try:
                if place.companion is not None:
                    result = self.engine.fhirpath.evaluate(
                        expression,
                        place.element,
                        resource=rc.resource,
                        root_resource=root,
                        env={"extension": ext},
                        node_type=place.type,
                        side=place.companion,
                    )
                else:
                    result = self.engine.fhirpath.evaluate(
                        expression,
                        place.element,
                        resource=rc.resource,
                        root_resource=root,
                        env={"extension": ext},
                        node_type=None if place.is_resource else _node_type(place),
                    )
            except Exception as exc:  # not evaluated is not checked: say so
                walker.report(
                    "error",
                    "exception",
                    expr,
                    f"The context invariant '{expression}' of the extension {definition.url} could not "
                    f"be evaluated ({type(exc).__name__}: {str(exc)[:200]})",
                    source="invariant",
                    message_id="Extension_EXT_ContextInvariant_Error",
                )
                continue
            if any(r is False for r in result):
                walker.report(
                    "error",
                    "structure",
                    expr,
                    f"The extension {definition.url} is not allowed to be used here: its context "
                    f"invariant '{expression}' is not met",
                    source="structure",
                    message_id="Profile_EXT_Not_Here",
                )

    # ------------------------------------------------------------------ definitions
    def _definition_for(self, url: str) -> _Definition | None:
        if url in self._definitions:
            return self._definitions[url]
        compiled = self.engine.extension_definition(url)
        definition = self._definition(compiled) if compiled is not None else None
        self._definitions[url] = definition
        return definition

    def _definition(self, compiled: CompiledStructure) -> _Definition:
        cached = self._definitions.get(compiled.url)
        if cached is not None:
            return cached
        sd = compiled.sd
        contexts: list[_Context] = []
        raw = sd.get("context")
        if isinstance(raw, list):
            for c in raw:
                if isinstance(c, dict) and isinstance(c.get("expression"), str):
                    contexts.append(_Context(str(c.get("type") or "element"), c["expression"]))
        for extra in _CONTEXT_FIXES.get(compiled.url, ()):
            contexts.append(_Context("element", extra))
        invariants = tuple(s for s in sd.get("contextInvariant") or () if isinstance(s, str) and s.strip())
        is_modifier = bool(compiled.root.definition.get("isModifier"))
        definition = _Definition(compiled.url, tuple(contexts), invariants, is_modifier, _sub_extensions(sd))
        self._definitions[compiled.url] = definition
        return definition

    def _hierarchy(self, type_name: str) -> tuple[str, ...]:
        """The type and its base types, by the core definitions' baseDefinition."""
        cached = self._bases.get(type_name)
        if cached is not None:
            return cached
        chain: list[str] = []
        name: str | None = type_name
        while name and name not in chain and len(chain) < 10:
            chain.append(name)
            sd = self.index.raw(SD_BASE + name) if "/" not in name else None
            base = sd.get("baseDefinition") if isinstance(sd, dict) else None
            name = base[len(SD_BASE) :] if isinstance(base, str) and base.startswith(SD_BASE) else None
        out = tuple(chain)
        self._bases[type_name] = out
        return out


def _sub_extensions(sd: dict[str, Any]) -> frozenset[str] | None:
    """The sub-extension urls a complex extension defines (``Extension.extension.url`` fixed
    values); None when it defines none (a simple extension: sub-extensions are not its topic)."""
    names: set[str] = set()
    for el in (sd.get("snapshot") or {}).get("element") or ():
        if isinstance(el, dict) and el.get("path") == "Extension.extension.url":
            fixed = el.get("fixedUri", el.get("fixedString"))
            if isinstance(fixed, str):
                names.add(fixed)
    return frozenset(names) if names else None


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def _node_type(place: Place) -> str | None:
    if place.type in ("BackboneElement", "Element") and place.paths:
        return place.paths[0]
    return place.type
