"""The KMEHR benchmark still runs (its figures are in the README): a quick run, as a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_kmehr_quick_run_reports_the_ratio() -> None:
    result = subprocess.run([sys.executable, "bench/bench_kmehr.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "KMEHR out / validation" in result.stdout
    assert "stored)" in result.stdout  # the loopback round trip stored what it put
