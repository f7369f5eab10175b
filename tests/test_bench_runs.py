"""The benchmarks whose figures the README quotes still run: a short run of each, as a process.

The figures of these runs mean nothing (few repeats, small inputs, a loaded machine); what is
checked is that each script runs to the end and prints the lines the README reads its figures
from. ``bench_kmehr`` has its own test (``test_bench_kmehr.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


def test_bench_validate_quick_run() -> None:
    out = _run("-m", "bench.bench_validate", "--quick")
    assert "1. bytes -> OperationOutcome vs fhir.resources" in out
    for shape in ("Flemish care sample", "entries, no narrative", "1,000 entries"):
        assert f"{shape}" in out and out.count(shape) >= 2, shape  # JSON and XML rows
    assert "2. linearity:" in out
    assert "3. becare validate" in out and "as a fresh process" in out and "peak RSS" in out
    assert "4. $validate over HTTP" in out and "bundles/s" in out and "p99" in out


def test_bench_large_quick_run() -> None:
    out = _run("-m", "bench.bench_large", "--quick")
    assert out.count("exit code") == 3 and "exit code 2" not in out  # validated, not refused
    assert "linear:" in out and "peak memory" in out


def test_bench_http_short_run() -> None:
    out = _run("bench/bench_http.py", "--n", "5")
    assert "p50 ratio http/in-process" in out


def test_bench_delivery_short_run_accepts_over_http_then_delivers() -> None:
    out = _run(
        "bench/bench_delivery.py", "--http-n", "12", "--clients", "2", "--n", "40", "--producers", "4",
        "--sync", "NORMAL",
    )
    assert "1. over HTTP" in out and "accepted/s" in out and "delivered/s" in out
    assert "2. direct enqueue (no HTTP, no validation)" in out
    assert "hub received" not in out  # every bundle arrived


def test_bench_mapping_short_run() -> None:
    out = _run("bench/bench_mapping.py", "--seconds", "0.3")
    assert "documents/s" in out and "validation / mapping time ratio" in out
