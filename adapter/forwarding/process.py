"""Delivery workers in a child process, supervised by the service.

Why: Python runs one thread at a time per process, so a service that accepts and delivers in
the same process shares one core between the two. With ``outbox.process: true``, ``becare serve``
starts ``becare outbox work`` on the same database and configuration, restarts it if it dies,
and stops it with the service. The child also stops if the service is killed outright (Linux
parent-death signal), so no orphan keeps delivering behind an operator's back; deliveries it had
claimed are taken up again after their lease, with the same idempotency key.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("becare.delivery")

_PR_SET_PDEATHSIG = 1


WAKE_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)  # "new work", from service to child


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Wake-ups wait (blocked, survives exec) until the child has a handler: SIGUSR1's default
    # action would kill a child still importing.
    if WAKE_SIGNAL is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, [WAKE_SIGNAL])
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DeliveryProcess:
    """Has the ``start()`` / ``stop()`` / ``notify()`` of the in-process Forwarder, so the app
    treats both alike. The child polls the outbox; given the ``outbox``, each accept also wakes
    it with a signal, so a bundle leaves at once instead of at the next poll."""

    def __init__(
        self, *, db_url: str, config: str | None, forward_to: str | None, workers: int, outbox: Any = None
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "adapter.cli.main",
            "outbox",
            "work",
            "--db",
            db_url,
            "--workers",
            str(workers),
        ]
        if config:
            self.command += ["--config", str(Path(config).resolve())]
        if forward_to:
            self.command += ["--forward-to", forward_to]
        self.outbox = outbox
        self._listening = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        preexec = _child_setup if hasattr(signal, "pthread_sigmask") else None
        return subprocess.Popen(self.command, stdin=subprocess.DEVNULL, preexec_fn=preexec)

    def notify(self) -> None:
        """New work was accepted: wake the child's idle workers."""
        proc = self.proc
        if proc is not None and WAKE_SIGNAL is not None:
            with contextlib.suppress(OSError):
                proc.send_signal(WAKE_SIGNAL)  # Popen never signals a process it has reaped

    def start(self) -> None:
        if self.outbox is not None and not self._listening:
            self.outbox.add_listener(self.notify)
            self._listening = True
        self.proc = self._spawn()
        log.info("delivery process started (pid %s)", self.proc.pid)
        self._thread = threading.Thread(target=self._supervise, name="becare-delivery-process", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            proc = self.proc
            if proc is None:
                return
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                return
            self.restarts += 1
            log.error("delivery process exited with %s; restarting (restart %d)", code, self.restarts)
            self._stop.wait(min(0.5 * self.restarts, 10.0))
            if not self._stop.is_set():
                self.proc = self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
