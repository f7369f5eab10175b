"""What ``becare explain RULE-ID`` shows, as data: the rule, its severity per region, its source,
how to fix it, and an example that breaks it.

The example is not prose written next to the rule: it is the rule's own breaking sample
(``samples/rules/<ID>/breaks*.json``, packaged under ``adapter/_data/samples``) run through the
rulebook at explain time, so the message and location shown are exactly what a user would get,
and an example that stops breaking the rule fails the tests instead of silently lying.
``explanation()`` returns a plain dict so the HTTP service can serve it as JSON; ``render_text()``
is the terminal form.

It sits above both the rulebook (``adapter.rules``) and the episode registry
(``adapter.registry``): the samples of IC-ONE-1/2 run against a throwaway registry holding
earlier submissions, and the registry itself is built on the rulebook's reading of a bundle.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from adapter.datafiles import data_dir
from adapter.fhirio.paths import parse_path
from adapter.registry import EpisodeRegistry
from adapter.rules.catalog import LANGS, REGIONS, Catalog, load_catalog
from adapter.rules.engine import check_rulebook

MAX_LIST = 6  # list items kept in a fragment; the rest is summarised
MAX_DEPTH = 10
WIDTH = 110  # a JSON value that fits on a line this wide is printed on one line
MAX_STRING = 90
_DROPPED_KEYS = frozenset({"text", "meta"})  # narrative and profile claims say nothing about the rule

_LABELS: dict[str, dict[str, str]] = {
    "severity": {"en": "Severity", "fr": "Gravité", "nl": "Ernst", "de": "Schweregrad"},
    "source": {"en": "Source", "fr": "Source", "nl": "Bron", "de": "Quelle"},
    "fix": {"en": "How to fix", "fr": "Comment corriger", "nl": "Zo lost u het op", "de": "So beheben"},
    "example": {
        "en": "Example that breaks the rule",
        "fr": "Exemple qui enfreint la règle",
        "nl": "Voorbeeld dat de regel overtreedt",
        "de": "Beispiel, das die Regel verletzt",
    },
    "region": {"en": "region", "fr": "région", "nl": "regio", "de": "Region"},
    "message": {
        "en": "Validator message",
        "fr": "Message du validateur",
        "nl": "Melding van de validator",
        "de": "Meldung des Validators",
    },
    "location": {"en": "Location", "fr": "Emplacement", "nl": "Locatie", "de": "Stelle"},
    "references": {
        "en": "References in this fragment",
        "fr": "Références dans ce fragment",
        "nl": "Verwijzingen in dit fragment",
        "de": "Verweise in diesem Fragment",
    },
    "none": {
        "en": "No example is packaged for this rule.",
        "fr": "Aucun exemple n'est fourni pour cette règle.",
        "nl": "Voor deze regel is geen voorbeeld meegeleverd.",
        "de": "Für diese Regel ist kein Beispiel enthalten.",
    },
    "more": {"en": "more", "fr": "de plus", "nl": "meer", "de": "weitere"},
}


def label(key: str, lang: str) -> str:
    texts = _LABELS[key]
    return texts.get(lang) or texts["en"]


# --- the breaking samples -------------------------------------------------------------------


def _samples_root() -> Path:
    return data_dir("samples")


@functools.lru_cache(maxsize=1)
def _manifest() -> tuple[dict[str, Any], ...]:
    """The sample manifest; empty when the samples are not installed (the example is then omitted)."""
    path = _samples_root() / "manifest.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ()
    return tuple(s for s in raw.get("samples") or () if isinstance(s, dict) and "file" in s)


def breaking_sample(rule_id: str) -> dict[str, Any] | None:
    """The first manifest entry under ``rules/<ID>/breaks*`` that raises the rule."""
    prefix = f"rules/{rule_id}/breaks"
    for sample in _manifest():
        if str(sample["file"]).startswith(prefix) and rule_id in (sample.get("expect") or ()):
            return sample
    return None


def _load(rel: str) -> dict[str, Any]:
    return json.loads((_samples_root() / rel).read_text(encoding="utf-8"))


def _run_sample(sample: dict[str, Any], rule_id: str, lang: str, catalog: Catalog) -> tuple[dict, Any]:
    """Run the rulebook on the sample as the validator would; returns (bundle, first issue of the rule)."""
    registry = None
    if sample.get("registry"):  # IC-ONE-*: earlier submissions recorded in a throwaway registry
        registry = EpisodeRegistry("sqlite://", salt="becare-explain")
        for prior in sample["registry"]:
            registry.record(_load(prior))
    bundle = _load(sample["file"])
    result = check_rulebook(
        bundle, region=sample.get("region"), lang=lang, registry=registry, catalog=catalog
    )
    issue = next((i for i in result.issues if i.rule == rule_id), None)
    return bundle, issue


# --- fragments --------------------------------------------------------------------------------


def _walk(root: Any, expression: str) -> list[tuple[str, int | None, Any]] | None:
    """(name, index, value) for each step of a navigational expression; None if it does not resolve."""
    steps = parse_path(expression) or []
    if not steps or steps[0].function or steps[0].name != root.get("resourceType"):
        return None
    out: list[tuple[str, int | None, Any]] = [(steps[0].name, None, root)]
    node: Any = root
    for step in steps[1:]:
        if step.function or not isinstance(node, dict) or step.name not in node:
            return None
        node = node[step.name]
        if step.index is not None:
            if not isinstance(node, list) or step.index >= len(node):
                return None
            node = node[step.index]
        out.append((step.name, step.index, node))
    return out


def trim(value: Any, lang: str = "en", depth: int = 0) -> Any:
    """A readable copy: no narrative or meta, long lists and strings shortened, deep nesting cut."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return "…"
        return {k: trim(v, lang, depth + 1) for k, v in value.items() if k not in _DROPPED_KEYS}
    if isinstance(value, list):
        kept = [trim(v, lang, depth + 1) for v in value[:MAX_LIST]]
        if len(value) > MAX_LIST:
            kept.append(f"… {len(value) - MAX_LIST} {label('more', lang)}")
        return kept
    if isinstance(value, str) and len(value) > MAX_STRING:
        return value[: MAX_STRING - 1] + "…"
    return value


def fragment(bundle: dict[str, Any], expression: str, lang: str = "en") -> dict[str, Any] | None:
    """The resource at the issue location, reduced to the path down to the offending element.

    A whole-resource location gives the (trimmed) resource; a deeper one gives the resource's type
    and id with only that element, and a primitive is shown with its parent so it has context.
    """
    walked = _walk(bundle, expression)
    if walked is None:
        return None
    res_at = max(
        (i for i, (name, _, v) in enumerate(walked) if name == "resource" and isinstance(v, dict)), default=0
    )
    resource = walked[res_at][2]
    below = walked[res_at + 1 :]
    if below and not isinstance(below[-1][2], dict | list):
        below = below[:-1]
    if not below:
        return trim(resource, lang)
    out: dict[str, Any] = {"resourceType": resource.get("resourceType")}
    if "id" in resource:
        out["id"] = resource["id"]
    holder = out
    for pos, (name, index, value) in enumerate(below):
        last = pos == len(below) - 1
        child: Any = trim(value, lang) if last else {}
        holder[name] = [child] if index is not None else child
        holder = child
    return out


def _references(value: Any, found: list[str]) -> list[str]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref not in found:
            found.append(ref)
        for v in value.values():
            _references(v, found)
    elif isinstance(value, list):
        for v in value:
            _references(v, found)
    return found


def _summary(resource: dict[str, Any]) -> str:
    """``Goal (care-goal)``: the type plus the codes that usually decide a rule (never a name)."""
    found: list[str] = []
    for key in ("category", "code", "type", "specialty"):
        value = resource.get(key)
        for concept in value if isinstance(value, list) else [value]:
            if not isinstance(concept, dict):
                continue
            for coding in concept.get("coding") or ():
                code = coding.get("code") if isinstance(coding, dict) else None
                if isinstance(code, str) and code not in found:
                    found.append(code)
    rtype = str(resource.get("resourceType"))
    return f"{rtype} ({', '.join(found)})" if found else rtype


def reference_targets(bundle: dict[str, Any], frag: Any) -> dict[str, str]:
    """What each reference in the fragment points to in the bundle (urn:uuid ids say nothing alone)."""
    by_full_url: dict[str, dict] = {}
    for entry in bundle.get("entry") or ():
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            if isinstance(entry.get("fullUrl"), str):
                by_full_url[entry["fullUrl"]] = entry["resource"]
            res = entry["resource"]
            if res.get("id"):
                by_full_url.setdefault(f"{res.get('resourceType')}/{res['id']}", res)
    out: dict[str, str] = {}
    for ref in _references(frag, []):
        target = by_full_url.get(ref)
        if target is not None:
            out[ref] = _summary(target)
        elif "/" in ref and not ref.startswith(("urn:", "#")):
            out[ref] = ref.rsplit("/", 2)[-2]
    return out


# --- the explanation ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _example(rule_id: str, lang: str, cat: Catalog) -> str | None:
    """The example as JSON text (cached: samples are static data; callers get a fresh copy)."""
    sample = breaking_sample(rule_id)
    if sample is None:
        return None
    bundle, issue = _run_sample(sample, rule_id, lang, cat)
    if issue is None:  # the sample no longer breaks the rule: show nothing rather than a wrong example
        return None
    frag = fragment(bundle, issue.expression, lang)
    region = sample.get("region")
    return json.dumps(
        {
            "sample": sample["file"],
            "region": region,
            "region_label": cat.regions[region].label(lang) if region in cat.regions else None,
            "location": issue.expression,
            "severity": issue.severity,
            "message": issue.message,
            "fragment": frag,
            "references": reference_targets(bundle, frag) if frag is not None else {},
        }
    )


def clear_caches() -> None:
    """Forget the manifest and computed examples (after the samples folder changed)."""
    _manifest.cache_clear()
    _example.cache_clear()


def explanation(rule_id: str, lang: str = "en", catalog: Catalog | None = None) -> dict[str, Any]:
    """Everything ``becare explain`` shows for one rule, in ``lang`` (raises UnknownRuleError)."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of: {', '.join(LANGS)}")
    cat = catalog or load_catalog()
    rule = cat.rule(rule_id)
    data: dict[str, Any] = {
        "id": rule.id,
        "rulebook_version": cat.version,
        "lang": lang,
        "title": rule.title[lang],
        "regional": rule.regional,
        "severity": {r: rule.severity[r] for r in REGIONS},
        "region_labels": {r: cat.regions[r].label(lang) for r in REGIONS},
        "source": {"citation": rule.source, "lines": rule.lines},
        "fix": rule.fix[lang],
        "example": None,
    }
    try:
        cached = _example(rule.id, lang, cat)
    except (OSError, ValueError):  # a damaged sample file: explain the rule without an example
        cached = None
    data["example"] = json.loads(cached) if cached is not None else None
    return data


def compact_json(value: Any, indent: str = "", width: int = WIDTH) -> str:
    """Indented JSON where any value that fits on one line stays on one line: a FHIR fragment
    pretty-printed the usual way is mostly braces."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(indent) + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return indent + flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = json.dumps(k, ensure_ascii=False) + ": "
            items.append(inner + key + compact_json(v, inner, width)[len(inner) :])
        return indent + "{\n" + ",\n".join(items) + "\n" + indent + "}"
    items = [compact_json(v, inner, width) for v in value]
    return indent + "[\n" + ",\n".join(items) + "\n" + indent + "]"


def render_text(data: dict[str, Any]) -> str:
    """The terminal form of ``explanation()``."""
    lang = data["lang"]
    if data["regional"]:
        sev = ", ".join(f"{data['region_labels'][r]}: {data['severity'][r]}" for r in REGIONS)
    else:
        sev = data["severity"][REGIONS[0]]
    lines = [
        f"{data['id']} (rulebook {data['rulebook_version']})",
        data["title"],
        f"{label('severity', lang)}: {sev}",
        f"{label('source', lang)}: {data['source']['citation']} ({data['source']['lines']})",
        f"{label('fix', lang)}: {data['fix']}",
        "",
    ]
    example = data["example"]
    if example is None:
        lines.append(label("none", lang))
        return "\n".join(lines) + "\n"
    where = example["sample"]
    if example["region_label"]:
        where += f", {label('region', lang)} {example['region_label']}"
    lines += [
        f"{label('example', lang)} ({where}):",
        f"  {label('location', lang)}: {example['location']}",
        f"  {label('message', lang)}: {example['severity'].upper()} {example['message']}",
    ]
    if example["fragment"] is not None:
        lines += compact_json(example["fragment"], "    ").splitlines()
    if example["references"]:
        lines.append(f"  {label('references', lang)}:")
        lines += [f"    {ref} = {rtype}" for ref, rtype in example["references"].items()]
    return "\n".join(lines) + "\n"


def explain(rule_id: str, lang: str = "en", catalog: Catalog | None = None) -> str:
    """Plain-text explanation of one rule for ``becare explain`` (raises UnknownRuleError)."""
    return render_text(explanation(rule_id, lang, catalog))
