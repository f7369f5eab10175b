"""Offline terminology over a ConformanceStore: value set membership and code system lookups.

Every value set is turned once into frozen sets (``_Compiled``) and cached, so a check is a
few dictionary look-ups; the validator calls this for every coded element of every resource.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from adapter.terminology import compose, ucum
from adapter.terminology.codesystem import CodeSystemIndex
from adapter.terminology.expansions import EXPANSIONS_VERSION, load_expansions, pairs_of
from adapter.terminology.membership import Membership, Pair
from adapter.terminology.result import CodeResult

_MAX_DISPLAYS_SHOWN = 5
# Results are pure functions of their arguments once the value set is compiled; the same few
# codes recur in every bundle, so a bounded memo turns repeated checks into one dict look-up.
_MEMO_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class _Compiled:
    url: str
    membership: Membership
    displays: dict[Pair, tuple[str, ...]]  # displays the value set itself gives
    by_code: dict[str, tuple[str, ...]]  # code -> systems holding it (for bindings on `code`)
    folded: dict[str, tuple[Pair, ...]]  # casefolded code -> members, for case-insensitive systems
    systems: frozenset[str]


def _split(url: str) -> tuple[str, str | None]:
    if "|" in url:
        base, _, version = url.partition("|")
        return base, version or None
    return url, None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class Terminology:
    """Thread-safe: caches are filled under a lock, then only read."""

    def __init__(
        self,
        store: Any = None,
        *,
        expansions: dict[str, Any] | None = None,
    ) -> None:
        if store is None:
            from adapter.conformance import default_store

            store = default_store()
        self._store = store
        self._expansions = expansions
        self._code_systems: dict[str, CodeSystemIndex | None] = {}
        self._value_sets: dict[str, _Compiled | None] = {}
        self._building: set[str] = set()
        self._lock = threading.RLock()
        self._memo: dict[tuple[str, str | None, str, str | None], CodeResult] = {}

    # -- public API -------------------------------------------------------------------------
    def validate_code(
        self, valueset: str, system: str | None, code: str, display: str | None = None
    ) -> CodeResult:
        key = (valueset, system, code, display)
        try:
            return self._memo[key]
        except KeyError:
            pass
        except TypeError:  # unhashable argument: answer without memoising
            return self._validate(valueset, system, code, display)
        result = self._validate(valueset, system, code, display)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result

    def _validate(self, valueset: str, system: str | None, code: str, display: str | None) -> CodeResult:
        if not isinstance(display, str):
            display = None  # a non-text display cannot be compared; the structure check reports it
        if not isinstance(system, str):
            system = None
        if not isinstance(code, str) or not code.strip():
            return CodeResult("invalid", f"An empty code is not in the value set {valueset}")
        compiled = self._compiled(valueset)
        if compiled is None:
            return CodeResult("unknown", f"The value set {valueset} is not available offline")
        if not system:
            return self._validate_without_system(compiled, code, display)
        canonical = self._canonical(compiled, system, code)
        state = compiled.membership.status((system, canonical))
        if state == "yes":
            notes = [
                self._case_note(system, code, canonical),
                self._display_note(compiled, system, canonical, display),
            ]
            message = "; ".join(n for n in notes if n)
            return CodeResult("valid", message or None)
        if state == "maybe":
            if system == ucum.UCUM_SYSTEM and (problem := ucum.syntax_error(code)):
                return CodeResult("invalid", f"The code '{code}' is not a valid UCUM unit ({problem})")
            return CodeResult(
                "unknown",
                f"The code '{code}' (system {system}) cannot be checked offline against the value set "
                f"{compiled.url}",
            )
        return CodeResult("invalid", self._not_in_message(compiled, system, code))

    def code_system_has(self, system: str, code: str) -> bool | None:
        """None when the code system is unknown or not complete (fragment, example, not-present)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        index = self._code_system(system)
        if index is None or not index.complete:
            if system == ucum.UCUM_SYSTEM and ucum.syntax_error(code):
                return False
            return None
        return index.lookup(code) is not None

    def expand(self, valueset: str) -> frozenset[tuple[str, str]] | None:
        """Every (system, code) of the value set, or None when it cannot be fully expanded offline."""
        compiled = self._compiled(valueset)
        if compiled is None or not compiled.membership.decided:
            return None
        return compiled.membership.yes

    # -- checks -----------------------------------------------------------------------------
    def _validate_without_system(self, compiled: _Compiled, code: str, display: str | None) -> CodeResult:
        """FHIR ``code`` elements carry no system: find the code among the value set's codes."""
        systems = compiled.by_code.get(code)
        canonical = code
        if not systems:
            folded = code.casefold()
            hits = dict(compiled.folded.get(folded, ()))
            if hits:
                systems = tuple(hits)
                canonical = next(iter(hits.values()))
        if systems:
            # Ambiguous codes (in several systems) are members all the same; the display is
            # checked against the unique system only.
            if len(systems) == 1:
                system = systems[0]
                notes = [
                    self._case_note(system, code, canonical),
                    self._display_note(compiled, system, canonical, display),
                ]
                message = "; ".join(n for n in notes if n)
                return CodeResult("valid", message or None)
            return CodeResult("valid")
        membership = compiled.membership
        if membership.maybe_all or membership.maybe_systems or any(c == code for _, c in membership.maybe):
            return CodeResult(
                "unknown", f"The code '{code}' cannot be checked offline against the value set {compiled.url}"
            )
        return CodeResult("invalid", f"The code '{code}' is not in the value set {compiled.url}")

    def _not_in_message(self, compiled: _Compiled, system: str, code: str) -> str:
        message = f"The code '{code}' is not in the value set {compiled.url} (system {system})"
        if system not in compiled.systems:
            return message + "; the value set has no codes from that system"
        index = self._code_system(system)
        if index is not None and index.complete and index.lookup(code) is None:
            return message + f"; '{code}' is not a code of {system}"
        return message

    def _canonical(self, compiled: _Compiled, system: str, code: str) -> str:
        if (system, code) in compiled.membership.yes:
            return code
        for member_system, member_code in compiled.folded.get(code.casefold(), ()):
            if member_system == system:
                return member_code
        return code

    def _case_note(self, system: str, code: str, canonical: str) -> str | None:
        if code == canonical:
            return None
        index = self._code_system(system)
        if index is not None and index.case_sensitive is False:
            return None  # declared case-insensitive: nothing to say
        return f"The code '{code}' differs in case from '{canonical}' in {system}"

    def _display_note(self, compiled: _Compiled, system: str, code: str, display: str | None) -> str | None:
        if display is None:
            return None
        index = self._code_system(system)
        names = list(compiled.displays.get((system, code), ()))
        if index is not None:
            names[:0] = index.displays.get(code, ())
        names = list(dict.fromkeys(names))
        if not names or _norm(display) in {_norm(n) for n in names}:
            return None
        shown = ", ".join(f"'{n}'" for n in names[:_MAX_DISPLAYS_SHOWN])
        expected = f"one of {shown}" if len(names) > 1 else shown
        return f"Wrong display '{display}' for {system}#{code}: expected {expected}"

    # -- caches -----------------------------------------------------------------------------
    def _code_system(self, url: str, version: str | None = None) -> CodeSystemIndex | None:
        key = f"{url}|{version}" if version else url
        if key in self._code_systems:
            return self._code_systems[key]
        with self._lock:
            if key not in self._code_systems:
                resource = self._store.code_system(key) if version else self._store.code_system(url)
                if resource is None and version:
                    resource = self._store.code_system(url)  # another version is better than none
                self._code_systems[key] = _index_or_none(resource)
            return self._code_systems[key]

    def _compiled(self, valueset: str) -> _Compiled | None:
        if not isinstance(valueset, str) or not valueset:
            return None
        if valueset in self._value_sets:
            return self._value_sets[valueset]
        with self._lock:
            if valueset in self._value_sets:
                return self._value_sets[valueset]
            if valueset in self._building:
                return None  # a circular import: treated as unknown by the caller
            self._building.add(valueset)
            try:
                compiled = self._compile(valueset)
            finally:
                self._building.discard(valueset)
            self._value_sets[valueset] = compiled
            return compiled

    def _membership(self, valueset: str) -> Membership | None:
        compiled = self._compiled(valueset)
        return compiled.membership if compiled is not None else None

    def _value_set_resource(self, valueset: str) -> dict[str, Any] | None:
        url, version = _split(valueset)
        resource = self._store.value_set(valueset) if version else None
        if resource is None:
            resource = self._store.value_set(url)
        return resource if isinstance(resource, dict) else None

    def _compile(self, valueset: str) -> _Compiled | None:
        resource = self._value_set_resource(valueset)
        if resource is None:
            return None
        url = resource.get("url") or _split(valueset)[0]
        contained = _contained_code_systems(resource)

        def code_system(system: str, version: str | None) -> CodeSystemIndex | None:
            if system in contained:
                return contained[system]
            return self._code_system(system, version)

        displays: dict[Pair, tuple[str, ...]] = {}
        if compose.usable_expansion(resource):
            membership = compose.from_expansion(resource, displays)
        else:
            membership = compose.from_compose(resource, code_system, self._membership, displays)
            if not membership.decided:
                membership = self._with_vendored(resource, membership, displays)
        by_code: dict[str, tuple[str, ...]] = {}
        folded: dict[str, tuple[Pair, ...]] = {}
        for system, code in membership.yes:
            by_code[code] = (*by_code.get(code, ()), system)
            index = code_system(system, None)
            if index is not None and not index.case_sensitive:
                key = code.casefold()
                folded[key] = (*folded.get(key, ()), (system, code))
        systems = frozenset(s for s, _ in membership.yes | membership.maybe) | membership.maybe_systems
        return _Compiled(url, membership, displays, by_code, folded, systems)

    def _with_vendored(
        self, resource: dict[str, Any], membership: Membership, displays: dict[Pair, tuple[str, ...]]
    ) -> Membership:
        """Turn "maybe" into "yes" for the codes a full terminology server listed.

        Only the undecidable part is taken from the vendored expansions: where the definition
        can be computed here, it wins, because those expansions are wrong for some R4 value
        sets (care-plan-intent lists every request-intent code, subject-type every resource type).
        """
        if resource.get("version") not in (None, EXPANSIONS_VERSION):
            return membership
        if self._expansions is None:
            with self._lock:
                if self._expansions is None:
                    self._expansions = load_expansions()
        entry = self._expansions.get(resource.get("url") or "")
        if entry is None:
            return membership
        listed, listed_displays = pairs_of(entry)
        upgraded = {p for p in listed if membership.status(p) == "maybe"}
        if not upgraded:
            return membership
        for pair in upgraded:
            if pair in listed_displays:
                displays[pair] = (*displays.get(pair, ()), *listed_displays[pair])
        return Membership(
            membership.yes | upgraded,
            membership.maybe - upgraded,
            membership.maybe_systems,
            membership.maybe_all,
        )


def _index_or_none(resource: Any) -> CodeSystemIndex | None:
    if not isinstance(resource, dict) or resource.get("resourceType", "CodeSystem") != "CodeSystem":
        return None
    return CodeSystemIndex(resource)


def _contained_code_systems(valueset: dict[str, Any]) -> dict[str, CodeSystemIndex]:
    out: dict[str, CodeSystemIndex] = {}
    for item in valueset.get("contained") or ():
        if isinstance(item, dict) and item.get("resourceType") == "CodeSystem" and item.get("url"):
            out[item["url"]] = CodeSystemIndex(item)
    return out
