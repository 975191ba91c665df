"""`privca acme eab ...`: External Account Binding keys in the data dir."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from server.cli import main


def test_eab_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    assert main(["ca", "create-root", "--data-dir", data, "root"]) == 0
    capsys.readouterr()
    assert main(["acme", "eab", "create", "--data-dir", data]) == 0
    kid, hmac_b64 = capsys.readouterr().out.split()
    assert len(base64.urlsafe_b64decode(hmac_b64 + "=")) == 32
    assert main(["acme", "eab", "list", "--data-dir", data, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["kid"], k["revoked"], k["accounts"]) for k in listed] == [(kid, False, [])]
    revoke = ["acme", "eab", "revoke", "--data-dir", data, kid, "--deactivate-accounts"]
    assert main(revoke) == 0
    assert f"revoked EAB key {kid}" in capsys.readouterr().out
    assert main(["acme", "eab", "list", "--data-dir", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"] is True
    assert main(["acme", "eab", "revoke", "--data-dir", data, "unknown"]) == 1
    assert "no EAB key" in capsys.readouterr().err


def test_directory_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    assert main(["ca", "create-root", "--data-dir", data, "root"]) == 0
    capsys.readouterr()
    add = ["acme", "directory", "add", "--data-dir", data]
    assert main([*add, "corp", "--ca", "nope"]) == 1
    assert "unknown CA 'nope'" in capsys.readouterr().err
    assert main([*add, "acct", "--ca", "root"]) == 1
    assert "directory names" in capsys.readouterr().err
    assert main([*add, "corp", "--ca", "root", "--allow-ip", "10.0.0.300/8"]) == 2
    assert "--allow-ip" in capsys.readouterr().err
    flags = ["--allow-dns", "corp.example", "--allow-dns", "lab.example", "--allow-ip"]
    flags += ["192.0.2.0/24", "--no-wildcard", "--eab-required", "--profile", "shortlived"]
    assert main([*add, "corp", "--ca", "root", *flags]) == 0
    assert "/acme/corp/directory" in capsys.readouterr().out
    assert main(["acme", "directory", "list", "--data-dir", data, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "name": "corp",
            "ca": "root",
            "profiles": ["shortlived"],
            "allow_dns": ["corp.example", "lab.example"],
            "allow_ip": ["192.0.2.0/24"],
            "wildcard": False,
            "eab_required": True,
            "source": "stored",
        }
    ]
    assert main(["acme", "directory", "list", "--data-dir", data]) == 0
    assert "corp.example,lab.example" in capsys.readouterr().out
    assert main(["audit", "--data-dir", data]) == 0
    assert "acme.directory-add" in capsys.readouterr().out
    assert main(["acme", "directory", "remove", "--data-dir", data, "corp"]) == 0
    capsys.readouterr()
    assert main(["acme", "directory", "remove", "--data-dir", data, "corp"]) == 1
    assert "no stored ACME directory" in capsys.readouterr().err
    assert main(["audit", "--data-dir", data]) == 0
    assert "acme.directory-remove" in capsys.readouterr().out
