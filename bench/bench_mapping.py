"""Mapping throughput: documents per second, and the cost of mapping next to validating.

Usage: ``python bench/bench_mapping.py [--seconds 3]``. Prints one line per figure. Mapping
is timed on the example documents (``mappings/examples``): reading + checking the document,
mapping it to a Bundle, and the reverse; then, if the validator is installed, the time to
validate each mapped bundle (profiles + rulebook), as a ratio to mapping it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapter.mapping import load_document, to_bundle, to_document  # noqa: E402


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (best of 3 rounds, after a warm-up)."""
    fn()
    rounds = []
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            fn()
            n += 1
        rounds.append(n / elapsed)
    return max(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per figure")
    args = parser.parse_args(argv)

    raw = [p.read_bytes() for p in sorted((ROOT / "mappings" / "examples").iterdir())]
    docs = [load_document(r) for r in raw]
    bundles = [to_bundle(d) for d in docs]
    entries = statistics.mean(len(b["entry"]) for b in bundles)
    print(f"examples: {len(docs)} documents, {entries:.1f} entries per bundle on average")

    def each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for item in items:
                fn(item)

        return run

    per = len(docs)
    map_rate = rate(each(to_bundle, docs), args.seconds) * per
    load_map_rate = rate(each(lambda r: to_bundle(load_document(r)), raw), args.seconds) * per
    reverse_rate = rate(each(to_document, bundles), args.seconds) * per
    print(f"map (document -> Bundle):            {map_rate:10.0f} documents/s")
    print(f"read + check + map (bytes -> Bundle): {load_map_rate:9.0f} documents/s")
    print(f"reverse (Bundle -> document):        {reverse_rate:10.0f} bundles/s")

    try:
        from adapter.validation.api import ValidationOptions

        try:
            from adapter.validation.api import Validator  # type: ignore[attr-defined]
        except ImportError:
            from adapter.validation.engine import Validator
    except ImportError:
        print("validator not installed: no mapping/validation ratio")
        return 0
    validator = Validator()
    options = ValidationOptions(region="flanders")
    validate_rate = rate(each(lambda b: validator.validate(b, options), bundles), args.seconds) * per
    print(f"validate the mapped bundle:          {validate_rate:10.1f} bundles/s")
    ratio = map_rate / validate_rate
    print(f"validation / mapping time ratio:     {ratio:10.1f}x (validating costs that many mappings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
