"""Validator benchmarks, measured side by side in one run (machines are noisy).

1. Full validation (structure, bindings, invariants, profiles; rulebook off and on) of a
   realistic 25-entry care bundle vs ``fhir.resources`` R4B parsing of the same bundle.
2. Linearity: a 1,000- and a 10,000-entry bundle (10x entries; target at most 12x time).
3. First validation after start (fresh process) and resident memory.

Run: ``.venv/bin/python -m bench.bench_validate [--repeat 41] [--quick]`` (``--quick``: a smoke
run with few repeats and smaller bundles, whose figures mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CARE_BUNDLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"


def care_bundle() -> dict:
    """The realistic care bundle: the Flemish remunerated care-coordination situation."""
    data = json.loads(CARE_BUNDLE.read_text())
    if len(data.get("entry", [])) < 20:
        raise SystemExit(f"{CARE_BUNDLE} has fewer than 20 entries")
    return data


def interleaved(fns: list, repeat: int = 41) -> list[float]:
    """Best-of-N CPU time of each function, the runs taken in turn (A B C A B C ...): CPU time of
    the best run is the figure least disturbed by other processes, and taking turns makes a slow
    spell of the machine weigh on all of them alike rather than on whichever ran then."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - t)
    return best


def scaled(bundle: dict, n: int) -> dict:
    """A bundle of n Patient entries referencing each other pairwise (reference index work)."""
    entries = []
    for i in range(n):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": {
                    "resourceType": "Patient",
                    "id": f"p{i}",
                    "active": True,
                    "name": [{"family": f"F{i}"}],
                    "link": [
                        {
                            "other": {"reference": f"urn:uuid:00000000-0000-4000-8000-{(i + 1) % n:012d}"},
                            "type": "seealso",
                        }
                    ],
                },
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41, help="runs of each function (best of N)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, 100/1,000 entries")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    small_n, large_n = (100, 1000) if args.quick else (1000, 10000)
    print(time.strftime("%Y-%m-%d"))
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

    bundle = care_bundle()
    text = json.dumps(bundle)
    v = Validator()
    off = ValidationOptions(rulebook=False)
    on = ValidationOptions(rulebook=True)
    v.validate(copy.deepcopy(bundle), off)  # warm caches
    v.validate(copy.deepcopy(bundle), on)

    from fhir.resources.R4B.bundle import Bundle as R4BBundle

    R4BBundle.model_validate_json(text)  # must parse in full, or the comparison is unfair

    def fhir_resources_parse() -> None:
        R4BBundle.model_validate_json(text)

    t_fr, t_off, t_on = interleaved(
        [
            fhir_resources_parse,
            lambda: v.validate(json.loads(text), off),
            lambda: v.validate(json.loads(text), on),
        ],
        repeat,
    )
    print(
        f"care bundle {CARE_BUNDLE.name} ({len(bundle['entry'])} entries, {len(text) // 1024} KB); "
        f"best-of-{repeat} CPU time, runs interleaved"
    )
    print(f"  fhir.resources R4B parse        {t_fr * 1000:8.2f} ms")
    print(
        f"  becare full validation (no rules){t_off * 1000:8.2f} ms   "
        f"ratio {t_off / t_fr:5.2f}x fhir.resources"
    )
    print(f"  becare full validation + rules  {t_on * 1000:8.2f} ms   rulebook cost {t_on / t_off:5.2f}x")

    small, large = scaled(bundle, small_n), scaled(bundle, large_n)
    # both sizes measured alike (best of 3, interleaved): one run of the large one alone swung
    # from 11x to 16x between runs of the same code
    t_small, t_large = interleaved([lambda: v.validate(small, off), lambda: v.validate(large, off)], 3)
    print(
        f"linearity: {small_n:,} entries {t_small:6.2f} s, {large_n:,} entries {t_large:6.2f} s, "
        f"ratio {t_large / t_small:5.2f}x (target <= 12x)"
    )

    code = (
        "import time;t=time.perf_counter();"
        "from adapter.validation.engine import Validator;"
        "from adapter.validation.api import ValidationOptions;"
        "import json,sys;b=json.load(open(sys.argv[1]));Validator().validate(b, ValidationOptions());"
        "import resource;print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory(prefix="becare-bench-") as tmp:
        sample = Path(tmp) / "bundle.json"
        sample.write_text(text)
        out = subprocess.run(
            [sys.executable, "-c", code, str(sample)], capture_output=True, text=True, check=True, cwd=ROOT
        )
    first, rss_kb = out.stdout.split()
    print(
        f"first validation after start (fresh process): {float(first):.2f} s (target < 2 s); "
        f"peak RSS {int(rss_kb) / 1024:.0f} MB (target < 300 MB)"
    )
    print(
        f"this process peak RSS (incl. the {large_n:,}-entry bundle): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
