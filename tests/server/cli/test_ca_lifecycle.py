"""``privca ca disable/enable/revoke/renew`` and the revoked-sub-CA repro through the CLI."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from server.cli import main


def _privca(data: str, *args: str) -> int:
    return main([*args[:2], "--data-dir", data, *args[2:]])


def _states(data: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert _privca(data, "ca", "list", "--json") == 0
    return {c["name"]: c["state"] for c in json.loads(capsys.readouterr().out)}


def _issue(data: str, ca: str) -> int:
    return _privca(data, "cert", "issue", "--ca", ca, "--san", "dns:x.internal")


@pytest.fixture
def data(tmp_path: Path) -> str:
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    out = str(tmp_path / "data")
    assert _privca(out, "ca", "create-root", "root") == 0
    assert _privca(out, "ca", "create-sub", "sub", "--parent", "root") == 0
    assert _privca(out, "ca", "create-sub", "under", "--parent", "sub") == 0
    return out


def test_revoked_sub_ca_repro(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12: after revoking a sub-CA, it showed active and still issued."""
    assert _issue(data, "sub") == 0
    assert _issue(data, "under") == 0
    assert _privca(data, "ca", "revoke", "sub", "--reason", "keyCompromise") == 0
    assert _states(data, capsys) == {"root": "active", "sub": "revoked", "under": "revoked"}
    assert _issue(data, "sub") == 1
    assert "ca.state: CA sub is revoked" in capsys.readouterr().err
    assert _issue(data, "under") == 1
    assert "revoked" in capsys.readouterr().err
    assert _privca(data, "ca", "list") == 0
    assert "revoked" in capsys.readouterr().out
    assert _privca(data, "audit") == 0
    assert "ca.revoke" in capsys.readouterr().out


def test_cert_revoke_of_a_ca_certificate_revokes_the_ca(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repro's exact command: `cert revoke <sub-CA serial>`."""
    capsys.readouterr()
    assert _privca(data, "ca", "show", "sub") == 0
    serial = json.loads(capsys.readouterr().out)["serial"]
    assert _privca(data, "cert", "revoke", serial, "--reason", "keyCompromise") == 0
    assert "CA sub is revoked" in capsys.readouterr().out
    assert _states(data, capsys)["sub"] == "revoked"
    assert _issue(data, "sub") == 1


def test_disable_enable_renew(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _privca(data, "ca", "disable", "under") == 0
    assert _states(data, capsys)["under"] == "disabled"
    assert _issue(data, "under") == 1
    assert "is disabled" in capsys.readouterr().err
    assert _privca(data, "ca", "enable", "under") == 0
    assert _issue(data, "under") == 0
    assert _privca(data, "ca", "enable", "under") == 1
    assert "already active" in capsys.readouterr().err
    assert _privca(data, "ca", "renew", "sub", "--rekey") == 1
    assert "child CAs signed by its current key" in capsys.readouterr().err
    assert _privca(data, "ca", "renew", "sub", "--days", "30") == 0
    assert "same key" in capsys.readouterr().out
    out = tmp_path / "chain.pem"
    assert _privca(data, "ca", "export", "under", "--chain", "--out", str(out)) == 0
    chain = x509.load_pem_x509_certificates(out.read_bytes())
    lifetime = chain[1].not_valid_after_utc - chain[1].not_valid_before_utc
    assert lifetime.days == 30  # the renewed sub-CA certificate is what the chain carries
    assert _privca(data, "ca", "renew", "under", "--rekey") == 0
    assert "new key" in capsys.readouterr().out


def test_help_documents_rekey_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ca", "renew", "--help"])
    text = capsys.readouterr().out
    assert "refused while the CA has unexpired, unrevoked child CAs" in text
    assert "no longer published" in text


def test_renewed_root_rewrites_the_ca_bundle(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert _privca(data, "ca", "create-root", "root") == 0
    assert _privca(data, "ca", "create-sub", "issuing", "--parent", "root") == 0
    bundle = tmp_path / "data" / "ca-bundle.pem"
    bundle.write_text("stale\n")  # `privca serve` writes it on first start
    assert _privca(data, "ca", "renew", "root", "--days", "400") == 0
    (root,) = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert root.not_valid_after_utc - root.not_valid_before_utc == timedelta(days=400, minutes=5)


def test_create_sub_name_constraints(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--permit-dns", "corp.example", "--permit-ip", "10.0.0.0/8")
    assert _privca(data, "ca", "create-sub", "nc", "--parent", "root", *args) == 0
    capsys.readouterr()
    assert _privca(data, "ca", "export", "nc") == 0
    cert = x509.load_pem_x509_certificate(capsys.readouterr().out.encode())
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    assert [str(n.value) for n in nc.permitted_subtrees or []] == ["corp.example", "10.0.0.0/8"]
    # Host bits set, or no DNS name: a one-line refusal, no CA.
    for flag, value in (("--permit-ip", "10.0.0.1/8"), ("--permit-dns", "bad name")):
        assert _privca(data, "ca", "create-sub", "bad", "--parent", "root", flag, value) == 1
        assert "constraint" in capsys.readouterr().err
    capsys.readouterr()
    assert "bad" not in _states(data, capsys)
