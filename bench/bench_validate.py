"""Validation speed on the path users take: bytes in, a located OperationOutcome out (issue 15).

Everything is measured in one run, side by side, so that the figures compare like with like on
whatever machine runs it:

1. bytes -> OperationOutcome (parse with positions, validate with the rulebook, locate the issues,
   write the OperationOutcome as ``becare validate --format json`` does), JSON and XML, against
   fhir.resources' R4B parse of the same bytes, on three shapes (bench/shapes.py): the Flemish
   care sample (25 entries), 1,800 entries without narrative (a dom-6 warning on every resource,
   each located), and 10,000 entries. CPU time, best of N, the two sides taking turns.
   Target: at most 1.0x fhir.resources.
2. Linearity: the same path on 1,000 and 10,000 entries. Target: at most 11x.
3. ``becare validate`` of the care sample as a fresh process (start included): wall time and
   peak memory. Target: at most 0.5 s.
4. ``$validate`` over HTTP (``becare serve`` as a process, loopback): p50 and p99 latency one
   request at a time, and bundles/s with 2 clients sending at once.

Run: ``.venv/bin/python -m bench.bench_validate [--repeat 15] [--quick]`` (``--quick``: a smoke
run on small shapes with few repeats, whose figures mean nothing; tests/test_bench_runs.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import shapes  # noqa: E402

TARGET_RATIO = 1.0
TARGET_LINEAR = 11.0
TARGET_PROCESS_S = 0.5
JSON_TYPE = "application/fhir+json"


def interleaved(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Best-of-N CPU time of each function, the runs taken in turn (A B A B ...): the best run is
    the one least disturbed by other processes, and taking turns makes a slow spell of the
    machine weigh on every side alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - t)
    return best


class UserPath:
    """What ``becare validate`` does with one input: parse, validate and render, with the garbage
    collector paused throughout (adapter/cli/validate.py: the collector is off until its first
    input is done; the parsed tree holds no cycle, so the collector could only rescan it). The
    service and the pytest plugin do the same steps; they pause it for parsing and validating."""

    def __init__(self) -> None:
        from adapter.validation.api import ValidationOptions
        from adapter.validation.engine import Validator

        self.validator = Validator()
        self.options = ValidationOptions()
        self.issues = 0

    def __call__(self, data: bytes, fmt: str) -> str:
        from adapter.fhirio import parse
        from adapter.fhirio.document import collector_paused
        from adapter.fhirio.errors import FILE_LIMITS
        from adapter.output.render import render_json

        with collector_paused():
            document = parse(data, fmt, limits=FILE_LIMITS)  # a file on disk: no size limit
            report = self.validator.validate(document, self.options)
            self.issues = len(report.issues)
            text = render_json([report])
            del document, report  # freed inside the pause, as when the command exits
        return text


def fhir_resources_parser(fmt: str) -> Callable[[bytes], Any]:
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate_json if fmt == "json" else Bundle.model_validate_xml


def bench_shapes(quick: bool, repeat: int, user: UserPath) -> dict[str, dict[str, bytes]]:
    print("1. bytes -> OperationOutcome vs fhir.resources R4B parse of the same bytes")
    print(f"   CPU time, best of N, runs interleaved; target <= {TARGET_RATIO:.1f}x")
    bare, many = (4, 40) if quick else (72, 400)  # copies of the sample's 25 entries
    cases = [
        ("Flemish care sample", shapes.care_bundle(), repeat),
        (
            f"{bare * 25:,} entries, no narrative",
            shapes.replicated(bare, narrative=False),
            max(3, repeat // 3),
        ),
        (f"{many * 25:,} entries", shapes.replicated(many), max(3, repeat // 5)),
    ]
    print(f"   {'shape':<30}{'fmt':<5}{'KB':>7}{'issues':>8}{'N':>4}{'fhir.resources':>16}{'becare':>10}"
          f"{'ratio':>8}")
    made: dict[str, dict[str, bytes]] = {}
    for name, bundle, n in cases:
        made[name] = {}
        for fmt in ("json", "xml"):
            data = shapes.care_bytes() if name.startswith("Flemish") and fmt == "json" else (
                shapes.json_bytes(bundle) if fmt == "json" else shapes.xml_bytes(bundle)
            )
            made[name][fmt] = data
            theirs = fhir_resources_parser(fmt)
            theirs(data)  # must parse in full, or the comparison is unfair
            user(data, fmt)  # warm: what a long-running service has compiled already
            reps = n if fmt == "json" else max(3, n // 3)
            sides = [lambda d=data, f=theirs: f(d), lambda d=data, f=fmt: user(d, f)]
            t_fr, t_becare = interleaved(sides, reps)
            ratio = t_becare / t_fr
            verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
            print(f"   {name:<30}{fmt:<5}{len(data) // 1024:>7,}{user.issues:>8,}{reps:>4}"
                  f"{t_fr * 1000:>13.1f} ms{t_becare * 1000:>7.1f} ms{ratio:>7.2f}x {verdict}")
    return made


def bench_linearity(quick: bool, user: UserPath, large: bytes) -> None:
    small_n, large_n = (100, 1000) if quick else (1000, 10000)
    small = shapes.json_bytes(shapes.replicated(small_n // 25))
    user(small, "json")
    t_small, t_large = interleaved([lambda: user(small, "json"), lambda: user(large, "json")], 3)
    ratio = t_large / t_small
    verdict = "OK" if ratio <= TARGET_LINEAR else "ABOVE TARGET"
    print(f"2. linearity: bytes -> OperationOutcome (JSON), {small_n:,} entries {t_small:.2f} s, "
          f"{large_n:,} entries {t_large:.2f} s: {ratio:.2f}x for 10x the entries "
          f"(target <= {TARGET_LINEAR:.0f}x) {verdict}")


def _becare_command() -> list[str]:
    """The ``becare`` console script next to this interpreter (what users run), else the module."""
    script = Path(sys.executable).with_name("becare")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "adapter.cli.main"]


_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
    "wall = time.perf_counter() - t\n"
    "print(rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run_measured(cmd: list[str], cwd: Path) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS in MB) of one run of ``cmd`` as a fresh process; the
    peak is the child's own (RUSAGE_CHILDREN of a parent that runs only it)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=True,
                         cwd=cwd)
    rc, wall, rss_kb = out.stdout.split()
    return int(rc), float(wall), int(rss_kb) / 1024


def bench_process(quick: bool) -> None:
    runs = 3 if quick else 9
    cmd = [*_becare_command(), "validate", str(shapes.CARE_BUNDLE), "--no-progress"]
    run_measured(cmd, ROOT)  # the first run after a change writes .pyc files: not what users see
    results = [run_measured(cmd, ROOT) for _ in range(runs)]
    walls = sorted(r[1] for r in results)
    rss = max(r[2] for r in results)
    verdict = "OK" if walls[0] <= TARGET_PROCESS_S else "ABOVE TARGET"
    # what the command ran on (a source edited since the native build: the pure modules)
    version = subprocess.run([*_becare_command(), "--version"], capture_output=True, text=True, check=False)
    print(f"   command: {version.stdout.strip() or version.stderr.strip()}")
    print(f"3. becare validate {shapes.CARE_BUNDLE.name} as a fresh process (start included), {runs} runs: "
          f"wall best {walls[0]:.2f} s, median {statistics.median(walls):.2f} s "
          f"(target <= {TARGET_PROCESS_S} s) {verdict}; peak RSS {rss:.0f} MB; exit code {results[0][0]}")


def bench_http(quick: bool, data: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from bench.bench_http import percentile, serving

    n = 8 if quick else 100
    headers = {"Content-Type": JSON_TYPE, "Accept": JSON_TYPE}
    with serving() as base:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(3):  # warm
                client.post("/fhir/$validate", content=data, headers=headers).raise_for_status()
            latencies = []
            for _ in range(n):
                t = time.perf_counter()
                client.post("/fhir/$validate", content=data, headers=headers).raise_for_status()
                latencies.append(time.perf_counter() - t)
        clients = [httpx.Client(base_url=base, timeout=120) for _ in range(2)]

        def one(i: int) -> None:
            clients[i % 2].post("/fhir/$validate", content=data, headers=headers).raise_for_status()

        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(one, range(n * 2)))
            rate = n * 2 / (time.perf_counter() - started)
        finally:
            for c in clients:
                c.close()
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    print(f"4. $validate over HTTP (becare serve, loopback), the care sample ({len(data) // 1024} KB), "
          f"{n} requests one at a time: p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"2 clients at once: {rate:.1f} bundles/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each side, care sample (best of N)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small shapes, few repeats")
    parser.add_argument("--skip-http", action="store_true", help="leave out part 4")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    from adapter.native import status

    print(f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, {os.cpu_count()} cores"
          f"{' (quick run: figures mean nothing)' if args.quick else ''}")
    # what ./dev serve runs: the compiled validation core when built (BECARE_NATIVE=0: without it)
    print(status().describe())
    user = UserPath()
    made = bench_shapes(args.quick, repeat, user)
    large = next(v["json"] for k, v in made.items() if k.endswith(" entries"))
    bench_linearity(args.quick, user, large)
    bench_process(args.quick)
    if not args.skip_http:
        bench_http(args.quick, shapes.care_bytes())


if __name__ == "__main__":
    main()
