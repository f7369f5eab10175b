#!/usr/bin/env python3
"""Write ``docs/rules.md`` from the rule catalog (``rules/rulebook.yaml``, ``rules/regions.yaml``).

The page is generated so it can never disagree with the rules the validator runs;
``tests/test_rules_doc.py`` fails when the committed page is stale.

Usage: ``python scripts/gen_rules_doc.py [--check]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adapter.rules.catalog import render_rules_markdown  # noqa: E402

TARGET = REPO / "docs" / "rules.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/rules.md from the rule catalog.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/rules.md is out of date")
    args = parser.parse_args(argv)
    text = render_rules_markdown()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != text:
            print(f"{TARGET.relative_to(REPO)} is out of date: run scripts/gen_rules_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
