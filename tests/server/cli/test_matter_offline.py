"""Matter CAs kept offline: a PAA or RCAC whose key the operator carries in a file.

``matter paa|rcac create --offline --key-out FILE`` (or ``ca set-offline --key-out``)
moves the key out of the database; ``matter pai|icac create``, ``dac issue`` and
``noc issue`` under an offline CA sign at a ceremony with ``--key FILE`` and are
refused without it, with another CA's file, or with a file for a CA not carried.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca import api, grants, keys
from server.ca.errors import EngineError
from server.ca.matter import api as matter_api
from server.ca.types import Principal
from server.cli import main
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.server.cli.test_offline_root import Cli, key_material, stored_bytes

OP = Principal("operator", "test")


class MatterCli(Cli):
    """``Cli`` that puts the storage options after ``matter GROUP ACTION`` too."""

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        if args[0] != "matter":
            return await super().__call__(*args)
        self._capsys.readouterr()
        argv = [*args[:3], "--data-dir", self.data, "--database-url", self.url, *args[3:]]
        code = await asyncio.to_thread(main, argv)
        out = self._capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def cli(database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return MatterCli(tmp_path / "data", database, capsys)


async def _cert(cli: Cli, name: str, tmp_path: Path) -> x509.Certificate:
    out = tmp_path / f"{name}.pem"
    code, _, err = await cli("ca", "export", name, "--out", str(out))
    assert code == 0, err
    return x509.load_pem_x509_certificate(out.read_bytes())


def _nocsr(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    path.write_bytes(csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


async def test_offline_paa_signs_pais_at_a_ceremony(
    cli: Cli, database: Database, tmp_path: Path
) -> None:
    key = tmp_path / "paa.key"
    # A software key offline without --key-out would stay in the database.
    code, _, err = await cli("matter", "paa", "create", "--name", "paa", "--offline")
    assert code == 1
    assert "--key-out" in err
    code, out, err = await cli(
        "matter", "paa", "create", "--name", "paa", "--vid", "FFF1", "--offline",
        "--key-out", str(key),
    )  # fmt: skip
    assert code == 0, err
    assert "created Matter PAA paa" in out
    assert f"its key is in {key}" in out
    assert key.stat().st_mode & 0o777 == 0o600
    stored = await stored_bytes(database)
    assert [m[:16] for m in key_material(key) if m in stored] == []
    code, out, _ = await cli("ca", "show", "paa")
    assert json.loads(out)["offline"] is True

    pai_args = ("matter", "pai", "create", "--name", "pai", "--paa", "paa", "--vid", "FFF1")
    # Without the key file: refused, saying which file to give.
    code, _, err = await cli(*pai_args, "--pid", "8000")
    assert code == 1
    assert "ca.key-carried" in err
    assert "--key FILE" in err
    # Another offline CA's key file: refused.
    other = tmp_path / "other.key"
    code, _, err = await cli(
        "matter", "paa", "create", "--name", "other", "--offline", "--key-out", str(other)
    )
    assert code == 0, err
    code, _, err = await cli(*pai_args, "--key", str(other))
    assert code == 1
    assert "does not hold CA key" in err
    code, out, _ = await cli("ca", "list")
    assert "pai" not in out.split()  # nothing was created by the refused commands

    code, out, err = await cli(*pai_args, "--pid", "8000", "--key", str(key))
    assert code == 0, err
    assert "created Matter PAI pai" in out
    paa_cert = await _cert(cli, "paa", tmp_path)
    pai_cert = await _cert(cli, "pai", tmp_path)
    pai_cert.verify_directly_issued_by(paa_cert)
    # The ceremony lent the key to that process only: the PAA's row still carries none.
    stored = await stored_bytes(database)
    assert [m[:16] for m in key_material(key) if m in stored] == []

    # The PAI is online: DACs need no key file.
    dacs = tmp_path / "dacs"
    code, _, err = await cli(
        "matter", "dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8000",
        "--count", "2", "--out", str(dacs),
    )  # fmt: skip
    assert code == 0, err
    dac = x509.load_pem_x509_certificate((dacs / "device-00001" / "dac.pem").read_bytes())
    dac.verify_directly_issued_by(pai_cert)

    # A key file for a CA whose key is in the database is refused, not ignored.
    code, _, err = await cli(
        "matter", "dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8000",
        "--count", "1", "--out", str(tmp_path / "more"), "--key", str(key),
    )  # fmt: skip
    assert code == 1
    assert "not carried" in err


async def test_set_offline_carries_a_matter_ca_key_out(cli: Cli, tmp_path: Path) -> None:
    code, _, err = await cli("matter", "paa", "create", "--name", "paa", "--vid", "FFF1")
    assert code == 0, err
    code, _, err = await cli(
        "matter", "pai", "create", "--name", "pai", "--paa", "paa", "--vid", "FFF1",
        "--pid", "8000",
    )  # fmt: skip
    assert code == 0, err
    paa_key, pai_key = tmp_path / "paa.key", tmp_path / "pai.key"
    code, out, err = await cli("ca", "set-offline", "paa", "--key-out", str(paa_key))
    assert code == 0, err
    assert str(paa_key) in out
    code, _, err = await cli("ca", "set-offline", "pai", "--key-out", str(pai_key))
    assert code == 0, err

    # An offline PAI issues DACs only at its ceremony.
    dac_args = (
        "matter", "dac", "issue", "--pai", "pai", "--vid", "FFF1", "--pid", "8000",
        "--count", "3",
    )  # fmt: skip
    code, _, err = await cli(*dac_args, "--out", str(tmp_path / "refused"))
    assert code == 1
    assert "ca.key-carried" in err
    assert not (tmp_path / "refused").exists()
    code, _, err = await cli(*dac_args, "--out", str(tmp_path / "wrong"), "--key", str(paa_key))
    assert code == 1
    assert "does not hold CA key" in err
    code, out, err = await cli(*dac_args, "--out", str(tmp_path / "dacs"), "--key", str(pai_key))
    assert code == 0, err
    assert "issued 3 DACs" in out
    pai_cert = await _cert(cli, "pai", tmp_path)
    dac = x509.load_pem_x509_certificate(
        (tmp_path / "dacs" / "device-00003" / "dac.pem").read_bytes()
    )
    dac.verify_directly_issued_by(pai_cert)

    # A second PAI under the offline PAA, and the PAA's status ceremony, with its file.
    code, _, err = await cli(
        "matter", "pai", "create", "--name", "pai2", "--paa", "paa", "--vid", "FFF1",
        "--key", str(paa_key),
    )  # fmt: skip
    assert code == 0, err
    code, out, err = await cli("ca", "sign-offline", "paa", "--days", "30", "--key", str(paa_key))
    assert code == 0, err
    # Back online with its file: PAIs need no key file again.
    code, _, err = await cli("ca", "set-online", "paa", "--key", str(paa_key))
    assert code == 0, err
    code, _, err = await cli(
        "matter", "pai", "create", "--name", "pai3", "--paa", "paa", "--vid", "FFF1"
    )
    assert code == 0, err


async def test_offline_rcac_signs_icacs_and_nocs_at_a_ceremony(
    cli: Cli, database: Database, tmp_path: Path, key_backend: keys.Pkcs8KeyBackend
) -> None:
    key = tmp_path / "rcac.key"
    code, out, err = await cli(
        "matter", "rcac", "create", "--name", "rcac", "--fabric-id", "FAB000000000001D",
        "--offline", "--key-out", str(key),
    )  # fmt: skip
    assert code == 0, err
    assert "created Matter RCAC rcac" in out
    code, _, err = await cli("matter", "icac", "create", "--name", "icac", "--rcac", "rcac")
    assert code == 1
    assert "ca.key-carried" in err
    code, _, err = await cli(
        "matter", "icac", "create", "--name", "icac", "--rcac", "rcac", "--key", str(key)
    )
    assert code == 0, err
    rcac_cert = await _cert(cli, "rcac", tmp_path)
    (await _cert(cli, "icac", tmp_path)).verify_directly_issued_by(rcac_cert)

    # A NOC straight from the offline RCAC (a commissioner's own NOC), at a ceremony.
    csr = _nocsr(tmp_path / "node.csr")
    noc_out = tmp_path / "noc.pem"
    noc_args = ("matter", "noc", "issue", "--ca", "rcac", "--csr", str(csr), "--out", str(noc_out))
    code, _, err = await cli(*noc_args)
    assert code == 1
    assert "ca.key-carried" in err
    code, _, err = await cli(*noc_args, "--key", str(key))
    assert code == 0, err
    noc = x509.load_pem_x509_certificate(noc_out.read_bytes())
    noc.verify_directly_issued_by(rcac_cert)

    # Outside a ceremony (any serving process) the offline RCAC issues nothing.
    engine = api.CAEngine(SqlRepository(database), keys.KeyBackends(key_backend))
    with pytest.raises(EngineError, match=r"ca\.offline"):
        await matter_api.MatterService(engine).issue_noc(
            csr.read_bytes(), ca="rcac", actor=OP, grant=grants.OPERATOR
        )
