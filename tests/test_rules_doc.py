"""docs/rules.md is generated from the catalog and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from adapter.rules import render_rules_markdown

REPO = Path(__file__).resolve().parent.parent


def test_docs_rules_md_is_up_to_date() -> None:
    committed = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert committed == render_rules_markdown(), "run: python scripts/gen_rules_doc.py"


def test_generator_check_mode(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_rules_doc.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
