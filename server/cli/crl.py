"""``privca crl generate``: publish a CRL now, through the status service's CRL publisher."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.ca.errors import EngineError, ProblemKind
from server.cli.options import OPERATOR, STORAGE, Subparsers
from server.wiring import Services

__all__ = ["register"]


async def _generate(s: Services, a: argparse.Namespace) -> int:
    if s.status is None:
        raise EngineError(ProblemKind.UNAVAILABLE, "the revocation services are not running")
    crl = await s.status.generate_crl(a.ca, actor=str(OPERATOR), source=OPERATOR.source)
    if a.out:
        Path(a.out).write_bytes(crl.der)
        print(f"CRL number {crl.number} written to {a.out}")
    else:
        print(f"CRL number {crl.number} generated (next update {crl.next_update.isoformat()})")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca crl ...`` to the top-level subparsers."""
    crl = sub.add_parser("crl", help="certificate revocation lists").add_subparsers(
        dest="sub", required=True
    )
    p = crl.add_parser("generate", help="generate a CRL now", parents=[STORAGE])
    p.add_argument("--ca")
    p.add_argument("--out", help="write the DER CRL here")
    p.set_defaults(handler=_generate)
