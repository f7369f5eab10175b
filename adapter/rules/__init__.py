"""The interfederal rulebook: catalog (data), region resolution and rule logic.

``check_rulebook`` is the entry point the validator facade calls on becare content.
"""

from adapter.rules.catalog import (
    CatalogError,
    UnknownRegionError,
    UnknownRuleError,
    load_catalog,
    render_rules_markdown,
)
from adapter.rules.engine import RulebookResult, check_rulebook, in_scope, resolve_region

__all__ = [
    "CatalogError",
    "RulebookResult",
    "UnknownRegionError",
    "UnknownRuleError",
    "check_rulebook",
    "in_scope",
    "load_catalog",
    "render_rules_markdown",
    "resolve_region",
]
