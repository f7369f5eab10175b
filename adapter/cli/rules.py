"""``becare rules [--lang L]`` and ``becare explain RULE-ID [--lang L]``: the rulebook, from its data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adapter.cli.main import EXIT_OK, EXIT_UNUSABLE

LANGS = ("en", "fr", "nl", "de")


def register(sub: Any) -> None:
    p = sub.add_parser("rules", help="print the interfederal rule catalog")
    p.add_argument("--lang", choices=LANGS, default=None, help="only this language (default: all four)")
    p.set_defaults(handler=run_rules)
    e = sub.add_parser("explain", help="explain one rule: severity per region, source, how to fix")
    e.add_argument("rule_id", metavar="RULE-ID")
    e.add_argument("--lang", choices=LANGS, default="en")
    e.set_defaults(handler=run_explain)


def run_rules(args: argparse.Namespace) -> int:
    from adapter.rules.catalog import render_rules_markdown

    sys.stdout.write(render_rules_markdown(args.lang))
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    from adapter.rules.catalog import UnknownRuleError, explain

    try:
        sys.stdout.write(explain(args.rule_id, args.lang).rstrip("\n") + "\n")
    except UnknownRuleError as exc:
        sys.stderr.write(f"becare: {exc}\n")
        return EXIT_UNUSABLE
    return EXIT_OK
