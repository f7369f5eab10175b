"""Runs the official FHIR validator test-suite subset (Tier A, R4 JSON) and compares verdicts
with the reference (Java) validator. Shared by the test and ``python -m tests.suite_runner``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.shared_ref import reference_dir

SUITE = reference_dir() / "fhir-test-cases"


@dataclass
class StepResult:
    case: str
    step: str  # "base" | "profile"
    expected_invalid: bool
    got_invalid: bool
    errors: list[str]

    @property
    def agrees(self) -> bool:
        return self.expected_invalid == self.got_invalid


def tier_a_json_cases() -> list[dict]:
    cases = json.loads((SUITE / "r4-candidate-subset.json").read_text())
    return [c for c in cases if c.get("tier") == "A" and c.get("format") == "json"]


def run_suite() -> list[StepResult]:
    from adapter.conformance import default_store
    from adapter.fhirio import ParseError, parse_file
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

    results: list[StepResult] = []
    base_store = default_store()
    for case in tier_a_json_cases():
        store = base_store.overlay()
        for rel in case.get("supporting") or ():
            store.load(SUITE / rel)
        validator = Validator(store)
        try:
            document = parse_file(SUITE / case["file"])
            report = validator.validate(document, ValidationOptions(rulebook=False))
            errors = [f"{i.expression}: {i.message}" for i in report.issues if i.is_error]
        except ParseError as exc:
            errors = [f"parse: {exc}"]
            document = None
        results.append(
            StepResult(case["name"], "base", case["expected_base"]["errors"] > 0, bool(errors), errors)
        )
        if case.get("profile") and case.get("expected_profile") is not None:
            pstore = store.overlay()
            pstore.load(SUITE / case["profile"])
            profile_url = _profile_url(SUITE / case["profile"])
            pvalidator = Validator(pstore)
            if document is None:
                perrors = ["parse error"]
            else:
                preport = pvalidator.validate(
                    document, ValidationOptions(profiles=(profile_url,), rulebook=False)
                )
                perrors = [f"{i.expression}: {i.message}" for i in preport.issues if i.is_error]
            results.append(
                StepResult(
                    case["name"], "profile", case["expected_profile"]["errors"] > 0, bool(perrors), perrors
                )
            )
    return results


def _profile_url(path: Path) -> str:
    from adapter.fhirio import parse_file

    return str(parse_file(path).resource["url"])


def main() -> int:
    results = run_suite()
    agree = sum(r.agrees for r in results)
    over = [r for r in results if not r.expected_invalid and r.got_invalid]
    under = [r for r in results if r.expected_invalid and not r.got_invalid]
    print(f"steps: {len(results)}  agree: {agree} ({100 * agree / len(results):.1f}%)")
    print(f"over-strict (valid rejected): {len(over)}   missed (invalid accepted): {len(under)}")
    for r in over:
        print(f"  OVER  {r.case} [{r.step}]: {r.errors[:3]}")
    for r in under:
        print(f"  UNDER {r.case} [{r.step}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
