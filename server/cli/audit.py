"""``privca audit``: print the audit log, oldest of the newest ``--limit`` events first."""

from __future__ import annotations

import argparse

from server.cli.options import STORAGE, Subparsers
from server.wiring import Services

__all__ = ["register"]


async def _audit(s: Services, a: argparse.Namespace) -> int:
    for e in reversed(await s.engine.audit_log(limit=a.limit)):
        detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
        print(
            f"{e.at:%Y-%m-%dT%H:%M:%SZ} {e.actor:<24} {e.action:<18} {e.target} {detail}".rstrip()
        )
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca audit`` to the top-level subparsers."""
    p = sub.add_parser("audit", help="show the audit log", parents=[STORAGE])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_audit)
