"""Run the rulebook on one input and turn findings into ``Issue``s.

The catalog is compiled once (FHIRPath parsed, functions looked up) and the input indexed once,
so the per-bundle cost is a handful of dictionary walks: the rulebook must stay cheap next to
structural validation.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from adapter.fhirio.scan import Scans
from adapter.fhirio.shapes import as_list, member
from adapter.rules import checks
from adapter.rules.catalog import LANGS, Catalog, CatalogError, Rule, load_catalog
from adapter.rules.checks import Finding, RegistryUnavailable, RuleContext
from adapter.rules.situation import BECARE, EPISODE_TYPE, Node, Situation, codes, resolve_region
from adapter.validation.issues import Issue

log = logging.getLogger("becare.rules")


@dataclass(frozen=True)
class RulebookResult:
    issues: list[Issue]
    region: str | None
    version: str


Compiled = Callable[[RuleContext], Iterable[Finding]]


def _targets(spec: str) -> Callable[[Situation], list[Node]]:
    """``careplan``, ``careteam``, ... (resources of that type) or ``episode:<episode-type>``."""
    if spec.startswith("episode:"):
        kind = spec.split(":", 1)[1]
        return lambda s: [ep.node for ep in s.episodes if ep.kind == kind]
    wanted = spec.lower()
    return lambda s: [n for n in s.nodes if n.type.lower() == wanted]


def _fhirpath_rule(rule: Rule) -> Compiled:
    import fhirpathpy
    from fhirpathpy.models import models

    try:
        fn = fhirpathpy.compile(rule.logic["fhirpath"], models["r4"])
        fn({"resourceType": "Basic"})  # parsing is partly lazy: surface syntax errors now
    except Exception as exc:  # the parser raises several exception types
        raise CatalogError(f"rule {rule.id}: FHIRPath does not compile: {exc}") from exc
    select = _targets(rule.logic["target"])

    def run(ctx: RuleContext) -> Iterable[Finding]:
        for node in select(ctx.situation):
            result = fn(node.resource)
            if result and result != [True]:
                yield Finding(node.path)

    return run


@functools.lru_cache(maxsize=4)
def compile_catalog(catalog: Catalog) -> tuple[tuple[Rule, Compiled], ...]:
    """Pair every rule with runnable logic; a mismatch between data and code is a CatalogError."""
    out: list[tuple[Rule, Compiled]] = []
    for rule in catalog.rules:
        if rule.is_fhirpath:
            out.append((rule, _fhirpath_rule(rule)))
            continue
        fn = checks.RULE_FUNCTIONS.get(rule.id)
        if fn is None or fn.__name__ != rule.logic["function"]:
            raise CatalogError(
                f"rule {rule.id}: function {rule.logic['function']!r} is not registered under this id"
            )
        out.append((rule, fn))
    return tuple(out)


def in_scope(situation: Situation) -> bool:
    """The rulebook judges our content only: it claims a becare profile or has a becare episode."""
    root_profiles = as_list(member(situation.root.get("meta"), "profile"))
    if any(isinstance(p, str) and p.startswith(BECARE) for p in root_profiles):
        return True
    for node in situation.nodes:
        profiles = as_list(member(node.resource.get("meta"), "profile"))
        if any(isinstance(p, str) and p.startswith(BECARE) for p in profiles):
            return True
    return any(codes(ep.node.resource.get("type") or [], EPISODE_TYPE) for ep in situation.episodes)


RULE_FAILED = "becare-rule-failed"
_RULE_FAILED_EN = (
    "Internal error: rule {rule} could not be evaluated ({error}). This is a fault in becare, not in "
    "the data, but the input cannot count as checked until it is fixed."
)


def rule_failed(rule_id: str, exc: BaseException, situation: Situation, cat: Catalog, lang: str) -> Issue:
    """The error issue of a rule that raised: code ``exception``, naming the rule."""
    params = {"rule": rule_id, "error": type(exc).__name__}
    if "rule-failed" in cat.notices:
        text = cat.notice("rule-failed", lang, params)
    else:  # a catalog without the notice (tests build their own)
        text = _RULE_FAILED_EN.format_map(params)
    return Issue(
        severity="error",
        code="exception",
        expression=situation.nodes[0].path if situation.nodes else "",
        message=text,
        source="rulebook",
        rule=rule_id,
        message_id=RULE_FAILED,
        # a rule reads the whole input (it follows references): a structure error anywhere
        # explains its failure (adapter/validation/invariants.py settle_failures)
        extra={"scope": ""},
    )


def normalize_lang(lang: str | None) -> str:
    head = (lang or "en").strip().lower()[:2]
    return head if head in LANGS else "en"


def check_rulebook(
    resource: dict[str, Any],
    *,
    region: str | None,
    lang: str,
    registry: Any | None = None,
    today: dt.date | None = None,
    catalog: Catalog | None = None,
    scans: Scans | None = None,
) -> RulebookResult:
    """Judge ``resource`` (a Bundle or one resource) against the interfederal rulebook.

    Raises ``UnknownRegionError`` for a region option we do not know (bad usage, not a finding).
    ``scans``: the validation's scans of the same input (``adapter.fhirio.scan``), when it has them.
    """
    cat = catalog or load_catalog()
    lang = normalize_lang(lang)
    if not isinstance(resource, dict):
        return RulebookResult([], None, cat.version)
    situation = Situation(resource)
    if not in_scope(situation):
        resolved = cat.normalize_region(region) if region else None
        return RulebookResult([], resolved, cat.version)
    resolved, _how = resolve_region(situation, region, cat)
    region_label = cat.regions[resolved].label(lang) if resolved else None
    ctx = RuleContext(
        situation=situation,
        region=resolved,
        region_label=region_label,
        table1=dict(cat.regions[resolved].table1) if resolved else {},
        registry=registry,
        today=today or dt.date.today(),
        scans=scans if scans is not None else Scans(),
    )
    issues: list[Issue] = []
    skipped: list[str] = []
    for rule, run in compile_catalog(cat):
        severity = rule.severity_for(resolved)
        if severity is None:
            skipped.append(rule.id)
            continue
        if severity == "off":
            continue
        try:
            findings = list(run(ctx))
        except RegistryUnavailable:
            raise  # the input cannot be judged now: not a rule failure, not a pass either
        except Exception as exc:
            # A rule that cannot run has not checked anything: fail closed, with an error that
            # says it is becare's fault, never a warning that lets the input pass.
            log.debug("rule %s raised on this input", rule.id, exc_info=True)
            issues.append(rule_failed(rule.id, exc, situation, cat, lang))
            continue
        for f in findings:
            sev = rule.variant_severity.get(f.variant, severity)
            if f.variant in ("not-checked", "no-ssin"):
                sev = "information"
            issues.append(
                Issue(
                    severity=sev,  # type: ignore[arg-type]
                    code="business-rule",
                    expression=f.expression,
                    message=rule.message(f.variant, lang, f.params),
                    source="rulebook",
                    rule=rule.id,
                    message_id=rule.id if f.variant == "default" else f"{rule.id}.{f.variant}",
                    extra={"region": resolved, "rulebook_version": cat.version},
                )
            )
    if skipped:
        issues.append(
            Issue(
                severity="information",
                code="informational",
                expression=situation.nodes[0].path if situation.nodes else "",
                message=cat.notice("region-unknown", lang, {"rules": ", ".join(skipped)}),
                source="rulebook",
                message_id="becare-rulebook-region-unknown",
                extra={"rulebook_version": cat.version},
            )
        )
    return RulebookResult(issues, resolved, cat.version)
