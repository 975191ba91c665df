"""``privca audit``, ``audit verify`` and ``audit export`` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import socket
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, delete, update

from server.cli import main
from server.store.database import Database
from server.store.models import AuditRow

_LOG = cast(Table, AuditRow.__table__)


class Cli:
    """``privca`` on the test's data dir and database, run off the event loop."""

    def __init__(self, data: Path, database: Database, capsys: pytest.CaptureFixture[str]):
        self.data = str(data)
        self.url = database.url
        self._capsys = capsys

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        head = 2 if len(args) > 1 and not args[1].startswith("-") else 1
        argv = [*args[:head], "--data-dir", self.data, "--database-url", self.url, *args[head:]]
        code = await asyncio.to_thread(main, argv)
        out = self._capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
async def cli(database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    run = Cli(tmp_path / "data", database, capsys)
    assert (await run("ca", "create-root", "root"))[0] == 0
    assert (await run("ca", "create-sub", "issuing", "--parent", "root"))[0] == 0
    assert (await run("ca", "disable", "issuing"))[0] == 0
    assert (await run("ca", "enable", "issuing"))[0] == 0
    return run


def _rehash(line: dict[str, object]) -> str:
    """Recompute a record's hash from its export line, as an outside verifier would."""
    hashed = {k: line[k] for k in ("seq", "at", "actor", "action", "target", "detail", "source")}
    hashed["prev_hash"] = line["prev_hash"]
    encoded = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


async def test_verify_list_and_export(cli: Cli, tmp_path: Path) -> None:
    code, out, err = await cli("audit", "verify")
    assert code == 0, err
    count = int(out.split()[0])
    assert out.strip() == f"{count} records, chain intact"
    assert count >= 4
    code, out, _ = await cli("audit")
    assert code == 0
    create = next(line for line in out.splitlines() if "ca.create-root" in line)
    assert f"operator:{getpass.getuser()}" in create
    assert f"[cli@{socket.gethostname()}]" in create
    code, out, _ = await cli("audit", "export", "--format", "jsonl")
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, count + 1))
    prev = "0" * 64
    for line in lines:
        assert line["prev_hash"] == prev
        assert _rehash(line) == line["hash"]
        prev = line["hash"]
    who, where = f"operator:{getpass.getuser()}", f"cli@{socket.gethostname()}"
    by_action = {x["action"]: x for x in lines}
    for action, target in [
        ("ca.create-root", "root"),
        ("ca.create-sub", "issuing"),
        ("ca.disable", "issuing"),
        ("ca.enable", "issuing"),
    ]:
        assert [x["action"] for x in lines].count(action) == 1
        assert (by_action[action]["actor"], by_action[action]["target"]) == (who, target)
        assert by_action[action]["source"] == where
    code, out, _ = await cli("audit", "export", "--since", "2", "--out", str(tmp_path / "a.jsonl"))
    assert code == 0
    tail = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert tail == lines[2:]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("edit", "broken at record seq 2 (id 2): edited"),
        ("delete", "broken at record seq 2: deleted: seq 2 missing"),
        ("reorder", "broken at record seq 2 (id 3): reordered"),
        ("truncate", ": truncated: the head says"),
    ],
    ids=["fail/edit", "fail/delete", "fail/reorder", "fail/truncate"],
)
async def test_verify_fails_at_the_tampered_record(
    cli: Cli, database: Database, case: str, expected: str
) -> None:
    async with database.write() as conn:
        if case == "edit":
            await conn.execute(update(_LOG).where(_LOG.c.seq == 2).values(target="elsewhere"))
        elif case == "delete":
            await conn.execute(delete(_LOG).where(_LOG.c.seq == 2))
        elif case == "reorder":
            await conn.execute(update(_LOG).where(_LOG.c.seq == 2).values(seq=-2))
            await conn.execute(update(_LOG).where(_LOG.c.seq == 3).values(seq=2))
            await conn.execute(update(_LOG).where(_LOG.c.seq == -2).values(seq=3))
        else:
            last = (await conn.execute(_LOG.select().order_by(_LOG.c.seq.desc()))).first()
            assert last is not None
            await conn.execute(delete(_LOG).where(_LOG.c.seq == last.seq))
    code, out, err = await cli("audit", "verify", "--page", "2")
    assert code == 1
    assert out == ""
    assert err.startswith("audit chain broken at record seq")
    assert expected in err


class Trail:
    """The audit records ``privca`` commands appended since the last look."""

    def __init__(self, cli: Cli) -> None:
        self._cli = cli
        self._seq = 0

    async def run(self, *args: str) -> None:
        """Run a command with the storage options last (every leaf command takes them)."""
        argv = [*args, "--data-dir", self._cli.data, "--database-url", self._cli.url]
        assert await asyncio.to_thread(main, argv) == 0, argv

    async def new(self) -> list[tuple[str, str, str, str]]:
        code, out, err = await self._cli("audit", "export", "--since", str(self._seq))
        assert code == 0, err
        lines = [json.loads(x) for x in out.splitlines()]
        if lines:
            self._seq = lines[-1]["seq"]
        return [(x["actor"], x["action"], x["target"], x["source"]) for x in lines]


async def serial_of(cli: Cli, ca: str) -> str:
    """Return the serial of a CA's certificate (``privca ca export``)."""
    code, out, err = await cli("ca", "export", ca)
    assert code == 0, err
    return f"{x509.load_pem_x509_certificates(out.encode())[0].serial_number:X}"


async def test_matter_and_admin_commands_write_their_records(cli: Cli, tmp_path: Path) -> None:
    who, where = f"operator:{getpass.getuser()}", f"cli@{socket.gethostname()}"
    trail = Trail(cli)
    await trail.new()
    # A new CA is two records: the CA, and its certificate in the issuer's inventory.
    await trail.run("matter", "paa", "create", "--name", "paa", "--vid", "FFF1")
    assert await trail.new() == [
        (who, "ca.create-root", "paa", where),
        (who, "cert.issue", f"paa/{await serial_of(cli, 'paa')}", where),
    ]
    await trail.run(
        "matter", "pai", "create", "--name", "pai", "--paa", "paa", "--vid", "FFF1", "--pid", "8000"
    )
    assert await trail.new() == [
        (who, "ca.create-sub", "pai", where),
        (who, "cert.issue", f"paa/{await serial_of(cli, 'pai')}", where),
    ]
    out = tmp_path / "dacs"
    await trail.run(
        "matter", "dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8000",
        "--count", "3", "--out", str(out),
    )  # fmt: skip
    serials = [d["serial"] for d in json.loads((out / "manifest.json").read_text())["devices"]]
    assert len(set(serials)) == 3
    assert sorted(await trail.new()) == sorted(
        (who, "cert.issue", f"pai/{s}", where) for s in serials
    )
    fabric = "FAB000000000001D"
    await trail.run("matter", "rcac", "create", "--name", "rcac", "--fabric-id", fabric)
    assert await trail.new() == [
        (who, "ca.create-root", "rcac", where),
        (who, "cert.issue", f"rcac/{await serial_of(cli, 'rcac')}", where),
    ]
    await trail.run("matter", "icac", "create", "--name", "icac", "--rcac", "rcac")
    assert await trail.new() == [
        (who, "ca.create-sub", "icac", where),
        (who, "cert.issue", f"rcac/{await serial_of(cli, 'icac')}", where),
    ]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, SHA256())
    (tmp_path / "noc.csr").write_bytes(csr.public_bytes(Encoding.PEM))
    await trail.run(
        "matter", "noc", "issue", "--ca", "icac", "--csr", str(tmp_path / "noc.csr"),
        "--fabric-id", fabric, "--node-id", "0000000000001234", "--out", str(tmp_path / "noc.pem"),
    )  # fmt: skip
    noc = x509.load_pem_x509_certificates((tmp_path / "noc.pem").read_bytes())[0]
    assert await trail.new() == [(who, "cert.issue", f"icac/{noc.serial_number:X}", where)]

    await trail.run("admin", "token", "create", "ci", "--role", "issuer")
    assert await trail.new() == [(who, "admin.token-create", "ci", where)]
    await trail.run("admin", "token", "revoke", "ci")
    assert await trail.new() == [(who, "admin.token-revoke", "ci", where)]
    await trail.run(
        "admin", "cert", "create", "bob", "--role", "auditor", "--out", str(tmp_path / "bob")
    )
    bob = x509.load_pem_x509_certificate((tmp_path / "bob" / "bob.pem").read_bytes())
    # The first admin certificate makes the admin CA; the certificate is issued, then bound.
    admin_ca = x509.load_pem_x509_certificate((tmp_path / "bob" / "admin-ca.pem").read_bytes())
    assert await trail.new() == [
        (who, "ca.create-root", "privca-admin", where),
        (who, "cert.issue", f"privca-admin/{admin_ca.serial_number:X}", where),
        (who, "cert.issue", f"privca-admin/{bob.serial_number:X}", where),
        (who, "admin.cert-create", "bob", where),
    ]
    await trail.run("admin", "cert", "revoke", "bob")
    assert await trail.new() == [
        (who, "admin.cert-revoke", "bob", where),
        (who, "cert.revoke", f"{bob.serial_number:X}", where),
    ]
