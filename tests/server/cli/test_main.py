"""The privca command line against a data dir: ca, cert, crl and audit commands, exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

from server.cli import main
from tests.support import make_csr, openssl


def _privca(*args: str) -> int:
    return main(list(args))


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    # Nothing works before the data dir exists, with a clear message.
    assert _privca("cert", "list", "--data-dir", data) == 2
    assert "run `privca serve` first" in capsys.readouterr().err
    assert _privca("ca", "create-root", "--data-dir", data, "root") == 0
    assert (
        _privca(
            "ca",
            "create-sub",
            "--data-dir",
            data,
            "issuing",
            "--parent",
            "root",
            "--path-len",
            "0",
            "--key-type",
            "ec-p384",
        )
        == 0
    )
    assert (tmp_path / "data" / "ca-key.passphrase").stat().st_mode & 0o777 == 0o600
    csr, _ = make_csr(["dns:cli.internal"])
    (tmp_path / "req.pem").write_bytes(csr)
    out = tmp_path / "leaf.pem"
    assert (
        _privca(
            "cert",
            "issue",
            "--data-dir",
            data,
            "--csr",
            str(tmp_path / "req.pem"),
            "--profile",
            "tls-server",
            "--out",
            str(out),
        )
        == 0
    )
    certs = x509.load_pem_x509_certificates(out.read_bytes())
    assert len(certs) == 2  # leaf + issuing, no root
    capsys.readouterr()
    assert _privca("ca", "export", "--data-dir", data, "root") == 0
    (tmp_path / "root.pem").write_text(capsys.readouterr().out)
    result = openssl(
        "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(out), str(out)
    )
    assert result.returncode == 0, result.stderr
    serial = format(certs[0].serial_number, "X")
    assert _privca("cert", "list", "--data-dir", data, "--search", "cli.internal") == 0
    assert serial in capsys.readouterr().out
    assert _privca("cert", "revoke", "--data-dir", data, serial, "--reason", "keyCompromise") == 0
    assert _privca("cert", "revoke", "--data-dir", data, serial) == 1
    assert "already revoked" in capsys.readouterr().err
    assert _privca("crl", "generate", "--data-dir", data, "--out", str(tmp_path / "c.crl")) == 0
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "c.crl"), "-noout", "-text")
    assert serial.encode() in text.stdout.replace(b":", b"").upper()
    capsys.readouterr()
    assert _privca("cert", "show", "--data-dir", data, serial) == 0
    assert '"status": "revoked"' in capsys.readouterr().out
    assert _privca("audit", "--data-dir", data) == 0
    log = capsys.readouterr().out
    for action in ("ca.create-root", "ca.create-sub", "cert.issue", "cert.revoke", "crl.generate"):
        assert action in log
    assert _privca("ca", "list", "--data-dir", data) == 0
    listing = capsys.readouterr().out
    assert "issuing" in listing
    assert "ec-p384" in listing
    # Generated-key issuance with a free-form device subject, over a key file left
    # world-readable: the new key must not inherit that mode.
    (tmp_path / "dev.key").write_bytes(b"old")
    (tmp_path / "dev.key").chmod(0o644)
    assert (
        _privca(
            "cert",
            "issue",
            "--data-dir",
            data,
            "--profile",
            "device",
            "--subject",
            "CN=fire-sensor-123,serialNumber=XJ-9",
            "--key-out",
            str(tmp_path / "dev.key"),
            "--out",
            str(tmp_path / "dev.pem"),
        )
        == 0
    )
    assert (tmp_path / "dev.key").stat().st_mode & 0o777 == 0o600
    dev = x509.load_pem_x509_certificates((tmp_path / "dev.pem").read_bytes())[0]
    assert dev.subject.rfc4514_string() == "CN=fire-sensor-123,2.5.4.5=XJ-9"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["cert", "issue", "--profile", "nope", "--san", "dns:a.internal"],
            "unknown profile",
            id="fail/unknown-profile",
        ),
        pytest.param(
            ["cert", "issue", "--ca", "ghost", "--san", "dns:a.internal"],
            "unknown CA",
            id="fail/unknown-ca",
        ),
        pytest.param(
            ["cert", "issue", "--san", "dns:a.internal", "--days", "400"],
            "exceeds the maximum",
            id="fail/too-long",
        ),
        pytest.param(
            ["ca", "create-sub", "x", "--parent", "issuing"],
            "pathLenConstraint is 0",
            id="fail/below-issuing",
        ),
        pytest.param(["cert", "revoke", "ABCDEF"], "no certificate", id="fail/unknown-serial"),
        pytest.param(
            ["cert", "issue", "--csr", "CSRFILE"], "not a valid PKCS#10", id="fail/garbage-csr"
        ),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data = str(tmp_path / "data")
    assert _privca("ca", "create-root", "--data-dir", data, "root") == 0
    assert (
        _privca(
            "ca", "create-sub", "--data-dir", data, "issuing", "--parent", "root", "--path-len", "0"
        )
        == 0
    )
    (tmp_path / "garbage.csr").write_text("hello")
    args = [a.replace("CSRFILE", str(tmp_path / "garbage.csr")) for a in args]
    capsys.readouterr()
    assert _privca(*args[:2], "--data-dir", data, *args[2:]) == 1
    assert message in capsys.readouterr().err
