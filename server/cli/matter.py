"""``privca matter ...``: Matter PAA/PAI/DAC and RCAC/ICAC/NOC from the command line.

A thin front end over ``server.ca.matter.api``: parses options, calls the facade,
writes files (per-device DAC bundles with a manifest, NOC PEM/TLV). A PAA or RCAC
may be kept offline (``--offline --key-out FILE``); the commands that sign under an
offline Matter CA take its key file (``--key FILE``) for their process only
(``server.cli.ceremony``). Registered by
``server/cli/__init__.py``; must not import it (it imports this module).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tqdm import tqdm

from server import bundle_files
from server.ca.errors import EngineError, ProblemKind
from server.ca.matter import api as matter_api
from server.ca.matter import tlv
from server.cli import ceremony
from server.cli.options import KEY_BACKEND, OPERATOR, STORAGE, Subparsers
from server.wiring import Services

__all__ = ["BundleWriter", "register"]

_CSR_SUFFIXES: Final = (".pem", ".csr", ".der", ".req")
_MANIFEST_FIELDS: Final = (
    "device",
    "serial",
    "vid",
    "pid",
    "subject",
    "dac_pem",
    "dac_der",
    "key_pem",
    "pai_pem",
    "csr",
)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _hex_type(digits: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return matter_api.parse_hex_id(text, digits=digits, what=what)
        except EngineError as exc:
            raise argparse.ArgumentTypeError(exc.detail) from exc

    return parse


def _lifetime(args: argparse.Namespace) -> timedelta | None:
    days: int | None = getattr(args, "days", None)
    return timedelta(days=days) if days else None


def _ids(info: matter_api.MatterCAInfo) -> str:
    parts = []
    if info.vendor_id is not None:
        parts.append(f"VID {info.vendor_id:04X}")
    if info.product_id is not None:
        parts.append(f"PID {info.product_id:04X}")
    if info.fabric_id is not None:
        parts.append(f"fabric {info.fabric_id:016X}")
    if info.rcac_id is not None:
        parts.append(f"rcac-id {info.rcac_id:016X}")
    if info.icac_id is not None:
        parts.append(f"icac-id {info.icac_id:016X}")
    return ", ".join(parts) or "no VID (non-VID-scoped)"


async def _created(s: Services, name: str) -> int:
    info = await matter_api.MatterService(s.engine).info(name)
    _say(f"created Matter {info.kind.upper()} {name} (id {info.ca.id}; {_ids(info)})")
    return 0


async def _root_created(s: Services, a: argparse.Namespace, out: Path | None, child: str) -> int:
    """Report a new PAA/RCAC; ``--offline`` then carries its key out (``ceremony``)."""
    await _created(s, a.name)
    if a.offline:
        await ceremony.carry_out(s, await s.engine.get_ca(a.name), out)
        key = f" --key {out}" if out is not None else ""
        ceremony.say_offline(
            a.name, out, f"when its status is due; `privca matter {child} create{key}` under it"
        )
    return 0


# ----------------------------------------------------------------------- CAs


async def _paa_create(s: Services, a: argparse.Namespace) -> int:
    out = ceremony.check_new_offline_root(a)
    service = matter_api.MatterService(s.engine)
    await service.create_paa(
        a.name, actor=OPERATOR, vid=a.vid, lifetime=_lifetime(a), key_backend=a.key_backend
    )
    return await _root_created(s, a, out, "pai")


async def _pai_create(s: Services, a: argparse.Namespace) -> int:
    await ceremony.begin(s, a.paa, a.key)
    service = matter_api.MatterService(s.engine)
    await service.create_pai(
        a.name,
        paa=a.paa,
        vid=a.vid,
        pid=a.pid,
        actor=OPERATOR,
        lifetime=_lifetime(a),
        key_backend=a.key_backend,
    )
    return await _created(s, a.name)


async def _rcac_create(s: Services, a: argparse.Namespace) -> int:
    out = ceremony.check_new_offline_root(a)
    service = matter_api.MatterService(s.engine)
    await service.create_rcac(
        a.name,
        actor=OPERATOR,
        fabric_id=a.fabric_id,
        rcac_id=a.rcac_id,
        lifetime=_lifetime(a),
        key_backend=a.key_backend,
    )
    return await _root_created(s, a, out, "icac")


async def _icac_create(s: Services, a: argparse.Namespace) -> int:
    await ceremony.begin(s, a.rcac, a.key)
    service = matter_api.MatterService(s.engine)
    await service.create_icac(
        a.name,
        rcac=a.rcac,
        actor=OPERATOR,
        fabric_id=a.fabric_id,
        icac_id=a.icac_id,
        lifetime=_lifetime(a),
        key_backend=a.key_backend,
    )
    return await _created(s, a.name)


async def _show(s: Services, a: argparse.Namespace) -> int:
    info = await matter_api.MatterService(s.engine).info(a.name)
    cert = info.ca.certificate
    out: dict[str, Any] = {
        "name": info.ca.name,
        "id": info.ca.id,
        "kind": str(info.ca.kind),
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "vid": f"{info.vendor_id:04X}" if info.vendor_id is not None else None,
        "pid": f"{info.product_id:04X}" if info.product_id is not None else None,
        "fabric_id": f"{info.fabric_id:016X}" if info.fabric_id is not None else None,
        "rcac_id": f"{info.rcac_id:016X}" if info.rcac_id is not None else None,
        "icac_id": f"{info.icac_id:016X}" if info.icac_id is not None else None,
    }
    _say(json.dumps(out, indent=2))
    return 0


# ----------------------------------------------------------------------- DACs


def _read_csrs(directory: Path) -> list[tuple[str, bytes]]:
    if not directory.is_dir():
        raise EngineError(ProblemKind.MALFORMED, f"{directory} is not a directory")
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _CSR_SUFFIXES
    )
    if not files:
        raise EngineError(
            ProblemKind.MALFORMED, f"no CSR files (*.pem, *.csr, *.der) in {directory}"
        )
    return [(p.name, p.read_bytes()) for p in files]


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EngineError(
            ProblemKind.CONFLICT, f"{out} exists and is not an empty directory; choose a new one"
        )


def _start_out(out: Path, pai_pem: bytes) -> None:
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle_files.create_file(out / "pai.pem", pai_pem, 0o644)


def _bundle(
    cred: matter_api.DeviceCredential, *, width: int, vid: int, pid: int
) -> tuple[bundle_files.Device, dict[str, str]]:
    """Return what the writer process writes for one device, and its manifest row."""
    device = f"device-{cred.index:0{width}d}"
    pem = cred.certificate.public_bytes(serialization.Encoding.PEM)
    row = {
        "device": device,
        "serial": cred.record.serial_hex,
        "vid": f"{vid:04X}",
        "pid": f"{pid:04X}",
        "subject": cred.record.subject,
        "dac_pem": f"{device}/dac.pem",
        "dac_der": f"{device}/dac.der",
        "key_pem": f"{device}/key.pem" if cred.private_key_pem is not None else "",
        "pai_pem": f"{device}/pai.pem",
        "csr": cred.source or "",
    }
    return (device, cred.record.der, pem, cred.private_key_pem), row


class BundleWriter:
    """Write device bundles in a separate process while the next batch is issued.

    Issuing holds the GIL; file creation is system calls. A writer process
    (``server.bundle_files``, standard library only) runs them on the other
    core instead of trading the GIL with issuance. At most ``depth`` batches
    are in flight; ``rows`` come back in device order. Use as an async
    context manager (the process is stopped on exit).
    """

    def __init__(self, out: Path, *, width: int, vid: int, pid: int, depth: int = 4) -> None:
        self._args = (out, width, vid, pid)
        self._depth = depth
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        self._tasks: list[tuple[asyncio.Future[int], list[dict[str, str]]]] = []
        self.rows: list[dict[str, str]] = []

    async def __aenter__(self) -> BundleWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for future, _ in self._tasks:
            future.cancel()
        self._tasks.clear()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def submit(self, batch: Sequence[matter_api.DeviceCredential]) -> int:
        """Queue a stored batch; wait for the oldest write when too many are in flight.

        Returns the number of devices written so far.
        """
        out, width, vid, pid = self._args
        pairs = [_bundle(cred, width=width, vid=vid, pid=pid) for cred in batch]
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, bundle_files.write_devices, str(out), [p[0] for p in pairs]
        )
        self._tasks.append((future, [p[1] for p in pairs]))
        written = 0
        while len(self._tasks) > self._depth:
            written += await self._take_oldest()
        return written

    async def finish(self) -> int:
        """Wait for every queued write; return how many devices that was."""
        written = 0
        while self._tasks:
            written += await self._take_oldest()
        return written

    async def _take_oldest(self) -> int:
        future, rows = self._tasks[0]
        await future
        self._tasks.pop(0)
        self.rows += rows
        return len(rows)


def _write_manifest(out: Path, meta: dict[str, Any], rows: list[dict[str, str]]) -> None:
    devices = [{k: (v or None) for k, v in row.items()} for row in rows]
    (out / "manifest.json").write_text(
        json.dumps({**meta, "devices": devices}, indent=1) + "\n", encoding="utf-8"
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")


async def _dac_issue(s: Services, a: argparse.Namespace) -> int:
    csrs = await asyncio.to_thread(_read_csrs, a.csr_dir) if a.csr_dir else None
    if csrs is not None and a.count is not None and a.count != len(csrs):
        raise EngineError(
            ProblemKind.MALFORMED, f"--count {a.count} but {len(csrs)} CSRs in {a.csr_dir}"
        )
    if csrs is None and a.count is None:
        raise EngineError(ProblemKind.MALFORMED, "give --count N (or --csr-dir DIR)")
    total = len(csrs) if csrs is not None else a.count
    if total < 1:
        raise EngineError(ProblemKind.MALFORMED, "--count must be at least 1")
    out: Path = a.out
    await ceremony.begin(s, a.pai, a.key)
    service = matter_api.MatterService(s.engine)
    pai = await s.engine.get_ca(a.pai)
    await asyncio.to_thread(_check_out, out)
    pai_pem = pai.certificate.public_bytes(serialization.Encoding.PEM)
    width = max(5, len(str(total)))
    started = False
    async with BundleWriter(out, width=width, vid=a.vid, pid=a.pid) as writer:
        with tqdm(total=total, unit="DAC", file=sys.stderr, desc="DACs", mininterval=0.5) as bar:
            async for batch in service.issue_dacs(
                pai=a.pai,
                vid=a.vid,
                pid=a.pid,
                actor=OPERATOR,
                grant=s.settings.operator.to_grant(),
                count=None if csrs is not None else total,
                csrs=csrs,
                lifetime=_lifetime(a),
            ):
                if not started:
                    # First stored batch: only now does the output directory appear.
                    await asyncio.to_thread(_start_out, out, pai_pem)
                    started = True
                bar.update(await writer.submit(batch))
            bar.update(await writer.finish())
    rows = writer.rows
    meta = {
        "pai": pai.name,
        "pai_pem": "pai.pem",
        "vid": f"{a.vid:04X}",
        "pid": f"{a.pid:04X}",
        "count": len(rows),
    }
    await asyncio.to_thread(_write_manifest, out, meta, rows)
    _say(f"issued {len(rows)} DACs under {pai.name} into {out} (manifest.json, manifest.csv)")
    return 0


# ----------------------------------------------------------------------- NOCs


def _write_noc(out: str | None, pem: bytes, tlv_out: Path | None, tlv_bytes: bytes) -> None:
    if out is None or out == "-":
        sys.stdout.write(pem.decode())
    else:
        Path(out).write_bytes(pem)
    if tlv_out is not None:
        tlv_out.write_bytes(tlv_bytes)


async def _noc_issue(s: Services, a: argparse.Namespace) -> int:
    csr = await asyncio.to_thread(Path(a.csr).read_bytes)
    await ceremony.begin(s, a.ca, a.key)
    issued = await matter_api.MatterService(s.engine).issue_noc(
        csr,
        ca=a.ca,
        actor=OPERATOR,
        grant=s.settings.operator.to_grant(),
        fabric_id=a.fabric_id,
        node_id=a.node_id,
        cats=a.cat or (),
        lifetime=_lifetime(a),
    )
    # NOC first, then the ICAC if any; the RCAC (trust anchor) is left out.
    certs: list[x509.Certificate] = [issued.certificate, *issued.chain[:-1]]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    await asyncio.to_thread(_write_noc, a.out, pem, a.tlv_out, tlv.x509_to_tlv(issued.record.der))
    if a.out and a.out != "-":
        _say(f"issued NOC {issued.record.serial_hex} ({issued.record.subject}) to {a.out}")
    return 0


# ----------------------------------------------------------------------- parser


def _offline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--offline",
        action="store_true",
        help="keep it offline: serving processes never load its key; it signs at ceremonies",
    )
    p.add_argument(
        "--key-out",
        metavar="FILE",
        help="offline: move its software key to FILE (new, mode 0600) and out of the "
        "database; required for pkcs8 keys",
    )


def _carried_key(p: argparse.ArgumentParser, issuer: str) -> None:
    p.add_argument(
        "--key",
        metavar="FILE",
        help=f"an offline {issuer}'s key file (its --key-out): signs in this command only",
    )


def register(sub: Subparsers) -> None:
    """Add ``privca matter ...`` to the top-level subparsers."""
    vid = _hex_type(4, "a Vendor ID")
    pid = _hex_type(4, "a Product ID")
    id64 = _hex_type(16, "a 64-bit Matter id")
    cat = _hex_type(8, "a CASE Authenticated Tag")
    matter = sub.add_parser("matter", help="Matter PKI: PAA/PAI/DAC and RCAC/ICAC/NOC")
    groups = matter.add_subparsers(dest="sub", required=True)

    actions: dict[str, Any] = {}

    def action(
        group: str, name: str, help_text: str, *, makes_key: bool = False
    ) -> argparse.ArgumentParser:
        if group not in actions:
            parent = groups.add_parser(group, help=f"Matter {group.upper()}s")
            actions[group] = parent.add_subparsers(dest="sub_action", required=True)
        p: argparse.ArgumentParser = actions[group].add_parser(
            name, help=help_text, parents=[STORAGE, KEY_BACKEND] if makes_key else [STORAGE]
        )
        return p

    p = action("paa", "create", "create a PAA (self-signed attestation root)", makes_key=True)
    p.add_argument("--name", required=True)
    p.add_argument("--vid", type=vid, help="Vendor ID (hex): VID-scoped PAA; omit: non-VID-scoped")
    p.add_argument("--days", type=int, help="lifetime in days (default: no expiry, 9999-12-31)")
    _offline_options(p)
    p.set_defaults(handler=_paa_create, create=True)

    p = action("pai", "create", "create a PAI signed by a PAA", makes_key=True)
    p.add_argument("--name", required=True)
    p.add_argument("--paa", required=True, help="name of the signing PAA")
    p.add_argument("--vid", type=vid, required=True, help="Vendor ID (hex)")
    p.add_argument("--pid", type=pid, help="Product ID (hex): PID-scoped PAI")
    p.add_argument("--days", type=int, help="lifetime in days (default: as the PAA)")
    _carried_key(p, "PAA")
    p.set_defaults(handler=_pai_create)

    p = action("dac", "issue", "issue DACs in bulk (generated keys or a directory of CSRs)")
    p.add_argument("--pai", required=True, help="name of the signing PAI")
    p.add_argument("--vid", type=vid, required=True, help="Vendor ID (hex), the PAI's")
    p.add_argument("--pid", type=pid, required=True, help="Product ID (hex)")
    p.add_argument("--count", type=int, help="number of devices (keys are generated)")
    p.add_argument("--csr-dir", type=Path, help="issue one DAC per CSR file in this directory")
    p.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    p.add_argument("--days", type=int, help="lifetime in days (default: no expiry)")
    _carried_key(p, "PAI")
    p.set_defaults(handler=_dac_issue)

    p = action("rcac", "create", "create an RCAC (operational root of a fabric)", makes_key=True)
    p.add_argument("--name", required=True)
    p.add_argument("--fabric-id", type=id64, help="fabric id (hex) to put in the RCAC")
    p.add_argument("--rcac-id", type=id64, help="RCAC id (hex; default random)")
    p.add_argument("--days", type=int, help="lifetime in days (default 3650)")
    _offline_options(p)
    p.set_defaults(handler=_rcac_create, create=True)

    p = action("icac", "create", "create an ICAC signed by an RCAC", makes_key=True)
    p.add_argument("--name", required=True)
    p.add_argument("--rcac", required=True, help="name of the signing RCAC")
    p.add_argument("--fabric-id", type=id64, help="fabric id (hex; default: the RCAC's)")
    p.add_argument("--icac-id", type=id64, help="ICAC id (hex; default random)")
    p.add_argument("--days", type=int, help="lifetime in days (default 3650, within the RCAC)")
    _carried_key(p, "RCAC")
    p.set_defaults(handler=_icac_create)

    p = action("noc", "issue", "issue a NOC from a NOCSR")
    p.add_argument("--ca", required=True, help="name of the signing ICAC or RCAC")
    p.add_argument("--csr", required=True, help="the NOCSR (PKCS#10, PEM or DER, P-256)")
    p.add_argument("--fabric-id", type=id64, help="fabric id (hex; default: the issuer's)")
    p.add_argument("--node-id", type=id64, help="node id (hex; default random)")
    p.add_argument("--cat", type=cat, action="append", help="CASE Authenticated Tag (hex), <= 3")
    p.add_argument("--out", help="write NOC (+ ICAC) PEM here (default stdout)")
    p.add_argument("--tlv-out", type=Path, help="also write the NOC in Matter TLV form")
    p.add_argument("--days", type=int, help="lifetime in days (default 365, within the issuer)")
    _carried_key(p, "ICAC or RCAC")
    p.set_defaults(handler=_noc_issue)

    p = groups.add_parser(
        "show", help="show a Matter CA and its VID/PID or fabric ids", parents=[STORAGE]
    )
    p.add_argument("name")
    p.set_defaults(handler=_show)
