"""Offline CAs in the CLI: carrying a software key out, and ceremonies that sign with it.

Shared by ``privca ca ...`` and ``privca matter ...``: ``--offline --key-out FILE`` (and
``ca set-offline --key-out``) moves a ``pkcs8`` key out of the database into a new 0600
file (``server.ca.custody``); a command that signs under an offline CA begins a ceremony
for its process and, with ``--key FILE``, attaches that file's key (checked against the
CA's public key). ``serve`` never does either. Must not import the storage layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from server import private_files
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA
from server.cli.options import OPERATOR
from server.wiring import Services

__all__ = ["begin", "carry_out", "check_key_out", "check_new_offline_root", "say_offline"]


def check_key_out(a: argparse.Namespace, *, offline: bool) -> Path | None:
    """Return ``--key-out`` after the checks that must pass before anything changes.

    A software (``pkcs8``) key of an offline CA must leave the database; a token key
    stays in its token (nothing to write).
    """
    out = Path(a.key_out) if a.key_out else None
    if out is not None and not offline:
        raise EngineError(ProblemKind.MALFORMED, "--key-out goes with --offline")
    if out is not None and out.exists():
        raise EngineError(ProblemKind.CONFLICT, f"{out} exists: refusing to overwrite it")
    return out


def check_new_offline_root(a: argparse.Namespace) -> Path | None:
    """Return ``--key-out`` of a root created ``--offline``; refuse a software key without it."""
    out = check_key_out(a, offline=a.offline)
    if a.offline and out is None and a.key_backend in (None, "pkcs8"):
        raise EngineError(
            ProblemKind.MALFORMED,
            "an offline root's key leaves the database: give --key-out FILE "
            "(or --key-backend pkcs11 to keep it in the token)",
        )
    return out


async def carry_out(s: Services, ca: CA, out: Path | None) -> CA:
    """Mark ``ca`` offline; a software key moves to ``out`` first (written, then removed)."""
    if ca.key.backend != "pkcs8":
        if out is not None:
            raise EngineError(
                ProblemKind.MALFORMED,
                f"CA {ca.name}'s key is in {ca.key.backend}: nothing to write with --key-out",
            )
        return await s.engine.set_ca_offline(ca.name, offline=True, actor=OPERATOR)
    if out is None:
        raise EngineError(
            ProblemKind.MALFORMED,
            f"CA {ca.name}'s key is encrypted in the database: give --key-out FILE to move "
            "it out (a database copy plus the passphrase would unlock it otherwise)",
        )
    handle, key_file = await s.engine.carry_out_key(ca)
    private_files.create_private(out, key_file)
    return await s.engine.set_ca_offline(ca.name, offline=True, actor=OPERATOR, key=handle)


def say_offline(name: str, out: Path | None, when: str) -> None:
    """Tell the operator where an offline CA's key is and how its ceremony runs."""
    if out is None:
        print(
            f"CA {name} is offline: serving processes never load its key; run "
            f"`privca ca sign-offline {name} --days N` {when}, where its token is"
        )
        return
    print(
        f"CA {name} is offline; its key is in {out} (mode 0600, encrypted with the CA "
        f"passphrase) and no longer in the database: carry it away. Run "
        f"`privca ca sign-offline {name} --days N --key {out}` {when}"
    )


async def begin(s: Services, name: str, key_file: str | None) -> None:
    """Let this command sign with offline CA ``name``'s key (its key file if carried).

    A ceremony begins when ``name`` or its parent is offline (``ca renew`` signs with
    the parent's key); ``key_file`` is attached whatever the state, so a file given
    for a CA whose key is not carried is refused rather than ignored.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (the key is not carried), MALFORMED (the file
            does not hold the CA's key).
    """
    ca = await s.engine.get_ca(name)
    parent = await s.engine.get_ca(ca.parent_id) if ca.parent_id else None
    if ca.offline or (parent is not None and parent.offline):
        s.engine.begin_ceremony()
    if key_file is not None:
        await s.engine.attach_key(ca, Path(key_file).read_bytes())
