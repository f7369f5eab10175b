"""Rule explanations as JSON for the validation page.

The page explains each issue with the rule's title, fix, severity per region and its source in the
interfederal agreement. Building that from the catalog here (pure functions, no HTTP) keeps the
explanations identical to ``becare explain`` and ``docs/rules.md``, which read the same catalog.
One rule (``GET /rules/{id}``) also carries the example that breaks it, as ``becare explain``
computes it (``adapter.explainer``): only asked for when the user opens an explanation,
because it runs the rule's sample through the rulebook.
"""

from __future__ import annotations

from typing import Any

from adapter.explainer import compact_json, explanation, render_text
from adapter.rules.catalog import LANGS, REGIONS, RULE_SYSTEM, Catalog, Rule, load_catalog


class UnknownLanguage(ValueError):
    """``lang`` is not one of the four languages the rulebook is written in."""


def check_lang(lang: str) -> str:
    key = lang.strip().lower()
    if key not in LANGS:
        raise UnknownLanguage(lang)
    return key


def rule_json(rule: Rule, lang: str, catalog: Catalog) -> dict[str, Any]:
    """One rule in ``lang``; severities stay per region because the page's region may be 'auto'."""
    return {
        "id": rule.id,
        "system": RULE_SYSTEM,
        "title": rule.title[lang],
        "regional": rule.regional,
        "severity": {region: rule.severity[region] for region in REGIONS},
        "fix": rule.fix[lang],
        "source": rule.source,
        "lines": rule.lines,
        "messages": {variant: texts[lang] for variant, texts in rule.messages.items()},
    }


def rules_json(lang: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """The whole rulebook in ``lang``, with the region labels the page needs for its selector."""
    cat = catalog or load_catalog()
    return {
        "version": cat.version,
        "lang": lang,
        "system": RULE_SYSTEM,
        "regions": [{"id": r, "label": cat.regions[r].label(lang)} for r in REGIONS],
        "rules": [rule_json(rule, lang, cat) for rule in cat.rules],
    }


def one_rule_json(rule_id: str, lang: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """``explanation()`` of one rule (with ``example``: sample, location, message, fragment and
    its text, references; null when none is packaged), under the same field names as ``/rules`` so the
    page reads one shape (``source`` the citation, ``lines`` beside it), plus the plain text
    ``becare explain`` prints. Raises UnknownRuleError."""
    cat = catalog or load_catalog()
    rule = cat.rule(rule_id)
    data = explanation(rule.id, lang, cat)
    example = data["example"]
    if example is not None and example.get("fragment") is not None:
        # the fragment as ``becare explain`` prints it, so the page needs no JSON layout of its own
        data["example"] = {**example, "fragment_text": compact_json(example["fragment"])}
    return {
        **data,
        **rule_json(rule, lang, cat),
        "version": cat.version,
        "lang": lang,
        "explanation": render_text(data),
    }
