"""HTTP overhead of ``$validate``: the real service over loopback vs the validator in-process.

Both sides validate the same bytes with the same options (the episode registry included: the
service asks it for IC-ONE-1/2); the service runs as a separate process
(``becare serve`` with uvicorn, as deployed) so the client does not share its GIL. Prints
throughput, p50 and p99 for each side, and the p50 ratio (target: at most 1.3x).

    .venv/bin/python bench/bench_http.py [--n 60] [--concurrency 4] [--input FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JSON = "application/fhir+json"
TARGET_RATIO = 1.3


def sample_bundle() -> bytes:
    """A realistic becare bundle: the Wallonia example mapped by ``adapter.mapping``, or a small
    transaction Bundle when mapping is unavailable."""
    example = ROOT / "mappings" / "examples" / "care-coordination-remunerated-wallonia.json"
    try:
        from adapter.mapping.document import load_document
        from adapter.mapping.forward import to_bundle

        return json.dumps(to_bundle(load_document(example.read_bytes(), "json"))).encode()
    except Exception as exc:  # the bench still measures overhead on a simpler bundle
        print(f"(mapping unavailable: {type(exc).__name__}; using a small bundle)")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
                        "value": "85073003328"}],
        "name": [{"family": "Peeters", "given": ["Jan"]}],
    }
    return json.dumps({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": patient,
                   "request": {"method": "POST", "url": "Patient"}} for i in range(20)],
    }).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(name: str, latencies: list[float], wall: float) -> dict[str, Any]:
    return {
        "name": name,
        "n": len(latencies),
        "throughput": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(db_url: str | None = None) -> Iterator[str]:
    """``becare serve`` on a free loopback port, ready (validator warm); yields the base URL.
    Its database (outbox, audit, episode registry) is ``db_url``, else a new SQLite file."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as work:
        db_url = db_url or f"sqlite:///{Path(work) / 'bench.db'}"
        config = Path(work) / "bench.yaml"
        config.write_text("service:\n  rate_limit: {per_second: 0, burst: 1}\n", encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("BECARE_CONFIG", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "adapter.cli.main", "serve", "--port", str(port), "--config", str(config),
             "--log-level", "warning", "--db", db_url],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                deadline = time.monotonic() + 120
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"the service exited with {proc.returncode}")
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("service not ready after 120 s")
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def paired(data: bytes, n: int, base: str, db_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Alternate one in-process and one HTTP validation, so background load on this shared
    machine hits both sides alike; the ratio is then about the HTTP path, not the noise. Both
    sides ask the same episode registry (the service's database), as the service does for
    IC-ONE-1/2: that is validation, not HTTP overhead."""
    from adapter.registry import EpisodeRegistry
    from adapter.validation import ValidationOptions, Validator

    validator = Validator()
    options = ValidationOptions(registry=EpisodeRegistry(db_url))
    headers = {"Content-Type": JSON, "Accept": JSON}
    local: list[float] = []
    remote: list[float] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for i in range(n + 3):  # the first three warm caches on both sides
            t = time.perf_counter()
            validator.validate_bytes(data, JSON, options)
            t_local = time.perf_counter() - t
            t = time.perf_counter()
            resp = client.post("/fhir/$validate", content=data, headers=headers)
            t_remote = time.perf_counter() - t
            if resp.status_code != 200:
                raise SystemExit(f"$validate answered {resp.status_code}: {resp.text[:200]}")
            if i >= 3:
                local.append(t_local)
                remote.append(t_remote)
    return summary("in-process", local, sum(local)), summary("http loopback", remote, sum(remote))


def concurrent_http(data: bytes, n: int, base: str, concurrency: int) -> dict[str, Any]:
    headers = {"Content-Type": JSON, "Accept": JSON}
    clients = [httpx.Client(base_url=base, timeout=120) for _ in range(concurrency)]

    def one(i: int) -> float:
        t = time.perf_counter()
        clients[i % concurrency].post("/fhir/$validate", content=data, headers=headers).raise_for_status()
        return time.perf_counter() - t

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, range(n)))
        return summary(f"http x{concurrency}", latencies, time.perf_counter() - started)
    finally:
        for c in clients:
            c.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="requests per side (default 60)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="also measure HTTP throughput with this many parallel clients")
    parser.add_argument("--input", type=Path, help="a FHIR JSON file to validate instead of the sample")
    args = parser.parse_args(argv)
    data = args.input.read_bytes() if args.input else sample_bundle()
    print(f"$validate of a {len(data):,}-byte bundle, n={args.n}, concurrency={args.concurrency}")
    with tempfile.TemporaryDirectory() as work:
        db_url = f"sqlite:///{Path(work) / 'bench.db'}"  # the service's, and the in-process side's registry
        with serving(db_url) as base:
            local, remote = paired(data, args.n, base, db_url)
            rows = [local, remote]
            if args.concurrency > 1:
                rows.append(concurrent_http(data, args.n, base, args.concurrency))
    print(f"{'':16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for row in rows:
        print(f"{row['name']:16}{row['throughput']:>10.1f}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}")
    ratio = remote["p50_ms"] / local["p50_ms"]
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"p50 ratio http/in-process: {ratio:.2f}x (target <= {TARGET_RATIO}x) {verdict}")
    print(f"p50 overhead: {remote['p50_ms'] - local['p50_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
