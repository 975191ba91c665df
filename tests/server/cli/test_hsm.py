"""``privca ca ... --key-backend pkcs11`` with a ``[pkcs11]`` config: CAs in SoftHSM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

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
