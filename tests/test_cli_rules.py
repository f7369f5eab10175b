"""``becare rules`` and ``becare explain`` print the catalog from its data, in four languages."""

from __future__ import annotations

import pytest

from adapter.cli.main import main


@pytest.mark.parametrize(
    "lang,word",
    [("en", "care coordinator"), ("nl", "zorgcoördinator"), ("fr", "coordinat"), ("de", "Koordinat")],
)
def test_explain_in_each_language(lang: str, word: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "IC-CC-2", "--lang", lang]) == 0
    out = capsys.readouterr().out
    assert out.startswith("IC-CC-2") and word.lower() in out.lower()


def test_unknown_rule_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "IC-NOPE-9"]) == 2
    assert "unknown rule id" in capsys.readouterr().err


def test_rules_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--lang", "de"]) == 0
    out = capsys.readouterr().out
    for rule_id in ("IC-TEAM-1", "IC-CC-6", "IC-CM-7", "IC-REG-2", "IC-ONE-2", "IC-ID-1"):
        assert rule_id in out
