"""``becare serve``: run the validation and forwarding service with uvicorn.

Everything that can be wrong with a deployment (config, database URL, an open bind without
authentication) is checked before the port is opened, so a bad start fails at once with one
clear message and exit code 2 instead of half-running.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_UNUSABLE = 2

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP validation and forwarding service",
        description="Run the FHIR validation and forwarding service (CONTRACT section 6). "
        "With no options: http://127.0.0.1:8080, outbox in ./becare.db, nothing forwarded.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other needs service.auth configured)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--db", metavar="URL", help="SQLAlchemy URL of the outbox (default sqlite:///becare.db)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config: destinations, routing, metahub, service (or $BECARE_CONFIG)",
    )
    parser.add_argument("--forward-to", metavar="URL", help="forward every accepted bundle to this FHIR base")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=run)


def _fail(message: str) -> int:
    sys.stderr.write(f"becare serve: {message}\n")
    return EXIT_UNUSABLE


def setup_logging(level: str) -> None:
    """One stderr handler with the personal-data filter; uvicorn's loggers propagate to it."""
    from adapter.service.logfilter import PersonalDataFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.addFilter(PersonalDataFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request is noise
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True


def build_app(args: argparse.Namespace) -> Any:
    """The configured app, or raises ``_StartError`` with the reason it cannot start."""
    from adapter.forwarding.routing import Router
    from adapter.forwarding.settings import ConfigError as SettingsError
    from adapter.forwarding.settings import load_settings
    from adapter.forwarding.worker import Forwarder
    from adapter.outbox.store import Outbox, OutboxError
    from adapter.service.app import create_app
    from adapter.service.auth import AuthError, load_public_key
    from adapter.service.config import ConfigError, check_bind, service_config_from_mapping

    try:
        settings = load_settings(args.config, forward_to=args.forward_to, db_url=args.db)
    except SettingsError as exc:
        raise _StartError(exc.message) from None
    config_path = args.config or os.environ.get("BECARE_CONFIG")
    try:
        base = Path(config_path).parent if config_path else None
        config = service_config_from_mapping(settings.service, base=base)
        for pem in config.auth.jwt.public_keys:
            load_public_key(pem)
    except (ConfigError, AuthError) as exc:
        raise _StartError(str(exc)) from None
    refusal = check_bind(args.host, config)
    if refusal:
        raise _StartError(refusal)
    _check_ehealth(settings)
    try:
        outbox = Outbox(
            settings.db_url,
            max_attempts=settings.outbox.max_attempts,
            sqlite_synchronous=settings.outbox.sqlite_synchronous,
        )
    except OutboxError as exc:
        raise _StartError(f"outbox database: {exc}") from None
    router = Router(settings)
    forwarder: Any = None
    if settings.forwarding_enabled and settings.outbox.delivery_process(settings.db_url):
        from adapter.forwarding.process import DeliveryProcess

        forwarder = DeliveryProcess(db_url=settings.db_url, config=config_path, forward_to=args.forward_to,
                                    workers=settings.outbox.workers or 1, outbox=outbox)
    elif settings.forwarding_enabled:
        forwarder = Forwarder.from_settings(settings, outbox)
    registry = _registry(settings.db_url)
    return create_app(config, outbox=outbox, router=router, forwarder=forwarder, registry=registry)


def _check_ehealth(settings: Any) -> None:
    """A kmehr-hub destination whose certificate cannot be used stops the start with one line
    (wrong password, unset variable, expired certificate), rather than failing every delivery."""
    hubs = {name: d for name, d in settings.destinations.items() if d.kind == "kmehr-hub"}
    if not hubs:
        return
    from adapter.ehealth.errors import EHealthError
    from adapter.forwarding.kmehrhub import check_identity

    for name, dest in hubs.items():
        try:
            check_identity(dest.ehealth)
        except EHealthError as exc:
            raise _StartError(f"destination {name}: eHealth certificate: {exc.reason}") from None


def _registry(url: str) -> Any:
    """The episode registry on the same database, when that capability is installed."""
    try:
        from adapter.registry import EpisodeRegistry  # type: ignore[attr-defined]
    except ImportError:
        logging.getLogger("becare.serve").warning("no episode registry: IC-ONE-1/2 see one bundle at a time")
        return None
    return EpisodeRegistry(url)


class _StartError(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    import uvicorn

    if not 0 < args.port < 65536:
        return _fail(f"--port {args.port} is not a port number")
    try:
        app = build_app(args)
    except _StartError as exc:
        return _fail(str(exc))
    setup_logging(args.log_level)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            log_level=args.log_level,
            access_log=True,
            server_header=False,
            limit_concurrency=512,
            timeout_keep_alive=15,
        )
    )
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        return _fail(f"could not serve on {args.host}:{args.port}") if exc.code else EXIT_OK
    if not server.started:
        return _fail(f"could not serve on {args.host}:{args.port}")
    return EXIT_OK
