"""A big bundle from the command line: ``becare validate`` of 25 MB and 50 MB bundles (issue 14).

A file on disk has no size limit but memory (``--max-size`` sets one). The bundles are the
Flemish care sample's entries repeated (bench/shapes.py: every ``urn:uuid`` renamed per copy),
written as JSON, and XML for the 50 MB one; each is validated by ``becare validate`` as a fresh
process, with its wall time and its peak resident memory (the child's own, from a parent that runs
nothing else). Targets: time linear in size (50 MB at most ~2.2x the 25 MB time), peak memory
under 1.5 GB.

Run: ``.venv/bin/python -m bench.bench_large [--quick]`` (``--quick``: 2.5 and 5 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import shapes  # noqa: E402
from bench.bench_validate import _becare_command, run_measured  # noqa: E402

TARGET_RSS_MB = 1536
TARGET_LINEAR = 2.2  # twice the size: twice the time, with some room for noise
SAMPLE_BYTES = len(shapes.json_bytes(shapes.care_bundle()))


def bundle_of(megabytes: float) -> dict:
    copies = max(1, round(megabytes * 1_000_000 / SAMPLE_BYTES))
    return shapes.replicated(copies)


def validate(path: Path, out: Path) -> tuple[int, float, float]:
    cmd = [*_becare_command(), "validate", str(path), "--no-progress", "--format", "json"]
    cmd += ["--output", str(out)]
    return run_measured(cmd, ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2.5 and 5 MB instead of 25 and 50 MB")
    args = parser.parse_args(argv)
    sizes = (2.5, 5.0) if args.quick else (25.0, 50.0)
    print(f"{time.strftime('%Y-%m-%d')}: becare validate of big bundles, each as a fresh process")
    rows = []
    with tempfile.TemporaryDirectory(prefix="becare-large-") as tmp:
        work = Path(tmp)
        for mb in sizes:
            bundle = bundle_of(mb)
            formats = ("json", "xml") if mb == sizes[-1] else ("json",)
            for fmt in formats:
                data = shapes.json_bytes(bundle) if fmt == "json" else shapes.xml_bytes(bundle)
                path = work / f"bundle-{mb:g}mb.{fmt}"
                path.write_bytes(data)
                del data
                rc, wall, rss = validate(path, work / "outcome.json")
                rows.append((fmt, mb, path.stat().st_size, len(bundle["entry"]), rc, wall, rss))
                print(f"  {fmt:<5}{path.stat().st_size / 1e6:>7.1f} MB {len(bundle['entry']):>8,} entries: "
                      f"{wall:6.2f} s wall, peak RSS {rss:6.0f} MB, exit code {rc}")
                path.unlink()
    json_rows = [r for r in rows if r[0] == "json"]
    (_, _, size_a, _, _, wall_a, _), (_, _, size_b, _, _, wall_b, _) = json_rows
    ratio = wall_b / wall_a
    peak = max(r[6] for r in rows)
    linear = "OK" if ratio <= TARGET_LINEAR else "ABOVE TARGET"
    memory = "OK" if peak <= TARGET_RSS_MB else "ABOVE TARGET"
    print(f"linear: {size_b / size_a:.2f}x the bytes took {ratio:.2f}x the time (target <= {TARGET_LINEAR}x) "
          f"{linear}; peak memory {peak:.0f} MB (target < {TARGET_RSS_MB} MB) {memory}")
    unchecked = [r for r in rows if r[4] not in (0, 1)]
    if unchecked:
        print(f"NOT VALIDATED: {[(r[0], r[1]) for r in unchecked]} exited with 2")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
