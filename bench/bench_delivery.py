"""Accept-to-delivered throughput: durable outbox on SQLite -> workers -> mock hub on loopback.

    .venv/bin/python bench/bench_delivery.py [--n 2000] [--producers 16] [--workers 8]
                                             [--sync FULL|NORMAL] [--sample PATH]

The mock hub runs in its own process (uvicorn), as a real hub would. Producers call
``Outbox.enqueue`` concurrently, as the HTTP service's request threads do; each call returns only
once its row is committed. The clock runs from the first enqueue to the last delivery; the
latency per bundle is ``delivered_at - created_at`` from the outbox itself. Target: >= 200/s.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from adapter.forwarding import build_forwarding, load_settings  # noqa: E402
from adapter.forwarding.process import DeliveryProcess  # noqa: E402
from adapter.outbox import idempotency_key  # noqa: E402

DEFAULT_SAMPLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    # no sample available: a synthetic bundle of a comparable size (~25 resources)
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x" * 200}},
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in range(25)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _start_hub(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.forwarding.mockhub", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_mock/health", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mock hub did not start")


def _start_worker_process(db_url: str, hub_url: str, workers: int) -> subprocess.Popen[bytes]:
    """Delivery in its own process: the command `becare serve` supervises by default on 2+
    cores, so accepting and delivering use a core each. Returns once its workers run: a
    long-lived delivery process starts once, its imports are not throughput."""
    command = DeliveryProcess(db_url=db_url, config=None, forward_to=hub_url, workers=workers).command
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "becare outbox: N workers delivering from ..."
    if b"delivering" not in line:
        proc.kill()
        raise SystemExit(f"delivery process did not start: {line!r}")
    return proc


def run(
    n: int, producers: int, workers: int, sync: str, sample: Path, separate: bool = False
) -> dict[str, float]:
    base = _sample(sample)
    bundles = []
    for i in range(n):
        b = copy.deepcopy(base)
        b["identifier"] = {"system": "urn:becare:bench", "value": f"{i}-{time.time_ns()}"}
        bundles.append(b)
    # The prepared bundles are millions of live objects that a service would never hold at once;
    # left to the collector, every full collection in this process walks them all and the
    # figure measures the set-up rather than the outbox. Freeze them out of its sight.
    gc.collect()
    gc.freeze()
    port = _free_port()
    hub = _start_hub(port)
    tmp = tempfile.mkdtemp(prefix="becare-bench-")
    try:
        settings = load_settings(
            None, forward_to=f"http://127.0.0.1:{port}/fhir", db_url=f"sqlite:///{tmp}/outbox.db"
        )
        fw = build_forwarding(settings)
        fw.outbox.close()
        from adapter.outbox import Outbox

        fw.outbox = Outbox(settings.db_url, sqlite_synchronous=sync)
        fw.forwarder.outbox = fw.outbox
        fw.forwarder.workers = workers
        worker_proc = None
        if separate:
            worker_proc = _start_worker_process(settings.db_url, f"http://127.0.0.1:{port}/fhir", workers)
        else:
            fw.start()

        def accept(bundle: dict) -> None:
            route = fw.router.route(bundle)
            fw.outbox.enqueue(bundle, route=route, idempotency_key=idempotency_key(bundle), client="bench")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(producers) as pool:
            list(pool.map(accept, bundles))
        t_accepted = time.perf_counter()
        while fw.outbox.counts()["delivered"] < n:
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"timeout: {fw.outbox.counts()}")
            time.sleep(0.01)
        t_done = time.perf_counter()
        if worker_proc is not None:
            worker_proc.terminate()
            worker_proc.wait(10)
        fw.forwarder.stop()
        received = httpx.get(f"http://127.0.0.1:{port}/_mock/received?bundles=false").json()["count"]
        latencies = sorted(d.delivered_at - d.created_at for d in fw.outbox.list("delivered", limit=n))
        fw.close()
    finally:
        del bundles
        gc.unfreeze()
        hub.terminate()
        hub.wait(10)
    return {
        "bundles": n,
        "received": received,
        "bundle_kb": len(json.dumps(base)) / 1024,
        "accept_per_s": n / (t_accepted - t0),
        "delivered_per_s": n / (t_done - t0),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--producers", type=int, default=16)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--sync", choices=("FULL", "NORMAL"), default=None, help="default: both")
    ap.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    args = ap.parse_args()
    print(
        f"accept-to-delivered, SQLite outbox -> mock hub on loopback ({os.cpu_count()} cores), "
        f"{args.producers} producers, {args.workers} workers"
    )
    print(
        f"{'sqlite sync':12} {'bundles':>8} {'KB':>5} {'accept/s':>9} {'delivered/s':>12} "
        f"{'p50 ms':>8} {'p99 ms':>8}  target >= 200/s"
    )
    ok = True
    for separate in (False, True):
        print(
            "outbox.process: false -- workers are threads of the accepting process"
            if not separate
            else "default with 2+ cores -- delivery in its own process (`becare outbox work`)"
        )
        for sync in [args.sync] if args.sync else ["FULL", "NORMAL"]:
            r = run(args.n, args.producers, args.workers, sync, args.sample, separate)
            if r["received"] != r["bundles"]:
                print(f"  hub received {r['received']} of {r['bundles']}!")
                ok = False
            meets = "yes" if r["delivered_per_s"] >= 200 else "NO"
            print(
                f"{sync:12} {r['bundles']:>8} {r['bundle_kb']:>5.0f} {r['accept_per_s']:>9.0f} "
                f"{r['delivered_per_s']:>12.0f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f}  {meets}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
