"""The only forms in which persons reach the registry's tables.

A person can be named three ways in a bundle: a reference resolved to a resource of the bundle,
a logical reference (``Reference.identifier``), or a conditional reference
(``Patient?identifier=<ssin system>|<number>``) that only the receiving server resolves. The
registry must key all three the same way, or IC-ONE-1/2 miss a second coordinator named the
other way; and it must never keep the raw text of the last two, which carries the SSIN. So an
SSIN, wherever it is found, becomes the registry's salted hash (``ssin:<hex>``, or ``patient``
when it is the person's own), a NIHDI number stays ``nihdi:<number>`` (a professional's public
number, as for resolved practitioners), and any SSIN-shaped number left in other text (an
episode identifier, a reference without a recognised system) is replaced by its hash too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from adapter.rules.identifiers import classify_system
from adapter.rules.situation import Episode, Node, Situation

# 11 digits as SSINs are written (85073003328, 85.07.30-033.28, 850730 033 28): the same shape
# the outbox masks in free text. Hashing (not masking) keeps equal numbers equal.
# A hash already in the text is matched first and kept, so scrubbing twice changes nothing.
_SSIN_TEXT = re.compile(
    r"(?P<hash>ssin:[0-9a-f]{64})|(?<!\d)\d{2}[.\s]?\d{2}[.\s]?\d{2}[-\s]?\d{3}[.\s]?\d{2}(?!\d)"
)

HashSsin = Callable[[str], str]


def digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _ref_text(ref: Any) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    return ref if isinstance(ref, str) and ref else None


def _conditional_identifiers(text: str) -> list[tuple[str, str]]:
    """(system, value) of each ``identifier`` search in a conditional reference's query."""
    if "?" not in text:
        return []
    out: list[tuple[str, str]] = []
    for name, raw in parse_qsl(text.split("?", 1)[1]):
        if name.split(":", 1)[0] != "identifier":
            continue
        for token in raw.split(","):  # a comma is FHIR's "or" between values
            system, sep, value = token.partition("|")
            if sep and value:
                out.append((system, value))
    return out


def reference_identifier(ref: Any) -> tuple[str, str] | None:
    """(kind, value) of the SSIN or NIHDI number an unresolved reference names the target by:
    its logical identifier, else the identifier searched by a conditional reference."""
    candidates: list[tuple[str, str]] = []
    ident = ref.get("identifier") if isinstance(ref, dict) else None
    if (
        isinstance(ident, dict)
        and isinstance(ident.get("system"), str)
        and isinstance(ident.get("value"), str)
    ):
        candidates.append((ident["system"], ident["value"]))
    text = _ref_text(ref)
    if text:
        candidates += _conditional_identifiers(text)
    for system, value in candidates:
        kind = classify_system(system)
        if kind and kind[0] in ("ssin", "nihdi") and value.strip():
            return kind[0], value.strip()
    return None


class Labeller:
    """Turns one situation's persons into registry keys with one salted hash."""

    def __init__(self, hash_ssin: HashSsin) -> None:
        self.hash_ssin = hash_ssin

    def scrub(self, text: str) -> str:
        """``text`` with every SSIN-shaped number replaced by its hash."""
        return _SSIN_TEXT.sub(lambda m: m.group("hash") or "ssin:" + self.hash_ssin(m.group(0)), text)

    def person_ssin(self, situation: Situation, ep: Episode) -> str | None:
        """The SSIN (digits) of the episode's person: from the resolved Patient, else from how
        the unresolved ``EpisodeOfCare.patient`` reference names them."""
        value = situation.ssin_of(ep.patient)
        if value is None:
            found = reference_identifier(ep.node.resource.get("patient"))
            value = found[1] if found and found[0] == "ssin" else None
        return (digits(value) or None) if value else None

    def _ssin_label(self, ssin: str, person: str | None) -> str:
        return "patient" if person and digits(ssin) == person else "ssin:" + self.hash_ssin(ssin)

    def unresolved(self, ref: Any, person: str | None) -> str | None:
        """Label of a role holder the bundle names by a reference it does not resolve."""
        found = reference_identifier(ref)
        if found is not None:
            kind, value = found
            return self._ssin_label(value, person) if kind == "ssin" else f"nihdi:{value}"
        text = _ref_text(ref)
        return self.scrub(f"ref:{text}") if text else None

    def resolved(self, situation: Situation, node: Node, person: str | None, ep: Episode) -> str:
        """Label of a role holder resolved inside the bundle. A PractitionerRole counts as its
        practitioner, as in the rulebook."""
        res = node.resource
        if node.type == "PractitionerRole" and res.get("practitioner"):
            practitioner = situation.resolve(res["practitioner"])
            if practitioner is None:
                label = self.unresolved(res["practitioner"], person)
                if label is not None and not label.startswith("ref:"):
                    return label
            elif practitioner.type != "PractitionerRole":
                label = self.resolved(situation, practitioner, person, ep)
                if label.startswith(("nihdi:", "ssin:", "patient")):
                    return label
        ssin = situation.ssin_of(node)
        if node.type == "Patient" and (node is ep.patient or ssin is None):
            return "patient"
        if ssin is not None and digits(ssin):
            return self._ssin_label(ssin, person)
        key = situation.node_person_key(node)
        if key.startswith("nihdi:"):
            return key
        rid = res.get("id")
        return self.scrub(
            f"{node.type}/{rid}" if isinstance(rid, str) and rid else f"{node.type}#{node.index}"
        )

    def relabel_stored(self, holder: str | None, person_key: str) -> str | None:
        """A holder label stored before SSINs were hashed, in today's form (``ref:`` labels
        kept the reference text; anything else may hold an SSIN-shaped id)."""
        if holder is None:
            return None
        if holder.startswith("ref:"):
            found = reference_identifier(holder[4:])
            if found is not None:
                kind, value = found
                if kind == "nihdi":
                    return f"nihdi:{value}"
                hashed = self.hash_ssin(value)
                return "patient" if hashed == person_key else "ssin:" + hashed
        if holder.startswith(("nihdi:", "ssin:")) or holder == "patient":
            return holder
        return self.scrub(holder)
