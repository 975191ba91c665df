"""The ``privca`` command line: serve, and operator commands on the same data.

One module per command group (``ca``, ``cert``, ``crl``, ``audit``, ``est``,
``acme``, ``matter``, ``admin``, ``serve``), each with a ``register(sub)``; shared options
are parent parsers in ``options.py``. Every command opens the same data dir (or
database URL) as ``serve`` through ``server.wiring``. Engine errors print as
``error: ...`` with exit status 1; configuration errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from server import logs
from server.ca.errors import EngineError
from server.cli import acme, admin, audit, ca, cert, crl, est, matter, serve
from server.cli.options import Handler
from server.config import ConfigError, Settings, load_settings
from server.wiring import open_services

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every privca command."""
    parser = argparse.ArgumentParser(prog="privca", description="privca private CA")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (serve, ca, cert, crl, audit, est, acme, matter, admin):
        group.register(sub)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        args.config, data_dir=args.data_dir, database_url=args.database_url, **extra
    )


async def _run(handler: Handler, settings: Settings, args: argparse.Namespace) -> int:
    async with open_services(settings, create=getattr(args, "create", False)) as services:
        return await handler(services, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``privca`` console script."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logs.configure("text", level=level)
    try:
        if args.command == "serve":
            settings = _settings(
                args, host=args.host, https_port=args.https_port, http_port=args.http_port
            )
            logs.configure(settings.logging.format, level=level)
            return serve.serve(settings, args)
        settings = _settings(args)
        logs.configure(settings.logging.format, level=level)
        return asyncio.run(_run(args.handler, settings, args))
    except ConfigError as exc:
        print(f"privca: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
