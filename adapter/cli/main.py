"""The ``becare`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; this module only
dispatches, so capabilities can grow their commands without touching each other.
Exit codes (CONTRACT section 5): 0 ok, 1 errors found, 2 could not run (bad input or usage).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2

# subcommand modules, in help order; each has register(subparsers) -> None
_COMMANDS = (
    "adapter.cli.validate",
    "adapter.cli.rules",
    "adapter.cli.map",
    "adapter.cli.serve",
    "adapter.cli.outbox",
    "adapter.cli.profiles",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors already; keep its message short and clear."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"becare: error: {message}\n")
        raise SystemExit(EXIT_UNUSABLE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="becare", description="FHIR adapter for Belgian integrated care.")
    from adapter import __version__

    parser.add_argument("--version", action="version", version=f"becare {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that capability is not installed in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_UNUSABLE
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
