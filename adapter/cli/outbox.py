"""``becare outbox``: look at and replay deliveries, and run delivery workers.

    becare outbox list [--status S] [--limit N] [--format text|json] [--db URL] [--config FILE]
    becare outbox show ID
    becare outbox retry ID
    becare outbox audit [--limit N]                  (FHIR AuditEvent collection Bundle, JSON)
    becare outbox work [--workers N] [--forward-to URL] [--drain]

``work`` runs the workers without the HTTP service (another host or process may accept).
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_UNUSABLE = 0, 1, 2
STATUSES = ("pending", "in-flight", "delivered", "dead", "blocked")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", metavar="URL", help="outbox database URL (default: from the config, else sqlite:///becare.db)"
    )
    p.add_argument("--config", metavar="FILE", help="settings file (default: $BECARE_CONFIG)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "outbox",
        help="inspect, replay and deliver the outbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION", parser_class=type(parser))
    parser.set_defaults(handler=lambda args: (parser.print_help(sys.stderr), EXIT_UNUSABLE)[1])

    p = sub.add_parser("list", help="list deliveries, newest first")
    _common(p)
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_list)

    p = sub.add_parser("show", help="one delivery with its attempts (JSON)")
    _common(p)
    p.add_argument("id")
    p.set_defaults(handler=_show)

    p = sub.add_parser("retry", help="replay a dead (or blocked) delivery")
    _common(p)
    p.add_argument("id")
    p.set_defaults(handler=_retry)

    p = sub.add_parser("audit", help="export the audit trail as FHIR AuditEvents (JSON Bundle)")
    _common(p)
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(handler=_audit)

    p = sub.add_parser("work", help="run delivery workers until interrupted")
    _common(p)
    p.add_argument("--forward-to", metavar="URL", help="deliver everything to this FHIR base")
    p.add_argument("--workers", type=int, help="worker threads (default: from the config, else 4)")
    p.add_argument("--lease", type=float, help="lease seconds for claimed deliveries")
    p.add_argument("--drain", action="store_true", help="exit once nothing is due")
    p.set_defaults(handler=_work)


def _settings(args: argparse.Namespace) -> Any:
    from adapter.forwarding.settings import load_settings

    return load_settings(args.config, forward_to=getattr(args, "forward_to", None), db_url=args.db)


def _open(args: argparse.Namespace) -> Any:
    from adapter.outbox import Outbox

    s = _settings(args)
    return Outbox(
        s.db_url, max_attempts=s.outbox.max_attempts, sqlite_synchronous=s.outbox.sqlite_synchronous
    )


def _guard(fn: Any) -> Any:
    """Configuration and database problems become one line on stderr and exit 2."""

    def run(args: argparse.Namespace) -> int:
        from adapter.forwarding.settings import ConfigError
        from adapter.outbox import OutboxError

        try:
            return int(fn(args))
        except (ConfigError, OutboxError) as exc:
            sys.stderr.write(f"becare outbox: {exc.message}\n")
            # a delivery in the wrong state is a finding (1); bad config, URL or id cannot run (2)
            return EXIT_INVALID if getattr(exc, "code", None) == "conflict" else EXIT_UNUSABLE

    run.__doc__ = fn.__doc__
    return run


@_guard
def _list(args: argparse.Namespace) -> int:
    from adapter.outbox.audit import iso

    box = _open(args)
    try:
        items = box.list(args.status, limit=args.limit)
    finally:
        box.close()
    if args.format == "json":
        json.dump([d.to_json() for d in items], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not items:
        print("no deliveries" + (f" with status {args.status}" if args.status else ""))
        return EXIT_OK
    print(f"{'ID':36}  {'STATUS':9}  {'TRIES':>5}  {'DESTINATION':20}  {'CREATED':24}  LAST ERROR / REASON")
    for d in items:
        note = (d.last_error or d.reason or "").replace("\n", " ")
        print(
            f"{d.id:36}  {d.status:9}  {d.attempts:>5}  {(d.destination or '-')[:20]:20}  "
            f"{iso(d.created_at) or '':24}  {note[:80]}"
        )
    return EXIT_OK


@_guard
def _show(args: argparse.Namespace) -> int:
    box = _open(args)
    try:
        d = box.get(args.id)
    finally:
        box.close()
    if d is None:
        sys.stderr.write(f"becare outbox: no delivery {args.id!r}\n")
        return EXIT_UNUSABLE
    json.dump(d.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


@_guard
def _retry(args: argparse.Namespace) -> int:
    box = _open(args)
    try:
        d = box.retry(args.id, who="cli")
    finally:
        box.close()
    # the status read back may already be a worker's (in-flight, delivered): say what was done
    print(f"delivery {d.id} queued again for delivery (destination {d.destination}; now {d.status})")
    return EXIT_OK


@_guard
def _audit(args: argparse.Namespace) -> int:
    box = _open(args)
    try:
        bundle = box.audit_events_as_fhir(limit=args.limit)
    finally:
        box.close()
    json.dump(bundle, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


@_guard
def _work(args: argparse.Namespace) -> int:
    import logging

    from adapter.forwarding import build_forwarding

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    s = _settings(args)
    fw = build_forwarding(s)
    if args.workers is not None:
        fw.forwarder.workers = args.workers
    if args.lease is not None:
        fw.forwarder.lease_seconds = args.lease
    if not s.destinations:
        sys.stderr.write("becare outbox: no destination configured (use --forward-to or --config)\n")
        fw.close()
        return EXIT_UNUSABLE
    try:
        if args.drain:
            fw.forwarder.drain(timeout=float("inf"))
            return EXIT_OK
        fw.forwarder.start()
        ready = f"becare outbox: {fw.forwarder.workers} workers delivering from {s.db_url.split('@')[-1]}"
        _serve_signals(fw.forwarder.notify, ready=lambda: print(ready, flush=True))
        return EXIT_OK
    finally:
        fw.close()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _serve_signals(wake: Callable[[], None], *, ready: Callable[[], None]) -> None:
    """Wait for SIGINT/SIGTERM; call ``wake`` on each SIGUSR1; ``ready`` once they are handled.

    The handlers do nothing in Python: the interpreter writes each signal's number to a socket
    this loop reads. A handler that takes a lock (``Event.set``) deadlocked when the next signal
    interrupted it holding that lock, leaving a child no SIGTERM could stop."""
    from adapter.forwarding.process import WAKE_SIGNAL as _WAKE

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watched = [*_STOP_SIGNALS, *([_WAKE] if _WAKE is not None else [])]
    for sig in watched:
        signal.signal(sig, lambda _signum, _frame: None)
    if _WAKE is not None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [_WAKE])  # blocked by the parent until now
    ready()
    try:
        while True:
            select.select([reader], [], [], 5.0)
            try:
                received = reader.recv(4096)
            except BlockingIOError:
                continue
            if any(n in received for n in _STOP_SIGNALS):
                return
            if _WAKE is not None and _WAKE in received:
                wake()
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def main(argv: list[str] | None = None) -> int:
    """Run ``becare outbox ...`` directly (``python -m adapter.cli.outbox``)."""
    parser = argparse.ArgumentParser(prog="becare")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["outbox", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
