"""The one error the KMEHR writer and reader raise for bad input.

Problems travel as (location, reason) pairs so a caller can show all of them at once, and the
reasons are scrubbed: a KMEHR message is full of national numbers and names, and an error message
ends up in logs and delivery records where personal data must not.
"""

from __future__ import annotations

import re

# quoted values (pydantic and libxml2 quote the offending input) and long digit runs (an INSS,
# a NIHII, a card number) never reach a message
_QUOTED = re.compile(r"""(?P<before>\w*\s?)(?P<q>'[^'\n]{0,200}'|"[^"\n]{0,200}")""")
_DIGITS = re.compile(r"\d[\d .\-/]{6,}\d")
_NAMESPACE = re.compile(r"\{http://www\.ehealth\.fgov\.be/standards/kmehr/[a-z]+/v1\}")


def scrub(text: str) -> str:
    """The reason without the values it quotes: element names stay, data goes."""
    text = _NAMESPACE.sub("", text)
    text = _QUOTED.sub(_keep_names, text)
    return _DIGITS.sub("…", text)


def _keep_names(m: re.Match[str]) -> str:
    # libxml2 quotes the element or attribute at fault ("Element 'cd'", "attribute 'S'"): that
    # says where the problem is, so it stays; any other quoted text is input and goes
    before, quoted = m.group("before"), m.group("q")
    if before.strip().lower() in ("element", "attribute", "facet") and re.fullmatch(
        r".[A-Za-z][\w.-]{0,40}.", quoted
    ):
        return before + quoted
    return before + "'…'"


class KmehrError(Exception):
    """Bad input for ``to_kmehr`` or ``from_kmehr``; ``problems`` lists (location, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems: list[tuple[str, str]] = [(loc or "/", scrub(reason)) for loc, reason in problems]
        shown = "; ".join(f"{loc}: {reason}" for loc, reason in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} problem(s): {shown}{more}")


class KmehrBug(RuntimeError):
    """The writer produced a message its own XSD rejects: a defect in becare, not in the input."""
