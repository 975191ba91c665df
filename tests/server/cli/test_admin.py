"""``privca admin token|cert``: tokens printed once and kept as hashes, certificates on disk."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from server.cli import main


def _privca(data: str, *args: str) -> int:
    return main([*args, "--data-dir", data])


@pytest.fixture
def data(tmp_path: Path) -> str:
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    data = str(tmp_path / "data")
    assert main(["ca", "create-root", "root", "--data-dir", data]) == 0
    assert main(["ca", "create-sub", "team-a", "--parent", "root", "--data-dir", data]) == 0
    return data


def test_token_create_list_revoke(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert (
        _privca(data, "admin", "token", "create", "ci", "--role", "issuer", "--scope", "team-a")
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    secret = out[-1]
    assert secret.startswith("pca_")
    assert "scope team-a" in out[0]
    db = (Path(data) / "privca.db").read_bytes()
    assert secret.encode() not in db
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in db
    assert _privca(data, "admin", "token", "list") == 0
    listing = capsys.readouterr().out
    assert "ci" in listing
    assert "live" in listing
    assert secret not in listing
    assert _privca(data, "admin", "token", "revoke", "ci") == 0
    assert _privca(data, "admin", "token", "list") == 0
    assert "revoked" in capsys.readouterr().out
    assert _privca(data, "admin", "token", "revoke", "ci") == 1
    # A scope must name a CA.
    assert _privca(data, "admin", "token", "create", "x", "--role", "owner", "--scope", "nope") == 1


def test_cert_create_writes_private_files(data: str, tmp_path: Path) -> None:
    out = tmp_path / "bob"
    assert (
        _privca(data, "admin", "cert", "create", "bob", "--role", "auditor", "--out", str(out)) == 0
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "bob.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out / "bob.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "admin-ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=bob"
    assert _privca(data, "admin", "cert", "revoke", "bob") == 0
    assert _privca(data, "admin", "cert", "revoke", "bob") == 1
