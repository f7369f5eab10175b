"""``becare rules [--lang L]`` and ``becare explain RULE-ID [--lang L] [--format text|json]``:
the rulebook, from its data, with a breaking example produced by running the rule."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from adapter.cli.main import EXIT_OK, EXIT_UNUSABLE

LANGS = ("en", "fr", "nl", "de")


def register(sub: Any) -> None:
    p = sub.add_parser("rules", help="print the interfederal rule catalog")
    p.add_argument("--lang", choices=LANGS, default=None, help="only this language (default: all four)")
    p.set_defaults(handler=run_rules)
    e = sub.add_parser(
        "explain",
        help="explain one rule: severity per region, source, how to fix, an example that breaks it",
    )
    e.add_argument("rule_id", metavar="RULE-ID")
    e.add_argument("--lang", choices=LANGS, default="en")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(handler=run_explain)


def run_rules(args: argparse.Namespace) -> int:
    from adapter.rules.catalog import render_rules_markdown

    sys.stdout.write(render_rules_markdown(args.lang))
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    from adapter.explainer import explanation, render_text
    from adapter.rules.catalog import UnknownRuleError

    try:
        data = explanation(args.rule_id, args.lang)
    except UnknownRuleError as exc:
        sys.stderr.write(f"becare: {exc}\n")
        return EXIT_UNUSABLE
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(data))
    return EXIT_OK
