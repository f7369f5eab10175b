"""The rule catalog: ``rules/rulebook.yaml`` and ``rules/regions.yaml`` loaded and checked.

The rules are data so that a change of the interfederal agreement is a reviewed diff of a YAML
file (and of the generated ``docs/rules.md``), not a code change; this module is the one place
that knows the file layout. It is also what ``becare rules`` prints, and what ``becare explain``
(``adapter.explainer``) explains.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.datafiles import data_dir

LANGS: tuple[str, ...] = ("en", "fr", "nl", "de")
REGIONS: tuple[str, ...] = ("flanders", "wallonia", "brussels", "german-speaking")
SEVERITIES: frozenset[str] = frozenset({"error", "warning", "information", "off"})
RULE_SYSTEM = "https://becare.dev/fhir/CodeSystem/rule"


class CatalogError(ValueError):
    """The rulebook data is malformed (a broken file is a packaging bug, reported clearly)."""


class UnknownRuleError(LookupError):
    def __init__(self, rule_id: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown rule id {rule_id!r}; known rules: {', '.join(known)}")
        self.rule_id = rule_id


class UnknownRegionError(ValueError):
    def __init__(self, region: str) -> None:
        super().__init__(f"unknown region {region!r}; expected one of: {', '.join(REGIONS)}")
        self.region = region


@dataclass(frozen=True)
class Rule:
    id: str
    severity: dict[str, str]  # region -> severity; a non-regional rule has the same value for all
    regional: bool
    title: dict[str, str]
    messages: dict[str, dict[str, str]]  # variant -> lang -> text
    variant_severity: dict[str, str]
    fix: dict[str, str]
    source: str
    lines: str
    logic: dict[str, str]
    table1: str | None = None

    @property
    def is_fhirpath(self) -> bool:
        return "fhirpath" in self.logic

    def severity_for(self, region: str | None) -> str | None:
        """The severity in ``region``; None when the rule is regional and the region unknown."""
        if not self.regional:
            return self.severity[REGIONS[0]]
        if region is None:
            return None
        return self.severity[region]

    def message(self, variant: str, lang: str, params: dict[str, Any] | None = None) -> str:
        texts = self.messages.get(variant) or self.messages["default"]
        text = texts.get(lang) or texts["en"]
        return text.format_map(_Defaulting(params or {}))


class _Defaulting(dict):
    """Leaves an unknown placeholder visible instead of failing on a message typo."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Region:
    id: str
    labels: dict[str, str]
    aliases: tuple[str, ...]
    table1: dict[str, str]

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels["en"]


@dataclass(frozen=True, eq=False)  # identity hash: compiled rulebooks are cached per catalog
class Catalog:
    version: str
    rules: tuple[Rule, ...]
    regions: dict[str, Region]
    postal_codes: tuple[tuple[int, int, str], ...]
    notices: dict[str, dict[str, str]] = field(default_factory=dict)
    regions_source: str = ""

    @functools.cached_property
    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def rule(self, rule_id: str) -> Rule:
        rule = self.by_id.get(rule_id.strip().upper()) if rule_id else None
        if rule is None:
            raise UnknownRuleError(rule_id, tuple(self.by_id))
        return rule

    def normalize_region(self, value: str) -> str:
        """Accept the canonical code or a common name in any of our languages."""
        key = value.strip().lower()
        if key in self.regions:
            return key
        for region in self.regions.values():
            if key in region.aliases or key in (lbl.lower() for lbl in region.labels.values()):
                return region.id
        raise UnknownRegionError(value)

    def region_for_postal_code(self, code: int) -> str | None:
        for low, high, region in self.postal_codes:
            if low <= code <= high:
                return region
        return None

    def notice(self, key: str, lang: str, params: dict[str, Any]) -> str:
        texts = self.notices[key]
        return (texts.get(lang) or texts["en"]).format_map(_Defaulting(params))


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise CatalogError(f"{where}: {what}")


def _langs(value: Any, where: str) -> dict[str, str]:
    _need(isinstance(value, dict), where, "expected a mapping of languages")
    missing = [lang for lang in LANGS if not isinstance(value.get(lang), str) or not value[lang].strip()]
    _need(not missing, where, f"missing text in {', '.join(missing)}")
    return {lang: value[lang] for lang in LANGS}


def _rule(raw: dict[str, Any]) -> Rule:
    rid = raw.get("id")
    _need(isinstance(rid, str) and rid.startswith("IC-"), "rule", f"bad id {rid!r}")
    where = f"rule {rid}"
    sev = raw.get("severity")
    if isinstance(sev, str):
        _need(sev in SEVERITIES, where, f"bad severity {sev!r}")
        severity, regional = dict.fromkeys(REGIONS, sev), False
    else:
        _need(
            isinstance(sev, dict) and set(sev) == set(REGIONS), where, "severity per region needs all regions"
        )
        bad = [v for v in sev.values() if v not in SEVERITIES]
        _need(not bad, where, f"bad severity {bad!r}")
        severity, regional = {r: sev[r] for r in REGIONS}, True
    messages = raw.get("messages")
    _need(isinstance(messages, dict) and bool(messages), where, "no messages")
    msgs = {variant: _langs(texts, f"{where} message {variant}") for variant, texts in messages.items()}
    _need("default" in msgs or len(msgs) > 1, where, "a single message variant must be 'default'")
    variant_severity = dict(raw.get("severities") or {})
    for variant, value in variant_severity.items():
        _need(variant in msgs and value in SEVERITIES, where, f"bad variant severity {variant}: {value}")
    citation = raw.get("citation") or {}
    _need(
        bool(citation.get("source")) and bool(citation.get("lines")), where, "citation needs source and lines"
    )
    logic = raw.get("logic")
    _need(
        isinstance(logic, dict) and (("function" in logic) != ("fhirpath" in logic)),
        where,
        "logic needs exactly one of function / fhirpath",
    )
    if "fhirpath" in logic:
        _need(isinstance(logic.get("target"), str), where, "a fhirpath rule needs 'target'")
    return Rule(
        id=rid,
        severity=severity,
        regional=regional,
        title=_langs(raw.get("title"), f"{where} title"),
        messages=msgs,
        variant_severity=variant_severity,
        fix=_langs(raw.get("fix"), f"{where} fix"),
        source=str(citation["source"]),
        lines=str(citation["lines"]),
        logic={k: str(v) for k, v in logic.items()},
        table1=raw.get("table1"),
    )


def parse_catalog(rulebook: dict[str, Any], regions: dict[str, Any]) -> Catalog:
    """Build a Catalog from the two YAML documents (already parsed)."""
    _need(isinstance(rulebook, dict) and rulebook.get("version") is not None, "rulebook", "no version")
    raw_rules = rulebook.get("rules")
    _need(isinstance(raw_rules, list) and bool(raw_rules), "rulebook", "no rules")
    rules = tuple(_rule(r) for r in raw_rules)
    ids = [r.id for r in rules]
    _need(len(ids) == len(set(ids)), "rulebook", "duplicate rule ids")
    _need(isinstance(regions, dict) and isinstance(regions.get("regions"), dict), "regions", "no regions")
    regs: dict[str, Region] = {}
    for rid, raw in regions["regions"].items():
        regs[rid] = Region(
            id=rid,
            labels=_langs(raw.get("labels"), f"region {rid}"),
            aliases=tuple(str(a).lower() for a in raw.get("aliases") or ()),
            table1={k: str(v) for k, v in (raw.get("table1") or {}).items()},
        )
    _need(set(regs) == set(REGIONS), "regions", f"expected regions {REGIONS}")
    postal = tuple(
        (int(p["from"]), int(p["to"]), str(p["region"])) for p in regions.get("postal_codes") or ()
    )
    _need(all(p[2] in regs for p in postal), "regions", "postal code range with unknown region")
    for rule in rules:
        if rule.table1:
            _need(
                all(rule.table1 in r.table1 for r in regs.values()),
                f"rule {rule.id}",
                f"table1 row {rule.table1!r} missing in regions.yaml",
            )
    notices = {k: _langs(v, f"notice {k}") for k, v in (rulebook.get("notices") or {}).items()}
    return Catalog(
        version=str(rulebook["version"]),
        rules=rules,
        regions=regs,
        postal_codes=postal,
        notices=notices,
        regions_source=str(regions.get("source") or ""),
    )


def _read_yaml(path: Path) -> Any:
    """The YAML document at ``path``, read by libyaml when PyYAML has it (ten times faster than
    the pure-Python reader, which cost ~40 ms of every ``becare validate``; tests hold both
    readers to the same result on the catalog). A document libyaml refuses is read again by the
    pure-Python reader, whose error message is the one reported."""
    fast = getattr(yaml, "CSafeLoader", None)
    try:
        text = path.read_text(encoding="utf-8")
        if fast is not None:
            try:
                return yaml.load(text, Loader=fast)  # CSafeLoader: the safe loader, in C
            except yaml.YAMLError:
                pass
        return yaml.safe_load(text)
    except FileNotFoundError as exc:
        raise CatalogError(f"rule catalog file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"rule catalog file {path.name} is not valid YAML: {exc}") from exc


_LOADED: dict[str | None, Catalog] = {}
_LOADING = threading.Lock()


def load_catalog(folder: str | None = None) -> Catalog:
    """Load (once) the catalog from ``rules/`` (or ``folder``). Under a lock: without it, the
    first burst of request threads each parsed the YAML at the same time (seconds of CPU on
    a busy service, as the delivery benchmark showed)."""
    catalog = _LOADED.get(folder)
    if catalog is not None:
        return catalog
    with _LOADING:
        catalog = _LOADED.get(folder)
        if catalog is None:
            base = Path(folder) if folder else data_dir("rules")
            catalog = parse_catalog(_read_yaml(base / "rulebook.yaml"), _read_yaml(base / "regions.yaml"))
            _LOADED[folder] = catalog
    return catalog


# --- rendering -----------------------------------------------------------------------------

_LANG_NAMES = {"en": "English", "fr": "Français", "nl": "Nederlands", "de": "Deutsch"}
_HEAD = {
    "en": ("Rule", "Severity", "Source", "Fix", "Logic", "Messages", "Regional setting"),
    "fr": ("Règle", "Gravité", "Source", "Correction", "Logique", "Messages", "Paramètre régional"),
    "nl": ("Regel", "Ernst", "Bron", "Oplossing", "Logica", "Meldingen", "Regionale instelling"),
    "de": ("Regel", "Schweregrad", "Quelle", "Behebung", "Logik", "Meldungen", "Regionale Einstellung"),
}


def _check_lang(lang: str | None) -> None:
    if lang is not None and lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of: {', '.join(LANGS)}")


def _severity_cells(rule: Rule) -> list[str]:
    return [rule.severity[r] for r in REGIONS]


def _logic_text(rule: Rule) -> str:
    if rule.is_fhirpath:
        return f"FHIRPath on `{rule.logic['target']}`: `{rule.logic['fhirpath']}`"
    return f"function `{rule.logic['function']}` (adapter/rules/checks.py)"


def render_rules_markdown(lang: str | None = None, catalog: Catalog | None = None) -> str:
    """The catalog page: all four languages when ``lang`` is None, else only that one."""
    _check_lang(lang)
    cat = catalog or load_catalog()
    langs = LANGS if lang is None else (lang,)
    label_lang = lang or "en"
    head = _HEAD[label_lang]
    region_labels = [cat.regions[r].label(label_lang) for r in REGIONS]
    out: list[str] = [
        f"# Interfederal rulebook, version {cat.version}",
        "",
        "<!-- Generated from rules/rulebook.yaml and rules/regions.yaml by scripts/gen_rules_doc.py."
        " Do not edit by hand. -->",
        "",
        f"Issues carry `details.coding` = `{RULE_SYSTEM}#<id>`. Severity `off` = not checked in that region.",
        "",
        "| id | " + " | ".join(region_labels) + f" | {head[0]} |",
        "|---|" + "---|" * len(REGIONS) + "---|",
    ]
    for rule in cat.rules:
        cells = " | ".join(_severity_cells(rule))
        out.append(f"| [{rule.id}](#{rule.id.lower()}) | {cells} | {rule.title[label_lang]} |")
    out.append("")
    for rule in cat.rules:
        out += [f"## {rule.id}", ""]
        for lg in langs:
            prefix = f"**{_LANG_NAMES[lg]}**: " if len(langs) > 1 else ""
            out.append(f"- {prefix}{rule.title[lg]}")
        out.append("")
        if rule.regional:
            sev = ", ".join(
                f"{lbl}: {rule.severity[r]}" for lbl, r in zip(region_labels, REGIONS, strict=True)
            )
        else:
            sev = rule.severity[REGIONS[0]]
        out.append(f"- {head[1]}: {sev}")
        if rule.table1:
            vals = ", ".join(
                f"{lbl}: `{cat.regions[r].table1[rule.table1]}`"
                for lbl, r in zip(region_labels, REGIONS, strict=True)
            )
            out.append(f"- {head[6]} (`rules/regions.yaml`, `{rule.table1}`): {vals}")
        out.append(f"- {head[2]}: {rule.source} ({rule.lines})")
        out.append(f"- {head[4]}: {_logic_text(rule)}")
        out.append(f"- {head[5]}:")
        for variant, texts in rule.messages.items():
            vsev = rule.variant_severity.get(variant)
            tag = f" ({vsev})" if vsev else ""
            for lg in langs:
                out.append(f"  - `{variant}`{tag} [{lg}] {texts[lg]}")
        out.append(f"- {head[3]}:")
        for lg in langs:
            out.append(f"  - [{lg}] {rule.fix[lg]}")
        out.append("")
    out += [
        "## Regions",
        "",
        f"Source of the regional settings: {cat.regions_source}. See the comments in `rules/regions.yaml`"
        " for the line of each cell and the choice where the French and Dutch tables disagree.",
        "",
    ]
    return "\n".join(out).rstrip() + "\n"
