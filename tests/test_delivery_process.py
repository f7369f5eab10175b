"""`outbox.process: true`: `becare serve` delivers from a supervised child process.

Real parts: `becare serve` as a subprocess on loopback, its `becare outbox work` child, the mock
hub, SQLite. The child is restarted when it dies, stopped with the service, and stops by itself
when the service is killed outright.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapter.testing.mockhub import MockHub
from tests.test_service_fakes import bundle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"outbox work" in cmdline:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def _serving(tmp_path: Path, outbox: str) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client, MockHub]]:
    config = tmp_path / "becare.yaml"
    config.write_text(
        "service:\n  rate_limit: {per_second: 1000, burst: 1000}\n" + outbox, encoding="utf-8"
    )
    with MockHub() as hub:
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("BECARE_CONFIG", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "adapter.cli.main", "serve", "--port", str(port), "--config", str(config),
             "--forward-to", hub.fhir_url, "--db", f"sqlite:///{tmp_path / 'becare.db'}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

        def ready() -> bool:
            assert process.poll() is None, "service exited"
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        try:
            _until("readiness", ready, 120)
            yield process, client, hub
        finally:
            client.close()
            if process.poll() is None:
                process.terminate()
                process.wait(20)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client, MockHub]]:
    outbox = "outbox:\n  process: true\n  workers: 2\n  poll_interval: 0.1\n  backoff_base: 0.1\n"
    with _serving(tmp_path, outbox) as running:
        yield running


def _submit(client: httpx.Client, ident: str) -> None:
    body = json.dumps(bundle(ident))
    r = client.post("/fhir", content=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 202, r.text


def _received(hub: MockHub) -> set[str]:
    return {(x.bundle or {}).get("identifier", {}).get("value") for x in hub.state.received}


def test_a_child_process_delivers_and_is_restarted_and_stopped(serve: tuple) -> None:
    process, client, hub = serve
    _until("the delivery process", lambda: len(_children(process.pid)) == 1)
    (child,) = _children(process.pid)
    _submit(client, "proc-1")
    _until("delivery by the child", lambda: "proc-1" in _received(hub))

    os.kill(child, signal.SIGKILL)  # the supervisor starts another
    _until("a new delivery process", lambda: _children(process.pid) not in ([], [child]))
    _submit(client, "proc-2")
    _until("delivery by the new child", lambda: "proc-2" in _received(hub))
    (second,) = _children(process.pid)

    process.terminate()
    process.wait(20)
    _until("the child to stop with the service", lambda: not _alive(second))
    assert len(hub.state.received) == 2


def test_the_child_stops_when_the_service_is_killed(serve: tuple) -> None:
    process, _, _ = serve
    _until("the delivery process", lambda: len(_children(process.pid)) == 1)
    (child,) = _children(process.pid)
    process.kill()
    process.wait(20)
    _until("the orphan to stop", lambda: not _alive(child))


def test_an_accept_wakes_the_child_at_once(tmp_path: Path) -> None:
    """The child polls every 30 s here: only the service's wake-up signal can make it deliver
    within seconds. Unset ``process`` is the default: a child on a machine with two cores."""
    assert (os.cpu_count() or 1) > 1, "the default would deliver in-process on one core"
    with _serving(tmp_path, "outbox:\n  poll_interval: 30\n") as (process, client, hub):
        _until("the delivery process", lambda: len(_children(process.pid)) == 1)
        time.sleep(1.0)  # the child's workers have done their first poll and are idle
        started = time.monotonic()
        for i in range(3):
            _submit(client, f"wake-{i}")
            _until("delivery after the wake-up", lambda i=i: f"wake-{i}" in _received(hub), timeout=10)
        assert time.monotonic() - started < 10


def test_early_wake_ups_do_not_kill_a_starting_child(tmp_path: Path) -> None:
    """SIGUSR1 kills by default: the child keeps it blocked until its handler is in place."""
    from adapter.forwarding.process import DeliveryProcess

    with MockHub() as hub:
        proc = DeliveryProcess(db_url=f"sqlite:///{tmp_path / 'o.db'}", config=None,
                               forward_to=hub.fhir_url, workers=1)
        proc.start()
        try:
            for _ in range(50):  # all through the child's start-up
                proc.notify()
                time.sleep(0.02)
            time.sleep(1.5)
            assert proc.restarts == 0 and proc.proc is not None and proc.proc.poll() is None
        finally:
            proc.stop()


def test_a_burst_of_signals_stops_the_worker_cleanly(tmp_path: Path) -> None:
    """Signal handlers must not take locks: an ``Event.set()`` interrupted by the next signal
    deadlocked on its own lock, leaving a child that no SIGTERM could stop (found as an orphan)."""
    with MockHub() as hub:
        for _ in range(4):
            child = subprocess.Popen(
                [sys.executable, "-m", "adapter.cli.main", "outbox", "work", "--db",
                 f"sqlite:///{tmp_path / 'o.db'}", "--forward-to", hub.fhir_url, "--workers", "2"],
                cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            try:
                assert child.stdout is not None and b"delivering" in child.stdout.readline()
                for i in range(2000):
                    child.send_signal(signal.SIGUSR1 if i % 10 == 0 else signal.SIGTERM)
                # stopped, not hung; a signal still arriving while the interpreter shuts down
                # meets the default handlers again, so it may end "killed" by that signal
                assert child.wait(15) in (0, -signal.SIGTERM, -signal.SIGUSR1)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
