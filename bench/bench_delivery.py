"""Accept and delivery throughput, SQLite outbox -> delivery -> mock hub on loopback.

    .venv/bin/python bench/bench_delivery.py [--http-n 600] [--clients 8] [--n 2000] [--producers 16]
                                             [--workers 8] [--sync FULL|NORMAL] [--sample PATH]
                                             [--only http|direct]

1. Over HTTP, what a vendor sees (``--http-n`` bundles): the real ``becare serve`` as a process
   (default configuration: SQLite, delivery in its own process on 2+ cores; only the rate limit
   turned off; then again with ``outbox.process: false``), ``--clients`` concurrent clients
   ``POST /fhir`` the 25-entry Flemish sample, each copy with its own ``Bundle.identifier``.
   Every request is parsed, validated (profiles and rulebook) and stored before its 202.
   Reported in the same run: accepted/s over HTTP (first POST to last 202) with the p50/p99 of
   a POST, then delivered/s (first POST to last bundle at the hub) with the accept-to-delivered
   latency per bundle from the outbox.
2. Direct enqueue, no HTTP and no validation (``--n`` bundles): producers call
   ``Outbox.enqueue`` concurrently in this process, as the service's request threads do after
   validation; what the outbox and the delivery side can carry. The clock runs from the first
   enqueue to the last delivery. Target of both: >= 200 delivered/s.

The mock hub runs in its own process (uvicorn), as a real hub would. The latency per bundle is
``delivered_at - created_at`` from the outbox itself.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
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


def _hub_module() -> str:
    """The recording mock hub's module (``adapter.testing.mockhub``, formerly under forwarding)."""
    for name in ("adapter.testing.mockhub", "adapter.forwarding.mockhub"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    raise SystemExit("no mock hub module found")


def _start_hub(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", _hub_module(), "--port", str(port)],
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


# Rate limit off (the default 50/s per caller would measure the limiter); everything else default.
_HTTP_CONFIG = "service:\n  rate_limit: {per_second: 0, burst: 1}\n"


def _wait_received(port: int, count: int, timeout: float) -> int:
    """Poll the mock hub until it holds ``count`` bundles; returns how many it holds."""
    deadline = time.monotonic() + timeout
    while True:
        received = httpx.get(f"http://127.0.0.1:{port}/_mock/received?bundles=false").json()["count"]
        if received >= count:
            return int(received)
        if time.monotonic() > deadline:
            raise SystemExit(f"timeout: the hub has {received} of {count}")
        time.sleep(0.02)


def run_http(n: int, clients: int, sample: Path, threads: bool = False) -> dict[str, float]:
    """``becare serve`` as a process, ``POST /fhir`` over loopback, then delivery to the mock hub;
    ``threads``: ``outbox.process: false`` (delivery in threads of the service)."""
    from adapter.outbox import Outbox
    from adapter.testing.service import BecareService

    base = _sample(sample)
    bodies = []
    for i in range(n):
        b = dict(base)
        b["identifier"] = {"system": "urn:becare:bench", "value": f"http-{i}-{time.time_ns()}"}
        bodies.append(json.dumps(b).encode())
    port = _free_port()
    hub = _start_hub(port)
    tmp = Path(tempfile.mkdtemp(prefix="becare-bench-http-"))
    config = _HTTP_CONFIG + ("outbox:\n  process: false\n" if threads else "")
    service = BecareService(tmp, forward_to=f"http://127.0.0.1:{port}/fhir", config=config)
    try:
        service.start()
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        pool_clients = [httpx.Client(base_url=service.base_url, timeout=120) for _ in range(clients)]
        # one warm-up request per client connection, delivered before the clock starts (the
        # delivery process's imports and first connections are not throughput); not counted
        warm_ids = set()
        for c in pool_clients:
            warm = dict(base, identifier={"system": "urn:becare:bench", "value": f"warm-{time.time_ns()}"})
            resp = c.post("/fhir", content=json.dumps(warm).encode(), headers=headers)
            if resp.status_code != 202:
                raise SystemExit(f"POST /fhir answered {resp.status_code}: {resp.text[:300]}")
            warm_ids.add(resp.headers["x-delivery-id"])
        _wait_received(port, clients, 120)
        expected = n + clients
        post_latencies: list[float] = []

        def post(i: int) -> None:
            t = time.perf_counter()
            resp = pool_clients[i % clients].post("/fhir", content=bodies[i], headers=headers)
            post_latencies.append(time.perf_counter() - t)
            if resp.status_code != 202:
                raise SystemExit(f"POST /fhir answered {resp.status_code}: {resp.text[:300]}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, range(n)))
        t_accepted = time.perf_counter()
        received = _wait_received(port, expected, 600)
        t_done = time.perf_counter()
        for c in pool_clients:
            c.close()
        service.stop()
        outbox = Outbox(service.db_url)
        delivered = outbox.list("delivered", limit=expected)
        outbox.close()
        latencies = sorted(
            d.delivered_at - d.created_at for d in delivered if d.delivered_at and d.id not in warm_ids
        )
    finally:
        service.stop()
        hub.terminate()
        hub.wait(10)
    post_latencies.sort()
    return {
        "bundles": n,
        "received": received - clients,
        "bundle_kb": len(bodies[0]) / 1024,
        "accept_per_s": n / (t_accepted - t0),
        "post_p50_ms": statistics.median(post_latencies) * 1000,
        "post_p99_ms": post_latencies[max(0, int(len(post_latencies) * 0.99) - 1)] * 1000,
        "delivered_per_s": n / (t_done - t0),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--http-n", type=int, default=600, help="bundles POSTed over HTTP (default 600)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    ap.add_argument("--n", type=int, default=2000, help="bundles enqueued directly (default 2000)")
    ap.add_argument("--producers", type=int, default=16)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--sync", choices=("FULL", "NORMAL"), default=None, help="direct enqueue: default both")
    ap.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    ap.add_argument("--only", choices=("http", "direct"), default=None, help="run one part only")
    args = ap.parse_args()
    ok = True
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; mock hub on loopback; "
        "target >= 200 delivered/s"
    )
    if args.only in (None, "http"):
        print(
            f"\n1. over HTTP: `becare serve` (SQLite), {args.clients} clients POST /fhir, "
            "each bundle validated (profiles + rulebook) and stored before its 202; then delivered"
        )
        print(
            f"{'':44} {'bundles':>8} {'KB':>5} {'accepted/s':>11} {'POST p50 ms':>12} {'POST p99 ms':>12} "
            f"{'delivered/s':>12} {'p50 ms':>8} {'p99 ms':>8}"
        )
        for threads in (False, True):
            r = run_http(args.http_n, args.clients, args.sample, threads)
            if r["received"] != r["bundles"]:
                print(f"  hub received {r['received']} of {r['bundles']}!")
                ok = False
            label = (
                "outbox.process: false (delivery in threads)"
                if threads
                else "default on 2+ cores (delivery in own process)"
            )
            print(
                f"{label:44} {r['bundles']:>8} {r['bundle_kb']:>5.0f} {r['accept_per_s']:>11.1f} "
                f"{r['post_p50_ms']:>12.0f} {r['post_p99_ms']:>12.0f} {r['delivered_per_s']:>12.1f} "
                f"{r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f}"
            )
        print("   (accepted/s: first POST to last 202; delivered/s: first POST to last bundle at the hub;")
        print("    p50/p99 ms: accept-to-delivered per bundle, from the outbox)")
    if args.only in (None, "direct"):
        print(
            f"\n2. direct enqueue (no HTTP, no validation): {args.producers} producers call Outbox.enqueue, "
            f"{args.workers} workers"
        )
        print(
            f"{'sqlite sync':12} {'bundles':>8} {'KB':>5} {'enqueued/s':>11} {'delivered/s':>12} "
            f"{'p50 ms':>8} {'p99 ms':>8}  >= 200/s"
        )
        for separate in (True, False):
            print(
                "default with 2+ cores -- delivery in its own process (`becare outbox work`)"
                if separate
                else "outbox.process: false -- workers are threads of the enqueuing process"
            )
            for sync in [args.sync] if args.sync else ["FULL", "NORMAL"]:
                r = run(args.n, args.producers, args.workers, sync, args.sample, separate)
                if r["received"] != r["bundles"]:
                    print(f"  hub received {r['received']} of {r['bundles']}!")
                    ok = False
                meets = "yes" if r["delivered_per_s"] >= 200 else "NO"
                print(
                    f"{sync:12} {r['bundles']:>8} {r['bundle_kb']:>5.0f} {r['accept_per_s']:>11.0f} "
                    f"{r['delivered_per_s']:>12.0f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f}  {meets}"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
