"""``privca ca ... --key-backend pkcs11`` with a ``[pkcs11]`` config: CAs in SoftHSM2."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509

from server.ca.matter import rules
from server.ca.matter.rules import MatterKind
from server.cli import main
from tests.support import SoftHsm, make_csr, openssl


def _config(tmp_path: Path, softhsm: SoftHsm, *, pin_mode: int = 0o600) -> Path:
    pin = tmp_path / "token.pin"
    fd = os.open(pin, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, pin_mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(softhsm.pin + "\n")
    os.chmod(pin, pin_mode)  # exact mode regardless of umask
    config = tmp_path / "privca.toml"
    config.write_text(
        f'[pkcs11]\nmodule = "{softhsm.module}"\ntoken_label = "{softhsm.label}"\n'
        f'pin_file = "{pin}"\n'
    )
    return config


@pytest.fixture(autouse=True)
def _no_env_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIVCA_PKCS11_PIN", raising=False)
    monkeypatch.delenv("PRIVCA_KEY_PASSPHRASE", raising=False)


def test_cli_hierarchy_in_token(
    tmp_path: Path, softhsm: SoftHsm, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data-dir", str(tmp_path / "data"), "--config", str(_config(tmp_path, softhsm))]
    assert main(["ca", "create-root", *common, "--key-backend", "pkcs11", "root"]) == 0
    sub = ["ca", "create-sub", *common, "issuing", "--parent", "root", "--key-type", "rsa2048"]
    assert main([*sub, "--key-backend", "pkcs11"]) == 0
    csr, _ = make_csr(["dns:cli.hsm.internal"])
    (tmp_path / "req.pem").write_bytes(csr)
    out = tmp_path / "leaf.pem"
    issue = ["cert", "issue", *common, "--csr", str(tmp_path / "req.pem"), "--out", str(out)]
    assert main([*issue, "--profile", "tls-server"]) == 0
    capsys.readouterr()
    assert main(["ca", "export", *common, "root"]) == 0
    (tmp_path / "root.pem").write_text(capsys.readouterr().out)
    result = openssl(
        "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(out), str(out)
    )
    assert result.returncode == 0, result.stderr
    # The database holds no private key for the token CAs: only their public halves.
    db = (tmp_path / "data" / "privca.db").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" not in db
    csr_out = tmp_path / "ext.csr"
    imp = ["ca", "import-csr", *common, "ext", "--key-backend", "pkcs11", "--out", str(csr_out)]
    assert main(imp) == 0
    request = x509.load_pem_x509_csr(csr_out.read_bytes())
    assert request.is_signature_valid


def test_cli_pin_file_must_be_private(
    tmp_path: Path, softhsm: SoftHsm, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, softhsm, pin_mode=0o644)
    args = ["ca", "create-root", "--data-dir", str(tmp_path / "d"), "--config", str(config)]
    assert main([*args, "--key-backend", "pkcs11", "root"]) == 2
    assert "must be mode 0600" in capsys.readouterr().err


def test_cli_pkcs11_needs_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ca", "create-root", "--data-dir", str(tmp_path / "d"), "--key-backend", "pkcs11"]
    assert main([*args, "root"]) == 1
    assert "key backend 'pkcs11' is not configured" in capsys.readouterr().err


def test_cli_matter_attestation_and_fabric_in_token(
    tmp_path: Path, softhsm: SoftHsm, capsys: pytest.CaptureFixture[str]
) -> None:
    """PAA, PAI, RCAC and ICAC keys made in the token; DACs and a NOC signed there."""
    common = ["--data-dir", str(tmp_path / "data"), "--config", str(_config(tmp_path, softhsm))]
    hsm = ["--key-backend", "pkcs11"]
    m = ["matter"]
    assert main([*m, "paa", "create", *common, *hsm, "--name", "paa", "--vid", "FFF1"]) == 0
    pai = [*m, "pai", "create", *common, *hsm, "--name", "pai", "--paa", "paa", "--vid", "FFF1"]
    assert main([*pai, "--pid", "8000"]) == 0
    assert main([*m, "paa", "create", *common, "--name", "soft-paa", "--vid", "FFF1"]) == 0
    dacs = tmp_path / "dacs"
    issue = [*m, "dac", "issue", *common, "--pai", "pai", "--vid", "FFF1", "--pid", "8000"]
    assert main([*issue, "--count", "3", "--out", str(dacs)]) == 0
    csrs = tmp_path / "csrs"
    csrs.mkdir()
    csr, _ = make_csr([], subject="device")
    (csrs / "dev.pem").write_bytes(csr)
    assert main([*issue, "--csr-dir", str(csrs), "--out", str(tmp_path / "dacs2")]) == 0
    rcac = [*m, "rcac", "create", *common, *hsm, "--name", "rcac"]
    assert main([*rcac, "--fabric-id", "FAB000000000001D"]) == 0
    assert main([*m, "icac", "create", *common, *hsm, "--name", "icac", "--rcac", "rcac"]) == 0
    nocsr, _ = make_csr([], subject="node")
    (tmp_path / "nocsr.pem").write_bytes(nocsr)
    noc = tmp_path / "noc.pem"
    noc_issue = [*m, "noc", "issue", *common, "--ca", "icac", "--csr", str(tmp_path / "nocsr.pem")]
    assert main([*noc_issue, "--out", str(noc)]) == 0
    capsys.readouterr()
    for name in ("paa", "soft-paa", "rcac"):
        assert main(["ca", "export", *common, name, "--out", str(tmp_path / f"{name}.pem")]) == 0
    paa = x509.load_pem_x509_certificate((tmp_path / "paa.pem").read_bytes())
    folders = sorted(dacs.glob("device-*")) + sorted((tmp_path / "dacs2").glob("device-*"))
    assert len(folders) == 4
    for folder in folders:
        dac = x509.load_pem_x509_certificate((folder / "dac.pem").read_bytes())
        pai_cert = x509.load_pem_x509_certificate((folder / "pai.pem").read_bytes())
        rules.validate_chain(dac, MatterKind.DAC, [pai_cert, paa])
        chain = ["-untrusted", str(folder / "pai.pem"), str(folder / "dac.pem")]
        ok = openssl("verify", "-x509_strict", "-CAfile", str(tmp_path / "paa.pem"), *chain)
        assert ok.returncode == 0, ok.stderr
        # Negative control: the same VID's software PAA is not this DAC's anchor.
        wrong = openssl("verify", "-x509_strict", "-CAfile", str(tmp_path / "soft-paa.pem"), *chain)
        assert wrong.returncode != 0
    ok = openssl(
        "verify",
        "-x509_strict",
        "-CAfile",
        str(tmp_path / "rcac.pem"),
        "-untrusted",
        str(noc),
        str(noc),
    )
    assert ok.returncode == 0, ok.stderr
    rules.validate_chain(
        x509.load_pem_x509_certificate(noc.read_bytes()),
        MatterKind.NOC,
        [
            *x509.load_pem_x509_certificates(noc.read_bytes())[1:],
            x509.load_pem_x509_certificate((tmp_path / "rcac.pem").read_bytes()),
        ],
    )
    # Only the software PAA's key is in the database; the other four are token objects.
    with sqlite3.connect(tmp_path / "data" / "privca.db") as db:
        stored = dict(db.execute("SELECT name, key_backend FROM cas").fetchall())
    assert stored == {
        "paa": "pkcs11",
        "pai": "pkcs11",
        "soft-paa": "pkcs8",
        "rcac": "pkcs11",
        "icac": "pkcs11",
    }
