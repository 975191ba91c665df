"""``privca audit``: list, verify and export the hash-chained audit trail.

``privca audit`` prints the newest ``--limit`` records, oldest first;
``privca audit verify`` walks the whole chain page by page and exits 1 naming the
first record that was edited, deleted or reordered (or a cut tail);
``privca audit export --format jsonl`` writes one JSON object per record, with
seq, prev_hash and hash, so another party can re-verify the chain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from server.ca import audit
from server.cli.options import STORAGE, Subparsers
from server.wiring import Services

__all__ = ["register"]


async def _list(s: Services, a: argparse.Namespace) -> int:
    for e in reversed(await s.engine.audit_log(limit=a.limit)):
        detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
        print(
            f"{e.seq or '-':>6} {e.at:%Y-%m-%dT%H:%M:%SZ} {e.actor:<24} {e.action:<18} "
            f"{e.target} {detail} [{e.source or '-'}]".rstrip()
        )
    return 0


async def _verify(s: Services, a: argparse.Namespace) -> int:
    result = await s.engine.verify_audit(page=a.page)
    if result.broken is not None:
        print(f"audit chain broken at {result.broken}", file=sys.stderr)
        print(f"{result.count} records verified before it", file=sys.stderr)
        return 1
    print(f"{result.count} records, chain intact")
    return 0


async def _write(s: Services, a: argparse.Namespace, out: TextIO) -> int:
    count = 0
    async for event in s.engine.audit_records(after_seq=a.since):
        out.write(audit.to_json(event) + "\n")
        count += 1
    return count


async def _export(s: Services, a: argparse.Namespace) -> int:
    if a.out is None:
        await _write(s, a, sys.stdout)
        return 0
    # One-shot CLI process: nothing else waits on this loop while the file is written.
    with Path(a.out).open("w", encoding="utf-8") as out:  # noqa: ASYNC230
        count = await _write(s, a, out)
    print(f"{count} records written to {a.out}", file=sys.stderr)
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca audit`` (list), ``audit verify`` and ``audit export``."""
    p = sub.add_parser("audit", help="show, verify or export the audit trail", parents=[STORAGE])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_list)
    actions = p.add_subparsers(dest="sub", required=False)
    v = actions.add_parser("verify", help="check the hash chain", parents=[STORAGE])
    v.add_argument("--page", type=int, default=1000, help="records read per query")
    v.set_defaults(handler=_verify)
    x = actions.add_parser("export", help="write every record as JSON lines", parents=[STORAGE])
    x.add_argument("--format", choices=["jsonl"], default="jsonl")
    x.add_argument("--since", type=int, default=0, help="only records with a seq above this")
    x.add_argument("--out", help="write here instead of standard output")
    x.set_defaults(handler=_export)
